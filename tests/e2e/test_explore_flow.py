"""In a real browser: open Explore on a small corpus, see its clusters named, colour by another column,
box-select notes."""


import pytest
from playwright.sync_api import expect

from core.corpus import ingest_frame
from core.maps import project_corpus
from core.options import ProjectOptions
from core.store import Store
from sample_data.synthetic import synthetic_notes
from tests.e2e.conftest import map_frame, map_select, open_page, screenshot, wait_idle


@pytest.fixture(scope="module")
def clinic(app_env, tiny_encoder_path):
    """A corpus with its vectors and UMAP map already in the store the app serves (PCA is for AppTests;
    here the page opens on the map a user sees first)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NOTESPACE_MODELS", app_env["NOTESPACE_MODELS"])
        store = Store(app_env["NOTESPACE_DB"])
        ingest_frame(store, synthetic_notes(300, seed=3), "clinic", "text", "note_id", ["specialty", "site", "age"])
        project_corpus(store, "clinic", ProjectOptions(encoder="tiny"))
    return "clinic"


@pytest.mark.filterwarnings("ignore:precomputed_knn")
def test_colour_then_box_select_shows_the_selected_notes(clinic, page, app_url):
    open_page(page, app_url, "Explore")
    page.get_by_test_id("stSelectbox").filter(has_text="Encoder").click()
    page.get_by_role("option", name="tiny (adapted, 32-d)").click()
    wait_idle(page)
    page.get_by_text("UMAP of tiny (from the store)").wait_for()
    chart = map_frame(page)
    chart.locator("#legend .entry", has_text="cardiology").wait_for()
    # no clusters in the store: the page computes the default ones in the background, then names them
    named = chart.locator('#map:not([data-labels="0"])[data-labels]')
    named.wait_for(timeout=300_000)

    chart.locator("#colour").select_option("site")  # in the browser, no rerun
    chart.locator("#legend .entry", has_text="north").wait_for()
    expect(named).to_have_count(1)  # named whatever colours the map

    map_select(page, "box", start=(0.02, 0.02), end=(0.9, 0.95))
    page.get_by_text("notes selected").wait_for()
    page.get_by_text("How the selection differs from the corpus").wait_for()
    expect(page.get_by_test_id("stDataFrame").nth(1)).to_be_visible()  # the comparison and the selected notes
    page.get_by_text("notes selected").scroll_into_view_if_needed()
    screenshot(page, "explore-selected")
