"""Bootstrap intervals and paired comparisons: one resampling scheme for every metric.

A replicate draws n notes with replacement, written as a count per note (a row of a count matrix), so
a metric that is a weighted mean, or has a weighted closed form, is recomputed on every replicate
without copying vectors. The counts depend only on (n, number of replicates, seed): two encoders
scored on the same notes are resampled identically, so the difference of their replicates is a
paired bootstrap of the difference.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

N_BOOT = 1000
LEVEL = 0.95


def resample_counts(n: int, n_boot: int = N_BOOT, seed=0, max_cells: int = 2_000_000) -> Iterator[np.ndarray]:
    """Chunks of a (n_boot x n) matrix of bootstrap counts (each row sums to n), rows in a seeded order."""
    rng = np.random.default_rng(seed)
    rows = max(1, max_cells // max(n, 1))
    for start in range(0, n_boot, rows):
        b = min(n_boot, start + rows) - start
        draws = rng.integers(0, n, (b, n)) + n * np.arange(b)[:, None]
        yield np.bincount(draws.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)


def percentile_interval(replicates, level: float = LEVEL) -> list[float | None]:
    """Percentile interval of bootstrap replicates (non-finite ones ignored); [None, None] if none are finite."""
    r = np.asarray(replicates, dtype=np.float64)
    r = r[np.isfinite(r)]
    if r.size == 0:
        return [None, None]
    a = (1 - level) / 2
    return [float(np.quantile(r, a)), float(np.quantile(r, 1 - a))]


def centred_interval(estimate: float, replicates, level: float = LEVEL) -> list[float | None]:
    """The percentile interval moved so that the replicates' median sits on the estimate. For ratios such
    as Davies-Bouldin and Calinski-Harabasz, resampling with replacement repeats notes and shifts every
    replicate to one side (on held-out HPO definitions the plain interval missed its own estimate for most
    encoders); the replicates' spread still measures the estimate's precision."""
    r = np.asarray(replicates, dtype=np.float64)
    r = r[np.isfinite(r)]
    if r.size == 0:
        return [None, None]
    shift = estimate - float(np.median(r))
    return [lo + shift for lo in percentile_interval(r, level)]


def paired_difference(estimate_a: float | None, estimate_b: float | None, replicates_a, replicates_b,
                      level: float = LEVEL, centred: bool = False) -> dict:
    """b - a, its percentile interval from replicates made on the same resamples (`centred`: moved onto
    the difference, as for a ratio's own interval), and whether it excludes 0."""
    if estimate_a is None or estimate_b is None:
        return {"diff": None, "ci": [None, None], "excludes_zero": False}
    diffs = np.asarray(replicates_b, dtype=np.float64) - np.asarray(replicates_a, dtype=np.float64)
    ci = (centred_interval(estimate_b - estimate_a, diffs, level) if centred else percentile_interval(diffs, level))
    excludes = ci[0] is not None and (ci[0] > 0 or ci[1] < 0)
    return {"diff": float(estimate_b - estimate_a), "ci": ci, "excludes_zero": bool(excludes)}
