"""Separability metrics: ordering on planted structure, exactness against references, CIs, confound audit."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    balanced_accuracy_score, calinski_harabasz_score, davies_bouldin_score, silhouette_samples,
)
from sklearn.model_selection import (
    StratifiedGroupKFold, StratifiedKFold, cross_val_predict, cross_val_score,
)
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import normalize
from threadpoolctl import threadpool_info

from core.errors import UserError
from core.geometry import unit_rows
from core.separability import (
    alignment_per_class, as_labels, chance_corrected, class_sums, column_groups, confound_audit, geometry_replicates,
    knn_vote, linear_probe, separability, silhouette_samples_cosine, single_blas, uniformity,
    uniformity_kernel, uniformity_weighted,
)


def blobs(noise: float, n: int = 300, d: int = 32, classes: int = 4, seed: int = 0, shuffle: bool = False):
    """Gaussian classes around random centres; shuffle=True breaks the label/geometry link."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, d))
    y = np.arange(n) % classes
    X = (centres[y] + noise * rng.normal(size=(n, d))).astype(np.float32)
    labels = np.array([f"class {c}" for c in y], dtype=object)
    return X, (rng.permutation(labels) if shuffle else labels)


@pytest.fixture(scope="module")
def three_spaces():
    return {name: separability(*data, n_boot=200) for name, data in {
        "separated": blobs(0.3), "mixed": blobs(1.0), "random": blobs(1.0, shuffle=True)}.items()}


@pytest.mark.parametrize("metric", ["silhouette", "knn_accuracy", "linear_probe_accuracy", "calinski_harabasz"])
def test_higher_is_better_metrics_order_structure(three_spaces, metric):
    s, m, r = (getattr(three_spaces[k], metric) for k in ("separated", "mixed", "random"))
    assert s > m > r


def test_davies_bouldin_is_reversed(three_spaces):
    s, m, r = (three_spaces[k].davies_bouldin for k in ("separated", "mixed", "random"))
    assert s < m < r


def test_random_labels_sit_at_chance(three_spaces):
    r = three_spaces["random"]
    assert abs(r.silhouette) < 0.05
    assert r.knn_accuracy < 0.45 and r.linear_probe_accuracy < 0.45  # 4 balanced classes: chance 0.25
    assert three_spaces["separated"].alignment < r.alignment  # same-label notes closer together


def test_cosine_silhouette_matches_sklearn_with_unequal_classes():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(257, 16)).astype(np.float32)
    codes = rng.choice(5, size=257, p=[0.5, 0.2, 0.15, 0.1, 0.05])
    ours = silhouette_samples_cosine(unit_rows(X), codes)
    assert np.allclose(ours, silhouette_samples(X, codes, metric="cosine"), atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(st.integers(6, 60), st.integers(2, 8), st.integers(2, 4), st.integers(0, 2**31 - 1))
def test_silhouette_matches_sklearn_property(n, d, k, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    codes = np.r_[np.arange(k), rng.integers(0, k, n - k)]  # every class present
    ours = silhouette_samples_cosine(unit_rows(X), codes)
    assert np.allclose(ours, silhouette_samples(X, codes, metric="cosine"), atol=1e-4)


def test_alignment_and_uniformity_match_brute_force():
    X, y = blobs(1.0, n=120)
    Xn = unit_rows(X)
    codes = np.unique(y, return_inverse=True)[1]
    for c, value in enumerate(alignment_per_class(Xn, codes, 4)):
        pts = torch.from_numpy(Xn[codes == c])
        assert value == pytest.approx(torch.pdist(pts).pow(2).mean().item(), rel=1e-4)
    brute = torch.pdist(torch.from_numpy(Xn)).pow(2).mul(-2).exp().mean().log().item()
    assert uniformity(Xn) == pytest.approx(brute, rel=1e-4)
    sampled = uniformity(Xn, max_points=60, seed=1)
    assert sampled == pytest.approx(brute, abs=0.15) and sampled != pytest.approx(brute, abs=1e-9)


def test_big_corpora_are_estimated_from_seeded_samples():
    X, y = blobs(1.0, n=600)
    full = separability(X, y, n_boot=100)
    sampled = separability(X, y, n_boot=100, max_queries=200, max_probe=300)
    assert full.knn_queries == 600 and sampled.knn_queries == 200
    assert sampled.knn_accuracy == pytest.approx(full.knn_accuracy, abs=0.08)
    assert sampled.linear_probe_accuracy == pytest.approx(full.linear_probe_accuracy, abs=0.1)
    assert sampled.knn_accuracy_ci[1] - sampled.knn_accuracy_ci[0] > full.knn_accuracy_ci[1] - full.knn_accuracy_ci[0]
    assert sampled.silhouette == full.silhouette  # exact at any size


def test_knn_vote_majority_then_nearest_neighbour_breaks_ties():
    codes = np.array([0, 1, 1, 0, 2, 2])
    neigh = np.array([
        [1, 0, 3, 4],  # 0 has two votes, 1 and 2 one each: majority wins though 1 is nearest
        [3, 1, 2, 0],  # 0 and 1 tie 2-2; nearest neighbour is class 0
        [1, 3, 0, 2],  # 0 and 1 tie 2-2 with the same rank sum; nearest is class 1
        [4, 1, 5, 2],  # 2 and 1 tie; nearest is class 2
    ])
    assert knn_vote(neigh, codes, 3).tolist() == [0, 0, 1, 2]


def test_deterministic_under_seed_and_json_ready():
    X, y = blobs(1.0, n=200)
    a, b = separability(X, y, seed=5, n_boot=200), separability(X, y, seed=5, n_boot=200)
    assert a.to_dict() == b.to_dict()
    assert separability(X, y, seed=6, n_boot=200).silhouette_ci != a.silhouette_ci  # seed drives resampling
    text = json.dumps(a.to_dict(), allow_nan=False)
    assert "numpy" not in text and json.loads(text)["n_classes"] == 4


def test_small_classes_and_missing_labels_are_dropped_and_reported():
    X, y = blobs(0.5, n=100)
    y = y.copy()
    y[0], y[1], y[2], y[3], y[4] = "lonely", None, np.nan, "pair", "pair"
    r = separability(X, y, n_boot=100)
    assert r.dropped_classes == {"lonely": 1} and r.n_unlabelled == 2 and r.n == 97
    assert set(r.per_class) == {f"class {c}" for c in range(4)} | {"pair"}
    assert sum(v["n"] for v in r.per_class.values()) == 97
    assert len(r.linear_probe_folds) == 5  # a 2-note class does not force 2-fold CV
    with pytest.raises(ValueError):
        separability(X[:3], ["a", "a", "b"])


def test_every_headline_metric_has_an_interval_bracketing_it(three_spaces):
    r = three_spaces["mixed"].to_dict()
    for metric in ("silhouette", "knn_accuracy", "knn_chance_corrected", "linear_probe_accuracy", "davies_bouldin",
                   "calinski_harabasz", "alignment", "uniformity"):
        lo, hi = r[f"{metric}_ci"]
        assert lo <= r[metric] <= hi and hi - lo > 0, metric


@pytest.fixture()
def planted(synthetic_df):
    """Embeddings where `specialty` moves notes apart and nothing else does."""
    rng = np.random.default_rng(0)
    codes = pd.factorize(synthetic_df["specialty"])[0]
    X = rng.normal(size=(len(synthetic_df), 24)) + 3.0 * np.eye(24)[codes]
    return synthetic_df.assign(constant="same", ward=rng.choice(["a", "b", "c"], len(synthetic_df))), X


def test_confound_audit_ranks_the_planted_column_first(planted):
    meta, X = planted
    audit = confound_audit(X, meta, k=5)
    ranking = {r["column"]: r for r in audit["ranking"]}
    assert audit["ranking"][0]["column"] == "specialty"
    assert ranking["specialty"]["score"] > 0.8
    assert all(r["score"] < 0.3 for name, r in ranking.items() if name != "specialty")
    assert {"note_id", "text", "constant"} <= set(audit["skipped"])
    assert ranking["age"]["kind"].startswith("numeric") and ranking["visit_date"]["kind"].startswith("date")
    json.dumps(audit, allow_nan=False)


def test_confound_audit_finds_a_planted_numeric_column(planted):
    meta, _ = planted
    rng = np.random.default_rng(1)
    age = meta["age"].to_numpy(dtype=float)
    X = rng.normal(size=(len(meta), 16)) * 0.3
    X[:, 0] += (age - age.mean()) / age.std() * 3  # age drives one direction of the space
    top = confound_audit(X, meta.drop(columns=["specialty"]), k=5)["ranking"][0]
    assert top["column"] == "age" and top["n_groups"] == 4 and top["score"] > 0.3


def test_column_groups_bins_dates_stored_as_text():
    dates = pd.Series(pd.date_range("2024-01-01", periods=40).strftime("%Y-%m-%d"))
    kind, groups = column_groups(dates, n_bins=4)
    assert kind.startswith("date") and len(set(groups)) == 4
    assert column_groups(pd.Series([f"id{i}" for i in range(40)])) == "near-unique (identifier-like)"


# ---- resampled geometry, uniformity and class sums against independent oracles
def _mean_sq_dist_between_distinct_notes(X, ids):
    """Oracle: mean squared distance over ordered pairs of rows coming from different original notes."""
    total, pairs = 0.0, 0
    for i in range(len(X)):
        for j in range(len(X)):
            if ids[i] != ids[j]:
                total += float(np.sum((X[i] - X[j]) ** 2))
                pairs += 1
    return total / pairs if pairs else np.nan


def _repeated_geometry(Xn, codes, w):
    """Oracle for one resample: sklearn's scores on the rows repeated w times; alignment averaged over the classes
    with two distinct notes, pairs of copies of one note left out."""
    Xr, cr, ids = np.repeat(Xn, w, axis=0), np.repeat(codes, w), np.repeat(np.arange(len(Xn)), w)
    per_class = [_mean_sq_dist_between_distinct_notes(Xr[cr == c], ids[cr == c]) for c in np.unique(cr)]
    return (davies_bouldin_score(Xr, cr), calinski_harabasz_score(Xr, cr),
            np.mean([a for a in per_class if not np.isnan(a)]))


def _resamples(codes, rng):
    """Rows of counts: all ones, two bootstraps, one class absent, one class reduced to a single note drawn once,
    one class reduced to a single note drawn three times."""
    n = len(codes)
    W = [np.ones(n), rng.multinomial(n, np.full(n, 1 / n)), rng.multinomial(n, np.full(n, 1 / n))]
    w = rng.integers(0, 3, n)
    w[codes == 2] = 0
    W.append(w)
    for draws in (1, 3):
        w = rng.integers(1, 3, n)
        first, *rest = np.flatnonzero(codes == 1)
        w[rest], w[first] = 0, draws
        W.append(w)
    return np.array(W, dtype=float)


def test_geometry_replicates_equal_sklearn_and_pair_loop_on_rows_repeated_by_their_counts():
    rng = np.random.default_rng(11)
    centres = rng.normal(size=(4, 6))
    codes = rng.permutation(np.r_[np.zeros(10), np.ones(7), np.full(5, 2), np.full(8, 3)].astype(int))
    Xn = unit_rows(centres[codes] + 0.6 * rng.normal(size=(len(codes), 6))).astype(np.float32)
    W = _resamples(codes, rng)
    with np.errstate(divide="raise", invalid="raise"):  # an absent class is expected, not warned about
        got = geometry_replicates(Xn, codes, 4, W)
    for b, w in enumerate(W.astype(int)):
        db, ch, align = _repeated_geometry(Xn.astype(np.float64), codes, w)
        assert got["davies_bouldin"][b] == pytest.approx(db, rel=1e-7), b
        assert got["calinski_harabasz"][b] == pytest.approx(ch, rel=1e-7), b
        assert got["alignment"][b] == pytest.approx(align, rel=1e-7), b


def test_geometry_replicates_coinciding_centroids_add_nothing_to_davies_bouldin():
    Xn = np.array([[1, 0, 0], [0, 1, 0],  # class 0: centroid (.5, .5, 0)
                   [.5, .5, .25], [.5, .5, -.25],  # class 1: the same centroid, a smaller spread
                   [-1, 0, 0], [-.6, -.8, 0], [-.8, -.6, 0]])  # class 2 elsewhere
    codes = np.array([0, 0, 1, 1, 2, 2, 2])
    got = geometry_replicates(Xn, codes, 3, np.ones((1, 7)))
    assert got["davies_bouldin"][0] == pytest.approx(davies_bouldin_score(Xn, codes), rel=1e-9)
    assert got["calinski_harabasz"][0] == pytest.approx(calinski_harabasz_score(Xn, codes), rel=1e-9)


def test_geometry_replicates_classes_without_spread_score_calinski_harabasz_one_silently():
    Xn = np.repeat(np.eye(3), 2, axis=0)  # two identical notes per class
    codes = np.repeat(np.arange(3), 2)
    with np.errstate(divide="raise", invalid="raise"):  # zero within-class dispersion is expected, not warned about
        got = geometry_replicates(Xn, codes, 3, np.ones((1, 6)))
    assert calinski_harabasz_score(Xn, codes) == 1.0 and davies_bouldin_score(Xn, codes) == 0.0
    assert got["calinski_harabasz"].tolist() == [1.0]
    assert got["davies_bouldin"].tolist() == [0.0]
    assert got["alignment"].tolist() == [0.0]


def test_geometry_replicates_tight_classes_with_within_dispersion_below_one_match_sklearn():
    rng = np.random.default_rng(12)
    codes = np.repeat(np.arange(3), 4)
    Xn = np.eye(3)[codes] + 0.05 * rng.normal(size=(12, 3))  # within-class dispersion ~0.1
    got = geometry_replicates(Xn, codes, 3, np.ones((1, 12)))
    assert got["calinski_harabasz"][0] == pytest.approx(calinski_harabasz_score(Xn, codes), rel=1e-9)
    assert got["davies_bouldin"][0] == pytest.approx(davies_bouldin_score(Xn, codes), rel=1e-9)


def _pair_uniformity(K, w):
    """Oracle: log of the count-weighted mean kernel over pairs of distinct notes."""
    num = den = 0.0
    for i in range(len(w)):
        for j in range(len(w)):
            if i != j:
                num += w[i] * w[j] * K[i, j]
                den += w[i] * w[j]
    return np.log(num / den)


def _kernel_loop(X):
    X = np.asarray(X, dtype=np.float64)
    return np.array([[np.exp(-2 * np.sum((a - b) ** 2)) for b in X] for a in X])


def test_uniformity_weighted_is_count_weighted_log_mean_kernel_over_distinct_note_pairs():
    rng = np.random.default_rng(4)
    K = _kernel_loop(unit_rows(rng.normal(size=(25, 5))))
    W = np.array([np.ones(25), rng.integers(0, 4, 25), rng.multinomial(25, np.full(25, 1 / 25))], dtype=float)
    got = uniformity_weighted(K, W)
    assert got.shape == (3,)
    for b in range(3):
        assert got[b] == pytest.approx(_pair_uniformity(K, W[b]), rel=1e-10), b


def test_uniformity_weighted_single_note_is_nan_and_unreachable_pairs_minus_inf_without_warnings():
    K = np.eye(3)  # notes so far apart that the kernel between them underflows to 0
    W = np.array([[1.0, 1.0, 0.0], [0.0, 3.0, 0.0]])
    with np.errstate(divide="raise", invalid="raise"):
        got = uniformity_weighted(K, W)
    assert got[0] == -np.inf and np.isnan(got[1])


def test_uniformity_kernel_is_float64_exp_of_minus_twice_squared_distance_for_float32_rows():
    rng = np.random.default_rng(5)
    X = unit_rows(rng.normal(size=(40, 8))).astype(np.float32)
    X[1] = X[0] + np.float32(1e-3) * X[2]  # a near-duplicate pair: float32 cancellation would show here
    rows, K = uniformity_kernel(X)
    assert rows.tolist() == list(range(40))
    assert K.dtype == np.float64
    assert np.allclose(K, _kernel_loop(X), rtol=0, atol=1e-12)


def test_uniformity_kernel_defaults_sample_2000_rows_with_seed_0():
    X = unit_rows(np.random.default_rng(6).normal(size=(2001, 3)))
    rows, K = uniformity_kernel(X)
    assert len(rows) == 2000 and K.shape == (2000, 2000)
    assert rows.tolist() == uniformity_kernel(X, 2000, 0)[0].tolist()
    assert uniformity(X) == uniformity(X, 2000, 0) != uniformity(X, 2001, 0)


def test_uniformity_on_a_subsample_is_the_pair_mean_over_the_rows_the_seed_picks():
    X = unit_rows(np.random.default_rng(7).normal(size=(120, 6)))
    picked = {}
    for seed in (0, 1, 2):
        rows = uniformity_kernel(X, 40, seed)[0]
        assert rows.tolist() == uniformity_kernel(X, 40, seed)[0].tolist()  # reproducible
        assert len(set(rows.tolist())) == 40 and rows.tolist() == sorted(rows.tolist())
        assert uniformity(X, 40, seed) == pytest.approx(_pair_uniformity(_kernel_loop(X[rows]), np.ones(40)), rel=1e-10)
        picked[seed] = tuple(rows)
    assert len(set(picked.values())) == 3  # the seed chooses the sample


def test_alignment_per_class_is_pair_mean_for_unnormalised_rows_and_nan_for_a_singleton():
    rng = np.random.default_rng(8)
    codes = np.array([2, 0, 1, 0, 2, 0, 1, 2, 3, 1, 0, 2])  # class 3 has one note
    X = rng.normal(size=(12, 4)) * rng.uniform(0.5, 3, size=(12, 1))
    got = alignment_per_class(X, codes, 4)
    assert got.dtype == np.float64
    for c in range(3):
        pts = X[codes == c]
        oracle = np.mean([np.sum((a - b) ** 2) for i, a in enumerate(pts) for j, b in enumerate(pts) if i != j])
        assert got[c] == pytest.approx(oracle, rel=1e-10), c
    assert np.isnan(got[3])


def test_cosine_silhouette_computed_in_small_blocks_matches_sklearn():
    rng = np.random.default_rng(9)
    X = rng.normal(size=(50, 5))
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    codes = np.r_[np.arange(3), rng.integers(0, 3, 47)]
    ours = silhouette_samples_cosine(Xn, codes, block=7)
    assert np.allclose(ours, silhouette_samples(Xn, codes, metric="cosine"), atol=1e-9)


# ---- the separability report, the linear probe, chance correction and grouping against independent oracles
def skewed_notes(seed: int = 0, sizes=(60, 35, 20), d: int = 8, noise: float = 1.2):
    """Overlapping classes of unequal size, plus a singleton class and two unlabelled notes, shuffled."""
    rng = np.random.default_rng(seed)
    codes = np.repeat(np.arange(len(sizes)), sizes)
    X = rng.normal(size=(len(sizes), d))[codes] + noise * rng.normal(size=(len(codes), d))
    X = np.vstack([X, rng.normal(size=(3, d))])
    y = np.array([f"c{c}" for c in codes] + ["lonely", None, np.nan], dtype=object)
    order = rng.permutation(len(y))
    return X[order], y[order]


CI_KEYS_EXPECTED = ("silhouette", "knn_accuracy", "knn_chance_corrected", "linear_probe_accuracy", "davies_bouldin",
                    "calinski_harabasz", "alignment", "uniformity")


def test_report_fields_equal_pandas_and_sklearn_on_a_skewed_set():

    X, y = skewed_notes()
    n_boot = 40
    r = separability(X, y, knn_k=1, folds=3, n_boot=n_boot, seed=2)
    labels = pd.Series(y)
    counts = labels.value_counts()
    kept = counts[counts >= 2]
    keep = labels.isin(kept.index).to_numpy()
    Xk, yk = normalize(X[keep]), labels[keep].to_numpy().astype(str)
    # counts, drops and baselines
    assert r.n == kept.sum() and r.n_classes == len(kept) == 3
    assert r.dropped_classes == {"lonely": 1} == {str(k): int(v) for k, v in counts[counts < 2].items()}
    assert r.n_unlabelled == labels.isna().sum() == 2
    assert r.majority_baseline == pytest.approx(kept.max() / kept.sum())
    assert r.chance == pytest.approx(1 / 3)
    # geometry: sklearn scores on the unit rows, brute-force alignment and uniformity
    assert r.davies_bouldin == pytest.approx(davies_bouldin_score(Xk, yk), rel=1e-5)
    assert r.calinski_harabasz == pytest.approx(calinski_harabasz_score(Xk, yk), rel=1e-5)
    sil = pd.Series(silhouette_samples(X[keep], yk, metric="cosine"))
    assert r.silhouette == pytest.approx(sil.mean(), abs=1e-6)
    assert r.uniformity == pytest.approx(_pair_uniformity(_kernel_loop(Xk), np.ones(len(Xk))), rel=1e-5)
    # 1-NN, self excluded (sklearn's kneighbors without X), and its balanced accuracy
    nearest = KNeighborsClassifier(n_neighbors=1, metric="cosine").fit(Xk, yk).kneighbors(return_distance=False)
    pred = yk[nearest[:, 0]]
    hit = pd.Series(pred == yk)
    assert r.knn_k == 1 and r.knn_queries == len(yk)
    assert r.knn_accuracy == pytest.approx(hit.mean())
    assert r.knn_chance_corrected == pytest.approx(balanced_accuracy_score(yk, pred, adjusted=True))
    alignments = {}
    for c in kept.index:
        pts = Xk[yk == c]
        alignments[c] = _mean_sq_dist_between_distinct_notes(pts, np.arange(len(pts)))
        assert r.per_class[c] == pytest.approx({"n": kept[c], "silhouette": sil[yk == c].mean(),
                                                "knn_accuracy": hit[yk == c].mean(), "alignment": alignments[c]},
                                               rel=1e-5)
    assert r.alignment == pytest.approx(np.mean(list(alignments.values())), rel=1e-5)
    # the probe: sklearn's cross-validated logistic regression on the same stratified folds
    cv = StratifiedKFold(3, shuffle=True, random_state=2)
    oof = cross_val_predict(LogisticRegression(max_iter=1000), Xk, yk, cv=cv)
    assert r.linear_probe_accuracy == pytest.approx((oof == yk).mean())
    fold_scores = cross_val_score(LogisticRegression(max_iter=1000), Xk, yk, cv=cv)
    assert r.linear_probe_folds == pytest.approx(list(fold_scores))
    # intervals: n_boot replicates per metric, centred near the estimate, brackets around it
    d = r.to_dict()
    assert set(r.bootstrap) == set(CI_KEYS_EXPECTED)
    for metric in CI_KEYS_EXPECTED:
        reps = np.asarray(r.bootstrap[metric])
        assert len(reps) == n_boot and reps.std() > 0, metric
        lo, hi = d[f"{metric}_ci"]
        assert lo <= d[metric] <= hi, metric
    for metric in ("silhouette", "knn_accuracy", "knn_chance_corrected", "linear_probe_accuracy"):
        assert np.mean(r.bootstrap[metric]) == pytest.approx(d[metric], abs=0.05), metric
    percentile = list(np.quantile(r.bootstrap["linear_probe_accuracy"], [0.025, 0.975]))
    assert r.linear_probe_ci == r.linear_probe_accuracy_ci == pytest.approx(percentile)
    assert f"{n_boot} resamples" in r.interval_method
    assert "Davies-Bouldin and Calinski-Harabasz: centred on the estimate" in r.interval_method


def test_same_seed_same_sampled_report_and_another_seed_moves_samples_and_intervals():
    X, y = skewed_notes(1)
    kw = dict(knn_k=3, folds=3, n_boot=30, max_queries=40, uniformity_points=50, max_probe=60)
    a, b, c = (separability(X, y, seed=s, **kw) for s in (1, 1, 2))
    assert a.to_dict() == b.to_dict()
    assert a.knn_queries == c.knn_queries == 40
    assert a.uniformity != c.uniformity  # another seed samples other points for uniformity
    assert a.knn_accuracy != c.knn_accuracy  # ... and other query notes
    assert a.silhouette == c.silhouette and a.silhouette_ci != c.silhouette_ci  # exact estimate, other resamples


def test_a_class_without_sampled_queries_has_no_knn_accuracy():
    X, y = skewed_notes(2)
    r = separability(X, y, knn_k=3, folds=3, n_boot=20, max_queries=1)
    accuracies = [v["knn_accuracy"] for v in r.per_class.values()]
    assert r.knn_queries == 1 and sum(a is None for a in accuracies) == len(accuracies) - 1
    json.dumps(r.per_class, allow_nan=False)  # None, not NaN


def test_two_classes_are_enough_and_fewer_is_a_user_error():
    X, y = skewed_notes(3, sizes=(30, 12))
    assert separability(X, y, knn_k=3, folds=3, n_boot=20).n_classes == 2
    with pytest.raises(UserError, match="at least two classes"):
        separability(X[:20], ["only"] * 19 + ["lonely"], n_boot=20)
    with pytest.raises(UserError, match="at least two classes"):
        separability(np.empty((0, 4)), [], n_boot=20)


def test_without_the_probe_the_report_has_no_probe_fields():
    X, y = skewed_notes(4)
    r = separability(X, y, knn_k=3, probe=False, n_boot=20)
    assert r.linear_probe_accuracy is None and r.linear_probe_ci is None and r.linear_probe_accuracy_ci is None
    assert r.linear_probe_folds == [] and "linear_probe_accuracy" not in r.bootstrap
    assert r.knn_accuracy_ci[0] <= r.knn_accuracy <= r.knn_accuracy_ci[1]


def duplicated_notes(seed: int = 0, m: int = 60, d: int = 6):
    """Every note twice in a row (group id = position of its first copy), overlapping labels."""
    rng = np.random.default_rng(seed)
    codes = np.arange(m) % 3
    X = rng.normal(size=(3, d))[codes] + 1.5 * rng.normal(size=(m, d))
    return np.repeat(X, 2, axis=0), np.repeat([f"c{c}" for c in codes], 2), np.repeat(np.arange(m), 2)


def test_groups_keep_copies_out_of_each_others_neighbours_and_probe_folds():

    X, y, g = duplicated_notes()
    plain = separability(X, y, knn_k=1, folds=3, n_boot=20, seed=3)
    grouped = separability(X, y, knn_k=1, folds=3, n_boot=20, seed=3, groups=g)
    assert plain.knn_accuracy == 1.0  # each note's nearest neighbour is its copy
    # with groups: leave-one-out 1-NN among the distinct notes (both copies of a neighbour share its label)
    U, yu = normalize(X[::2]), y[::2]
    nearest = KNeighborsClassifier(n_neighbors=1, metric="cosine").fit(U, yu).kneighbors(return_distance=False)
    assert grouped.knn_accuracy == pytest.approx((yu[nearest[:, 0]] == yu).mean())
    cv = StratifiedGroupKFold(3, shuffle=True, random_state=3)
    oof = cross_val_predict(LogisticRegression(max_iter=1000), normalize(X), y, groups=g, cv=cv)
    assert grouped.linear_probe_accuracy == pytest.approx((oof == y).mean())
    assert len(grouped.linear_probe_folds) == 3


def test_linear_probe_equals_sklearn_stratified_cross_validation():

    X, y = skewed_notes(5, noise=2.0)
    keep = pd.Series(y).map(pd.Series(y).value_counts()).ge(2).to_numpy()
    Xn, codes = unit_rows(X[keep]), np.unique(y[keep].astype(str), return_inverse=True)[1]
    oof, scores = linear_probe(Xn, codes, folds=3, seed=4)
    cv = StratifiedKFold(3, shuffle=True, random_state=4)
    assert oof.tolist() == cross_val_predict(LogisticRegression(C=1.0, max_iter=1000), Xn, codes, cv=cv).tolist()
    assert scores == pytest.approx(list(cross_val_score(LogisticRegression(C=1.0, max_iter=1000), Xn, codes, cv=cv)))


def test_linear_probe_with_groups_equals_sklearn_group_folds_and_caps_folds_at_the_groups():

    X, y, g = duplicated_notes(1)
    Xn, codes = unit_rows(X), np.unique(y, return_inverse=True)[1]
    oof, scores = linear_probe(Xn, codes, folds=3, seed=5, groups=g)
    cv = StratifiedGroupKFold(3, shuffle=True, random_state=5)
    expected = cross_val_predict(LogisticRegression(max_iter=1000), Xn, codes, groups=g, cv=cv)
    assert oof.tolist() == expected.tolist()
    assert scores == pytest.approx([(expected[te] == codes[te]).mean() for _, te in cv.split(Xn, codes, g)])
    few = np.repeat(np.arange(4), 30)  # 4 groups of 30 notes: at most 4 folds, one group each
    oof, scores = linear_probe(Xn, codes, folds=5, seed=5, groups=few)
    assert len(scores) == 4
    assert pd.Series(codes).groupby(few).size().tolist() == [30] * 4


def test_linear_probe_folds_shrink_to_the_largest_class_without_warnings():

    rng = np.random.default_rng(6)
    codes = np.array([0, 0, 0, 1, 1, 2, 2, 2])  # largest class: 3 notes, so 3 folds, not 5
    Xn = unit_rows(rng.normal(size=(8, 4)) + 2 * np.eye(4)[codes])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        oof, scores = linear_probe(Xn, codes, folds=5)
    assert len(scores) == 3 and len(oof) == 8


def test_chance_corrected_equals_sklearn_adjusted_balanced_accuracy():

    rng = np.random.default_rng(7)
    true = np.r_[np.zeros(20, int), np.ones(9, int), np.full(4, 2), [3]]  # skewed, class 3 has one note
    pred = np.where(rng.random(len(true)) < 0.6, true, rng.integers(0, 4, len(true)))
    ok = (pred == true).astype(float)
    one = chance_corrected(ok, true, 4)
    assert one.shape == (1,)
    assert one[0] == pytest.approx(balanced_accuracy_score(true, pred, adjusted=True))
    W = rng.integers(1, 4, size=(5, len(true))).astype(float)
    expected = [balanced_accuracy_score(true, pred, sample_weight=w, adjusted=True) for w in W]
    assert chance_corrected(ok, true, 4, W) == pytest.approx(expected)


def test_chance_corrected_skips_a_class_absent_from_a_resample_silently():

    true = np.array([0, 0, 1, 1, 2, 2])
    ok = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    W = np.array([[1.0, 1.0, 2.0, 0.0, 0.0, 0.0]])  # class 2 absent; recalls 1/2 and 1 over the 2 present
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = chance_corrected(ok, true, 3, W)
    assert got[0] == pytest.approx(((0.5 + 1.0) / 2 - 1 / 3) / (1 - 1 / 3))


def test_as_labels_keeps_list_labels_and_writes_timestamps_as_pandas_does():
    dates = pd.Series([pd.Timestamp("2024-01-02"), pd.Timestamp("2024-03-04 05:06")])
    assert as_labels(dates).tolist() == [str(t) for t in dates]
    labels = pd.Series([["a", "b"], ("c", "d"), None, np.nan, pd.NA, 3])  # a list is a label, not missing
    assert as_labels(labels).tolist() == [str(["a", "b"]), str(("c", "d")), None, None, None, "3"]


def test_column_groups_kinds_missing_values_and_bins_against_pandas():
    s = pd.Series(["a", "b", None, "a", np.nan, "b"] * 5)
    kind, groups = column_groups(s)
    assert kind == "categorical"
    assert groups.tolist() == np.where(s.isna(), "(missing)", s.astype(str)).tolist()
    assert column_groups(pd.Series(["x"] * 10 + [None] * 5)) == "constant"  # missing is not a second value
    flags = pd.Series([True, False, True] * 6)
    kind, groups = column_groups(flags)
    assert kind == "categorical" and groups.tolist() == flags.astype(str).tolist()
    half = pd.Series([f"v{i % 10}" for i in range(20)])  # exactly n/2 distinct values: still categories
    assert column_groups(half)[0] == "categorical"
    few_dates = pd.Series(pd.to_datetime(["2024-01-01", "2024-02-01", "2024-03-01"] * 10))
    kind, groups = column_groups(few_dates)
    assert kind == "date" and groups.tolist() == [str(t) for t in few_dates]
    four = pd.Series([1, 2, 3, 4] * 5)  # n_bins distinct numbers are categories already
    kind, groups = column_groups(four, n_bins=4)
    assert kind == "numeric" and groups.tolist() == four.astype(str).tolist()
    tied = pd.Series([0] * 30 + list(range(1, 11)))  # tied quantiles: fewer bins, not an error
    edges = np.unique(np.quantile(tied, np.linspace(0, 1, 5)))
    kind, groups = column_groups(tied, n_bins=4)
    assert kind == f"numeric ({len(edges) - 1} quantile bins)" and len(set(groups)) == len(edges) - 1


def test_column_groups_reads_mixed_iso_dates_and_tolerates_a_tenth_unparseable():
    mixed = pd.Series([f"2024-01-{i:02d}" for i in range(1, 11)] + [f"2024-02-{i:02d}T10:30" for i in range(1, 11)])
    assert column_groups(mixed, n_bins=4)[0] == "date (4 quantile bins)"
    texts = pd.Series([f"2024-03-{i:02d}" for i in range(1, 19)] + ["unknown", "n/a"])  # 90% parse
    kind, groups = column_groups(texts, n_bins=4)
    assert kind == "date (4 quantile bins)" and (groups == "(missing)").sum() == 2


def test_single_blas_runs_blas_on_one_thread():

    with single_blas():
        threads = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
    assert threads and set(threads) == {1}


def test_class_sums_of_classes_without_notes_are_zero():
    """Codes 0..4 with classes 1 and 4 absent (a subset of a corpus): pandas' group sums are the oracle."""
    rng = np.random.default_rng(0)
    X, codes = rng.normal(size=(12, 3)), rng.choice([0, 2, 3], size=12)
    sums, counts = class_sums(X, codes, 5)
    expected = pd.DataFrame(X).groupby(codes).sum().reindex(range(5), fill_value=0.0).to_numpy()
    assert np.allclose(sums, expected) and counts.tolist() == np.bincount(codes, minlength=5).tolist()
