"""Clusters: planted clusters recovered, c-TF-IDF labels, central notes, corpus comparison."""

from __future__ import annotations

import datetime
import json
import statistics
import time
import warnings
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score
from sklearn.neighbors import NearestNeighbors

import core.clusters as clusters
import core.embed as embed
from core import projection
from core.clusters import (
    _by_size, _join_neighbours, central_examples, cluster_corpus, cluster_embeddings, cluster_names, cluster_summary,
    column_kind, compare_to_corpus, default_k, default_min_cluster_size, label_clusters, latest_clustering,
    load_clustering,
)
from core.corpus import ingest_frame
from core.embed import embed_corpus
from core.encoders import get_encoder
from core.errors import UserError
from core.maps import project_corpus
from core.options import ClusterOptions, EmbedOptions, ProjectOptions
from core.space import EmbeddingSpace, remembered
from core.store import Store, StoreError
from sample_data.synthetic import FILLER, SPECIALTIES, synthetic_notes
from tests.conftest import record_calls

# We hand UMAP our own kNN graph; its note that `transform` is then unavailable is expected.
pytestmark = pytest.mark.filterwarnings("ignore:precomputed_knn")


def _planted(n=600, centres=5, d=64, seed=0, spread=0.5):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % centres
    C = rng.normal(size=(centres, d))
    return (C[y] + spread * rng.normal(size=(n, d))).astype(np.float32), y


@pytest.mark.parametrize("method", ["hdbscan", "kmeans"])
def test_planted_clusters_are_recovered(method):
    X, y = _planted()
    labels = cluster_embeddings(X, ClusterOptions(method=method, k=5))
    # Stated bound: adjusted Rand index > 0.8 (these well-separated blobs give 1.0 in practice).
    assert adjusted_rand_score(y, labels) > 0.8
    sizes = np.bincount(labels[labels >= 0])
    assert np.all(np.diff(sizes) <= 0)  # renumbered by size, largest first


@pytest.mark.parametrize("method", ["hdbscan", "kmeans"])
def test_no_note_and_one_note(method):
    none = cluster_embeddings(np.zeros((0, 8)), ClusterOptions(method=method))
    assert none.shape == (0,) and none.dtype == np.int64
    one = cluster_embeddings(np.ones((1, 8)), ClusterOptions(method=method))
    assert one.tolist() == [0] and one.dtype == np.int64


def test_kmeans_makes_the_default_k_or_as_many_clusters_as_notes():
    X, _ = _planted(n=200, centres=10)
    assert len(np.unique(cluster_embeddings(X, ClusterOptions(method="kmeans")))) == default_k(200) == 10
    five = cluster_embeddings(X[:5], ClusterOptions(method="kmeans", k=5))
    assert sorted(five.tolist()) == [0, 1, 2, 3, 4]  # k = n: every note its own cluster
    with pytest.raises(UserError) as refused:
        cluster_embeddings(X[:5], ClusterOptions(method="kmeans", k=6))
    assert str(refused.value) == "cannot make 6 clusters of 5 notes"
    with pytest.raises(UserError) as refused:
        cluster_embeddings(X, ClusterOptions(method="dbscan"))
    assert str(refused.value) == "unknown clustering method 'dbscan' (hdbscan or kmeans)"


def test_hdbscan_needs_room_for_two_clusters_and_makes_none_smaller_than_asked():
    """Two tight groups of 10: with min_cluster_size 10 they are two clusters; one note fewer and there is
    no room for two, so every note is one group (no noise). Six groups of 12 with min_cluster_size 15:
    no cluster smaller than 15; with 5, each group is its own cluster."""
    X, y = _planted(n=20, centres=2, d=32, spread=0.2, seed=2)
    assert adjusted_rand_score(y, cluster_embeddings(X, ClusterOptions(min_cluster_size=10))) == 1.0
    one_group = cluster_embeddings(X[:19], ClusterOptions(min_cluster_size=10))
    assert one_group.tolist() == [0] * 19 and one_group.dtype == np.int64
    X, y = _planted(n=72, centres=6, d=32, spread=0.3, seed=1)
    coarse = cluster_embeddings(X, ClusterOptions(min_cluster_size=15))
    assert np.bincount(coarse[coarse >= 0]).min() >= 15
    assert adjusted_rand_score(y, cluster_embeddings(X, ClusterOptions(min_cluster_size=5))) == 1.0


@pytest.mark.parametrize("method", ["hdbscan", "kmeans"])
def test_the_seed_makes_a_clustering_reproducible(method):
    """Points without structure, where any randomness shows: the same seed gives the same labels."""
    X = np.random.default_rng(0).normal(size=(300, 16)).astype(np.float32)
    opts = ClusterOptions(method=method, min_cluster_size=5, k=8, seed=1)
    first = cluster_embeddings(X, opts)
    np.testing.assert_array_equal(cluster_embeddings(X, opts), first)
    assert not np.array_equal(cluster_embeddings(X, opts.replace(seed=2)), first)


def test_hdbscan_sees_a_seeded_5d_cosine_umap_and_large_corpora_a_sample(monkeypatch):
    """The reduction HDBSCAN sees (module docstring): 5-D, cosine, packed tight (min_dist 0), seeded.
    Above SAMPLE_ABOVE notes it clusters the maps' own sample (projection.sample_rows), with
    min_cluster_size scaled to the sample (at least 5); at exactly SAMPLE_ABOVE notes, all of them."""
    reductions = record_calls(monkeypatch, projection, "umap_embed")
    X, y = _planted(n=240, centres=4, d=32)
    cluster_embeddings(X, ClusterOptions(min_cluster_size=20, seed=7))
    (args, kwargs), = reductions
    assert args[1] == 5 and kwargs["metric"] == "cosine" and kwargs["min_dist"] == 0.0 and kwargs["seed"] == 7

    monkeypatch.setattr(projection, "SAMPLE_ABOVE", 200)
    monkeypatch.setattr(projection, "SAMPLE_SIZE", 120)
    calls = record_calls(monkeypatch, clusters, "cluster_embeddings")
    for mcs, sample_mcs in [(20, 10), (6, 5)]:  # 20 * 120 / 240 = 10; 6 * 120 / 240 = 3, raised to 5
        calls.clear()
        labels = clusters.cluster_embeddings(X, ClusterOptions(min_cluster_size=mcs, seed=7))
        assert len(calls) == 2  # the corpus, then its sample
        sample, sample_opts = calls[1][0]
        np.testing.assert_array_equal(sample, X[projection.sample_rows(240, 120, 7)])
        assert sample_opts.min_cluster_size == sample_mcs and sample_opts.seed == 7
        assert len(labels) == 240 and adjusted_rand_score(y, labels) == 1.0
    calls.clear()
    clusters.cluster_embeddings(X[:200], ClusterOptions(min_cluster_size=20))
    assert len(calls) == 1  # 200 notes: no sample


def test_defaults_scale_with_corpus_size():
    assert default_min_cluster_size(100) == 5 and default_min_cluster_size(10_000) == 100
    assert default_min_cluster_size(100_000) == default_min_cluster_size(200_000) == 1000  # the cap
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


def test_central_examples_rank_every_note_with_ties_by_row():
    """Notes that are copies of three directions (one-hot, so every cosine is exact): each cluster's
    centroid leans to its most frequent direction, so the oracle order is by how often a note's direction
    occurs in its cluster, then by row. Clusters of 40 and 20 notes, many tied: an unstable sort shows."""
    rng = np.random.default_rng(5)
    direction = rng.choice(3, size=60, p=[0.5, 0.3, 0.2])
    X = np.eye(3, dtype=np.float32)[direction]
    labels = np.repeat([0, 1], [40, 20])
    central = central_examples(X, labels, n=60)
    for c in (0, 1):
        rows = np.flatnonzero(labels == c)
        seen = Counter(direction[rows].tolist())
        assert central[c] == sorted(rows.tolist(), key=lambda r: (-seen[direction[r]], r))


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


def _counter_order(values, mask):
    """The oracle for a categorical column: collections.Counter over the values (missing as "(missing)");
    values ordered by count in the selection, then by count overall, then by first appearance."""
    values = ["(missing)" if pd.isna(v) else v for v in values]
    overall, inside = Counter(values), Counter(v for v, m in zip(values, mask) if m)
    first_seen = {v: i for i, v in reversed(list(enumerate(values)))}
    return sorted(overall, key=lambda v: (-inside[v], -overall[v], first_seen[v])), overall, inside


def test_compare_to_corpus_counts_every_value_like_a_counter():
    """Rows as the Counter oracle orders them; numbers and booleans keep their type."""
    rng = np.random.default_rng(4)
    n = 400
    df = pd.DataFrame({"ward": rng.choice(["a", "b", "c", None, "d"], size=n, p=[0.3, 0.3, 0.2, 0.1, 0.1]),
                       "grade": rng.integers(1, 4, size=n), "urgent": rng.random(n) < 0.3,
                       "code": rng.choice([f"c{i}" for i in range(30)], size=n)})
    mask = rng.random(n) < 0.35
    cmp = compare_to_corpus(mask, df, {"grade": "categorical"}, top_n=None)
    for column in df.columns:
        expected, overall, inside = _counter_order(df[column].tolist(), mask)
        rows = cmp[cmp["column"] == column]
        assert rows["value"].tolist() == expected and [type(v) for v in rows["value"]] == [type(v) for v in expected]
        assert rows["count_in_selection"].tolist() == [inside[v] for v in expected]
        assert rows["share_overall"].tolist() == pytest.approx([overall[v] / n for v in expected])
        assert rows["share_in_selection"].tolist() == pytest.approx([inside[v] / mask.sum() for v in expected])
    assert len(compare_to_corpus(mask, df, {"grade": "categorical"}, top_n=2).query("column == 'ward'")) == 2
    assert len(compare_to_corpus(mask, df[["code"]])) == 10  # the 10 most common values by default


def test_values_tied_in_both_counts_are_listed_as_first_seen():
    """40 codes seen 4, 5 or 6 times, 0, 1 or 2 of them selected, in shuffled rows: most values tie with
    others on both counts, and only the order of first appearance decides (an unstable sort shows)."""
    rng = np.random.default_rng(6)
    codes = np.repeat([f"c{i}" for i in range(40)], [4 + i * 7 % 3 for i in range(40)])
    picked = np.concatenate([np.arange(4 + i * 7 % 3) < i * 5 % 3 for i in range(40)])
    order = rng.permutation(len(codes))
    codes, picked = codes[order], picked[order]
    cmp = compare_to_corpus(picked, pd.DataFrame({"code": codes}), top_n=None)
    assert cmp["value"].tolist() == _counter_order(codes.tolist(), picked)[0]


COMPARISON_COLUMNS = ["column", "kind", "value", "count_in_selection", "share_in_selection", "share_overall", "lift",
                      "mean_in_selection", "mean_overall", "median_in_selection", "median_overall"]


def test_compare_to_corpus_numbers_and_dates_against_plain_python():
    """Columns the store typed as numbers or dates, read as an export gives them (text, with an "n/a" and
    a "not a date"): count, mean and median of the valid values, by statistics on the parsed values."""
    ages = ["34", "n/a", "51", "29", "77", "40", "63", "18", "55", "45"]
    dates = ["2024-01-05", "2024-03-01", "not a date", "2023-12-31", "2024-02-10", "2024-07-04", "2024-01-20",
             "2024-05-05", "2024-02-29", "2024-04-01"]
    df = pd.DataFrame({"age": ages, "seen": dates})
    mask = np.array([True, True, True, False, True, False, True, False, True, False])
    cmp = compare_to_corpus(mask, df, {"age": "numeric", "seen": "date"})
    assert list(cmp.columns) == COMPARISON_COLUMNS and cmp["column"].tolist() == ["age", "seen"]

    def valid(parse, values):
        return [parse(v) for v in values if v not in ("n/a", "not a date")]

    for column, kind, parse in [("age", "numeric", float), ("seen", "date", datetime.date.fromisoformat)]:
        row = cmp[cmp["column"] == column].iloc[0]
        inside = valid(parse, [v for v, m in zip(df[column], mask) if m])
        everywhere = valid(parse, df[column])
        assert row["kind"] == kind and row["value"] is None and row["count_in_selection"] == len(inside)
        assert pd.isna(row["share_in_selection"]) and pd.isna(row["lift"])
        median_in, median_all = row["median_in_selection"], row["median_overall"]
        if kind == "date":
            median_in, median_all = median_in.date(), median_all.date()
        else:
            assert row["mean_in_selection"] == pytest.approx(statistics.mean(inside))
            assert row["mean_overall"] == pytest.approx(statistics.mean(everywhere))
        # odd counts (5 and 9 valid values), so the median is a value, never a midpoint
        assert (median_in, median_all) == (statistics.median(inside), statistics.median(everywhere))
    assert list(compare_to_corpus(mask, df[[]]).columns) == COMPARISON_COLUMNS  # no columns, same shape


def test_near_unique_columns_are_skipped_from_20_notes_on():
    """An id column (over half its values distinct) says nothing about a selection; a column with exactly
    half its values distinct is kept, and so is anything in fewer than 20 notes. Columns after a skipped
    one are still compared."""
    n = 20
    df = pd.DataFrame({"note_id": [f"n{i % 11}" for i in range(n)], "ward": [f"w{i % 10}" for i in range(n)]})
    mask = np.arange(n) < 5
    assert set(compare_to_corpus(mask, df)["column"]) == {"ward"}
    assert set(compare_to_corpus(mask[:19], df.iloc[:19])["column"]) == {"note_id", "ward"}


def test_an_empty_selection_is_compared_without_warnings():
    """Nothing selected (a filter that matches no note): counts 0, shares and lifts NaN, no division warnings."""
    df = synthetic_notes(60, seed=4)[["specialty", "age"]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cmp = compare_to_corpus(np.zeros(60, dtype=bool), df)
    specialty = cmp[cmp["column"] == "specialty"]
    assert specialty["count_in_selection"].eq(0).all() and len(specialty) == df["specialty"].nunique()
    assert specialty["share_in_selection"].isna().all() and specialty["lift"].isna().all()
    assert specialty["share_overall"].sum() == pytest.approx(1.0)


def test_cluster_summary_reports_size_terms_and_metadata():
    df = synthetic_notes(120, seed=3)
    labels = np.where(df["specialty"] == "urology", 0, np.where(df["specialty"] == "cardiology", 1, -1))
    summary = cluster_summary(labels, df[["specialty", "age"]], terms={0: ["bladder"]}, examples={0: [3]})
    assert summary["cluster"].tolist() == [0, 1, -1]  # noise shown, last
    first = summary.iloc[0]
    assert first["size"] == 30 and first["terms"] == ["bladder"] and first["examples"] == [3]
    assert first["specialty_top"] == "urology" and first["specialty_lift"] == pytest.approx(4.0)
    assert summary["noise"].tolist() == [False, False, True] and summary["size"].tolist() == [30, 30, 60]
    assert summary["share"].tolist() == pytest.approx([0.25, 0.25, 0.5])
    assert first["specialty_share"] == 1.0 and first["specialty_overall"] == pytest.approx(0.25)
    for row in summary.itertuples():
        assert row.age_median == np.median(df["age"][labels == row.cluster])
    # a number column the store keeps as categories is summarised as categories
    by_kind = cluster_summary(labels, df[["age"]], kinds={"age": "categorical"})
    assert "age_top" in by_kind and "age_median" not in by_kind
    top = df["age"][labels == 0].value_counts()
    assert by_kind.iloc[0]["age_share"] == pytest.approx(top.iloc[0] / 30)


def test_column_kind_is_the_stores_else_read_from_the_dtype():
    kinds = {"grade": "categorical"}
    assert column_kind(pd.Series([1, 2], name="grade"), kinds) == "categorical"
    assert column_kind(pd.Series([1, 2], name="age"), kinds) == "numeric"  # not in the store's kinds
    assert column_kind(pd.Series(pd.to_datetime(["2024-01-05"]), name="seen"), kinds) == "date"
    assert column_kind(pd.Series([True, False], name="urgent")) == "categorical"
    assert column_kind(pd.Series(["a", "b"], name="ward")) == "categorical"


def test_cluster_names_are_short_and_readable():
    names = cluster_names({0: ["chest", "chest palpitations", "angina", "ecg"], 1: [], -1: ["misc"]})
    assert names == {0: "0: chest palpitations angina", 1: "1", -1: "noise"}


# ---------------------------------------------------------------- on a corpus in the store
@pytest.fixture()
def notes_store(db_path, models_dir, synthetic_df):
    store = Store(db_path)
    ingest_frame(store, synthetic_df, "notes", "text", "note_id")
    return store


def test_cluster_corpus_is_stored_cached_and_loads_back(notes_store, monkeypatch):
    opts = ClusterOptions(encoder="tiny", method="kmeans", k=4)
    first = cluster_corpus(notes_store, "notes", opts)
    assert set(first) == {"clustering", "n_clusters", "noise", "labels", "seconds", "embedding"}
    assert (first["n_clusters"], first["noise"]) == (4, 0)
    assert sorted(first["labels"]) == ["0", "1", "2", "3"] and all(first["labels"].values())

    work = [record_calls(monkeypatch, owner, name) for owner, name in
            [(embed, "corpus_space"), (EmbeddingSpace, "load"), (clusters, "cluster_embeddings"),
             (clusters, "label_clusters")]]
    again = cluster_corpus(notes_store, "notes", opts)
    assert again["clustering"] == first["clustering"] and again["labels"] == first["labels"]
    assert work == [[], [], [], []]  # answered from the store: no embedding step, vectors, clustering, labels
    assert len(notes_store.runs(kind="cluster")) == 1

    loaded = load_clustering(notes_store, first["clustering"])
    assert (loaded.corpus_id, loaded.encoder_id) == (notes_store.corpus("notes").id, "tiny")
    assert loaded.labels.shape == (120,) and loaded.labels.dtype == np.int64
    assert sorted(np.unique(loaded.labels).tolist()) == [0, 1, 2, 3]
    assert np.all(np.diff(np.bincount(loaded.labels)) <= 0)  # numbered by size
    assert {str(c): t for c, t in loaded.terms.items()} == first["labels"]
    for c, ords in loaded.examples.items():
        assert len(ords) == 3 and all(loaded.labels[o] == c for o in ords)
    assert loaded.params | {"encoder": "tiny"} == {"method": "kmeans", "k": 4, "seed": 42, "encoder": "tiny",
                                                   "version": 1}
    run, corpus = notes_store.runs(kind="cluster")[0], notes_store.corpus("notes")
    space = remembered(notes_store, corpus, "tiny")  # the oracle: what the store says the corpus was embedded in
    assert run["inputs"] == {"corpus_id": corpus.id, "data_hash": corpus.data_hash,
                             "embedding": space.cache_params(get_encoder(notes_store, "tiny"))}
    assert latest_clustering(notes_store, "notes", "tiny").id == first["clustering"]
    assert latest_clustering(notes_store, "notes", "minilm") is None  # never clustered with that encoder


def test_cluster_corpus_reports_progress_and_times_itself(notes_store, monkeypatch):
    """Progress from 0 to 1, never back: the embedding step within the first 30 %, then the clustering's
    own steps; a stored clustering says so. `seconds` is this call's time and the run's recorded seconds
    include the embedding step (both bounded by clocks read around the calls, not by thresholds)."""
    embedding_seconds = []
    original = embed.corpus_space

    def timed_corpus_space(*args, **kwargs):
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            embedding_seconds.append(time.perf_counter() - started)

    monkeypatch.setattr(embed, "corpus_space", timed_corpus_space)
    steps = []
    opts = ClusterOptions(encoder="tiny", method="kmeans", k=3)
    before = time.perf_counter()
    result = cluster_corpus(notes_store, "notes", opts, progress=lambda f, m="": steps.append((f, m)))
    elapsed = time.perf_counter() - before
    fractions = [f for f, _ in steps]
    assert fractions == sorted(fractions) and 0 <= fractions[0] and len(steps) > 4
    embedding = steps[:-3]
    assert embedding and all(f <= 0.3 for f, _ in embedding)
    assert any(m == "Loading the encoder 'tiny'…" for _, m in embedding)
    assert steps[-3:] == [(0.3, "clustering 120 notes (kmeans)"), (0.8, "labelling clusters"),
                          (1.0, "3 clusters, 0 noise notes")]
    assert 0 < result["seconds"] <= elapsed
    run = notes_store.runs(kind="cluster")[0]
    assert embedding_seconds[0] <= run["seconds"] <= result["seconds"] + 0.001

    steps.clear()
    before = time.perf_counter()
    again = cluster_corpus(notes_store, "notes", opts, progress=lambda f, m="": steps.append((f, m)))
    assert steps == [(1.0, f"clustering {result['clustering']} found in the store")]
    assert set(again) == set(result) and again["embedding"] == result["embedding"]
    assert 0 <= again["seconds"] <= time.perf_counter() - before


def test_too_few_notes_for_two_clusters_are_one_cluster(notes_store):
    result = cluster_corpus(notes_store, "notes", ClusterOptions(encoder="tiny", min_cluster_size=61))
    assert (result["n_clusters"], result["noise"]) == (1, 0) and list(result["labels"]) == ["0"]


def test_defaults_and_noise_on_the_store(notes_store):
    result = cluster_corpus(notes_store, "notes", ClusterOptions(encoder="tiny"))  # HDBSCAN, size scaled to 120
    loaded = load_clustering(notes_store, result["clustering"])
    assert loaded.params == {"method": "hdbscan", "min_cluster_size": default_min_cluster_size(120), "seed": 42,
                             "encoder": "tiny", "version": 1}  # no "sample": 120 notes are clustered whole
    assert result["noise"] == int((loaded.labels == -1).sum())
    assert result["n_clusters"] == loaded.labels.max() + 1
    assert ("-1" in result["labels"]) == (result["noise"] > 0)  # noise is a labelled group, never dropped
    # the same effective settings, asked for explicitly, are the same clustering
    explicit = ClusterOptions(encoder="tiny", min_cluster_size=default_min_cluster_size(120))
    assert cluster_corpus(notes_store, "notes", explicit)["clustering"] == result["clustering"]


@pytest.mark.parametrize("opts, message", [
    (ClusterOptions(encoder="tiny", method="kmeans", k=-1),
     "--min-cluster-size and --k must be >= 0 (0 = scaled to the corpus size)"),
    (ClusterOptions(encoder="tiny", min_cluster_size=1), "--min-cluster-size must be at least 2"),
    (ClusterOptions(encoder="tiny", method="dbscan"), "unknown clustering method 'dbscan' (hdbscan or kmeans)"),
    (ClusterOptions(encoder="tiny", method="kmeans", k=500), "cannot make 500 clusters of 120 notes"),
])
def test_bad_cluster_options_are_refused_and_store_nothing(notes_store, opts, message):
    with pytest.raises(UserError) as refused:
        cluster_corpus(notes_store, "notes", opts)
    assert str(refused.value) == message
    assert notes_store.runs(kind="cluster") == []


def test_each_effective_setting_is_its_own_clustering(notes_store):
    """k = 0 is KMeans with the default k for the corpus size, stored as that k; another k (or method) is
    another clustering, not the cached one."""
    scaled = cluster_corpus(notes_store, "notes", ClusterOptions(encoder="tiny", method="kmeans"))
    assert load_clustering(notes_store, scaled["clustering"]).params["k"] == default_k(120) == 8
    assert scaled["n_clusters"] == 8
    three = cluster_corpus(notes_store, "notes", ClusterOptions(encoder="tiny", method="kmeans", k=3))
    assert three["clustering"] != scaled["clustering"] and three["n_clusters"] == 3
    assert len(notes_store.runs(kind="cluster")) == 2


def test_a_missing_clustering_is_named_with_what_to_do(notes_store):
    with pytest.raises(StoreError) as missing:
        load_clustering(notes_store, 99)
    assert str(missing.value) == "no clustering with id 99; run `notespace cluster` first"


def test_the_latest_clustering_is_of_this_corpus_as_it_is_now(notes_store, synthetic_df):
    """Found past newer runs of other kinds; never another corpus's (even of the same notes); gone once the
    corpus is embedded differently, until it is clustered again."""
    kmeans = ClusterOptions(encoder="tiny", method="kmeans", k=3)
    first = cluster_corpus(notes_store, "notes", kmeans)["clustering"]
    project_corpus(notes_store, "notes", ProjectOptions(encoder="tiny", method="pca"))  # a newer run, not a clustering
    assert latest_clustering(notes_store, "notes", "tiny").id == first

    ingest_frame(notes_store, synthetic_df, "copy", "text", "note_id")  # the same notes under another name
    embed_corpus(notes_store, "copy", EmbedOptions(encoder="tiny"))
    assert notes_store.corpus("copy").data_hash == notes_store.corpus("notes").data_hash
    assert latest_clustering(notes_store, "copy", "tiny") is None

    embed_corpus(notes_store, "notes", EmbedOptions(encoder="tiny", max_length=16))  # another embedding space
    assert latest_clustering(notes_store, "notes", "tiny") is None
    again = cluster_corpus(notes_store, "notes", kmeans)["clustering"]
    assert again != first and latest_clustering(notes_store, "notes", "tiny").id == again


def test_a_large_corpus_is_clustered_on_a_sample_and_says_so(notes_store, monkeypatch):
    """Above SAMPLE_ABOVE notes HDBSCAN sees a sample and the rest join their neighbours' clusters: every
    note gets a label, and the run records the sample's size (KMeans, which sees every note, records none)."""
    monkeypatch.setattr(projection, "SAMPLE_ABOVE", 100)
    monkeypatch.setattr(projection, "SAMPLE_SIZE", 80)
    result = cluster_corpus(notes_store, "notes", ClusterOptions(encoder="tiny", min_cluster_size=10))
    loaded = load_clustering(notes_store, result["clustering"])
    assert loaded.params["sample"] == 80 and len(loaded.labels) == 120
    assert result["n_clusters"] == loaded.labels.max() + 1 and result["noise"] == (loaded.labels < 0).sum()
    kmeans = cluster_corpus(notes_store, "notes", ClusterOptions(encoder="tiny", method="kmeans", k=3))
    assert "sample" not in load_clustering(notes_store, kmeans["clustering"]).params
    monkeypatch.setattr(projection, "SAMPLE_ABOVE", 120)  # exactly SAMPLE_ABOVE notes: clustered whole
    whole = cluster_corpus(notes_store, "notes", ClusterOptions(encoder="tiny", min_cluster_size=11))
    assert "sample" not in load_clustering(notes_store, whole["clustering"]).params


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
    old = np.random.default_rng(2).permutation(np.repeat([-1, 0, 3, 9, 12, 5], [40, 60, 100, 150, 100, 7]))
    sizes = pd.Series(old[old >= 0]).value_counts()
    order = sorted(sizes.index, key=lambda c: (-sizes[c], c))  # 9, 3, 12 (as many as 3), 0, 5
    expected = pd.Series(old).map(dict(zip(order, range(len(order)))) | {-1: -1}).to_numpy()
    renumbered = _by_size(old)
    assert renumbered.dtype == np.int64
    np.testing.assert_array_equal(renumbered, expected)
    np.testing.assert_array_equal(_by_size(np.array([-1, -1])), [-1, -1])
    assert _by_size(np.zeros(0, dtype=np.int64)).shape == (0,)
