"""Maps: deterministic PCA, seeded UMAP, Procrustes alignment, trustworthiness, warm-up."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA

from core import projection
from core.options import ProjectOptions
from core.projection import align_to, compute_projection, pca, trustworthiness

# We hand UMAP our own kNN graph; its note that `transform` is then unavailable is expected.
pytestmark = pytest.mark.filterwarnings("ignore:precomputed_knn")


def _blobs(n=300, d=32, centres=4, seed=0):
    rng = np.random.default_rng(seed)
    C = rng.normal(size=(centres, d)) * 3
    return (C[np.arange(n) % centres] + rng.normal(size=(n, d))).astype(np.float32)


def test_pca_is_deterministic_and_order_independent():
    X = _blobs()
    a = compute_projection(X, ProjectOptions(method="pca"))
    assert a.shape == (300, 2) and a.dtype == np.float32
    np.testing.assert_array_equal(a, compute_projection(X, ProjectOptions(method="pca")))
    perm = np.random.default_rng(1).permutation(300)  # sign fixed by loadings, not by row order
    np.testing.assert_allclose(pca(X[perm]), a[perm], atol=1e-4)
    ref = PCA(2).fit_transform(X / np.linalg.norm(X, axis=1, keepdims=True))
    np.testing.assert_allclose(np.abs(a), np.abs(ref), atol=1e-4)


def test_umap_same_seed_same_map():
    X = _blobs()
    opts = ProjectOptions(n_neighbors=10, seed=7)
    a = compute_projection(X, opts)
    assert a.shape == (300, 2) and a.dtype == np.float32 and np.isfinite(a).all()
    np.testing.assert_array_equal(a, compute_projection(X, opts))
    assert not np.allclose(a, compute_projection(X, opts.replace(seed=8)))
    assert trustworthiness(X, a, n_neighbors=10) > 0.9


def test_tiny_inputs_and_bad_values():
    assert compute_projection(np.eye(3, 8)).shape == (3, 2)
    with pytest.raises(ValueError):
        compute_projection(np.full((10, 4), np.nan))
    with pytest.raises(ValueError):
        compute_projection(np.ones((10, 4)), ProjectOptions(method="tsne"))


@pytest.mark.parametrize("reflect", [False, True])
def test_procrustes_recovers_a_rotated_scaled_shifted_copy(reflect):
    ref = np.random.default_rng(0).normal(size=(200, 2)).astype(np.float32)
    t = 1.1
    R = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    if reflect:
        R = R @ np.diag([1, -1])
    moved = 3.7 * ref @ R + np.array([10.0, -4.0])
    np.testing.assert_allclose(align_to(ref, moved), ref, atol=1e-4)
    noisy = moved + np.random.default_rng(1).normal(scale=0.05, size=moved.shape)
    assert np.abs(align_to(ref, noisy) - ref).mean() < 0.05


def test_trustworthiness_prefers_a_faithful_map():
    X = _blobs(n=400)
    good = pca(X)
    bad = np.random.default_rng(0).normal(size=(400, 2))
    assert trustworthiness(X, good, sample=300) > trustworthiness(X, bad, sample=300) + 0.2


def test_warm_up_in_background_is_idempotent():
    first = projection.warm_up_in_background()
    assert projection.warm_up_in_background() is first
    first.join(timeout=120)
    assert projection.is_warm()
