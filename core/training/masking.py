"""The masking rule and the loss of masked-language modelling, shared by every objective with an MLM term.

BERT's recipe: 15 % of the real tokens are chosen; of those 80 % become [MASK], 10 % a random token,
10 % stay. The vocabulary projection runs only on the chosen positions: on MiniLM it costs about as
much as the whole encoder when run on every token, so this alone makes an MLM step much cheaper.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

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
