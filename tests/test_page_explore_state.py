"""AppTest of the Explore page's state: what depends on a selection goes with it, counts agree, and
the Clusters tab's header and inputs show the settings actually used (issue 17's stale cases)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.corpus import ingest_frame
from core.embed import embed_corpus
from core.options import EmbedOptions
from core.palette import DEFAULT_TOP
from core.store import Store
from pages.components import state
from tests.conftest import settle
from tests.test_page_explore import codes_of, map_event, maps_in

pytestmark = pytest.mark.filterwarnings("ignore:precomputed_knn")
APP = str(Path(__file__).resolve().parent.parent / "app.py")


@pytest.fixture()
def explore(db_path, models_dir, synthetic_df):
    shutil.copytree(models_dir / "tiny", models_dir / "tiny2")
    store = Store(db_path)
    notes = synthetic_df.copy()
    notes.loc[1, "text"] = notes.loc[0, "text"]  # twins: one vector, so a classifier cannot tell them apart
    notes["ward"] = [f"ward {i % 30:02d}" for i in range(len(notes))]  # more values than colours
    ingest_frame(store, notes, "clinic", "text", "note_id", ["specialty", "site", "ward"])
    for encoder in ("tiny", "tiny2"):
        embed_corpus(store, "clinic", EmbedOptions(encoder=encoder))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.session_state["explore_method"] = "pca"
    at.switch_page("pages/explore.py").run()
    at.selectbox(key="encoder").select("tiny").run()
    settle(at)
    assert not at.exception
    return at


def lasso(at, ords: list[int]) -> None:
    """What the browser sends after a lasso around `ords` on the map."""
    map_event(at, "explore_map", {"event": "select", "selected": ords, "colour": None, "seq": len(ords)})


def keys(at, kind: str = "button") -> set:
    return {w.key for w in at.get(kind)}


def test_clearing_the_selection_closes_the_reader_and_undims_the_map(explore):
    at = explore
    lasso(at, [0, 2, 5, 9])
    at.session_state[state.READ] = 5  # a row of the selection table ticked
    at.run()
    (args,) = maps_in(at)
    assert at.session_state[state.SELECTED] == [0, 2, 5, 9]
    assert "explore_close_reader" in keys(at)
    revision = args["selection"]["revision"]

    at.button(key="explore_clear_selection").click().run()
    assert at.session_state[state.SELECTED] == [] and at.session_state[state.READ] is None
    assert "explore_close_reader" not in keys(at)
    (args,) = maps_in(at)  # a new revision: the map drops its selection (and the lasso's dimming)
    assert args["selection"] == {"revision": revision + 1, "ords": []}


def test_labelling_uses_up_the_selection_and_counts_agree_everywhere(explore, media):
    at = explore
    lasso(at, [0, 2, 3, 4])
    at.text_input(key="labelling_label").input("a").run()
    at.button(key="labelling_add").click().run()
    assert any("Labelled 4 notes" in s.value for s in at.success)
    assert at.session_state[state.SELECTED] == [] and at.text_input(key="labelling_label").value == ""
    lasso(at, [1, 5, 6])  # note 1 has the text of note 0
    at.text_input(key="labelling_label").input("b").run()
    at.button(key="labelling_add").click().run()

    (args,) = maps_in(at)  # no leftover selection on the map
    assert args["selection"]["ords"] == [] and "predicted" in [c["name"] for c in args["columns"]]
    by_hand = next(d.value for d in at.dataframe if "Notes labelled" in d.value).set_index("Label")["Notes labelled"]
    classifier = next(d.value for d in at.dataframe if "Predicted" in d.value).set_index("Label")["Labelled by hand"]
    (labels,) = [c for c in args["columns"] if c["name"] == "map: map labels"]
    codes = codes_of(args, "map: map labels", media)
    on_map = {e["label"]: int((codes == i).sum()) for i, e in enumerate(labels["legend"]) if e["label"] in ("a", "b")}
    assert by_hand.to_dict() == classifier.to_dict() == on_map == {"a": 4, "b": 3}


def test_the_clusters_header_and_inputs_show_the_settings_used(explore):
    at = explore
    header = lambda: next(c.value for c in at.caption if c.value.startswith("Showing clustering"))  # noqa: E731
    assert "minimum cluster size 5" in header() and at.number_input(key="clusters_min_size").value == 5
    at.number_input(key="clusters_min_size").set_value(10).run()
    assert "minimum cluster size 5" in header()
    assert any("found with minimum cluster size 5; press **Compute clusters** to find them with minimum cluster "
               "size 10" in i.value for i in at.info)
    at.button(key="clusters_compute").click().run()
    settle(at)
    assert "minimum cluster size 10" in header() and not any("Compute clusters** to find" in i.value for i in at.info)

    at.selectbox(key="encoder").select("tiny2").run()  # another encoder: its own (default) clustering is shown
    settle(at)
    assert "minimum cluster size 5" in header() and at.number_input(key="clusters_min_size").value == 5


def test_a_many_valued_column_colours_its_most_common_values_and_groups_the_rest(explore, media):
    at = explore
    for top in (DEFAULT_TOP, 4):
        at.number_input(key="explore_top_colours").set_value(top).run()
        (args,) = maps_in(at)
        (ward,) = [c for c in args["columns"] if c["name"] == "ward"]
        assert [e["label"] for e in ward["legend"]] == [f"ward {i:02d}" for i in range(top)] + [f"other ({30 - top} values)"]
        assert len(set(ward["palette"])) == top + 1  # no colour stands for two values
        codes = codes_of(args, "ward", media)
        assert len(codes) == 120 and (codes == top).sum() == 120 * (30 - top) // 30  # 4 notes a ward
    (specialty,) = [c for c in maps_in(at)[0]["columns"] if c["name"] == "specialty"]  # 4 values: no "other"
    assert not any(e["label"].startswith("other") for e in specialty["legend"])


def test_the_pages_settings_outlive_a_visit_to_another_page(explore):
    """Streamlit forgets a widget's value once a run does not draw it: coming back from Home, the map
    must still be the PCA map chosen (not UMAP, which would start a UMAP job), with the display settings."""
    at = explore
    at.slider(key="explore_size").set_value(9).run()
    at.number_input(key="explore_top_colours").set_value(3).run()
    at.radio(key="explore_view").set_value("Compare").run()
    at.switch_page("pages/home.py").run()
    assert "explore_size" not in at.session_state  # the widget's own value is gone
    at.switch_page("pages/explore.py").run()
    assert not at.exception
    assert (at.radio(key="explore_method").value, at.radio(key="explore_view").value) == ("pca", "Compare")
    assert (at.slider(key="explore_size").value, at.number_input(key="explore_top_colours").value) == (9, 3)
    assert [m["point_size"] for m in maps_in(at)] == [9, 9]  # both maps of Compare drawn with it
    assert at.slider(key="explore_opacity").value == 0.75  # the rest as they were: their defaults
