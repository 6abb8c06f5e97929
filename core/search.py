"""Finding notes like a query (a typed phrase, or a note) in the full embedding space: exact search
on small corpora, the cell index (core.neighbours.CellIndex) on large ones.

Exact search reads every vector for each query: tens of milliseconds up to 200k x 384, ~250 ms a
query at 1M on two busy cores (bench/million.py), past the 200 ms a query may take. The cell index
answers in a few tens of milliseconds at 1M but first costs a k-means (15-30 s from 50k to 200k
notes on this machine under load), which pays only on large corpora: it is used above EXACT_MAX
notes. The index is approximate (see neighbours.CellIndex): a neighbour in a cell not probed is
missed.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from core.neighbours import CellIndex, nearest

EXACT_MAX = 200_000


def wants_index(n_notes: int) -> bool:
    """Whether a corpus of `n_notes` is searched through a cell index (else exactly)."""
    return n_notes > EXACT_MAX


def search(X, query_vec, k: int, exclude: Iterable[int] = (), index: CellIndex | None = None
           ) -> tuple[np.ndarray, np.ndarray]:
    """The `k` rows of X most cosine-similar to `query_vec`, best first (indices, similarities);
    rows in `exclude` are never returned. Through `index` (a CellIndex of X) when given, else exact."""
    if index is None:
        return nearest(X, query_vec, k, exclude=list(exclude) or None)
    excluded = {int(i) for i in exclude}
    idx, sims = index.search(query_vec, k + len(excluded))
    keep = np.array([i not in excluded for i in idx.tolist()], dtype=bool)
    return idx[keep][:k], sims[keep][:k]
