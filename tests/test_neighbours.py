"""Exact cosine neighbours: against brute force / scikit-learn, self handling, overlap."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from core import neighbours
from core.geometry import unit_rows
from core.neighbours import knn_graph, knn_indices, nearest, neighbourhood_overlap


def _random(n=300, d=24, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def test_nearest_on_a_set_with_known_neighbours():
    # unit vectors in the plane at known angles: the nearest to angle 0.1 rad are 0, 0.2, 0.4 ...
    angles = np.array([0.0, 0.2, 0.4, 1.0, 2.0, 3.0])
    X = np.c_[np.cos(angles), np.sin(angles)] * np.array([[1], [3], [0.5], [2], [1], [7]])  # lengths don't matter
    idx, sims = nearest(X, [np.cos(0.1), np.sin(0.1)], k=4)
    assert sorted(idx[:2].tolist()) == [0, 1]
    assert idx[2:].tolist() == [2, 3]
    np.testing.assert_allclose(sims, np.cos(np.abs(angles[idx] - 0.1)), atol=1e-6)
    assert np.all(np.diff(sims) <= 0)


def test_nearest_excludes_and_caps_k():
    X = _random(50)
    idx, _ = nearest(X, X[7], k=5)
    assert idx[0] == 7
    idx, _ = nearest(X, X[7], k=5, exclude=[7])
    assert 7 not in idx and len(idx) == 5
    mask = np.zeros(50, bool)
    mask[:48] = True
    idx, _ = nearest(X, X[7], k=10, exclude=mask)
    assert sorted(idx.tolist()) == [48, 49]


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_knn_graph_matches_sklearn_across_blocks(monkeypatch, metric):
    monkeypatch.setattr(neighbours, "_BLOCK_ENTRIES", 300 * 64)  # 64 rows per block: 5 blocks
    X = _random()
    idx, dist = knn_graph(X, 6, metric, include_self=False)
    ref_dist, ref_idx = NearestNeighbors(n_neighbors=7, metric=metric).fit(X).kneighbors(X)
    np.testing.assert_array_equal(idx, ref_idx[:, 1:])
    np.testing.assert_allclose(dist, ref_dist[:, 1:], atol=1e-4)
    if metric == "cosine":
        np.testing.assert_array_equal(knn_indices(X, 6), ref_idx[:, 1:])


def test_knn_indices_of_chosen_rows_leave_out_their_own_group_across_blocks(monkeypatch):
    monkeypatch.setattr(neighbours, "_BLOCK_ENTRIES", 150 * 16)  # 16 query rows per block
    X = _random(150)
    groups = np.arange(150) // 3  # three notes per group, as copies of one text would be
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    sims = U @ U.T
    sims[groups[:, None] == groups[None, :]] = -np.inf  # the note itself and its copies
    every = knn_indices(X, 5, groups=groups)
    np.testing.assert_array_equal(every, np.argsort(-sims, axis=1)[:, :5])
    rows = np.array([0, 17, 77, 149])  # in different blocks
    np.testing.assert_array_equal(knn_indices(X, 5, rows=rows, groups=groups), every[rows])
    np.testing.assert_array_equal(knn_graph(X, 5, include_self=False, rows=rows)[0], knn_indices(X, 5)[rows])


def test_unit_rows_scale_to_length_one_and_keep_zero_rows():
    X = np.array([[3.0, 4.0], [0.0, 0.0], [-2.0, 0.0]])
    np.testing.assert_allclose(unit_rows(X), [[0.6, 0.8], [0.0, 0.0], [-1.0, 0.0]], atol=1e-7)
    assert unit_rows(X).dtype == np.float32


def test_knn_graph_puts_self_first_even_with_duplicates():
    X = _random(40)
    X[10] = X[11] = X[12]  # exact duplicates tie with self
    idx, dist = knn_graph(X, 5, include_self=True)
    np.testing.assert_array_equal(idx[:, 0], np.arange(40))
    assert np.all(dist[:, 0] == 0) and np.all(np.diff(dist, axis=1) >= -1e-6)
    assert set(idx[10, 1:3]) == {11, 12}


def test_overlap_is_one_for_identical_or_rotated_spaces_and_low_when_shuffled():
    X = _random()
    assert np.all(neighbourhood_overlap(X, X, k=10) == 1)
    Q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(24, 24)))
    rotated = neighbourhood_overlap(X, X @ Q.astype(np.float32), k=10)  # cosine is rotation-invariant
    assert rotated.mean() > 0.99
    shuffled = neighbourhood_overlap(X, X[np.random.default_rng(2).permutation(len(X))], k=10)
    assert shuffled.shape == (300,) and shuffled.mean() < 0.1
    with pytest.raises(ValueError):
        neighbourhood_overlap(X, X[:10])


def _clustered(n=2000, d=32, centres=12, seed=0):
    rng = np.random.default_rng(seed)
    C = rng.normal(size=(centres, d)) * 2
    return (C[rng.integers(0, centres, n)] + rng.normal(size=(n, d))).astype(np.float32)


def _exact(X, Q, k):
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    V = Q / np.linalg.norm(Q, axis=1, keepdims=True)
    return np.argsort(-(V @ U.T), axis=1, kind="stable")[:, :k]


def test_cell_index_probing_every_cell_is_exact():
    X, Q = _clustered(), _clustered(200, seed=1)
    index = neighbours.CellIndex(X, n_cells=16, probe=16)
    idx, dist = index.knn(Q, 10)
    np.testing.assert_array_equal(np.sort(idx, axis=1), np.sort(_exact(X, Q, 10), axis=1))
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    V = Q / np.linalg.norm(Q, axis=1, keepdims=True)
    np.testing.assert_allclose(dist, 1 - np.take_along_axis(V @ U.T, idx, axis=1), atol=1e-5)
    one, sims = index.search(Q[0], 10)
    np.testing.assert_array_equal(np.sort(one), np.sort(idx[0]))
    assert np.all(np.diff(sims) <= 0)


def test_cell_index_probing_few_cells_keeps_most_neighbours():
    X = _clustered(2200)
    X, Q = X[:2000], X[2000:]  # queries from the same notes' distribution
    index = neighbours.CellIndex(X, n_cells=32, probe=4)  # an eighth of the rows scored per query
    idx, _ = index.knn(Q, 10)
    truth = _exact(X, Q, 10)
    recall = np.mean([len(np.intersect1d(a, b)) / 10 for a, b in zip(idx, truth)])
    assert 0.9 < recall <= 1.0
    searched = np.array([index.search(q, 10)[0] for q in Q[:20]])
    assert np.mean([len(np.intersect1d(a, b)) / 10 for a, b in zip(searched, truth[:20])]) > 0.9


def test_cell_index_widens_its_probe_when_cells_hold_fewer_than_k_rows():
    X = _clustered(40)
    idx, _ = neighbours.CellIndex(X, n_cells=20, probe=1).knn(X[:5], 30)
    assert idx.shape == (5, 30) and all(len(set(row)) == 30 for row in idx.tolist())


def test_neighbours_in_sample_covers_every_other_row_once():
    X = _clustered(500)
    rows = np.sort(np.random.default_rng(0).choice(500, 100, replace=False))
    parts = list(neighbours.neighbours_in_sample(X, rows, 5, chunk=128))
    placed = np.concatenate([p for p, _, _ in parts])
    assert len(parts) == 4  # 400 rows in chunks of 128
    np.testing.assert_array_equal(np.sort(placed), np.setdiff1d(np.arange(500), rows))
    assert all(i.shape == (len(p), 5) and i.max() < 100 for p, i, _ in parts)
