"""Labels made on the map: stored, replaced, cleared; label columns; few-shot from map labels."""

from __future__ import annotations

import numpy as np
import pytest

from core.labels import (
    add_labels, clear_labels, cluster_column, get_labels, label_columns, label_series, label_sets,
    predict_from_labels,
)


@pytest.fixture()
def store(db_path, models_dir, synthetic_df):
    from core.corpus import ingest_frame
    from core.store import Store

    s = Store(db_path)
    ingest_frame(s, synthetic_df, "notes", "text", "note_id")
    return s


def test_labels_round_trip_replace_and_clear(store):
    assert add_labels(store, "notes", "triage", [3, 1, 2, 2], "urgent") == 3  # duplicates count once
    assert add_labels(store, "notes", "triage", [2, 7], " routine ") == 2  # relabelling note 2 replaces its label
    got = get_labels(store, "notes", "triage")
    assert got["ord"].tolist() == [1, 2, 3, 7]
    assert got["label"].tolist() == ["urgent", "routine", "urgent", "routine"]
    add_labels(store, "notes", "other", [1], "x")
    assert label_sets(store, "notes") == ["other", "triage"]

    series = label_series(store, "notes", "triage")
    assert len(series) == 120 and series.index.name == "ord"
    assert series[2] == "routine" and series[0] is None and series.notna().sum() == 4

    assert clear_labels(store, "notes", "triage", ords=[1]) == 1
    assert clear_labels(store, "notes", "triage", label="routine") == 2
    assert get_labels(store, "notes", "triage")["ord"].tolist() == [3]
    assert clear_labels(store, "notes", "triage") == 1
    assert get_labels(store, "notes", "triage").empty
    assert get_labels(store, "notes", "other")["ord"].tolist() == [1]  # other sets untouched


@pytest.mark.parametrize("label_set, ords, label, message", [
    ("triage", [0, 120], "x", "between 0 and 119"),
    ("triage", [-1], "x", "between 0 and 119"),
    ("triage", [0], "  ", "a label needs"),
    ("", [0], "x", "label set needs"),
])
def test_bad_labels_are_refused(store, label_set, ords, label, message):
    with pytest.raises(ValueError, match=message):
        add_labels(store, "notes", label_set, ords, label)
    assert label_sets(store, "notes") == []


def test_label_columns_hold_clusters_and_map_labels(store):
    from core.clusters import cluster_corpus, cluster_names
    from core.options import ClusterOptions

    assert cluster_column(store, "notes", "tiny") is None and label_columns(store, "notes", "tiny") == {}
    result = cluster_corpus(store, "notes", ClusterOptions(encoder="tiny", method="kmeans", k=3))
    add_labels(store, "notes", "triage", [0, 1], "urgent")
    columns = label_columns(store, "notes", "tiny")
    assert list(columns) == ["cluster", "map: triage"]
    clusters = columns["cluster"]
    assert len(clusters) == 120 and clusters.name == "cluster"
    names = cluster_names({int(c): terms for c, terms in result["labels"].items()})
    assert set(clusters) == set(names.values()) and clusters.str.match(r"^[0-2]: \w+").all()
    assert columns["map: triage"].notna().sum() == 2


def test_predict_from_map_labels_and_suggest_next(store, synthetic_df):
    cardio = np.flatnonzero(synthetic_df["specialty"] == "cardiology")[:6]
    uro = np.flatnonzero(synthetic_df["specialty"] == "urology")[:6]
    add_labels(store, "notes", "spec", cardio, "cardio")
    with pytest.raises(ValueError, match="two different classes"):
        predict_from_labels(store, "notes", "tiny", "spec")
    add_labels(store, "notes", "spec", uro, "uro")
    preds = predict_from_labels(store, "notes", "tiny", "spec", n_suggest=5)
    assert preds.predicted.name == "predicted" and len(preds.predicted) == 120
    assert set(preds.predicted) <= {"cardio", "uro"}
    assert (preds.predicted.iloc[cardio] == "cardio").mean() >= 0.5  # labelled notes mostly predicted as labelled
    counts = preds.counts().set_index("class")
    assert counts["labelled"].to_dict() == {"cardio": 6, "uro": 6} and counts["predicted"].sum() == 120
    assert len(preds.suggestions) == 5 and not set(preds.suggestions) & (set(cardio) | set(uro))


def test_class_counts_agree_with_the_hand_labels_when_the_classifier_disagrees(db_path, models_dir, synthetic_df):
    """Two notes with the same text get the same vector: labelled differently, one of them is predicted
    otherwise, and the table must still count it under the label it was given."""
    from core.corpus import ingest_frame
    from core.store import Store

    notes = synthetic_df.copy()
    notes.loc[1, "text"] = notes.loc[0, "text"]
    store = Store(db_path)
    ingest_frame(store, notes, "twins", "text", "note_id")
    add_labels(store, "twins", "spec", [0, 2, 3, 4], "a")
    add_labels(store, "twins", "spec", [1, 5, 6], "b")
    preds = predict_from_labels(store, "twins", "tiny", "spec")
    assert preds.predicted[0] == preds.predicted[1]  # the twins cannot both be predicted right
    counts = preds.counts().set_index("class")
    assert counts["labelled"].to_dict() == {"a": 4, "b": 3}
    assert counts["predicted"].sum() == 120
