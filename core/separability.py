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

from core.errors import UserError
from core.geometry import unit_rows
from core.intervals import N_BOOT, centred_interval, percentile_interval, resample_counts

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


def keep_classes(y: np.ndarray, min_count: int = 2) -> tuple[np.ndarray, dict[str, int]]:
    """Mask of rows whose label is present and has >= min_count members, and the dropped classes."""
    present = np.array([v is not None for v in y], dtype=bool)
    labels, counts = np.unique(y[present].astype(str), return_counts=True)
    small = {str(c): int(k) for c, k in zip(labels, counts) if k < min_count}
    mask = present & ~np.isin(y.astype(str), list(small)) if small else present
    return mask, small


# ---------------------------------------------------------------- geometry
def class_sums(Xn: np.ndarray, codes: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Each class's sum of rows and count; a class without notes sums to zero."""
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes, minlength=n_classes)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    present = counts > 0  # reduceat would give an absent class the next class's first row
    sums = np.zeros((n_classes, Xn.shape[1]))
    sums[present] = np.add.reduceat(Xn[order].astype(np.float64), starts[present], axis=0)
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


def uniformity_kernel(Xn: np.ndarray, max_points: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(rows used, exp(-2 ||x_i - x_j||^2) between them): a seeded subsample of points above max_points."""
    rows = sample_rows(len(Xn), max_points, seed)
    X = np.ascontiguousarray(Xn[rows], dtype=np.float64)
    sq = np.einsum("ij,ij->i", X, X)
    return rows, np.exp(-2 * np.maximum(sq[:, None] + sq[None, :] - 2 * (X @ X.T), 0))


def uniformity(Xn: np.ndarray, max_points: int = 2000, seed: int = 0) -> float:
    """log mean exp(-2 ||x_i - x_j||^2) over pairs of distinct notes (Wang & Isola)."""
    _, K = uniformity_kernel(Xn, max_points, seed)
    return float(uniformity_weighted(K, np.ones((1, len(K))))[0])


def uniformity_weighted(K: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Uniformity per row of counts W: pairs of distinct notes weighted by the product of their counts."""
    num = np.einsum("bi,bi->b", W @ K, W) - (W ** 2) @ np.diag(K)
    den = W.sum(axis=1) ** 2 - (W ** 2).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(num / den)


def geometry_replicates(Xn: np.ndarray, codes: np.ndarray, n_classes: int, W: np.ndarray) -> dict[str, np.ndarray]:
    """Davies-Bouldin, Calinski-Harabasz and mean per-class alignment recomputed on each resample
    (row of counts W): with all counts 1 they equal sklearn's scores and `alignment_per_class`."""
    order = np.argsort(codes, kind="stable")  # classes as contiguous slices: views, not masked copies
    X64, W = Xn[order].astype(np.float64), W[:, order]
    norms = np.einsum("ij,ij->i", X64, X64)
    edges = np.searchsorted(codes[order], np.arange(n_classes + 1))
    parts = [slice(edges[c], edges[c + 1]) for c in range(n_classes)]
    counts = np.stack([W[:, p].sum(axis=1) for p in parts], axis=1)  # b x C
    sums = np.stack([W[:, p] @ X64[p] for p in parts], axis=1)  # b x C x d
    sq = np.stack([W[:, p] @ norms[p] for p in parts], axis=1)
    sq_counts = np.stack([(W[:, p] ** 2).sum(axis=1) for p in parts], axis=1)
    present = counts > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        means = sums / counts[:, :, None]  # b x C x d (NaN for a class absent from a resample)
        # Davies-Bouldin: mean distance to the class centroid, then the worst ratio per class
        spread = np.zeros_like(counts)
        for c, p in enumerate(parts):
            d2 = norms[p][:, None] - 2 * X64[p] @ np.nan_to_num(means[:, c]).T + np.nansum(means[:, c] ** 2, axis=1)
            spread[:, c] = np.einsum("bi,ib->b", W[:, p], np.sqrt(np.maximum(d2, 0))) / counts[:, c]
        centre_sq = (means ** 2).sum(-1)
        gaps = np.sqrt(np.maximum(centre_sq[:, :, None] + centre_sq[:, None, :]
                                  - 2 * np.einsum("bcd,bed->bce", means, means), 0))
        gaps[gaps == 0] = np.inf  # sklearn's convention: coinciding centroids add nothing
        ratio = (spread[:, :, None] + spread[:, None, :]) / gaps
        idx = np.arange(n_classes)
        ratio[:, idx, idx] = -np.inf
        ratio[~(present[:, :, None] & present[:, None, :])] = -np.inf
        worst = np.where(present, ratio.max(axis=2), np.nan)
        db = np.nanmean(worst, axis=1)
        # Calinski-Harabasz: between-class over within-class dispersion
        total = counts.sum(axis=1)
        k = present.sum(axis=1)
        grand = np.nansum(sums, axis=1) / total[:, None]
        between = np.nansum(counts * ((np.nan_to_num(means) - grand[:, None, :]) ** 2).sum(-1), axis=1)
        within = (sq - np.nansum(sums ** 2, axis=2) / np.where(present, counts, 1)).sum(axis=1)
        ch = np.where(within > 0, between * (total - k) / (within * (k - 1)), 1.0)
        # alignment over pairs of distinct notes of one class (a note paired with itself adds 0 distance)
        pairs = counts ** 2 - sq_counts
        align = np.where(pairs > 0, (2 * counts * sq - 2 * (sums ** 2).sum(-1)) / pairs, np.nan)
        alignment = np.nanmean(align, axis=1)
    return {"davies_bouldin": db, "calinski_harabasz": ch, "alignment": alignment}


def linear_probe(Xn: np.ndarray, codes: np.ndarray, folds: int = 5, seed: int = 0,
                 groups: np.ndarray | None = None) -> tuple[np.ndarray, list[float]]:
    """Out-of-fold predictions of a stratified k-fold logistic regression, and the fold accuracies.
    With `groups` (a text hash per note) identical texts share a fold: a copy is never the test of itself."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    # a rare class must not shrink every fold: it just appears in fewer test folds (sklearn warns)
    n_splits = int(min(folds, np.bincount(codes).max(), len(np.unique(groups)) if groups is not None else folds))
    oof = np.empty(len(codes), dtype=np.int64)
    scores = []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class")
        if groups is None:
            splits = list(StratifiedKFold(n_splits, shuffle=True, random_state=seed).split(Xn, codes))
        else:
            splits = list(StratifiedGroupKFold(n_splits, shuffle=True, random_state=seed).split(Xn, codes, groups))
    for tr, te in splits:
        with single_blas():
            clf = LogisticRegression(C=1.0, max_iter=1000).fit(Xn[tr], codes[tr])
        oof[te] = clf.predict(Xn[te])
        scores.append(float((oof[te] == codes[te]).mean()))
    return oof, scores


def chance_corrected(ok: np.ndarray, true: np.ndarray, n_classes: int, W: np.ndarray | None = None) -> np.ndarray:
    """(balanced accuracy - 1/C) / (1 - 1/C) per row of counts W (one row of ones without W): 0 when
    the predictions ignore the label, 1 when they are always right, whatever the class sizes."""
    W = np.ones((1, len(ok))) if W is None else W
    onehot = np.zeros((len(true), n_classes))
    onehot[np.arange(len(true)), true] = 1.0
    per_class, right = W @ onehot, W @ (onehot * ok[:, None])
    with np.errstate(divide="ignore", invalid="ignore"):
        balanced = np.nanmean(np.where(per_class > 0, right / per_class, np.nan), axis=1)
    chance = 1.0 / n_classes
    return (balanced - chance) / (1 - chance)


def _mean(v: np.ndarray) -> float | None:
    return float(v.mean()) if len(v) else None


# ---------------------------------------------------------------- headline report
# Ratios whose bootstrap replicates sit to one side of the estimate: their intervals are centred on it
RATIOS = ("davies_bouldin", "calinski_harabasz")
# metric -> its 95% interval's key; every headline metric has one
CI_KEYS = {"silhouette": "silhouette_ci", "knn_accuracy": "knn_accuracy_ci",
           "knn_chance_corrected": "knn_chance_corrected_ci", "linear_probe_accuracy": "linear_probe_accuracy_ci",
           "davies_bouldin": "davies_bouldin_ci", "calinski_harabasz": "calinski_harabasz_ci",
           "alignment": "alignment_ci", "uniformity": "uniformity_ci"}


@dataclass
class Separability:
    n: int
    n_classes: int
    silhouette: float
    silhouette_ci: list[float]
    davies_bouldin: float
    davies_bouldin_ci: list[float]
    calinski_harabasz: float
    calinski_harabasz_ci: list[float]
    knn_k: int
    knn_accuracy: float
    knn_accuracy_ci: list[float]
    knn_chance_corrected: float
    knn_chance_corrected_ci: list[float]
    knn_queries: int  # notes whose neighbours were checked (all, or a sample on big corpora)
    majority_baseline: float  # accuracy of always answering the largest class
    chance: float  # accuracy of guessing uniformly among the classes: 1 / classes
    alignment: float  # mean over classes of the per-class alignment (lower = tighter)
    alignment_ci: list[float]
    uniformity: float  # lower = more uniformly spread
    uniformity_ci: list[float]
    linear_probe_accuracy: float | None
    linear_probe_ci: list[float] | None
    linear_probe_accuracy_ci: list[float] | None  # the same interval under the `<metric>_ci` name
    linear_probe_folds: list[float] = field(default_factory=list)
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    dropped_classes: dict[str, int] = field(default_factory=dict)
    n_unlabelled: int = 0
    interval_method: str = ""
    bootstrap: dict[str, list[float]] = field(default_factory=dict)  # replicates per metric, for paired comparisons

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def separability(X, y, knn_k: int = 10, folds: int = 5, probe: bool = True, n_boot: int = N_BOOT,
                 uniformity_points: int = 2000, max_queries: int = 20000, max_probe: int = 20000,
                 seed: int = 0, groups=None) -> Separability:
    """Every separability metric for embeddings X (n x d) and labels y, each with a 95% bootstrap
    interval over notes; small classes dropped. `groups` (a text hash per note) keeps exact duplicates
    out of each other's neighbours and probe folds.

    Intervals: the same `n_boot` resamples of the notes (with replacement, seeded by the number of
    notes) serve every metric and every encoder, so replicates of two encoders pair up. Silhouette,
    kNN and probe results are per note and are averaged over each resample; Davies-Bouldin,
    Calinski-Harabasz, alignment and uniformity are recomputed on it (uniformity on a seeded sample
    of `uniformity_points` notes); the intervals of the two ratios, Davies-Bouldin and Calinski-Harabasz,
    are centred on their estimates (`centred_interval`). Above `max_queries` / `max_probe` notes, kNN accuracy is estimated
    on a seeded sample of query notes (neighbours still searched among all) and the probe is
    cross-validated on a seeded sample.
    """
    from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score

    from core.neighbours import knn_indices  # imports torch: only when measuring

    y = as_labels(y)
    mask, dropped = keep_classes(y)
    Xn, yk = unit_rows(np.asarray(X)[mask]), y[mask].astype(str)
    g = pd.factorize(np.asarray(groups, dtype=object)[mask])[0] if groups is not None else None
    classes, codes = np.unique(yk, return_inverse=True)
    if len(classes) < 2:
        raise UserError(f"need at least two classes with >= 2 notes each (got {len(classes)})")
    n, C = len(Xn), len(classes)
    sil = silhouette_samples_cosine(Xn, codes)
    q = sample_rows(n, max_queries, seed)
    neigh = knn_indices(Xn, knn_k, q, groups=g)
    knn_ok = (knn_vote(neigh, codes, C) == codes[q]).astype(np.float64)
    align = alignment_per_class(Xn, codes, C)
    u_rows, kernel = uniformity_kernel(Xn, uniformity_points, seed)
    probe_ok, p, folds_acc = None, None, []
    if probe:
        p = sample_rows(n, max_probe, seed + 3)
        oof, folds_acc = linear_probe(Xn[p], codes[p], folds, seed, None if g is None else g[p])
        probe_ok = (oof == codes[p]).astype(np.float64)

    reps: dict[str, list[np.ndarray]] = {k: [] for k in CI_KEYS}
    # chunks small enough that b x classes x dims stays a few million numbers
    for W in resample_counts(n, n_boot, [seed, n], max_cells=int(min(2e6, 2e6 * n / (C * Xn.shape[1])))):
        reps["silhouette"].append(W @ sil / n)
        Wq = W[:, q]
        reps["knn_accuracy"].append(Wq @ knn_ok / Wq.sum(axis=1))
        reps["knn_chance_corrected"].append(chance_corrected(knn_ok, codes[q], C, Wq))
        if probe_ok is not None:
            Wp = W[:, p]
            reps["linear_probe_accuracy"].append(Wp @ probe_ok / Wp.sum(axis=1))
        for key, values in geometry_replicates(Xn, codes, C, W).items():
            reps[key].append(values)
        reps["uniformity"].append(uniformity_weighted(kernel, W[:, u_rows]))
    boot = {k: np.concatenate(v) for k, v in reps.items() if v}
    ci = {k: percentile_interval(v) for k, v in boot.items()}
    ratios = dict(zip(RATIOS, (davies_bouldin_score(Xn, codes), calinski_harabasz_score(Xn, codes))))
    ci |= {k: centred_interval(v, boot[k]) for k, v in ratios.items()}
    probe_ci = ci.get("linear_probe_accuracy")
    per_class = {
        str(c): {"n": int((codes == i).sum()), "silhouette": float(sil[codes == i].mean()),
                 "knn_accuracy": _mean(knn_ok[codes[q] == i]), "alignment": float(align[i])}
        for i, c in enumerate(classes)
    }
    return Separability(
        n=int(n), n_classes=C,
        silhouette=float(sil.mean()), silhouette_ci=ci["silhouette"],
        davies_bouldin=float(ratios["davies_bouldin"]), davies_bouldin_ci=ci["davies_bouldin"],
        calinski_harabasz=float(ratios["calinski_harabasz"]), calinski_harabasz_ci=ci["calinski_harabasz"],
        knn_k=int(neigh.shape[1]), knn_accuracy=float(knn_ok.mean()), knn_queries=int(len(q)),
        knn_accuracy_ci=ci["knn_accuracy"],
        knn_chance_corrected=float(chance_corrected(knn_ok, codes[q], C)[0]),
        knn_chance_corrected_ci=ci["knn_chance_corrected"],
        majority_baseline=float(np.bincount(codes).max() / n), chance=1.0 / C,
        alignment=float(np.nanmean(align)), alignment_ci=ci["alignment"],
        uniformity=float(uniformity_weighted(kernel, np.ones((1, len(kernel))))[0]), uniformity_ci=ci["uniformity"],
        linear_probe_accuracy=float(probe_ok.mean()) if probe_ok is not None else None,
        linear_probe_ci=probe_ci, linear_probe_accuracy_ci=probe_ci, linear_probe_folds=folds_acc,
        per_class=per_class, dropped_classes=dropped, n_unlabelled=int(sum(v is None for v in y)),
        interval_method=f"95% percentile bootstrap, {n_boot} resamples of the notes (Davies-Bouldin and "
                        "Calinski-Harabasz: centred on the estimate)",
        bootstrap={k: v.tolist() for k, v in boot.items()},
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
    from core.neighbours import knn_indices  # imports torch: only when measuring

    Xn = unit_rows(X)
    q = sample_rows(len(Xn), max_queries, seed)
    neigh = knn_indices(Xn, k, q)  # one neighbour graph serves every column
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
