"""How well an embedding space separates labelled notes, measured in the full space (no projection).

All geometry is cosine: vectors are L2-normalised first, so encoders with different norms compare.
Cosine silhouette and alignment use closed forms over per-class vector sums (mean of dot products =
dot with the mean), so they are exact at any size in O(n * classes * d) instead of O(n^2).
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

MISSING = "(missing)"


# ---------------------------------------------------------------- small shared helpers
def as_labels(values) -> np.ndarray:
    """Object array of str labels; missing values (None/NaN/NA) become None."""
    arr = pd.Series(values).to_numpy(dtype=object)
    return np.array([None if _isna(v) else str(v) for v in arr], dtype=object)


def _isna(v) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def single_blas():
    """Context: one BLAS thread. scikit-learn's small fits ran 10-60x slower with 2 threads when
    another process shared the 2 cores (thread oversubscription); one thread is never much slower."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, user_api="blas")


def normalise(X) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.maximum(norms, 1e-12)


def keep_classes(y: np.ndarray, min_count: int = 2) -> tuple[np.ndarray, dict[str, int]]:
    """Mask of rows whose label is present and has >= min_count members, and the dropped classes."""
    present = np.array([v is not None for v in y], dtype=bool)
    labels, counts = np.unique(y[present].astype(str), return_counts=True)
    small = {str(c): int(k) for c, k in zip(labels, counts) if k < min_count}
    mask = present & ~np.isin(y.astype(str), list(small)) if small else present
    return mask, small


def bootstrap_ci(values, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> list[float]:
    """Percentile bootstrap interval of the mean of `values` (seeded)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return [float("nan"), float("nan")]
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    chunk = max(1, 2_000_000 // v.size)  # bound memory of the index matrix
    for s in range(0, n_boot, chunk):
        e = min(n_boot, s + chunk)
        means[s:e] = v[rng.integers(0, v.size, (e - s, v.size))].mean(axis=1)
    a = (1 - level) / 2
    return [float(np.quantile(means, a)), float(np.quantile(means, 1 - a))]


def t_interval(values, level: float = 0.95) -> list[float | None]:
    """Student-t interval of the mean (few seeds); [None, None] when fewer than 2 values."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    if v.size < 2:
        return [None, None]
    half = stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size)
    return [float(v.mean() - half), float(v.mean() + half)]


# ---------------------------------------------------------------- geometry
def class_sums(Xn: np.ndarray, codes: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes, minlength=n_classes)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    sums = np.add.reduceat(Xn[order].astype(np.float64), starts, axis=0)
    return sums, counts


def silhouette_samples_cosine(Xn: np.ndarray, codes: np.ndarray, block: int = 4096) -> np.ndarray:
    """Exact per-note cosine silhouette (same as sklearn's, without the n x n distance matrix)."""
    n_classes = int(codes.max()) + 1
    sums, counts = class_sums(Xn, codes, n_classes)
    out = np.empty(len(Xn))
    for s in range(0, len(Xn), block):
        xb = Xn[s:s + block].astype(np.float64)
        cb = codes[s:s + block]
        dots = xb @ sums.T  # sum of cosine similarities to every class
        mean_dist = 1.0 - dots / counts  # mean cosine distance to each class (own class incl. self)
        rows = np.arange(len(xb))
        self_sim = np.einsum("ij,ij->i", xb, xb)
        own_n = counts[cb]
        # own class without the note itself: sum over j != i of (1 - x_i . x_j)
        a = ((own_n - 1) - (dots[rows, cb] - self_sim)) / np.maximum(own_n - 1, 1)
        mean_dist[rows, cb] = np.inf
        b = mean_dist.min(axis=1)
        sil = (b - a) / np.maximum(np.maximum(a, b), 1e-12)
        out[s:s + block] = np.where(own_n > 1, sil, 0.0)  # sklearn's convention for singletons
    return out


def knn_neighbours(Xn: np.ndarray, k: int, rows: np.ndarray | None = None, block: int = 1024) -> np.ndarray:
    """For each query note (`rows`, default all) the indices of its k most cosine-similar other
    notes among all notes (blocked torch matmul + topk)."""
    import torch

    T = torch.from_numpy(np.ascontiguousarray(Xn, dtype=np.float32))
    rows = np.arange(len(Xn)) if rows is None else np.asarray(rows)
    k = min(k, len(Xn) - 1)
    out = np.empty((len(rows), k), dtype=np.int64)
    with torch.no_grad():
        for s in range(0, len(rows), block):
            q = torch.from_numpy(rows[s:s + block])
            sims = T[q] @ T.T
            sims[torch.arange(len(q)), q] = -float("inf")  # leave-one-out: never your own neighbour
            out[s:s + block] = sims.topk(k, dim=1).indices.numpy()
    return out


def sample_rows(n: int, limit: int, seed: int = 0) -> np.ndarray:
    """All rows, or a seeded sorted sample of `limit` rows: keeps O(n^2) steps bounded on big corpora."""
    return np.arange(n) if n <= limit else np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))


def knn_vote(neigh: np.ndarray, codes: np.ndarray, n_classes: int) -> np.ndarray:
    """Majority label of the neighbours; a tie goes to the tied class with the nearest neighbour."""
    n, k = neigh.shape
    votes = np.zeros((n, n_classes))
    rows = np.arange(n)
    for r in range(k):
        # 1 per vote plus a bonus 0.5**(r+2): bonuses total < 0.5, so they only break ties, and
        # each exceeds all later ones together, so the nearest neighbour among tied classes decides
        votes[rows, codes[neigh[:, r]]] += 1.0 + 0.5 ** (r + 2)
    return votes.argmax(axis=1)


def alignment_per_class(Xn: np.ndarray, codes: np.ndarray, n_classes: int) -> np.ndarray:
    """Mean squared distance over same-class pairs (Wang & Isola), exact from class sums."""
    sums, counts = class_sums(Xn, codes, n_classes)
    sq = np.bincount(codes, weights=np.einsum("ij,ij->i", Xn, Xn).astype(np.float64), minlength=n_classes)
    pairs = counts * (counts - 1)
    total = 2 * (counts - 1) * sq - 2 * (np.einsum("ij,ij->i", sums, sums) - sq)
    return np.where(pairs > 0, total / np.maximum(pairs, 1), np.nan)


def uniformity(Xn: np.ndarray, max_points: int = 5000, seed: int = 0, block: int = 2048) -> float:
    """log mean exp(-2 ||x_i - x_j||^2) over pairs; a seeded subsample of points above max_points."""
    if len(Xn) > max_points:
        Xn = Xn[np.sort(np.random.default_rng(seed).choice(len(Xn), max_points, replace=False))]
    X = np.ascontiguousarray(Xn, dtype=np.float32)
    sq = np.einsum("ij,ij->i", X, X)
    total, n = 0.0, len(X)
    for s in range(0, n, block):
        e = min(n, s + block)
        d2 = sq[s:e, None] + sq[None, s:] - 2 * (X[s:e] @ X[s:].T)  # only columns >= s: i < j pairs
        k = np.exp(-2 * np.maximum(d2, 0), dtype=np.float64)
        total += k.sum() - np.tril(k[:, : e - s]).sum()  # drop j <= i inside the diagonal block
    return float(np.log(total / (n * (n - 1) / 2)))


def linear_probe(Xn: np.ndarray, codes: np.ndarray, folds: int = 5, seed: int = 0) -> tuple[np.ndarray, list[float]]:
    """Out-of-fold predictions of a stratified k-fold logistic regression, and the fold accuracies."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    # a rare class must not shrink every fold: it just appears in fewer test folds (sklearn warns)
    n_splits = int(min(folds, np.bincount(codes).max()))
    oof = np.empty(len(codes), dtype=np.int64)
    scores = []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class")
        splits = list(StratifiedKFold(n_splits, shuffle=True, random_state=seed).split(Xn, codes))
    for tr, te in splits:
        with single_blas():
            clf = LogisticRegression(C=1.0, max_iter=1000).fit(Xn[tr], codes[tr])
        oof[te] = clf.predict(Xn[te])
        scores.append(float((oof[te] == codes[te]).mean()))
    return oof, scores


def _mean(v: np.ndarray) -> float | None:
    return float(v.mean()) if len(v) else None


# ---------------------------------------------------------------- headline report
@dataclass
class Separability:
    n: int
    n_classes: int
    silhouette: float
    silhouette_ci: list[float]
    davies_bouldin: float
    calinski_harabasz: float
    knn_k: int
    knn_accuracy: float
    knn_accuracy_ci: list[float]
    knn_queries: int  # notes whose neighbours were checked (all, or a sample on big corpora)
    alignment: float  # mean over classes of the per-class alignment (lower = tighter)
    uniformity: float  # lower = more uniformly spread
    linear_probe_accuracy: float | None
    linear_probe_ci: list[float] | None
    linear_probe_folds: list[float] = field(default_factory=list)
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    dropped_classes: dict[str, int] = field(default_factory=dict)
    n_unlabelled: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def separability(X, y, knn_k: int = 10, folds: int = 5, probe: bool = True, n_boot: int = 1000,
                 uniformity_points: int = 5000, max_queries: int = 20000, max_probe: int = 20000,
                 seed: int = 0) -> Separability:
    """Every separability metric for embeddings X (n x d) and labels y; small classes dropped.

    Above `max_queries` / `max_probe` notes, kNN accuracy is estimated on a seeded sample of query
    notes (neighbours still searched among all) and the probe is cross-validated on a seeded sample.
    """
    from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score

    y = as_labels(y)
    mask, dropped = keep_classes(y)
    Xn, yk = normalise(np.asarray(X)[mask]), y[mask].astype(str)
    classes, codes = np.unique(yk, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"need at least two classes with >= 2 notes each (got {len(classes)})")
    C = len(classes)
    sil = silhouette_samples_cosine(Xn, codes)
    q = sample_rows(len(Xn), max_queries, seed)
    neigh = knn_neighbours(Xn, knn_k, q)
    knn_ok = (knn_vote(neigh, codes, C) == codes[q]).astype(np.float64)
    align = alignment_per_class(Xn, codes, C)
    probe_acc = probe_ci = None
    folds_acc: list[float] = []
    if probe:
        p = sample_rows(len(Xn), max_probe, seed + 3)
        oof, folds_acc = linear_probe(Xn[p], codes[p], folds, seed)
        probe_ok = (oof == codes[p]).astype(np.float64)
        probe_acc, probe_ci = float(probe_ok.mean()), bootstrap_ci(probe_ok, n_boot, seed=seed + 2)
    per_class = {
        str(c): {"n": int((codes == i).sum()), "silhouette": float(sil[codes == i].mean()),
                 "knn_accuracy": _mean(knn_ok[codes[q] == i]), "alignment": float(align[i])}
        for i, c in enumerate(classes)
    }
    return Separability(
        n=int(len(yk)), n_classes=C,
        silhouette=float(sil.mean()), silhouette_ci=bootstrap_ci(sil, n_boot, seed=seed),
        davies_bouldin=float(davies_bouldin_score(Xn, codes)),
        calinski_harabasz=float(calinski_harabasz_score(Xn, codes)),
        knn_k=int(neigh.shape[1]), knn_accuracy=float(knn_ok.mean()), knn_queries=int(len(q)),
        knn_accuracy_ci=bootstrap_ci(knn_ok, n_boot, seed=seed + 1),
        alignment=float(np.nanmean(align)), uniformity=uniformity(Xn, uniformity_points, seed),
        linear_probe_accuracy=probe_acc, linear_probe_ci=probe_ci, linear_probe_folds=folds_acc,
        per_class=per_class, dropped_classes=dropped, n_unlabelled=int(sum(v is None for v in y)),
    )


# ---------------------------------------------------------------- confound audit
def column_groups(col: pd.Series, n_bins: int = 4, max_unique_frac: float = 0.5) -> tuple[str, np.ndarray] | str:
    """(kind, group label per row) for one metadata column, or the reason it is skipped."""
    n, n_unique = len(col), col.nunique(dropna=True)
    if n_unique <= 1:
        return "constant"
    kind = "categorical"
    if pd.api.types.is_bool_dtype(col) or not (pd.api.types.is_numeric_dtype(col)
                                               or pd.api.types.is_datetime64_any_dtype(col)):
        if n_unique <= max_unique_frac * n:
            return kind, _with_missing(col.astype(object))
        parsed = pd.to_datetime(col, errors="coerce", format="ISO8601")  # dates stored as text
        if parsed.notna().mean() < 0.9:
            return "near-unique (identifier-like)"
        col, kind = parsed, "date"
    elif pd.api.types.is_datetime64_any_dtype(col):
        kind = "date"
    else:
        kind = "numeric"
    if n_unique <= n_bins:  # a few distinct values are categories already
        return kind, _with_missing(col.astype(object))
    binned = pd.qcut(col, q=n_bins, duplicates="drop")  # quantile bins: groups of similar size
    return f"{kind} ({binned.cat.categories.size} quantile bins)", _with_missing(binned.astype(object))


def _with_missing(col: pd.Series) -> np.ndarray:
    return np.array([MISSING if _isna(v) else str(v) for v in col.to_numpy(dtype=object)], dtype=object)


def confound_audit(X, metadata: pd.DataFrame, k: int = 10, n_bins: int = 4, max_unique_frac: float = 0.5,
                   columns: list[str] | None = None, max_queries: int = 20000, seed: int = 0) -> dict:
    """Rank metadata columns by how strongly the geometry separates them.

    Score = chance-corrected balanced kNN accuracy ((balanced acc - 1/C) / (1 - 1/C)): 0 when the
    neighbourhoods ignore the column, 1 when they predict it perfectly, comparable across skews.
    """
    if len(metadata) != len(X):
        raise ValueError(f"metadata has {len(metadata)} rows but X has {len(X)}")
    Xn = normalise(X)
    q = sample_rows(len(Xn), max_queries, seed)
    neigh = knn_neighbours(Xn, k, q)  # one neighbour graph serves every column
    ranking, skipped = [], {}
    for name in columns or list(metadata.columns):
        got = column_groups(metadata[name].reset_index(drop=True), n_bins, max_unique_frac)
        if isinstance(got, str):
            skipped[str(name)] = got
            continue
        kind, groups = got
        keep, dropped = keep_classes(groups)
        classes, codes_all = np.unique(groups, return_inverse=True)
        mask = keep[q]  # scored: sampled query notes in groups of >= 2
        if len(np.unique(groups[q][mask])) < 2:
            skipped[str(name)] = "fewer than two groups with >= 2 notes"
            continue
        pred = knn_vote(neigh, codes_all, len(classes))[mask]
        true = codes_all[q][mask]
        present = np.unique(true)
        recall = np.array([(pred[true == c] == c).mean() for c in present])
        chance = 1.0 / len(present)
        sil = silhouette_samples_cosine(Xn[keep], np.unique(codes_all[keep], return_inverse=True)[1])
        ranking.append({
            "column": str(name), "kind": kind, "n_groups": int(len(present)), "n_notes": int(keep.sum()),
            "score": float((recall.mean() - chance) / (1 - chance)),
            "knn_accuracy": float((pred == true).mean()),
            "majority_baseline": float(np.bincount(true).max() / len(true)),
            "silhouette": float(sil.mean()), "dropped_groups": len(dropped),
        })
    ranking.sort(key=lambda r: r["score"], reverse=True)
    return {"k": int(neigh.shape[1]), "ranking": ranking, "skipped": skipped}
