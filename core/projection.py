"""2-D maps of an embedding set (UMAP or PCA), map alignment and map quality.

Why UMAP never makes a user wait for numba:
- umap-learn 0.5.12 jit-compiles its functions without `cache=True`, and pynndescent's kNN search
  takes the distance function as an argument, which numba cannot cache at all: every fresh process
  (CLI run, background job) spent 40-50 s compiling before its first map (5k notes, 2 cores).
- We compute the exact kNN graph ourselves (torch matmul + topk, `neighbours.knn_graph`) and hand
  it to UMAP as `precomputed_knn`, so pynndescent is never compiled up to EXACT_KNN_MAX notes;
- and we switch on numba's on-disk cache for umap's own jitted functions, with NUMBA_CACHE_DIR
  (default ~/.cache/notespace/numba, private) set before numba is imported. A fresh process then loads the
  machine code from disk: its first 5k fit took 7.5 s against 7.3 s for a warm one.
- `warm_up_in_background()` imports umap and runs a tiny fit in a daemon thread, so the app pays
  the import (and, the very first time on a machine, the compilation) while the user looks around.
Always import umap through this module (`_import_umap`), never directly, or the cache is skipped.

Large corpora (above SAMPLE_ABOVE notes): UMAP lays out a random sample of SAMPLE_SIZE notes, and
every other note is placed at the weighted mean of its PLACE_K nearest sample notes' coordinates
(found in the full space with neighbours.CellIndex). The sample's map keeps UMAP's neighbourhoods;
a placed note lands among the notes it resembles. At 1M notes this takes minutes where a full UMAP
(pynndescent + 1M-point layout) took far longer, and its trustworthiness stays within ~0.02 of a
full UMAP's (bench/million.py). `sampling(n)` names what was done; maps record it as provenance.

Warm start: `init` (a previous layout of the same notes) starts the layout there instead of at
the spectral embedding, with WARM_EPOCHS epochs: a change of min. distance or neighbours moves
the points a little instead of redrawing a new map. `knn` reuses a kNN graph already computed.

Seeds: a seeded UMAP is reproducible (same data + settings -> same map, which provenance and the
compare view rely on) but runs its layout single-threaded. We always seed by default; seed < 0
asks for the faster, non-reproducible multi-threaded layout.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from core import neighbours
from core.caches import private_dir, route_library_caches
from core.options import ProjectOptions

log = logging.getLogger(__name__)

# The exact kNN graph is O(n^2): 0.6 s at 10k, 6 s at 20k on 2 busy cores. Above about 50k
# pynndescent is faster, even though its numba code cannot be cached: the first such fit in each
# process pays 30-45 s of compilation.
EXACT_KNN_MAX = int(os.environ.get("NOTESPACE_EXACT_KNN_MAX", "50000"))
# Above this many notes the map is a sampled UMAP with the rest placed (module docstring). The sample
# stays within the exact kNN graph's range, so no large map ever compiles pynndescent.
SAMPLE_ABOVE = int(os.environ.get("NOTESPACE_SAMPLE_ABOVE", "50000"))
SAMPLE_SIZE = min(SAMPLE_ABOVE, EXACT_KNN_MAX)
PLACE_K = 10  # sample neighbours a placed note is averaged from
PLACE_CHUNK = 131072  # notes placed at a time: bounds the normalised copy of their vectors
WARM_EPOCHS = 20  # a warm start only adjusts a finished layout: 20 epochs cost ~0.5 s at 10k notes


def numba_cache_dir() -> Path:
    """Where numba keeps compiled machine code: $NUMBA_CACHE_DIR, else a private folder of this user
    (~/.cache/notespace/numba, mode 0700: never a shared temp folder, see core/caches.py)."""
    return Path(os.environ.get("NUMBA_CACHE_DIR") or private_dir("numba"))


def _configure_numba_cache() -> None:
    # Must run before numba is imported (numba reads the variable once, at import).
    route_library_caches()
    if "numba" in sys.modules:  # imported earlier by someone else: tell it directly
        sys.modules["numba"].core.config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]


_configure_numba_cache()

# We pass our own kNN graph, so UMAP cannot `transform` new points later: we never do, and say
# nothing. Functions that cannot be cached (only on the pynndescent path) still work, just slowly.
warnings.filterwarnings("ignore", message=r"precomputed_knn\[2\]", category=UserWarning)
warnings.filterwarnings("ignore", message="Cannot cache compiled function")

_import_lock = threading.Lock()
_umap = None


def _import_umap():
    """Import umap once, with numba's disk cache switched on for all its jitted functions."""
    global _umap
    with _import_lock:
        if _umap is None:
            import numba

            # Functions with explicit signatures compile while umap is imported, before the sweep
            # below could reach them: default `cache=True` for the duration of the import.
            njit = numba.njit
            numba.njit = lambda *args, **kw: njit(*args, **{"cache": True, **kw})
            try:
                import umap
            finally:
                numba.njit = njit
            from numba.core.caching import NullCache
            from numba.core.dispatcher import Dispatcher

            for name, module in list(sys.modules.items()):
                if name == "umap" or name.startswith("umap."):
                    for obj in list(vars(module).values()):
                        if isinstance(obj, Dispatcher) and isinstance(getattr(obj, "_cache", None), NullCache):
                            obj.enable_caching()
            _umap = umap
    return _umap


BLOCK_ROWS = 65536  # rows per block of a pass over a large X: no n x d temporary


def _as_matrix(X) -> np.ndarray:
    X = np.ascontiguousarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise ValueError(f"expected a 2-D array of embeddings, got shape {X.shape}")
    if not all(np.isfinite(X[s:s + BLOCK_ROWS]).all() for s in range(0, len(X), BLOCK_ROWS)):
        raise ValueError("the embeddings contain NaN or infinite values")
    return X


def pca(X, n_components: int = 2, metric: str = "cosine") -> np.ndarray:
    """Deterministic PCA: eigenvectors of the covariance, each signed so its largest loading is > 0.

    With the cosine metric rows are normalised first, so PCA sees the same geometry UMAP does.
    Block by block (a million notes are 1.5 GB): the mean, then the covariance of the centred rows
    (float32 products summed in float64 across blocks), then the coordinates; X itself is never copied.
    """
    X = _as_matrix(X)
    n, d = X.shape
    if n == 0:
        return np.zeros((0, n_components), np.float32)
    scale = (1 / np.maximum(np.sqrt(np.einsum("ij,ij->i", X, X)), 1e-12) if metric == "cosine"
             else np.ones(n)).astype(np.float32)
    blocks = range(0, n, BLOCK_ROWS)
    mean = sum(scale[s:s + BLOCK_ROWS].astype(np.float64) @ X[s:s + BLOCK_ROWS] for s in blocks) / n

    def centred(s: int) -> np.ndarray:
        return X[s:s + BLOCK_ROWS] * scale[s:s + BLOCK_ROWS, None] - mean.astype(np.float32)

    cov = np.zeros((d, d))
    for s in blocks:
        block = centred(s)
        cov += block.T @ block
    _, vecs = np.linalg.eigh(cov)  # ascending eigenvalues
    V = vecs[:, ::-1][:, :n_components]
    V *= np.sign(V[np.abs(V).argmax(axis=0), np.arange(V.shape[1])])
    out = np.zeros((n, n_components), np.float32)  # d < n_components: pad with zeros
    for s in blocks:
        out[s:s + BLOCK_ROWS, :V.shape[1]] = centred(s) @ V.astype(np.float32)
    return out


def umap_embed(X, n_components: int = 2, n_neighbors: int = 15, min_dist: float = 0.1,
               metric: str = "cosine", seed: int = 42, n_epochs: int | None = None,
               progress: Callable[[float, str], None] | None = None, init: np.ndarray | None = None,
               knn: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """UMAP of X to `n_components` dims (float32), on an exact kNN graph up to EXACT_KNN_MAX rows.

    `init`: a layout of the same rows to start from (warm start, WARM_EPOCHS epochs unless
    `n_epochs` says otherwise). `knn`: the (indices, distances) of `neighbours.knn_graph` with self
    first and at least `n_neighbors` columns, when already computed.
    `progress(fraction, message)` hears of the stages (umap-learn reports nothing within its layout).
    """
    X = _as_matrix(X)
    n = len(X)
    report = progress or (lambda fraction, message="": None)
    if n < max(n_components + 3, 5):  # too few points for a spectral layout: PCA is the honest answer
        return pca(X, n_components, metric)
    k = max(2, min(n_neighbors, n - 1))
    if knn is not None and knn[0].shape[1] >= k:
        knn = (knn[0][:, :k], knn[1][:, :k], None)
    elif n <= EXACT_KNN_MAX:
        report(0.05, f"nearest neighbours of {n:,} notes")
        idx, dist = neighbours.knn_graph(X, k, metric, include_self=True)
        knn = (idx, dist, None)
    else:
        knn = (None, None, None)
    if init is not None:
        init = np.asarray(init, dtype=np.float32)
        if init.shape != (n, n_components):
            raise ValueError(f"a warm start needs a layout of shape {(n, n_components)}, got {init.shape}")
        n_epochs = n_epochs or WARM_EPOCHS
    if not is_warm():
        report(0.2, "loading UMAP (only the first map after a restart waits for this)")
    umap = _import_umap()
    seeded = seed is not None and seed >= 0
    reducer = umap.UMAP(
        n_components=n_components, n_neighbors=k, min_dist=min_dist, metric=metric,
        random_state=seed if seeded else None, n_jobs=1 if seeded else -1,
        precomputed_knn=knn, n_epochs=n_epochs, low_memory=True,
        init="spectral" if init is None else init,
    )
    report(0.3, f"UMAP layout of {n:,} notes")
    xy = np.ascontiguousarray(reducer.fit_transform(X), dtype=np.float32)
    report(1.0, "UMAP layout done")
    return xy


def sampling(n: int, method: str = "umap") -> dict:
    """How a map of n notes is made beyond its options (recorded with the map): {} for a full
    UMAP or PCA, else the sample size and the neighbours each other note is placed from."""
    if method != "umap" or n <= SAMPLE_ABOVE:
        return {}
    return {"sample": SAMPLE_SIZE, "place_k": PLACE_K}


def sample_rows(n: int, size: int, seed: int | None) -> np.ndarray:
    """The rows (sorted) a sampled map lays out with UMAP: a seeded uniform draw."""
    rng = np.random.default_rng(seed if seed is not None and seed >= 0 else None)
    return np.sort(rng.choice(n, size=min(size, n), replace=False))


def place(anchor_xy, idx, dist) -> np.ndarray:
    """Coordinates of notes from their nearest anchors: each the weighted mean of its anchors'
    coordinates, weights exp(-(d - d_nearest) / mean(d - d_nearest)) (UMAP's membership strengths,
    simplified), so the closest anchors count most and a note equally near all sits amid them.

    `idx`, `dist`: (m, k) anchor rows and cosine distances, nearest first (CellIndex.knn)."""
    anchor_xy = np.asarray(anchor_xy, dtype=np.float64)
    dist = np.asarray(dist, dtype=np.float64)
    gap = dist - dist[:, :1]
    scale = gap.mean(axis=1, keepdims=True)
    w = np.exp(-gap / np.where(scale > 0, scale, 1.0))
    return ((w[:, :, None] * anchor_xy[idx]).sum(axis=1) / w.sum(axis=1, keepdims=True)).astype(np.float32)


def sampled_umap(X, n_neighbors: int = 15, min_dist: float = 0.1, metric: str = "cosine", seed: int = 42,
                 sample_size: int = SAMPLE_SIZE, progress: Callable[[float, str], None] | None = None,
                 init: np.ndarray | None = None) -> np.ndarray:
    """A 2-D map of X: UMAP of a random sample of `sample_size` rows, every other row placed from its
    PLACE_K nearest sample rows (`place`). `init` (a layout of all of X) warm-starts the sample."""
    X = _as_matrix(X)
    n = len(X)
    report = progress or (lambda fraction, message="": None)
    rows = sample_rows(n, sample_size, seed)
    anchor_xy = umap_embed(X[rows], 2, n_neighbors, min_dist, metric, seed, init=None if init is None else init[rows],
                           progress=lambda f, m="": report(0.7 * f, f"sample of {len(rows):,}: {m}"))
    xy = np.empty((n, 2), dtype=np.float32)
    xy[rows] = anchor_xy
    report(0.7, f"placing {n - len(rows):,} notes from their nearest sample notes")
    placed = 0
    for part, idx, dist in neighbours.neighbours_in_sample(X, rows, PLACE_K, seed if seed and seed > 0 else 0,
                                                           PLACE_CHUNK):
        xy[part] = place(anchor_xy, idx, dist)
        placed += len(part)
        report(0.7 + 0.3 * placed / (n - len(rows)), f"{placed:,} of {n - len(rows):,} notes placed")
    return xy


def compute_projection(X, opts: ProjectOptions | None = None,
                       progress: Callable[[float, str], None] | None = None,
                       init: np.ndarray | None = None, knn: tuple[np.ndarray, np.ndarray] | None = None
                       ) -> np.ndarray:
    """The n x 2 float32 map of X for the given options (UMAP or PCA). Above SAMPLE_ABOVE notes the
    UMAP map is sampled and placed (`sampling(n)` says so). `init`, `knn`: see `umap_embed` (the
    kNN graph is used only for a full UMAP)."""
    opts = opts or ProjectOptions()
    if opts.method == "pca":
        return pca(X, 2, opts.metric)
    if opts.method == "umap":
        if sampling(len(X), opts.method):
            return sampled_umap(X, opts.n_neighbors, opts.min_dist, opts.metric, opts.seed, SAMPLE_SIZE,
                                progress=progress, init=init)
        return umap_embed(X, 2, opts.n_neighbors, opts.min_dist, opts.metric, opts.seed, progress=progress,
                          init=init, knn=knn)
    raise ValueError(f"unknown projection method {opts.method!r} (umap or pca)")


def align_to(reference_xy, xy) -> np.ndarray:
    """`xy` rotated/reflected, scaled and shifted to best match `reference_xy` (least squares).

    Both maps hold the same documents in the same order. UMAP's orientation and scale are
    arbitrary, so without this two maps side by side look different even when they agree.
    """
    A = np.asarray(reference_xy, dtype=np.float64)
    B = np.asarray(xy, dtype=np.float64)
    if A.shape != B.shape:
        raise ValueError(f"maps of different shapes {A.shape} and {B.shape}: they must hold the same documents")
    if len(A) == 0:
        return B.astype(np.float32)
    muA, muB = A.mean(axis=0), B.mean(axis=0)
    A0, B0 = A - muA, B - muB
    U, S, Vt = np.linalg.svd(B0.T @ A0)
    R = U @ Vt  # orthogonal; reflections allowed, a mirrored UMAP map is just as valid
    norm = (B0 ** 2).sum()
    scale = S.sum() / norm if norm > 0 else 1.0
    return (scale * B0 @ R + muA).astype(np.float32)


def trustworthiness(X, xy, n_neighbors: int = 10, sample: int = 2000, seed: int = 0,
                    metric: str = "cosine") -> float:
    """How far the map's neighbourhoods are true ones (sklearn's trustworthiness, 1 = perfect),
    on a random sample of `sample` notes, since the exact measure is quadratic in n."""
    from sklearn.manifold import trustworthiness as _tw

    X = _as_matrix(X)
    xy = np.asarray(xy, dtype=np.float32)
    n = len(X)
    rows = np.random.default_rng(seed).choice(n, size=min(sample, n), replace=False)
    rows.sort()
    k = min(n_neighbors, (len(rows) - 1) // 2)  # sklearn requires k < n/2
    if k < 1:
        return float("nan")
    return float(_tw(X[rows], xy[rows], n_neighbors=k, metric=metric))


# ---- warm-up -------------------------------------------------------------------------------

_warm_lock = threading.Lock()
_warm_thread: threading.Thread | None = None
_warm_seconds: float | None = None


def warm_up() -> float:
    """Import umap and run a tiny fit on the same code path as real fits; returns the seconds.

    The first time on a machine this compiles (and caches) umap's functions; afterwards it only
    loads them from disk.
    """
    global _warm_seconds
    t = time.perf_counter()
    X = np.random.default_rng(0).normal(size=(300, 16)).astype(np.float32)
    umap_embed(X, 2, n_neighbors=15, seed=0, n_epochs=20)
    _warm_seconds = time.perf_counter() - t
    log.info("UMAP warm in %.1f s (numba cache %s)", _warm_seconds, numba_cache_dir())
    return _warm_seconds


def _warm_quietly() -> None:
    try:
        warm_up()
    except Exception:  # a failed warm-up must never break the app: the real fit will report it
        log.exception("UMAP warm-up failed")


def warm_up_in_background() -> threading.Thread:
    """Start `warm_up()` in a daemon thread once per process; later calls return the same thread.

    Cheap and idempotent: call it on every Streamlit rerun.
    """
    global _warm_thread
    with _warm_lock:
        if _warm_thread is None:
            _warm_thread = threading.Thread(target=_warm_quietly, name="notespace-umap-warm-up", daemon=True)
            _warm_thread.start()
        return _warm_thread


def is_warm() -> bool:
    """True once a warm-up has finished in this process."""
    return _warm_seconds is not None
