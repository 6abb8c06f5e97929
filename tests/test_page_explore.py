"""AppTest of the Explore page on a small corpus with the tiny encoder (PCA maps, for speed).

Opening the page on a corpus without clusters starts the default clustering in the background; the
fixture waits for it, so every test sees the page as it settles (clusters named on the map).
"""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core.clusters import latest_clustering
from core.corpus import ingest_frame
from core.embed import embed_corpus, load_embeddings
from core.options import EmbedOptions
from core.store import Store
from pages.components.compare import OVERLAP
from pages.components.map import map_figure, selected_from_event
from tests.conftest import settle

# app.py warms UMAP up in a thread; its note that our kNN graph rules out `transform` is expected
pytestmark = pytest.mark.filterwarnings("ignore:precomputed_knn")
APP = str(Path(__file__).resolve().parent.parent / "app.py")
NASTY = "<img src=x onerror=alert(1)> & <b>chest</b> pain"


def maps_in(at) -> list[dict]:
    """The specs of the map charts (Scattergl), leaving out the metadata bar charts."""
    specs = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    return [s for s in specs if s["data"] and s["data"][0]["type"] == "scattergl"]


def ords_of(trace: dict) -> list[int]:
    data = trace["customdata"]
    if isinstance(data, dict):  # plotly 7 ships typed arrays as base64
        return np.frombuffer(base64.b64decode(data["bdata"]), dtype=data["dtype"]).tolist()
    return list(data)


@pytest.fixture()
def explore(db_path, models_dir, synthetic_df, second_encoder_path):
    shutil.copytree(second_encoder_path, models_dir / "tiny2")  # other weights: a second encoder to compare
    store = Store(db_path)
    notes = synthetic_df.copy()
    notes.loc[3, "text"] = NASTY
    ingest_frame(store, notes, "clinic", "text", "note_id", ["specialty", "site", "age", "visit_date"])
    embed_corpus(store, "clinic", EmbedOptions(encoder="tiny"))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.session_state["explore_method"] = "pca"  # never start a UMAP job in the background
    at.switch_page("pages/explore.py").run()
    at.selectbox(key="encoder").select("tiny").run()
    settle(at)
    assert not at.exception
    return at


def test_colour_by_category_number_and_date_with_escaped_hover(explore):
    at = explore
    (spec,) = maps_in(at)
    assert at.selectbox(key="explore_colour").value == "specialty"
    assert sorted(t["name"] for t in spec["data"]) == ["cardiology", "orthopaedics", "psychiatry", "urology"]
    assert sum(len(ords_of(t)) for t in spec["data"]) == 120
    hover = " ".join(h for t in spec["data"] for h in t["hovertext"])
    assert "&lt;img src=x onerror=alert(1)&gt; &amp; &lt;b&gt;chest&lt;/b&gt;" in hover and "<img" not in hover
    assert "120 of 120 notes drawn · PCA of tiny" in at.caption[0].value

    at.selectbox(key="explore_colour").select("age").run()
    (spec,) = maps_in(at)
    assert len(spec["data"]) == 1 and spec["data"][0]["marker"]["showscale"] is True
    at.selectbox(key="explore_colour").select("visit_date").run()
    ticks = maps_in(at)[0]["data"][0]["marker"]["colorbar"]["ticktext"]
    assert ticks[0].startswith("2024-") and len(ticks) == 5


def test_opening_the_page_clusters_the_corpus_and_names_the_clusters_on_the_map(explore, db_path):
    at = explore
    store = Store(db_path)
    found = latest_clustering(store, "clinic", "tiny")
    assert found is not None and found.params["method"] == "hdbscan" and found.params["min_cluster_size"] == 5
    assert "cluster" in at.selectbox(key="explore_colour").options
    (spec,) = maps_in(at)  # coloured by specialty, yet the clusters are named
    names = [a["text"] for a in spec["layout"]["annotations"]]
    assert names and names[0].startswith("0: ") and len(names) <= 15
    at.run()  # a stored clustering is shown, never computed again
    assert len(store.runs(kind="cluster")) == 1

    at.toggle(key="explore_cluster_labels").set_value(False).run()
    assert not maps_in(at)[0]["layout"].get("annotations")
    at.toggle(key="explore_cluster_labels").set_value(True).run()
    assert [a["text"] for a in maps_in(at)[0]["layout"]["annotations"]] == names


def test_filters_sample_notice_and_selection_panel(explore):
    at = explore
    at.multiselect(key="explore_filter_site").select("north").run()
    drawn = sum(len(ords_of(t)) for t in maps_in(at)[0]["data"])
    assert 0 < drawn < 120 and len(at.session_state["explore_filter_ords"]) == drawn
    at.multiselect(key="explore_filter_site").unselect("north").run()
    at.number_input(key="explore_max_points").set_value(100).run()
    assert any("random sample of 100 of 120 notes" in w.value for w in at.warning)
    assert sum(len(ords_of(t)) for t in maps_in(at)[0]["data"]) == 100

    at.session_state["explore_selected_ords"] = list(range(0, 120, 4))  # every 4th note: all cardiology
    at.run()
    assert any("30 notes selected" in m.value for m in at.markdown)
    assert len(at.get("download_button")) >= 2
    at.button(key="explore_clear_selection").click().run()
    assert at.session_state["explore_selected_ords"] == []


def jaccard_of_nearest(XA: np.ndarray, XB: np.ndarray, k: int) -> np.ndarray:
    """Per note, |A ∩ B| / |A ∪ B| of its k nearest other notes (cosine, brute force) in each space."""
    from sklearn.neighbors import NearestNeighbors

    def nearest(X):
        idx = NearestNeighbors(n_neighbors=k + 1, metric="cosine", algorithm="brute").fit(X).kneighbors(X)[1]
        return [set([j for j in row if j != i][:k]) for i, row in enumerate(idx)]

    return np.array([len(a & b) / len(a | b) for a, b in zip(nearest(XA), nearest(XB))])


def test_compare_mode_draws_two_aligned_maps_with_linked_selection(explore, db_path):
    at = explore
    embed_corpus(Store(db_path), "clinic", EmbedOptions(encoder="tiny2"))
    at.radio(key="explore_view").set_value("Compare").run()
    assert not at.exception
    assert at.selectbox(key="explore_encoder_b").value == "tiny2"  # the one other encoder with vectors
    at.session_state["explore_selected_ords"] = [1, 2, 3]
    at.run()
    first, second = maps_in(at)
    for spec in (first, second):  # the same notes stay bright in both maps
        selected = [o for t in spec["data"] for i, o in enumerate(ords_of(t)) if i in (t.get("selectedpoints") or [])]
        assert sorted(selected) == [1, 2, 3]
    at.selectbox(key="explore_colour").select(OVERLAP).run()
    first, second = maps_in(at)
    assert first["data"][0]["marker"]["cmax"] == 1
    store = Store(db_path)
    XA, XB = (load_embeddings(store, "clinic", EmbedOptions(encoder=e), compute_missing=False) for e in ("tiny", "tiny2"))
    expected = jaccard_of_nearest(XA, XB, 10).mean()
    assert 0 < expected < 1  # two encoders that really differ
    (shown,) = [float(m) for c in at.caption for m in re.findall(r"Mean (\d\.\d\d)", c.value)]
    assert shown == pytest.approx(expected, abs=0.0051)


def test_search_by_typed_query_and_by_note(explore):
    at = explore
    at.text_input(key="explore_query").input("troponin chest pain").run()
    assert not at.exception
    assert len(at.session_state["explore_highlight_ords"]) == 20
    ringed = [t for t in maps_in(at)[0]["data"] if t["name"] == "search results"]
    assert sorted(ords_of(ringed[0])) == sorted(at.session_state["explore_highlight_ords"])
    assert any("troponin chest pain" in m.value and "20 nearest notes" in m.value for m in at.markdown)

    at.session_state["explore_read_ord"] = 5
    at.run()
    at.button(key="explore_find_similar").click().run()
    assert 5 not in at.session_state["explore_highlight_ords"]
    assert any("Notes like n00005" in m.value for m in at.markdown)
    at.button(key="explore_clear_search").click().run()
    assert at.session_state["explore_highlight_ords"] == [] and at.text_input(key="explore_query").value == ""


def test_map_figure_and_selection_events_carry_ords():
    frame = pd.DataFrame({"ord": [10, 11, 12], "doc_id": ["a", "b", "c"], "x": [0.0, 1, 2], "y": [0.0, 1, 2],
                          "preview": ["x", "y", "z"], "kind": ["p", "q", None]})
    fig = map_figure(frame, "kind", highlight_ords=[12], selected_ords=[11])
    assert [t.name for t in fig.data] == ["p", "q", "(missing)", "search results"]
    assert list(fig.data[1].customdata) == [11] and fig.data[1].selectedpoints == (0,)
    event = {"selection": {"points": [{"customdata": 12}, {"customdata": [11]}, {"customdata": 12}]}}
    assert selected_from_event(event) == [11, 12] and selected_from_event(None) == []
