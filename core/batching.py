"""Length-bucketed batches, shared by embedding (core/embed.py) and training's pooling of many
sequences (core/training/pooling.py): sorted by length, little of each batch is padding."""

from __future__ import annotations

import numpy as np


def length_batches(lengths, token_budget: int, max_count: int | None = None) -> list[np.ndarray]:
    """Indices, longest first, cut into batches of similar length whose padded size (count x longest)
    fits the token budget, and of at most `max_count` texts."""
    lengths = np.asarray(lengths)
    order = np.argsort(-lengths, kind="stable")
    batches, start = [], 0
    while start < len(order):
        size = max(1, token_budget // max(int(lengths[order[start]]), 1))
        size = min(size, max_count) if max_count else size
        batches.append(order[start:start + size])
        start += size
    return batches
