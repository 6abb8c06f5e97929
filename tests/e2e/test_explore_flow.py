"""In a real browser: open Explore on a small corpus, see its clusters named, colour by another column,
box-select notes."""


import pytest
from playwright.sync_api import expect

from core.corpus import ingest_frame
from core.maps import project_corpus
from core.options import ProjectOptions
from core.store import Store
from sample_data.synthetic import synthetic_notes
from tests.e2e.conftest import box_select, open_map, screenshot


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
    chart = open_map(page, app_url)
    chart.locator("#legend .entry", has_text="cardiology").wait_for()
    # no clusters in the store: the page computed the default ones in the background, then named them
    named = chart.locator('#map:not([data-labels="0"])[data-labels]')
    named.wait_for()

    chart.locator("#colour").select_option("site")  # in the browser, no rerun
    chart.locator("#legend .entry", has_text="north").wait_for()
    expect(named).to_have_count(1)  # named whatever colours the map

    box_select(page, start=(0.02, 0.02), end=(0.9, 0.95))
    page.get_by_text("How the selection differs from the corpus").wait_for()
    expect(page.get_by_test_id("stDataFrame").nth(1)).to_be_visible()  # the comparison and the selected notes
    page.get_by_text("notes selected").scroll_into_view_if_needed()
    screenshot(page, "explore-selected")
