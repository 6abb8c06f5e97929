"""Nearest neighbours in the full embedding space (cosine), exact, by blockwise matmul + top-k.

Exact search rather than an approximate index: at the corpus sizes NoteSpace draws (up to a few
tens of thousands of notes) a torch matmul + topk is fast (about 0.6 s for all 10k x 384 on two
threads), deterministic, needs no numba compilation, and its answers are the ground truth the
compare view and the UMAP graph (see projection.py) are built on.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

# Score-matrix budget per block (float32 entries): 2**26 = 256 MB, whatever the corpus size.
_BLOCK_ENTRIES = 1 << 26
_MAX_BLOCK_ROWS = 4096


def _tensor(X) -> torch.Tensor:
    """A float32 torch view of X (no copy when X already is float32 and contiguous)."""
    if isinstance(X, torch.Tensor):
        return X.detach().to("cpu", torch.float32)
    A = np.ascontiguousarray(X, dtype=np.float32)
    # Vectors read through Arrow are read-only, which torch warns about: copy those (nothing here
    # writes to X, but a shared read-only buffer is not ours to hand out as writable).
    return torch.from_numpy(A if A.flags.writeable else A.copy())


def unit_rows(X) -> torch.Tensor:
    """Rows scaled to length 1, so a dot product is the cosine; all-zero rows stay zero."""
    T = _tensor(X)
    return T / T.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _block_rows(n: int) -> int:
    return max(1, min(_MAX_BLOCK_ROWS, _BLOCK_ENTRIES // max(n, 1)))


def nearest(X, query_vec, k: int = 10, exclude: Iterable[int] | np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
    """The `k` rows of X most cosine-similar to `query_vec`, best first.

    `exclude`: row indices (or a boolean mask) never returned, e.g. the query note itself.
    Returns (indices int64, cosine similarities float32); fewer than k when X is that small.
    """
    T = _tensor(X)
    q = unit_rows(np.asarray(query_vec, dtype=np.float32).reshape(1, -1))[0]
    # divide by the row norms instead of normalising X: no copy of a large X for every query
    sims = (T @ q) / T.norm(dim=1).clamp_min(1e-12)
    if exclude is not None:
        ex = np.asarray(exclude)
        ex = np.flatnonzero(ex) if ex.dtype == bool else ex.astype(np.int64).ravel()
        sims[torch.from_numpy(ex)] = -torch.inf
    k = min(k, int(torch.isfinite(sims).sum()))
    vals, idx = torch.topk(sims, k)
    return idx.numpy().astype(np.int64), vals.numpy().astype(np.float32)


def knn_graph(X, k: int, metric: str = "cosine", include_self: bool = True
              ) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours of every row: (indices (n,k) int64, distances (n,k) float32).

    Distances are cosine distances (1 - cosine) or Euclidean ones. With `include_self` every row's
    first neighbour is itself at distance 0, the layout UMAP's `precomputed_knn` expects (even
    when duplicate notes tie with it).
    """
    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"unknown metric {metric!r}")
    T = unit_rows(X) if metric == "cosine" else _tensor(X)
    n = T.shape[0]
    k = min(k, n if include_self else n - 1)
    sq = (T * T).sum(dim=1)  # squared norms, for Euclidean distances from dot products
    idx_out = np.empty((n, k), dtype=np.int64)
    dist_out = np.empty((n, k), dtype=np.float32)
    step = _block_rows(n)
    for start in range(0, n, step):
        stop = min(start + step, n)
        S = T[start:stop] @ T.T
        if metric == "euclidean":
            # rank by -|a-b|^2 = 2ab - |b|^2 (the -|a|^2 term is constant within a row)
            S = 2 * S - sq
        rows = torch.arange(stop - start)
        S[rows, rows + start] = torch.inf if include_self else -torch.inf
        vals, idx = torch.topk(S, k, dim=1)
        if metric == "cosine":
            d = (1.0 - vals).clamp_min(0.0)
        else:
            d = (sq[start:stop, None] - vals).clamp_min(0.0).sqrt()
        if include_self:
            d[:, 0] = 0.0
        idx_out[start:stop] = idx.numpy()
        dist_out[start:stop] = d.numpy()
    return idx_out, dist_out


def knn_indices(X, k: int = 10) -> np.ndarray:
    """Indices (n,k) of each row's k most cosine-similar other rows, best first (self excluded)."""
    return knn_graph(X, k, "cosine", include_self=False)[0]


def neighbourhood_overlap(XA, XB, k: int = 10) -> np.ndarray:
    """Per note, the Jaccard overlap of its k nearest neighbours in space A and in space B.

    XA and XB hold the same notes in the same order (e.g. base vs adapted encoder, whatever their
    dimensions). 1 = the note kept exactly the same neighbourhood, 0 = none in common.
    """
    if len(XA) != len(XB):
        raise ValueError(f"the two spaces hold {len(XA)} and {len(XB)} notes: they must be the same notes")
    A, B = knn_indices(XA, k), knn_indices(XB, k)
    k = A.shape[1]
    if k == 0:
        return np.ones(len(A), dtype=np.float32)
    # |A ∩ B| per row by sorting: both rows hold k distinct indices, so duplicates in the
    # concatenation are exactly the shared neighbours.
    both = np.sort(np.concatenate([A, B], axis=1), axis=1)
    inter = (both[:, 1:] == both[:, :-1]).sum(axis=1)
    return (inter / (2 * k - inter)).astype(np.float32)
