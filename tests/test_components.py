"""Explore-page components: cross-filter charts, cluster panel and table, labelling panel (AppTest)."""

from __future__ import annotations

import base64
import json
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core.store import Store
from pages.components.clusters import cluster_labels
from pages.components.facets import TOP_N, _chart, facet_mask, filter_from_points
from sample_data.synthetic import synthetic_notes
from tests.conftest import settle

HERE = Path(__file__).resolve().parent


def _frame() -> pd.DataFrame:
    return synthetic_notes(120, seed=1).assign(ord=range(120))  # the frame harness_facets.py draws


def test_a_chart_selection_becomes_a_filter():
    assert filter_from_points([], "categorical") is None
    clicked = [{"customdata": "east", "point_index": 1}, {"customdata": ["north"]}]
    assert filter_from_points(clicked, "categorical") == {"values": ["east", "north"]}
    brushed = [{"customdata": [30.0, 35.0]}, {"customdata": [35.0, 40.0]}, {"customdata": [20.0, 25.0]}]
    assert filter_from_points(brushed, "numeric") == {"range": [20.0, 40.0]}
    days = [{"customdata": ["2024-02-01 00:00:00", "2024-03-01 00:00:00"]}]
    assert filter_from_points(days, "date") == {"range": ["2024-02-01 00:00:00", "2024-03-01 00:00:00"]}


def test_facet_mask_combines_filters():
    df = _frame()
    df.loc[0, "age"] = np.nan
    mask = facet_mask(df, {"site": {"values": ["east", "south"]}, "age": {"range": [30, 60]},
                           "visit_date": {"range": ["2024-03-01", "2024-09-01"]}, "not_a_column": {"values": ["x"]}})
    dates = df["visit_date"]
    expected = (df["site"].isin(["east", "south"]) & (df["age"] >= 30) & (df["age"] < 60)
                & (dates >= "2024-03-01") & (dates < "2024-09-01"))
    assert mask.tolist() == expected.tolist() and 0 < mask.sum() < 120
    assert facet_mask(df, {}).all()


def test_categorical_charts_count_the_top_values_then_other_like_a_counter():
    """The oracle: collections.Counter of the values as text (missing as "(missing)"); the TOP_N most
    common (ties: first seen) get a bar each, most common first, and the rest one "(other)" bar, last;
    filtering on "(other)" keeps exactly the rest; a selection's bars count its notes alone."""
    rng = np.random.default_rng(7)
    values = [*rng.choice([f"w{i}" for i in range(14)], size=500).tolist(), 1, "1", None, None, None]
    series = pd.Series(values, dtype=object, name="ward")
    text = ["(missing)" if v is None else str(v) for v in values]
    counts = Counter(text)
    first = {v: i for i, v in reversed(list(enumerate(text)))}
    top = sorted(counts, key=lambda v: (-counts[v], first[v]))[:TOP_N]
    shown = rng.random(len(values)) < 0.3
    everything, selection = _chart(series, "categorical", shown, None).data
    assert list(everything.y) == [*top, "(other)"]
    assert list(everything.x) == [counts[v] for v in top] + [sum(c for v, c in counts.items() if v not in top)]
    in_selection = Counter(t if t in top else "(other)" for t, s in zip(text, shown) if s)
    assert list(selection.x) == [in_selection[v] for v in [*top, "(other)"]]
    other = facet_mask(pd.DataFrame({"ward": series}), {"ward": {"values": ["(other)"]}}, {"ward": "categorical"})
    assert other.tolist() == [t not in top for t in text]
    few = _chart(pd.Series(["a", "b", None, "a"]), "categorical", None, None).data[0]
    assert list(few.y) == ["a", "b", "(missing)"] and list(few.x) == [2, 1, 1]  # no "(other)" bar


def test_cluster_labels_sit_at_cluster_medians_largest_first():
    frame = pd.DataFrame({"x": [0, 1, 2, 100, 10, 11, 12, 5], "y": [0, 0, 0, 0, 5, 5, 5, 50]})
    labels = np.array([0, 0, 0, 0, 1, 1, 1, -1])
    notes = cluster_labels(frame, labels, {0: "0: chest <b>pain</b> troponin angina", 1: "1: knee", -1: "noise"},
                           max_chars=12)
    assert [(a["x"], a["y"]) for a in notes] == [(1.5, 0.0), (11.0, 5.0)]  # median: the stray 100 is ignored
    assert [a["size"] for a in notes] == [4, 3]  # noise has no label
    assert notes[0]["text"] == "0: chest <b…"  # short, plain: the map draws it on a canvas, never as HTML


@pytest.fixture()
def facets_app():
    at = AppTest.from_file(str(HERE / "harness_facets.py"), default_timeout=60)
    at.run()
    assert not at.exception
    return at


def test_facet_filters_round_trip_across_reruns(facets_app):
    at, df = facets_app, _frame()
    assert len(at.get("plotly_chart")) == 4 and at.session_state["harness_mask"].all()
    at.session_state["facet_filter::site"] = {"values": ["east"]}
    at.session_state["facet_filter::age"] = {"range": [30, 60]}
    at.run()
    expected = ((df["site"] == "east") & df["age"].between(30, 59)).to_numpy()
    assert at.session_state["harness_mask"].tolist() == expected.tolist()
    assert f"{expected.sum()} of 120 notes pass" in at.caption[0].value
    at.run()  # state survives a rerun with no interaction
    assert at.session_state["harness_mask"].tolist() == expected.tolist()

    at.button(key="facet_clear::site").click().run()  # clear one column
    assert "facet_filter::site" not in at.session_state and "facet_filter::age" in at.session_state
    assert at.session_state["harness_mask"].tolist() == df["age"].between(30, 59).tolist()
    at.button(key="facet_clear_all").click().run()
    assert at.session_state["harness_mask"].all() and not at.caption


def _array(value) -> list:
    """A plotly array as a list (plotly 7 encodes numeric arrays as base64 `bdata`)."""
    if isinstance(value, dict):
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).tolist()
    return list(value)


def _bars(trace, field: str = "x") -> dict:
    """{category: value} of a horizontal bar trace."""
    return dict(zip(trace["customdata"], _array(trace[field] if field == "x" else trace["marker"][field])))


def test_charts_show_the_map_selection_against_all_notes(facets_app):
    at, df = facets_app, _frame()
    at.session_state["harness_selected"] = list(range(10))
    at.session_state["facet_filter::site"] = {"values": ["east"]}
    at.run()
    specialty, site = (json.loads(c.proto.spec) for c in at.get("plotly_chart")[:2])
    assert [t["name"] for t in site["data"]] == ["all notes", "shown"]
    assert _bars(site["data"][0]) == df["site"].value_counts().to_dict()
    # a chart's coloured bars: the map's selection within the *other* charts' filters
    first_ten = df.iloc[:10]["site"].value_counts()
    assert _bars(site["data"][1]) == first_ten.reindex(df["site"].unique(), fill_value=0).to_dict()
    picked = df.iloc[:10][df.iloc[:10]["site"] == "east"]["specialty"].value_counts()
    assert _bars(specialty["data"][1]) == picked.reindex(df["specialty"].unique(), fill_value=0).to_dict()
    # bars outside the chart's own filter fade
    opacity = _bars(site["data"][1], "opacity")
    assert opacity["east"] == 1.0 and opacity["north"] < 1.0
    assert at.session_state["harness_mask"].tolist() == (df["site"] == "east").tolist()  # selection never filters


@pytest.fixture()
def clusters_app(db_path, models_dir, synthetic_df):
    from core.corpus import ingest_frame
    from core.store import Store

    ingest_frame(Store(db_path), synthetic_df, "notes", "text", "note_id")
    at = AppTest.from_file(str(HERE / "harness_clusters.py"), default_timeout=120)
    at.run()
    assert not at.exception
    return at


def _select_cluster(at, cluster: int) -> list[int]:
    at.selectbox(key="clusters_focus").select(cluster).run()
    at.button(key="clusters_select").click().run()
    return at.session_state["explore_selected_ords"]


def _label(at, label: str) -> None:
    at.text_input(key="labelling_label").input(label).run()
    at.button(key="labelling_add").click().run()
    assert not at.exception


def test_computing_clusters_shows_its_progress_and_can_be_cancelled(clusters_app, db_path, monkeypatch):
    """Compute clusters runs in the background with a Cancel button; cancelled, no clustering is stored. The
    real clustering waits at its start until the test has pressed Cancel, so the job is surely running then."""
    from pages.components import clusters

    started, release, compute = threading.Event(), threading.Event(), clusters.cluster_corpus

    def held(*args, **kwargs):
        started.set()
        release.wait(60)
        return compute(*args, **kwargs)

    monkeypatch.setattr(clusters, "cluster_corpus", held)
    at = clusters_app
    at.radio(key="clusters_method").set_value("kmeans").run()
    at.button(key="clusters_compute").click().run()
    assert started.wait(60)
    (bar,) = at.get("progress")
    assert bar.proto.text.startswith("Clusters with k = ") and at.button(key="clusters_compute").disabled
    at.button(key="clusters_cancel").click().run()
    release.set()
    settle(at)
    assert any(i.value.startswith("Clusters with k = ") and i.value.endswith(": cancelled; no result was stored.")
               for i in at.info)
    assert at.session_state["harness_view"] is None and Store(db_path).runs("cluster") == []


def test_cluster_panel_then_label_from_the_map(clusters_app, synthetic_df):
    at = clusters_app
    assert at.session_state["harness_view"] is None and "No clusters yet" in at.caption[0].value
    at.radio(key="clusters_method").set_value("kmeans").run()
    at.number_input(key="clusters_k").set_value(4).run()
    at.button(key="clusters_compute").click().run()
    settle(at)
    assert not at.exception and "4 clusters and 0 noise notes" in at.success[0].value
    view = at.session_state["harness_view"]
    assert view.labels.shape == (120,) and set(view.names) == {0, 1, 2, 3}
    assert view.column().str.match(r"^[0-3](: \w+)?").all()
    table = at.dataframe[0].value
    assert table["notes"].sum() == 120 and "specialty" in table and "age (median)" in table
    assert len(view.examples[0]) == 3

    first = _select_cluster(at, 0)
    assert sorted(first) == np.flatnonzero(view.labels == 0).tolist()
    _label(at, "A")
    assert "Labelled" in at.success[0].value and "two different classes" in at.info[0].value
    assert at.session_state["harness_predicted"] is None
    second = _select_cluster(at, 1)
    _label(at, "B")
    predicted = at.session_state["harness_predicted"]
    assert predicted.name == "predicted" and len(predicted) == 120 and set(predicted) == {"A", "B"}
    counts = next(d.value for d in at.dataframe if "Predicted" in d.value)
    assert list(counts) == ["Label", "Labelled by hand", "Predicted", "Mean confidence of the predictions"]
    assert counts.set_index("Label")["Labelled by hand"].to_dict() == {"A": len(first), "B": len(second)}
    suggested = next(d for d in at.dataframe if "Text" in d.value)
    assert list(suggested.value) == ["ord", "Note", "Predicted label", "Confidence", "Text"]
    assert json.loads(suggested.proto.columns)["ord"]["hidden"]  # the store's row number is not shown
    suggested = suggested.value
    assert len(suggested) == 10 and not set(suggested["ord"]) & set(first + second)

    at.button(key="labelling_select_suggested").click().run()
    assert at.session_state["explore_selected_ords"] == suggested["ord"].tolist()
    at.run()  # a fresh rerun finds the stored clustering and labels again
    assert at.session_state["harness_view"].clustering_id == view.clustering_id
    assert at.session_state["harness_predicted"] is not None
