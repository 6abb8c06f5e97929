"""AppTest of the Explore page on a small corpus with the tiny encoder (PCA maps, for speed).

Opening the page on a corpus without clusters starts the default clustering in the background; the
fixture waits for it, so every test sees the page as it settles (clusters named on the map).
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core import search
from core.clusters import latest_clustering
from core.corpus import ingest_frame
from core.embed import embed_corpus, load_embeddings
from core.options import EmbedOptions
from core.store import Store
from pages.components.compare import OVERLAP
import pages.components.map as map_module
from pages.components.map import COLOUR_KEY, column_codes, point_bytes, selected_ords, selection_arg
from tests.conftest import record_calls, settle

# app.py warms UMAP up in a thread; its note that our kNN graph rules out `transform` is expected
pytestmark = pytest.mark.filterwarnings("ignore:precomputed_knn")
APP = str(Path(__file__).resolve().parent.parent / "app.py")
NASTY = "<img src=x onerror=alert(1)> & <b>chest</b> pain"


def maps_in(at) -> list[dict]:
    """The arguments of the map components on the page (JSON), in page order."""
    return [json.loads(e.proto.json_args) for e in at.get("component_instance")
            if e.proto.component_name.endswith("notespace_map")]


def fetched(media: dict, url: str) -> bytes:
    return media[url.rsplit("/", 1)[1].split(".")[0]]


def ords_of(args: dict, media: dict) -> list[int]:
    n = args["n"]
    return np.frombuffer(fetched(media, args["points_url"]), dtype=np.int32, offset=8 * n, count=n).tolist()


def codes_of(args: dict, column: str, media: dict) -> np.ndarray:
    (spec,) = [c for c in args["columns"] if c["name"] == column]
    return np.frombuffer(fetched(media, spec["url"]), dtype=np.uint8)


def map_event(at, key: str, value: dict) -> None:
    """What the browser sends when the user selects on (or rests on a note of) the map `key`: the
    component's new value, with the other widgets' values as they are."""
    (element,) = [e for e in at.get("component_instance") if json.loads(e.proto.json_args).get("key") == key]
    states = at._tree.get_widget_states()
    state = states.widgets.add()
    state.id, state.json_value = element.proto.id, json.dumps(value)
    at._run(states)


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


def test_the_map_gets_points_once_as_binary_and_every_colour_column_with_its_legend(explore, media):
    at = explore
    at.run()
    (args,) = maps_in(at)
    assert args["colour"] == "specialty" and args["n"] == 120
    assert len(fetched(media, args["points_url"])) == 12 * 120  # x, y, ord: 12 bytes a note, no text
    assert sorted(ords_of(args, media)) == list(range(120))
    names = [c["name"] for c in args["columns"]]
    assert names[:4] == ["specialty", "site", "age", "visit_date"] and "cluster" in names
    specialty = next(c for c in args["columns"] if c["name"] == "specialty")
    assert sorted(e["label"] for e in specialty["legend"]) == ["cardiology", "orthopaedics", "psychiatry", "urology"]
    codes, ords = codes_of(args, "specialty", media), ords_of(args, media)
    # every 4th note is cardiology (the synthetic corpus): one code, the legend's entry for it
    cardiology = {int(codes[i]) for i, o in enumerate(ords) if o % 4 == 0}
    assert [specialty["legend"][c]["label"] for c in cardiology] == ["cardiology"]
    age = next(c for c in args["columns"] if c["name"] == "age")
    assert age["kind"] == "scale" and len(age["palette"]) == 256 and float(age["low"]) < float(age["high"])
    dates = next(c for c in args["columns"] if c["name"] == "visit_date")
    assert dates["low"].startswith("2024-") and dates["high"] > dates["low"]
    assert "120 of 120 notes drawn · PCA of tiny" in at.caption[0].value
    assert NASTY not in json.dumps(args)  # no note text in the map's arguments


def test_payload_encoding_of_points_categories_and_scales():
    frame = pd.DataFrame({"ord": [7, 3, 9, 4], "x": [0.5, -1.0, 2.0, 0.0], "y": [1.0, 2.0, 3.0, 4.0],
                          "ward": ["a", "b", None, "a"], "age": [10.0, np.nan, 30.0, 20.0]})
    raw = point_bytes(frame)
    assert len(raw) == 12 * 4
    assert np.frombuffer(raw, np.float32, 4, 0).tolist() == [0.5, -1.0, 2.0, 0.0]
    assert np.frombuffer(raw, np.int32, 4, 32).tolist() == [7, 3, 9, 4]
    codes, spec = column_codes(frame, "ward", colours={"a": "#111111", "b": "#CFCFCF", "(missing)": "#9E9E9E"})
    # "b" has no colour of its own (the palette's grey "other"), so it is "other (1 value)"
    assert [e["label"] for e in spec["legend"]] == ["a", "other (1 value)", "(missing)"]
    assert codes.tolist() == [0, 1, 2, 0] and spec["palette"] == ["#111111", "#CFCFCF", "#9E9E9E"]
    codes, spec = column_codes(frame, "age")
    assert codes.tolist() == [0, 255, 254, 127] and spec["kind"] == "scale" and spec["low"] == "10"
    assert spec["values"][255] == "(missing)" and spec["legend"] == [{"label": "(missing)", "colour": "#9E9E9E"}]


def test_a_large_selection_travels_as_a_bitmask_over_the_points_drawn_both_ways():
    drawn = np.random.default_rng(0).permutation(np.arange(100, 6100))  # ords, in drawing order
    chosen = drawn[::3]  # 2,000 notes: above the 1,000 that travel as ords
    arg = selection_arg(drawn, chosen.tolist())
    bits = np.unpackbits(np.frombuffer(base64.b64decode(arg["mask"]), np.uint8), bitorder="little")
    assert set(arg) == {"mask"} and len(arg["mask"]) <= 4 * len(drawn) / 8 / 3 + 4  # n/8 bytes, base64
    assert set(drawn[bits[: len(drawn)].astype(bool)].tolist()) == set(chosen.tolist())
    assert not bits[len(drawn):].any()
    assert selected_ords({"selected_mask": arg["mask"]}, drawn) == sorted(chosen.tolist())
    assert selection_arg(drawn, [4000, 100]) == {"ords": [4000, 100]}  # few: ords, as they are
    assert selected_ords({"selected": [8, 4, 4]}, drawn) == [4, 8]
    assert selected_ords({}, drawn) == []


def test_a_selection_sent_as_a_bitmask_selects_the_notes_at_those_points(explore, media):
    at = explore
    at.run()  # the map's files registered again, now that `media` records them
    (args,) = maps_in(at)
    drawn = np.array(ords_of(args, media))
    positions = np.arange(1, len(drawn), 2)  # every other point, as the browser draws them
    bits = np.zeros(len(drawn), dtype=bool)
    bits[positions] = True
    mask = base64.b64encode(np.packbits(bits, bitorder="little").tobytes()).decode()
    map_event(at, "explore_map", {"event": "select", "selected_mask": mask, "colour": "site", "seq": 1})
    assert not at.exception
    assert at.session_state["explore_selected_ords"] == sorted(drawn[positions].tolist())
    assert any(f"{len(positions)} notes selected" in m.value for m in at.markdown)


def test_a_selection_on_the_map_comes_back_as_ords_into_the_explore_state(explore):
    at = explore
    map_event(at, "explore_map", {"event": "select", "selected": [8, 4, 4, 0], "colour": "site", "seq": 1})
    assert not at.exception
    assert at.session_state["explore_selected_ords"] == [0, 4, 8]
    assert at.session_state[COLOUR_KEY] == "site"  # the colour chosen in the browser is kept for the next map
    assert any("3 notes selected" in m.value for m in at.markdown)
    (args,) = maps_in(at)
    assert args["colour"] == "site"
    map_event(at, "explore_map", {"event": "hover", "hover": 3, "selected": None, "colour": "site", "seq": 2})
    (args,) = maps_in(at)
    preview = args["preview"]
    assert preview["ord"] == 3 and preview["doc_id"] == "n00003" and preview["text"].startswith(NASTY)
    assert [name for name, _ in preview["meta"]] == ["specialty", "site", "age", "visit_date"]
    assert at.session_state["explore_selected_ords"] == [0, 4, 8]  # resting on a note selects nothing
    at.button(key="explore_clear_selection").click().run()
    (args,) = maps_in(at)
    assert args["selection"]["ords"] == [] and at.session_state["explore_selected_ords"] == []


def test_opening_the_page_clusters_the_corpus_and_names_the_clusters_on_the_map(explore, db_path):
    at = explore
    store = Store(db_path)
    found = latest_clustering(store, "clinic", "tiny")
    assert found is not None and found.params["method"] == "hdbscan" and found.params["min_cluster_size"] == 5
    (args,) = maps_in(at)  # coloured by specialty, yet the clusters are named
    assert "cluster" in [c["name"] for c in args["columns"]]
    names = [label["text"] for label in args["labels"]]
    sizes = [label["size"] for label in args["labels"]]
    assert names and names[0].startswith("0: ") and sizes == sorted(sizes, reverse=True)
    at.run()  # a stored clustering is shown, never computed again
    assert len(store.runs(kind="cluster")) == 1

    at.toggle(key="explore_cluster_labels").set_value(False).run()
    assert maps_in(at)[0]["labels"] == []
    at.toggle(key="explore_cluster_labels").set_value(True).run()
    assert [label["text"] for label in maps_in(at)[0]["labels"]] == names


def test_a_selection_reruns_the_page_without_recomputing_stored_columns_colours(explore, monkeypatch):
    """The metadata's and the clustering's palettes and codes are made once per map and clustering,
    not on every rerun; the number of colours asked for makes them anew."""
    at = explore
    at.run()
    palettes = record_calls(monkeypatch, map_module, "category_colours")
    codes = record_calls(monkeypatch, map_module, "column_codes")
    map_event(at, "explore_map", {"event": "select", "selected": [0, 4, 8], "colour": None, "seq": 1})
    assert any("3 notes selected" in m.value for m in at.markdown)
    assert (palettes, codes) == ([], [])
    at.number_input(key="explore_top_colours").set_value(2).run()
    assert {kwargs["top"] for _, kwargs in palettes} == {2} and len(codes) == len(maps_in(at)[0]["columns"])
    specialty = next(c for c in maps_in(at)[0]["columns"] if c["name"] == "specialty")
    assert [e["label"] for e in specialty["legend"]][2:] == ["other (2 values)"]


def test_filters_sample_notice_and_selection_panel(explore, media):
    at = explore
    at.multiselect(key="explore_filter_site").select("north").run()
    drawn = ords_of(maps_in(at)[0], media)
    assert 0 < len(drawn) < 120 and sorted(at.session_state["explore_filter_ords"]) == sorted(drawn)
    site = next(c for c in maps_in(at)[0]["columns"] if c["name"] == "site")  # the codes of the notes drawn now
    assert {site["legend"][code]["label"] for code in codes_of(maps_in(at)[0], "site", media)} == {"north"}
    at.multiselect(key="explore_filter_site").unselect("north").run()
    at.number_input(key="explore_max_points").set_value(100).run()
    assert any("random sample of 100 of 120 notes" in w.value for w in at.warning)
    assert maps_in(at)[0]["n"] == 100

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


def test_compare_mode_draws_two_aligned_maps_with_linked_selection(explore, db_path, media):
    at = explore
    embed_corpus(Store(db_path), "clinic", EmbedOptions(encoder="tiny2"))
    at.radio(key="explore_view").set_value("Compare").run()
    assert not at.exception
    assert at.selectbox(key="explore_encoder_b").value == "tiny2"  # the one other encoder with vectors
    map_event(at, "explore_map_b", {"event": "select", "selected": [1, 2, 3], "colour": "specialty", "seq": 1})
    first, second = maps_in(at)
    assert first["link"] == second["link"] and first["label_style"] == second["label_style"] == "outline"
    for args in (first, second):  # the same notes selected in both maps
        assert args["selection"]["ords"] == [1, 2, 3]
    a, b = (np.frombuffer(fetched(media, m["points_url"]), np.float32, 240) for m in (first, second))
    assert not np.allclose(a, b)  # two encoders, two layouts
    overlap = next(c for c in first["columns"] if c["name"] == OVERLAP)
    assert overlap["kind"] == "scale" and (overlap["low"], overlap["high"]) == ("0", "1")
    store = Store(db_path)
    XA, XB = (load_embeddings(store, "clinic", EmbedOptions(encoder=e), compute_missing=False) for e in ("tiny", "tiny2"))
    expected = jaccard_of_nearest(XA, XB, 10).mean()
    assert 0 < expected < 1  # two encoders that really differ
    (shown,) = [float(m) for c in at.caption for m in re.findall(r"Mean (\d\.\d\d)", c.value)]
    assert shown == pytest.approx(expected, abs=0.0051)


def test_search_on_a_large_corpus_goes_through_a_cell_index_once_built(explore, monkeypatch):
    at = explore
    at.text_input(key="explore_query").input("troponin chest pain").run()
    exact = at.session_state["explore_highlight_ords"]
    assert any("search exact." in c.value for c in at.caption)
    monkeypatch.setattr(search, "EXACT_MAX", 50)  # this corpus now counts as large
    at.run()  # exact search answers while the index is built in the background
    assert any("search exact (a cell index for faster search is being built)" in c.value for c in at.caption)
    for thread in threading.enumerate():
        if thread.name == "notespace-search index":
            thread.join(120)
    at.run()
    assert any("search approximate, through a cell index." in c.value for c in at.caption)
    assert at.session_state["explore_highlight_ords"] == exact  # so few notes: every cell is probed


def test_search_by_typed_query_and_by_note(explore):
    at = explore
    at.text_input(key="explore_query").input("troponin chest pain").run()
    assert not at.exception
    assert len(at.session_state["explore_highlight_ords"]) == 20
    assert sorted(maps_in(at)[0]["highlight"]) == sorted(at.session_state["explore_highlight_ords"])
    assert any("troponin chest pain" in m.value and "20 nearest notes" in m.value for m in at.markdown)

    at.session_state["explore_read_ord"] = 5
    at.run()
    at.button(key="explore_find_similar").click().run()
    assert 5 not in at.session_state["explore_highlight_ords"]
    assert any("Notes like n00005" in m.value for m in at.markdown)
    at.button(key="explore_clear_search").click().run()
    assert at.session_state["explore_highlight_ords"] == [] and at.text_input(key="explore_query").value == ""
