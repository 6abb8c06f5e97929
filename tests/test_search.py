"""Note search (core/search.py): exact on small corpora, a cell index on large ones, the same answers
where the index probes every cell."""

from __future__ import annotations

import numpy as np

from core import search
from core.neighbours import CellIndex, nearest


def _clustered(n=600, d=24, centres=8, seed=0):
    rng = np.random.default_rng(seed)
    C = rng.normal(size=(centres, d)) * 2
    return (C[rng.integers(0, centres, n)] + rng.normal(size=(n, d))).astype(np.float32)


def test_the_index_is_chosen_by_corpus_size(monkeypatch):
    assert not search.wants_index(search.EXACT_MAX) and search.wants_index(search.EXACT_MAX + 1)
    monkeypatch.setattr(search, "EXACT_MAX", 100)
    assert search.wants_index(101) and not search.wants_index(100)


def test_search_through_an_index_of_every_cell_matches_exact_search():
    X, queries = _clustered(), _clustered(20, seed=1)
    index = CellIndex(X, n_cells=8, probe=8)  # every cell probed: nothing can be missed
    for q in queries:
        idx, sims = search.search(X, q, 15, index=index)
        exact_idx, exact_sims = search.search(X, q, 15)
        np.testing.assert_array_equal(idx, exact_idx)
        np.testing.assert_allclose(sims, exact_sims, atol=1e-5)
        np.testing.assert_array_equal(exact_idx, nearest(X, q, 15)[0])


def test_a_note_is_not_its_own_neighbour_either_way():
    X = _clustered()
    index = CellIndex(X, n_cells=8, probe=8)
    for used in (None, index):
        idx, sims = search.search(X, X[42], 10, exclude=[42], index=used)
        assert 42 not in idx and len(idx) == len(sims) == 10
        np.testing.assert_array_equal(idx, nearest(X, X[42], 10, exclude=[42])[0])


def test_the_default_index_finds_most_exact_neighbours():
    X = _clustered(3000)
    index = CellIndex(X)  # as the app builds it: about sqrt(n)/2 cells, 8 probed
    found = [search.search(X, q, 10, index=index)[0] for q in X[:30]]
    truth = [search.search(X, q, 10)[0] for q in X[:30]]
    assert np.mean([len(np.intersect1d(a, b)) / 10 for a, b in zip(found, truth)]) > 0.9
