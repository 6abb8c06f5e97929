"""Clusters: planted clusters recovered, c-TF-IDF labels, central notes, corpus comparison."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from core.clusters import (
    central_examples, cluster_embeddings, cluster_summary, compare_to_corpus, default_k,
    default_min_cluster_size, label_clusters,
)
from core.options import ClusterOptions
from sample_data.synthetic import FILLER, SPECIALTIES, synthetic_notes

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


def test_cluster_summary_reports_size_terms_and_metadata():
    df = synthetic_notes(120, seed=3)
    labels = np.where(df["specialty"] == "urology", 0, np.where(df["specialty"] == "cardiology", 1, -1))
    summary = cluster_summary(labels, df[["specialty", "age"]], terms={0: ["bladder"]}, examples={0: [3]})
    assert summary["cluster"].tolist() == [0, 1, -1]  # noise shown, last
    first = summary.iloc[0]
    assert first["size"] == 30 and first["terms"] == ["bladder"] and first["examples"] == [3]
    assert first["specialty_top"] == "urology" and first["specialty_lift"] == pytest.approx(4.0)
    assert summary.iloc[2]["noise"] and "age_median" in summary
