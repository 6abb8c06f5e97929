"""Masked-language modelling: the plain MLM objective (the masking rule and the loss: masking.py)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from core.errors import UserError
from core.training import parallel
from core.training.masking import IGNORE, mask_tokens, mlm_loss
from core.training.objective import LossOut, Objective, Suggested, pad_batch, with_special_tokens
from core.training.registry import register
from core.training.sampling import length_grouped_batches

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
    order = 0  # the default objective, listed first
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
