"""In a real browser: open Few-shot on a small embedded corpus, run a learning curve, see the chart."""

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import open_page, screenshot, wait_idle


@pytest.fixture(scope="module")
def clinic(app_env):
    """120 synthetic notes, embedded with 'tiny', in the served app's store before any page loads."""
    from core.corpus import ingest_frame
    from core.embed import embed_corpus
    from core.options import EmbedOptions
    from core.store import Store
    from sample_data.synthetic import synthetic_notes

    with pytest.MonkeyPatch.context() as env:
        env.setenv("NOTESPACE_MODELS", app_env["NOTESPACE_MODELS"])  # where this process finds 'tiny'
        store = Store(app_env["NOTESPACE_DB"])
        ingest_frame(store, synthetic_notes(120, seed=1), "clinic", "text", "note_id", ["specialty", "site"])
        embed_corpus(store, "clinic", EmbedOptions(encoder="tiny"))
    return "clinic"


def test_learning_curve_in_the_browser(clinic, page, app_url):
    open_page(page, app_url, "Few-shot")
    page.get_by_role("button", name="Remove minilm (packaged, 384-d)").click()  # no MiniLM to load here
    wait_idle(page)
    tags = page.get_by_test_id("stMultiSelect").filter(has_text="Encoders").locator("[data-tag]")
    expect(tags).to_have_text(["tiny (adapted, 32-d)"])

    page.get_by_role("button", name="Run learning curve").click()
    wait_idle(page)
    page.get_by_text("held-out notes score every encoder").wait_for()
    page.locator(".js-plotly-plot").first.wait_for()
    expect(page.locator(".js-plotly-plot")).to_have_count(2)  # the learning curve and the confusion matrix
    expect(page.get_by_test_id("stDownloadButton")).to_have_count(1)
    screenshot(page, "fewshot-curve")
