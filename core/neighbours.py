"""Nearest neighbours in the full embedding space (cosine): exact by blockwise matmul + top-k, and
a cell index for large corpora.

Exact search up to a few tens of thousands of notes: a torch matmul + topk is fast (about 0.6 s
for all 10k x 384 on two threads), deterministic, needs no numba compilation, and its answers are
the ground truth the compare view and the UMAP graph (see projection.py) are built on.

Beyond that (`CellIndex`, an inverted file): the rows are grouped into cells around spherical
k-means centroids, and a query scores exactly only the rows of the few cells nearest to it. One
query against 1M x 384 reads ~2 % of the rows instead of 1.5 GB (exact search took 250 ms a query
on two busy cores); the sampled map (projection.py) finds every note's neighbours among the sample
with it. Approximate: a neighbour in a cell not probed is missed (recall is measured in the tests
and bench/million.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch

from core.geometry import unit_rows

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


def _block_rows(n: int) -> int:
    return max(1, min(_MAX_BLOCK_ROWS, _BLOCK_ENTRIES // max(n, 1)))


def nearest(X, query_vec, k: int = 10, exclude: Iterable[int] | np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
    """The `k` rows of X most cosine-similar to `query_vec`, best first.

    `exclude`: row indices (or a boolean mask) never returned, e.g. the query note itself.
    Returns (indices int64, cosine similarities float32); fewer than k when X is that small.
    """
    T = _tensor(X)
    q = _tensor(unit_rows(np.reshape(query_vec, (1, -1))))[0]
    # divide by the row norms instead of normalising X: no copy of a large X for every query
    sims = (T @ q) / T.norm(dim=1).clamp_min(1e-12)
    if exclude is not None:
        ex = np.asarray(exclude)
        ex = np.flatnonzero(ex) if ex.dtype == bool else ex.astype(np.int64).ravel()
        sims[torch.from_numpy(ex)] = -torch.inf
    k = min(k, int(torch.isfinite(sims).sum()))
    vals, idx = torch.topk(sims, k)
    return idx.numpy().astype(np.int64), vals.numpy().astype(np.float32)


def knn_graph(X, k: int, metric: str = "cosine", include_self: bool = True, rows=None, groups=None
              ) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours of every row, or of `rows` only (searched among all rows):
    (indices (m,k) int64, distances (m,k) float32), nearest first.

    Distances are cosine distances (1 - cosine) or Euclidean ones. With `include_self` every row's
    first neighbour is itself at distance 0, the layout UMAP's `precomputed_knn` expects (even
    when duplicate notes tie with it); without it a row is never its own neighbour. `groups` (a
    value per row, e.g. a text hash): rows of a query's own group are never its neighbours, as an
    exact duplicate would be a free hit when scoring labels.
    """
    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"unknown metric {metric!r}")
    T = _tensor(unit_rows(X) if metric == "cosine" else X)
    n = T.shape[0]
    queries = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
    k = min(k, n if include_self else n - 1)
    sq = (T * T).sum(dim=1)  # squared norms, for Euclidean distances from dot products
    idx_out = np.empty((len(queries), k), dtype=np.int64)
    dist_out = np.empty((len(queries), k), dtype=np.float32)
    step = _block_rows(n)
    for start in range(0, len(queries), step):
        part = queries[start:start + step]
        q = torch.from_numpy(part)
        S = T[q] @ T.T
        if metric == "euclidean":
            # rank by -|a-b|^2 = 2ab - |b|^2 (the -|a|^2 term is constant within a row)
            S = 2 * S - sq
        if groups is not None:
            S[torch.from_numpy(groups[part][:, None] == groups[None, :])] = -torch.inf
        S[torch.arange(len(part)), q] = torch.inf if include_self else -torch.inf
        vals, idx = torch.topk(S, k, dim=1)
        if metric == "cosine":
            d = (1.0 - vals).clamp_min(0.0)
        else:
            d = (sq[q, None] - vals).clamp_min(0.0).sqrt()
        if include_self:
            d[:, 0] = 0.0
        idx_out[start:start + len(part)] = idx.numpy()
        dist_out[start:start + len(part)] = d.numpy()
    return idx_out, dist_out


def spherical_kmeans(U: torch.Tensor, n_cells: int, seed: int = 0, iterations: int = 8,
                     train_rows: int = 65536) -> torch.Tensor:
    """`n_cells` unit centroids of unit rows U (Lloyd's iterations on cosine, on at most `train_rows`
    rows drawn at random: more rows barely move the centroids and cost time linearly)."""
    gen = torch.Generator().manual_seed(seed)
    n = U.shape[0]
    train = U[torch.randperm(n, generator=gen)[:min(n, train_rows)]]
    n_cells = max(1, min(n_cells, train.shape[0]))
    C = train[torch.randperm(train.shape[0], generator=gen)[:n_cells]].clone()
    for _ in range(iterations):
        owner = _best(train, C, 1)[:, 0]
        sums = torch.zeros_like(C).index_add_(0, owner, train)
        empty = sums.norm(dim=1) < 1e-12  # an empty cell keeps its old centroid
        sums[empty] = C[empty]
        C = sums / sums.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return C


def _best(U: torch.Tensor, C: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (n, k) of the k centroids of C most similar to each row of U, blockwise."""
    out = torch.empty((U.shape[0], k), dtype=torch.int64)
    step = _block_rows(C.shape[0])
    for start in range(0, U.shape[0], step):
        out[start:start + step] = torch.topk(U[start:start + step] @ C.T, k, dim=1).indices
    return out


class CellIndex:
    """Approximate cosine search over the rows of X: cells around k-means centroids, `probe` cells
    scored exactly per query. Keeps one float32 copy of X, row-normalised."""

    def __init__(self, X, n_cells: int | None = None, probe: int = 8, seed: int = 0):
        self.U = _tensor(unit_rows(X))
        n = self.U.shape[0]
        # about sqrt(n)/2 cells: 500 at 1M (a query reads 8 cells, ~16k rows), fewer on small sets
        self.centroids = spherical_kmeans(self.U, n_cells or int(np.clip(np.sqrt(n) / 2, 1, 1024)), seed)
        self.probe = max(1, min(probe, self.centroids.shape[0]))
        owner = _best(self.U, self.centroids, 1)[:, 0]
        self.rows = torch.argsort(owner, stable=True)  # row ids grouped by cell
        counts = torch.bincount(owner, minlength=self.centroids.shape[0])
        self.starts = torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)])

    def __len__(self) -> int:
        return self.U.shape[0]

    def _members(self, cells) -> torch.Tensor:
        return torch.cat([self.rows[self.starts[c]:self.starts[c + 1]] for c in cells.tolist()])

    def _candidates(self, centre: torch.Tensor, k: int) -> torch.Tensor:
        """Rows of the `probe` cells nearest `centre` (unit vector); more cells while fewer than k rows."""
        order = torch.argsort(self.centroids @ centre, descending=True)
        probe = self.probe
        rows = self._members(order[:probe])
        while len(rows) < k and probe < len(order):
            probe = min(len(order), probe * 2)
            rows = self._members(order[:probe])
        return rows

    def search(self, query_vec, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The k rows most cosine-similar to `query_vec` among the probed cells: (indices, similarities)."""
        q = _tensor(unit_rows(np.reshape(query_vec, (1, -1))))[0]
        rows = self._candidates(q, k)
        vals, pos = torch.topk(self.U[rows] @ q, min(k, len(rows)))
        return rows[pos].numpy().astype(np.int64), vals.numpy().astype(np.float32)

    def knn(self, Q, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k indexed rows most cosine-similar to each row of Q: (indices (m,k) int64, cosine
        distances (m,k) float32), best first. Queries are batched by their nearest cell and each batch
        scores the rows of the `probe` cells nearest that cell's centroid: one matmul per cell."""
        Qu = _tensor(unit_rows(Q))
        k = min(k, len(self))
        idx_out = np.empty((Qu.shape[0], k), dtype=np.int64)
        dist_out = np.empty((Qu.shape[0], k), dtype=np.float32)
        owner = _best(Qu, self.centroids, 1)[:, 0]
        order = torch.argsort(owner, stable=True)
        bounds = torch.cat([torch.zeros(1, dtype=torch.int64),
                            torch.bincount(owner, minlength=self.centroids.shape[0]).cumsum(0)])
        for cell in torch.nonzero(bounds[1:] > bounds[:-1]).flatten().tolist():
            queries = order[bounds[cell]:bounds[cell + 1]]
            rows = self._candidates(self.centroids[cell], k)
            for start in range(0, len(queries), _block_rows(len(rows))):
                part = queries[start:start + _block_rows(len(rows))]
                vals, pos = torch.topk(Qu[part] @ self.U[rows].T, k, dim=1)
                idx_out[part.numpy()] = rows[pos].numpy()
                dist_out[part.numpy()] = (1.0 - vals).clamp_min(0.0).numpy()
        return idx_out, dist_out


def neighbours_in_sample(X, rows, k: int, seed: int = 0, chunk: int = 131072
                         ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """For every row of X not in `rows` (sorted sample rows), its k nearest sample rows by CellIndex:
    yields (those rows, indices into `rows` (m,k), cosine distances (m,k)), `chunk` rows at a time
    so that only one chunk's normalised copy is held."""
    rows = np.asarray(rows)
    rest = np.setdiff1d(np.arange(len(X)), rows, assume_unique=True)
    if not len(rest):
        return
    index = CellIndex(X[rows], seed=seed)
    for start in range(0, len(rest), chunk):
        part = rest[start:start + chunk]
        idx, dist = index.knn(X[part], k)
        yield part, idx, dist


def knn_indices(X, k: int = 10, rows=None, groups=None) -> np.ndarray:
    """Indices (m,k) of each row's (or each of `rows`') k most cosine-similar other rows, best first
    (self excluded; with `groups`, its own group excluded too: see `knn_graph`)."""
    return knn_graph(X, k, "cosine", include_self=False, rows=rows, groups=groups)[0]


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
