"""Clusters: planted clusters recovered, c-TF-IDF labels, central notes, corpus comparison."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from core.clusters import (
    _join_neighbours, central_examples, cluster_embeddings, cluster_summary, compare_to_corpus, default_k,
    default_min_cluster_size, label_clusters,
)
from core.options import ClusterOptions
from sample_data.synthetic import FILLER, SPECIALTIES, synthetic_notes
from tests.conftest import record_calls

# We hand UMAP our own kNN graph; its note that `transform` is then unavailable is expected.
pytestmark = pytest.mark.filterwarnings("ignore:precomputed_knn")


def _planted(n=600, centres=5, d=64, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % centres
    C = rng.normal(size=(centres, d))
    return (C[y] + 0.5 * rng.normal(size=(n, d))).astype(np.float32), y


@pytest.mark.parametrize("method", ["hdbscan", "kmeans"])
def test_planted_clusters_are_recovered(method):
    X, y = _planted()
    labels = cluster_embeddings(X, ClusterOptions(method=method, k=5))
    # Stated bound: adjusted Rand index > 0.8 (these well-separated blobs give 1.0 in practice).
    assert adjusted_rand_score(y, labels) > 0.8
    sizes = np.bincount(labels[labels >= 0])
    assert np.all(np.diff(sizes) <= 0)  # renumbered by size, largest first


def test_defaults_scale_with_corpus_size():
    assert default_min_cluster_size(100) == 5 and default_min_cluster_size(10_000) == 100
    assert default_k(10) == 2 and default_k(2_000) == 32 and default_k(1_000_000) == 50


def test_labels_contain_the_planted_vocabulary():
    df = synthetic_notes(200, seed=1)
    names = sorted(SPECIALTIES)
    labels = df["specialty"].map(names.index).to_numpy()
    terms = label_clusters(df["text"], labels, top_n=5)
    for c, name in enumerate(names):
        assert len(terms[c]) == 5
        assert all(t in SPECIALTIES[name] for t in terms[c]), (name, terms[c])
        assert not set(terms[c]) & set(FILLER)


def test_labels_drop_stop_words_numbers_and_short_tokens():
    texts = ["Patient reports chest pain 2024 bp ok", "pt denies chest pain 120 mg", "knee brace fitted 3x"]
    terms = label_clusters(texts, [0, 0, 1], top_n=10)
    assert "chest pain" in terms[0]
    flat = {w for ts in terms.values() for t in ts for w in t.split()}
    assert not flat & {"patient", "reports", "pt", "denies", "mg", "2024", "120", "bp", "ok"}


def test_central_examples_are_closest_to_the_centroid():
    X = np.array([[1, 0], [1, 0.1], [1, -0.1], [1, 0.6], [1, -0.6], [0, 1], [0.1, 1]], dtype=np.float32)
    central = central_examples(X, [0, 0, 0, 0, 0, 1, 1], n=3)
    assert central[0][0] == 0 and sorted(central[0][1:]) == [1, 2]
    assert sorted(central[1]) == [5, 6]


def test_compare_to_corpus_finds_the_over_represented_value():
    df = synthetic_notes(300, seed=2)[["specialty", "site", "age", "visit_date", "note_id"]]
    mask = ((df["site"] == "east") & (np.arange(300) % 5 != 0)) | (np.arange(300) % 7 == 0)
    cmp = compare_to_corpus(mask.to_numpy(), df)
    site = cmp[cmp["column"] == "site"]
    assert site.sort_values("lift").iloc[-1]["value"] == "east"
    assert site["lift"].max() > 1.5
    assert "note_id" not in set(cmp["column"])  # near-unique ids are skipped
    age = cmp[cmp["column"] == "age"].iloc[0]
    assert age["kind"] == "numeric" and age["mean_overall"] == pytest.approx(df["age"].mean())
    # positions work like a mask; missing values are their own value
    df.loc[:9, "site"] = None
    by_pos = compare_to_corpus(np.arange(10), df[["site"]])
    assert by_pos.iloc[0]["value"] == "(missing)" and by_pos.iloc[0]["share_in_selection"] == 1.0


def test_compare_to_corpus_counts_every_value_like_a_counter():
    """The oracle: collections.Counter over the values (missing as "(missing)"); rows ordered by count in
    the selection, then by count overall, then by first appearance; numbers and booleans keep their type."""
    from collections import Counter

    rng = np.random.default_rng(4)
    n = 400
    df = pd.DataFrame({"ward": rng.choice(["a", "b", "c", None, "d"], size=n, p=[0.3, 0.3, 0.2, 0.1, 0.1]),
                       "grade": rng.integers(1, 4, size=n), "urgent": rng.random(n) < 0.3})
    mask = rng.random(n) < 0.35
    cmp = compare_to_corpus(mask, df, {"grade": "categorical"}, top_n=None)
    for column in df.columns:
        values = ["(missing)" if pd.isna(v) else v for v in df[column].tolist()]
        overall, inside = Counter(values), Counter(v for v, m in zip(values, mask) if m)
        first_seen = {v: i for i, v in reversed(list(enumerate(values)))}
        expected = sorted(overall, key=lambda v: (-inside[v], -overall[v], first_seen[v]))
        rows = cmp[cmp["column"] == column]
        assert rows["value"].tolist() == expected and [type(v) for v in rows["value"]] == [type(v) for v in expected]
        assert rows["count_in_selection"].tolist() == [inside[v] for v in expected]
        assert rows["share_overall"].tolist() == pytest.approx([overall[v] / n for v in expected])
        assert rows["share_in_selection"].tolist() == pytest.approx([inside[v] / mask.sum() for v in expected])
    assert len(compare_to_corpus(mask, df, {"grade": "categorical"}, top_n=2).query("column == 'ward'")) == 2


def test_cluster_summary_reports_size_terms_and_metadata():
    df = synthetic_notes(120, seed=3)
    labels = np.where(df["specialty"] == "urology", 0, np.where(df["specialty"] == "cardiology", 1, -1))
    summary = cluster_summary(labels, df[["specialty", "age"]], terms={0: ["bladder"]}, examples={0: [3]})
    assert summary["cluster"].tolist() == [0, 1, -1]  # noise shown, last
    first = summary.iloc[0]
    assert first["size"] == 30 and first["terms"] == ["bladder"] and first["examples"] == [3]
    assert first["specialty_top"] == "urology" and first["specialty_lift"] == pytest.approx(4.0)
    assert summary.iloc[2]["noise"] and "age_median" in summary


def test_cluster_names_are_short_and_readable():
    from core.clusters import cluster_names

    names = cluster_names({0: ["chest", "chest palpitations", "angina", "ecg"], 1: [], -1: ["misc"]})
    assert names == {0: "0: chest palpitations angina", 1: "1", -1: "noise"}


# ---------------------------------------------------------------- on a corpus in the store
@pytest.fixture()
def notes_store(db_path, models_dir, synthetic_df):
    from core.corpus import ingest_frame
    from core.store import Store

    store = Store(db_path)
    ingest_frame(store, synthetic_df, "notes", "text", "note_id")
    return store


def test_cluster_corpus_is_stored_cached_and_loads_back(notes_store, monkeypatch):
    import core.clusters as clusters
    from core.space import EmbeddingSpace
    from core.clusters import cluster_corpus, latest_clustering, load_clustering

    opts = ClusterOptions(encoder="tiny", method="kmeans", k=4)
    first = cluster_corpus(notes_store, "notes", opts)
    assert set(first) == {"clustering", "n_clusters", "noise", "labels", "seconds", "embedding"}
    assert (first["n_clusters"], first["noise"]) == (4, 0)
    assert sorted(first["labels"]) == ["0", "1", "2", "3"] and all(first["labels"].values())

    work = [record_calls(monkeypatch, owner, name) for owner, name in
            [(EmbeddingSpace, "load"), (clusters, "cluster_embeddings"), (clusters, "label_clusters")]]
    again = cluster_corpus(notes_store, "notes", opts)
    assert again["clustering"] == first["clustering"] and again["labels"] == first["labels"]
    assert work == [[], [], []]  # answered from the store: no vectors, no clustering, no labelling
    assert len(notes_store.runs(kind="cluster")) == 1

    loaded = load_clustering(notes_store, first["clustering"])
    assert loaded.labels.shape == (120,) and loaded.labels.dtype == np.int64
    assert sorted(np.unique(loaded.labels).tolist()) == [0, 1, 2, 3]
    assert np.all(np.diff(np.bincount(loaded.labels)) <= 0)  # numbered by size
    assert {str(c): t for c, t in loaded.terms.items()} == first["labels"]
    for c, ords in loaded.examples.items():
        assert len(ords) == 3 and all(loaded.labels[o] == c for o in ords)
    assert loaded.params | {"encoder": "tiny"} == {"method": "kmeans", "k": 4, "seed": 42, "encoder": "tiny",
                                                   "version": 1}
    run = notes_store.runs(kind="cluster")[0]
    assert run["inputs"]["data_hash"] and run["inputs"]["embedding"]["fingerprint"]
    assert latest_clustering(notes_store, "notes", "tiny").id == first["clustering"]
    assert latest_clustering(notes_store, "notes", "minilm") is None  # never clustered with that encoder


def test_defaults_and_noise_on_the_store(notes_store):
    from core.clusters import cluster_corpus, load_clustering

    result = cluster_corpus(notes_store, "notes", ClusterOptions(encoder="tiny"))  # HDBSCAN, size scaled to 120
    loaded = load_clustering(notes_store, result["clustering"])
    assert loaded.params["min_cluster_size"] == default_min_cluster_size(120)
    assert result["noise"] == int((loaded.labels == -1).sum())
    assert result["n_clusters"] == loaded.labels.max() + 1
    assert ("-1" in result["labels"]) == (result["noise"] > 0)  # noise is a labelled group, never dropped
    # the same effective settings, asked for explicitly, are the same clustering
    explicit = ClusterOptions(encoder="tiny", min_cluster_size=default_min_cluster_size(120))
    assert cluster_corpus(notes_store, "notes", explicit)["clustering"] == result["clustering"]


@pytest.mark.parametrize("opts, message", [
    (ClusterOptions(encoder="tiny", method="kmeans", k=-1), "must be >= 0"),
    (ClusterOptions(encoder="tiny", min_cluster_size=1), "at least 2"),
    (ClusterOptions(encoder="tiny", method="dbscan"), "unknown clustering method"),
    (ClusterOptions(encoder="tiny", method="kmeans", k=500), "cannot make 500 clusters of 120 notes"),
])
def test_bad_cluster_options_are_refused_and_store_nothing(notes_store, opts, message):
    from core.clusters import cluster_corpus

    with pytest.raises(ValueError, match=message):
        cluster_corpus(notes_store, "notes", opts)
    assert notes_store.runs(kind="cluster") == []


def test_cli_cluster_prints_exact_keys(notes_store, db_path, models_dir):
    from tests.test_cli import notespace

    env = {"NOTESPACE_MODELS": str(models_dir)}
    out = notespace("cluster", "--corpus", "notes", "--encoder", "tiny", "--method", "kmeans", "--k", "3",
                    "--seed", "1", db=db_path, env_extra=env)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert set(result) == {"clustering", "n_clusters", "noise", "labels", "seconds", "embedding"}
    assert result["n_clusters"] == 3 and result["noise"] == 0 and sorted(result["labels"]) == ["0", "1", "2"]
    assert "clusters" in out.stderr  # progress on stderr, never in the JSON


def test_cli_cluster_bad_input_is_one_line(notes_store, db_path, capsys):
    from core.cli import main  # in-process: the error path needs no second interpreter start-up

    assert main(["--db", str(db_path), "cluster", "--corpus", "notes", "--encoder", "tiny", "--k", "-2",
                 "--method", "kmeans"]) == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err.strip() == ("notespace cluster: error: --min-cluster-size and --k must be >= 0 "
                                                 "(0 = scaled to the corpus size)")


def test_notes_outside_the_sample_join_their_nearest_sample_notes_cluster():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16)) * 5
    truth = np.arange(300) % 3
    X = (centres[truth] + rng.normal(size=(300, 16))).astype(np.float32)
    rows = np.arange(0, 300, 5)  # sorted sample rows
    sample_labels = truth[rows].copy()
    sample_labels[:3] = -1  # a few noise notes in the sample are outvoted by their cluster mates
    labels = _join_neighbours(X, rows, sample_labels, seed=0)
    np.testing.assert_array_equal(labels[rows], sample_labels)
    rest = np.setdiff1d(np.arange(300), rows)
    np.testing.assert_array_equal(labels[rest], truth[rest])


def _vote_oracle(X, rows, sample_labels, k=10):
    """sklearn's brute-force cosine kNN over the sample, then a plain count per label: for each row
    outside the sample, the labels with the most votes, and the label of its nearest sample note."""
    from collections import Counter

    from sklearn.neighbors import NearestNeighbors

    rest = np.setdiff1d(np.arange(len(X)), rows)
    idx = NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute").fit(X[rows]).kneighbors(
        X[rest], return_distance=False)
    winners = []
    for near in idx:
        votes = Counter(sample_labels[near].tolist())
        winners.append({label for label, count in votes.items() if count == max(votes.values())})
    return rest, winners, sample_labels[idx[:, 0]]


def test_joining_the_sample_is_a_k10_majority_vote_with_ties_to_the_nearest():
    """Random labels on random points: many votes are tied or won by one, so the vote count, k and the
    tie-break all show. One sample note far from every other holds the highest label and wins no vote."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 8))
    X[:-1, 0] = np.abs(X[:-1, 0])
    X[-1] = 0
    X[-1, 0] = -50.0  # cosine: alone in its direction
    rows = np.r_[np.arange(0, 399, 4), 399]
    sample_labels = rng.integers(-1, 3, len(rows))
    sample_labels[-1] = 7
    labels = _join_neighbours(X.astype(np.float32), rows, sample_labels, seed=3)
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels[rows], sample_labels)
    rest, winners, nearest = _vote_oracle(X, rows, sample_labels)
    assert all(label in best for label, best in zip(labels[rest], winners))  # a majority label, never 7
    nearest_tied = [len(best) > 1 and near in best for best, near in zip(winners, nearest)]
    assert sum(nearest_tied) > 20  # the data has ties for the rule to break
    np.testing.assert_array_equal(labels[rest][nearest_tied], nearest[nearest_tied])


def test_clusters_are_renumbered_by_size_with_ties_by_old_id():
    """pandas as the oracle: sizes counted, sorted by size (largest first) then old id; noise stays -1."""
    from core.clusters import _by_size

    old = np.random.default_rng(2).permutation(np.repeat([-1, 0, 3, 9, 12, 5], [40, 60, 100, 150, 100, 7]))
    sizes = pd.Series(old[old >= 0]).value_counts()
    order = sorted(sizes.index, key=lambda c: (-sizes[c], c))  # 9, 3, 12 (as many as 3), 0, 5
    expected = pd.Series(old).map(dict(zip(order, range(len(order)))) | {-1: -1}).to_numpy()
    renumbered = _by_size(old)
    assert renumbered.dtype == np.int64
    np.testing.assert_array_equal(renumbered, expected)
    np.testing.assert_array_equal(_by_size(np.array([-1, -1])), [-1, -1])
    assert _by_size(np.zeros(0, dtype=np.int64)).shape == (0,)
