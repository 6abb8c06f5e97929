"""Separability metrics: ordering on planted structure, exactness against references, CIs, confound audit."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import silhouette_samples

from core.geometry import unit_rows
from core.separability import (
    alignment_per_class, column_groups, confound_audit, knn_vote, separability, silhouette_samples_cosine,
    uniformity,
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
