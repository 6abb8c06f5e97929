"""Masked-language modelling: the masking rule, the loss, and the plain MLM objective.

BERT's recipe: 15 % of the real tokens are chosen; of those 80 % become [MASK], 10 % a random token,
10 % stay. The vocabulary projection runs only on the chosen positions: on MiniLM it costs about as
much as the whole encoder when run on every token, so this alone makes an MLM step much cheaper.
DeCLUTR and the metadata objective reuse `mask_tokens` / `mlm_loss` for their MLM term.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from core.errors import UserError
from core.training import parallel
from core.training.objective import LossOut, Objective, Suggested, pad_batch, with_special_tokens
from core.training.registry import register
from core.training.sampling import length_grouped_batches

IGNORE = -100  # label of positions that carry no MLM loss (PyTorch's cross-entropy default)


def mask_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor, tokenizer, vocab_size: int,
                rng: np.random.Generator, prob: float = 0.15) -> tuple[torch.Tensor, torch.Tensor]:
    """(masked input ids, labels). Special and padding tokens are never chosen."""
    ids = input_ids.cpu().numpy()
    candidates = (attention_mask.cpu().numpy() == 1) & ~np.isin(ids, tokenizer.all_special_ids)
    chosen = candidates & (rng.random(ids.shape) < prob)
    if candidates.any() and not chosen.any():  # tiny batches: keep the loss defined
        rows, cols = np.nonzero(candidates)
        pick = int(rng.integers(len(rows)))
        chosen[rows[pick], cols[pick]] = True
    labels = np.where(chosen, ids, IGNORE)
    action = rng.random(ids.shape)
    masked = ids.copy()
    masked[chosen & (action < 0.8)] = tokenizer.mask_token_id
    randomised = chosen & (action >= 0.8) & (action < 0.9)
    masked[randomised] = rng.integers(0, vocab_size, int(randomised.sum()))
    device = input_ids.device
    return torch.from_numpy(masked).to(device), torch.from_numpy(labels).to(device)


def mlm_loss(model, hidden: torch.Tensor, labels: torch.Tensor, count: int | None = None) -> torch.Tensor:
    """Mean cross-entropy over the chosen positions; with `count`, their sum divided by `count`
    (a data-parallel rank divides by the whole batch's count)."""
    chosen = labels != IGNORE
    if not bool(chosen.any()):
        return hidden.sum() * 0.0  # keeps the graph; contributes nothing
    logits = model.mlm_logits(hidden[chosen])
    if count is None:
        return F.cross_entropy(logits.float(), labels[chosen])
    return F.cross_entropy(logits.float(), labels[chosen], reduction="sum") / count


def chunk(ids: list[int], block: int, min_tail: int) -> list[list[int]]:
    """Cut a long document into blocks; a short leftover tail is dropped unless it is all there is."""
    chunks = [ids[i:i + block] for i in range(0, len(ids), block)]
    if len(chunks) > 1 and len(chunks[-1]) < min_tail:
        chunks.pop()
    return chunks


@register("mlm")
class MLMObjective(Objective):
    help = "Masked-language modelling: learns the vocabulary and phrasing of your notes."
    suggested = {"cpu": Suggested(300, 16, 128), "cuda": Suggested(2000, 64, 256)}
    uses_mlm = True
    min_tokens = 2  # a single token gives a degenerate masked-LM example

    def prepare(self, token_ids: list[list[int]], labels: Sequence[str | None] | None) -> int:
        block = self.opts.max_length - 2  # room for [CLS] and [SEP]
        self.units: list[list[int]] = []
        usable = 0
        for ids in token_ids:
            if len(ids) < self.min_tokens:
                continue
            usable += 1
            # Every block of a long note is used, not only its first max_length tokens.
            self.units.extend(chunk(ids, block, min_tail=min(16, block)))
        self.usable_docs = usable
        if not self.units:
            raise UserError(f"MLM needs at least one text with >= {self.min_tokens} tokens")
        return usable

    def index_batches(self, seed: int) -> Iterator[list[int]]:
        return length_grouped_batches([len(u) for u in self.units], self.opts.batch_size, seed)

    def compute_loss(self, model, batch: list[int], rng: np.random.Generator) -> LossOut:
        seqs = [with_special_tokens(self.units[i], self.tokenizer) for i in batch]
        ids, mask = pad_batch(seqs, self.tokenizer.pad_token_id, model.device, model.pad_multiple)
        masked, labels = mask_tokens(ids, mask, self.tokenizer, model.vocab_size, rng)  # the whole batch's draw
        # A data-parallel rank runs its own rows; scaled so the ranks' average is the whole batch's mean.
        own = parallel.rows(len(seqs))
        count = int((labels != IGNORE).sum()) / parallel.world_size()
        loss = mlm_loss(model, model(masked[own], mask[own]), labels[own], count if parallel.active() else None)
        return LossOut(loss, {"mlm": float(loss.detach())}, int(mask[own].sum()))

    def describe(self) -> dict:
        return {"mlm_probability": 0.15, "mask_random_keep": [0.8, 0.1, 0.1], "blocks": len(self.units)}
