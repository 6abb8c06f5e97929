"""Intervals and paired comparisons checked against independent oracles: sklearn on materialised
resamples, exact enumeration of a tiny bootstrap, and brute-force pair sums."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, calinski_harabasz_score, davies_bouldin_score, f1_score

from core.fewshot import FewShotRun, LearningCurve, compare_curves, learning_curve, weighted_scores
from core.geometry import unit_rows
from core.intervals import paired_difference, percentile_interval, resample_counts
from core.separability import (
    geometry_replicates, separability, uniformity_kernel, uniformity_weighted,
)


def blobs(n: int, noise: float = 1.0, d: int = 16, classes: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    codes = np.arange(n) % classes
    X = rng.normal(size=(classes, d))[codes] + noise * rng.normal(size=(n, d))
    return X.astype(np.float32), np.array([f"c{c}" for c in codes], dtype=object), codes


def materialised(W_row: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(len(W_row)), W_row.astype(int))


def test_resample_counts_are_resamples_seeded_and_independent_of_chunking():
    whole = np.vstack(list(resample_counts(23, 50, [3, 23])))
    assert whole.shape == (50, 23) and (whole.sum(axis=1) == 23).all()
    assert np.array_equal(whole, np.vstack(list(resample_counts(23, 50, [3, 23], max_cells=23 * 7))))
    assert not np.array_equal(whole, np.vstack(list(resample_counts(23, 50, [4, 23]))))  # another seed, other draws


def test_geometry_replicates_equal_sklearn_and_brute_force_on_each_resample():
    X, _, codes = blobs(40, classes=3)
    Xn = unit_rows(X)
    W = next(resample_counts(40, 6, 1))
    reps = geometry_replicates(Xn, codes, 3, W)
    _, K = uniformity_kernel(Xn)
    uni = uniformity_weighted(K, W)
    for b in range(len(W)):
        idx = materialised(W[b])
        assert reps["davies_bouldin"][b] == pytest.approx(davies_bouldin_score(Xn[idx], codes[idx]), rel=1e-5)
        assert reps["calinski_harabasz"][b] == pytest.approx(calinski_harabasz_score(Xn[idx], codes[idx]), rel=1e-5)
        # brute force over pairs of distinct notes of the resample (a note paired with its own copy is no pair)
        per_class, kernel_sum, pairs = [], 0.0, 0
        for c in range(3):
            rows = [i for i in idx if codes[i] == c]
            d2 = [np.sum((Xn[i] - Xn[j]) ** 2) for i, j in itertools.combinations(rows, 2) if i != j]
            per_class.append(np.mean(d2))
        for i, j in itertools.combinations(idx, 2):
            if i != j:
                kernel_sum += np.exp(-2 * np.sum((Xn[i] - Xn[j]) ** 2))
                pairs += 1
        assert reps["alignment"][b] == pytest.approx(np.mean(per_class), rel=1e-5)
        assert uni[b] == pytest.approx(np.log(kernel_sum / pairs), rel=1e-5)


def test_weighted_scores_equal_sklearn_on_each_resample():
    rng = np.random.default_rng(2)
    true, pred = rng.integers(0, 5, 30), rng.integers(0, 5, 30)
    W = next(resample_counts(30, 8, 5))
    got = weighted_scores(true, pred, 5, W)
    for b in range(len(W)):
        idx = materialised(W[b])
        present = np.unique(true[idx])
        assert got["accuracy"][b] == pytest.approx(accuracy_score(true[idx], pred[idx]))
        assert got["macro_f1"][b] == pytest.approx(f1_score(true[idx], pred[idx], labels=present, average="macro",
                                                            zero_division=0))


def _curve(preds: list[list[int]], true=(0, 0, 1, 1)) -> LearningCurve:
    true = np.array(true)
    runs = [FewShotRun(1, s, np.array([10 + s]), np.array(p), np.ones(len(p)),
                       {"macro_f1": f1_score(true, p, labels=[0, 1], average="macro", zero_division=0),
                        "accuracy": accuracy_score(true, p)}) for s, p in enumerate(preds)]
    return LearningCurve(["a", "b"], np.arange(len(true)), true, "logreg", runs, {}, {"a": 5, "b": 5})


def test_paired_bootstrap_matches_exact_enumeration_of_a_tiny_case():
    a = _curve([[0, 1, 1, 1], [0, 0, 0, 1]])
    b = _curve([[0, 0, 1, 1], [0, 0, 1, 0]])
    (comp,) = compare_curves(a, b, metrics=("accuracy",))
    # every resample of 4 test notes and of 2 draws, equally likely: the exact bootstrap distribution
    diffs = []
    for notes in itertools.product(range(4), repeat=4):
        for draws in itertools.product(range(2), repeat=2):
            acc = [[accuracy_score(c.test_codes[list(notes)], c.run(1, s).pred[list(notes)]) for s in draws]
                   for c in (a, b)]
            diffs.append(np.mean(acc[1]) - np.mean(acc[0]))
    q = np.quantile(diffs, [0.01, 0.04, 0.96, 0.99])
    assert comp["diff"] == pytest.approx(0.125) and comp["shots"] == 1  # accuracy 0.875 vs 0.75
    assert q[0] <= comp["ci"][0] <= q[1] and q[2] <= comp["ci"][1] <= q[3]
    assert comp["excludes_zero"] == (comp["ci"][0] > 0)


def test_paired_interval_is_narrower_than_unpaired_when_encoders_err_together():
    rng = np.random.default_rng(0)
    true = rng.integers(0, 2, 200)
    hard = rng.random(200) < 0.4  # notes both encoders get wrong
    pa = np.where(hard, 1 - true, true)
    pb = pa.copy()
    pb[np.flatnonzero(hard)[:12]] = true[np.flatnonzero(hard)[:12]]  # b fixes 12 of them
    a, b = _curve([pa.tolist()], true), _curve([pb.tolist()], true)
    (comp,) = compare_curves(a, b, metrics=("accuracy",))
    assert comp["diff"] == pytest.approx(0.06) and comp["excludes_zero"]
    width_a = np.subtract(*percentile_interval(a.replicates(1)["accuracy"])[::-1])
    assert comp["ci"][1] - comp["ci"][0] < width_a  # the shared errors cancel in the pairing


def test_paired_difference_of_identical_replicates_is_never_a_verdict():
    reps = np.random.default_rng(0).random(100)
    assert paired_difference(0.5, 0.5, reps, reps) == {"diff": 0.0, "ci": [0.0, 0.0], "excludes_zero": False}
    assert paired_difference(None, 0.5, reps, reps)["diff"] is None


def test_intervals_widen_with_fewer_notes():
    wide, narrow = (separability(*blobs(n)[:2], n_boot=300).to_dict() for n in (80, 640))
    for metric in ("silhouette", "knn_accuracy", "knn_chance_corrected", "linear_probe_accuracy", "davies_bouldin",
                   "calinski_harabasz", "alignment", "uniformity"):
        (lo_w, hi_w), (lo_n, hi_n) = wide[f"{metric}_ci"], narrow[f"{metric}_ci"]
        if metric == "calinski_harabasz":  # grows with the number of notes: compare widths relative to the value
            lo_w, hi_w, lo_n, hi_n = lo_w / wide[metric], hi_w / wide[metric], lo_n / narrow[metric], hi_n / narrow[metric]
        assert hi_w - lo_w > hi_n - lo_n > 0, metric


def test_ratio_intervals_hold_their_estimate_where_every_replicate_sits_to_one_side():
    """Small classes in many dimensions: resampled (repeated) notes shrink Davies-Bouldin and inflate
    Calinski-Harabasz in every replicate, so a plain percentile interval misses the score itself."""
    r = separability(*blobs(300, noise=2.0, d=64, classes=20)[:2], n_boot=300).to_dict()
    for metric in ("davies_bouldin", "calinski_harabasz"):
        plain = percentile_interval(r["bootstrap"][metric])
        assert not plain[0] <= r[metric] <= plain[1], metric  # the case this guards against
        lo, hi = r[f"{metric}_ci"]
        assert lo <= r[metric] <= hi, metric
        assert hi - lo == pytest.approx(plain[1] - plain[0]), metric
        assert (lo + hi) / 2 - r[metric] == pytest.approx(np.mean(plain) - np.median(r["bootstrap"][metric])), metric


def test_paired_ratio_differences_are_centred_on_the_difference():
    from core.evaluation.metrics import comparisons

    X, y, _ = blobs(300, noise=2.0, d=64, classes=20)
    X2 = X + np.random.default_rng(1).normal(size=X.shape).astype(np.float32)  # a noisier second encoder
    pieces = {name: {"separability": separability(v, y, n_boot=300).to_dict()} for name, v in (("a", X), ("b", X2))}
    by_metric = {c["metric"]: c for c in comparisons(pieces)}
    for metric in ("davies_bouldin", "calinski_harabasz"):
        c, (a, b) = by_metric[metric], (pieces[k]["separability"] for k in "ab")
        diffs = np.asarray(b["bootstrap"][metric]) - np.asarray(a["bootstrap"][metric])
        plain = percentile_interval(diffs)
        assert c["diff"] == pytest.approx(b[metric] - a[metric])
        assert c["ci"][1] - c["ci"][0] == pytest.approx(plain[1] - plain[0])
        assert np.mean(c["ci"]) - c["diff"] == pytest.approx(np.mean(plain) - np.median(diffs))
    silhouette = by_metric["silhouette"]  # a mean: its plain interval stands
    assert silhouette["ci"] == pytest.approx(percentile_interval(
        np.asarray(pieces["b"]["separability"]["bootstrap"]["silhouette"])
        - np.asarray(pieces["a"]["separability"]["bootstrap"]["silhouette"])))


def test_fewshot_intervals_widen_with_fewer_test_notes_and_baselines_sit_beside_accuracy():
    X, y, _ = blobs(400, noise=1.5)
    small = learning_curve(X, y, shots=(4,), seeds=3, test_size=0.1).summary()["4"]
    big = learning_curve(X, y, shots=(4,), seeds=3, test_size=0.5).summary()["4"]
    for m in ("macro_f1", "accuracy", "balanced_accuracy"):
        assert np.diff(small[f"{m}_ci"])[0] > np.diff(big[f"{m}_ci"])[0] > 0, m
        assert small[f"{m}_ci"][0] <= small[m] <= small[f"{m}_ci"][1]
    assert big["chance"] == 0.25 and big["majority_baseline"] == pytest.approx(0.25)
    assert set(big["per_class"]) == {"c0", "c1", "c2", "c3"}
    assert all(v["test_notes"] == 50 for v in big["per_class"].values())


def test_seeds_give_different_draws_and_exhausted_pools_are_flagged():
    X, y, codes = blobs(48, classes=4)  # 12 notes per class: 8 train, 4 test at 30 %
    curve = learning_curve(X, y, shots=(1, 2, 8, 16), seeds=4)
    for k in (1, 2):  # a small draw from a pool of 8: seeds must not repeat one draw
        draws = {tuple(curve.run(k, s).train_idx) for s in range(4)}
        assert len(draws) > 1, k
        assert curve.exhausted(k) == []
    for k in (8, 16):  # the whole pool in every draw
        assert {tuple(curve.run(k, s).train_idx) for s in range(4)} == {tuple(curve.run(k, 0).train_idx)}
        assert curve.exhausted(k) == curve.classes
    summary = curve.summary()
    assert summary["2"]["exhausted_classes"] == [] and summary["8"]["exhausted_classes"] == curve.classes
    other = learning_curve(X, y, shots=(1,), seeds=1, seed=1)
    assert not np.array_equal(other.run(1, 0).train_idx, curve.run(1, 0).train_idx)
