"""In a real browser: a selection of more than 1,000 notes travels between the map and Python as a
bitmask over the points drawn (pages/components/map.py, mapview's index.js), both ways: Python holds
exactly the notes the map selected (the selection's download), and a map drawn afresh shows them."""

import pandas as pd
import pytest
from playwright.sync_api import expect

from core.corpus import ingest_frame
from core.embed import embed_corpus
from core.maps import project_corpus
from core.options import EmbedOptions, ProjectOptions
from core.store import Store
from sample_data.synthetic import synthetic_notes
from tests.conftest import wait_for
from tests.e2e.conftest import map_frame, map_select, wait_idle
from tests.e2e.test_map_component import open_explore, selected_count

pytestmark = pytest.mark.filterwarnings("ignore:precomputed_knn")
NOTES = 1500  # a box round most of the map selects more than the 1,000 notes that travel as ords


@pytest.fixture(scope="module")
def beds(app_env):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NOTESPACE_MODELS", app_env["NOTESPACE_MODELS"])
        store = Store(app_env["NOTESPACE_DB"])
        ingest_frame(store, synthetic_notes(NOTES, seed=11, min_words=4, max_words=12), "beds", "text", "note_id",
                     ["specialty", "site"])
        embed_corpus(store, "beds", EmbedOptions(encoder="tiny"))
        project_corpus(store, "beds", ProjectOptions(encoder="tiny", method="pca"))
    return "beds"


def selected_on_map(frame) -> tuple[int, int]:
    """How many notes the map has selected, and the sum of their ords (synthetic note n00042 is ord 42)."""
    found = frame.locator("#map")
    return int(found.get_attribute("data-selected") or 0), int(found.get_attribute("data-selected-ord-sum") or 0)


def test_a_large_selection_reaches_python_and_comes_back_to_a_new_map(beds, page, app_url):
    open_explore(page, app_url)
    map_select(page, "box", end=(0.8, 0.995))  # not every note: a misread bitmask selects others
    frame = map_frame(page)
    count, ord_sum = wait_for(lambda: selected_on_map(frame)[0] > 1000 and selected_on_map(frame))
    assert count < NOTES
    wait_for(lambda: page.get_by_text("notes selected").count() > 0 and selected_count(page) == count)
    with page.expect_download() as download:
        page.get_by_role("button", name="Selection as CSV").click()
    in_python = pd.read_csv(download.value.path(), dtype=str, encoding="utf-8-sig")
    assert sum(int(note[1:]) for note in in_python["doc_id"]) == ord_sum  # the same notes, not only as many

    for title in ("Home", "Explore"):  # the map is drawn afresh on return, from the selection in Python
        page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
        wait_idle(page)
    expect(map_frame(page).locator("#map")).to_have_attribute("data-selected-ord-sum", str(ord_sum))
    assert selected_on_map(map_frame(page)) == (count, ord_sum)
