"""In a real browser: click a bar of a metadata chart, brush a range, see the notes filtered.

AppTest cannot click a plotly chart, so these are the tests of the real path: plotly's selection
event -> Streamlit's on_select callback -> the facet filter in session state -> the mask. One runs
on the Explore page (the map's "N of M notes drawn"), one on tests/harness_facets.py (the charts
alone, served on their own port: brushing a range, clearing).
"""

import os
import re

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import ROOT, map_frame, open_page, screenshot, served, wait_idle


@pytest.fixture(scope="module")
def clinic(app_env):
    """120 synthetic notes, embedded with 'tiny', in the served app's store before any page loads."""
    from core.corpus import ingest_frame
    from core.embed import embed_corpus
    from core.options import EmbedOptions
    from core.store import Store
    from sample_data.synthetic import synthetic_notes

    saved = os.environ.get("NOTESPACE_MODELS")
    os.environ["NOTESPACE_MODELS"] = app_env["NOTESPACE_MODELS"]  # where this process finds 'tiny'
    try:
        store = Store(app_env["NOTESPACE_DB"])
        ingest_frame(store, synthetic_notes(120, seed=1), "clinic", "text", "note_id", ["specialty", "site"])
        embed_corpus(store, "clinic", EmbedOptions(encoder="tiny"))
    finally:
        os.environ.pop("NOTESPACE_MODELS") if saved is None else os.environ.update(NOTESPACE_MODELS=saved)
    return "clinic"


@pytest.fixture(scope="module")
def harness_url():
    with served(ROOT / "tests" / "harness_facets.py", {}, "harness-facets") as url:
        yield url


@pytest.fixture()
def harness_page(browser, harness_url):
    """A page of the harness server only (the full app server of conftest is not needed here)."""
    context = browser.new_context(viewport={"width": 1000, "height": 1400})
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    yield pg
    context.close()


def _click(page, locator) -> None:
    """Point at the middle of an element, then click, as a person would: plotly's drag layer lies
    above the bars and picks the clicked bar from the hover that the pointer's move computes."""
    box = locator.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x - 5, y)
    page.mouse.move(x, y, steps=3)
    page.wait_for_timeout(300)
    page.mouse.click(x, y)


def _brush(page, chart, start: float, end: float) -> None:
    """Drag across a chart from `start` to `end` (fractions of its width)."""
    box = chart.locator(".nsewdrag").bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + start * box["width"], y)
    page.mouse.down()
    page.mouse.move(box["x"] + end * box["width"], y + 10, steps=10)
    page.mouse.up()


def _shown(page):
    return page.get_by_text(" of 120 notes shown")


def notes_drawn(page, count: str) -> None:
    """Wait for the map's caption "<count> notes drawn" (a rerun may show the old caption beside the new)."""
    page.get_by_text(f"{count} notes drawn").first.wait_for()


def test_clicking_a_bar_filters_the_map(clinic, page, app_url):
    open_page(page, app_url, "Explore")
    page.get_by_text("PCA", exact=True).click()  # an instant map, before any UMAP starts: this test is about charts
    wait_idle(page)
    page.get_by_test_id("stSelectbox").filter(has_text="Encoder").click()
    page.get_by_role("option", name="tiny (adapted, 32-d)").click()
    wait_idle(page)
    notes_drawn(page, "120 of 120")
    # the default clusters the page computes in the background: named on the map, then no more reruns
    map_frame(page).locator('#map:not([data-labels="0"])[data-labels]').wait_for(timeout=300_000)
    wait_idle(page)

    site_chart = page.locator(".js-plotly-plot").nth(1)  # the charts of specialty and site (the map is not plotly)
    _click(page, site_chart.locator(".barlayer .point path").first)  # the most common site: "north" (43 notes)
    wait_idle(page)
    notes_drawn(page, "43 of 120")
    page.get_by_text("43 of 120 notes pass: site ∈ {north}").wait_for()
    screenshot(page, "explore-facet-filtered")

    page.get_by_role("button", name="Clear filters").click()
    wait_idle(page)
    notes_drawn(page, "120 of 120")


def test_click_and_brush_then_clear(harness_page, harness_url):
    page = harness_page
    page.goto(harness_url)
    wait_idle(page)
    page.locator(".js-plotly-plot .barlayer .point").first.wait_for()
    expect(_shown(page)).to_have_text("120 of 120 notes shown")

    site_chart = page.locator(".js-plotly-plot").nth(1)  # specialty, site, age, visit_date
    _click(page, site_chart.locator(".barlayer .point path").first)  # the most common site: "north" (43 notes)
    wait_idle(page)
    page.get_by_text("notes pass: site").wait_for()
    expect(_shown(page)).to_have_text("43 of 120 notes shown")

    _brush(page, page.locator(".js-plotly-plot").nth(2), 0.3, 0.6)  # a range of ages, within site == north
    wait_idle(page)
    page.get_by_text("≤ age <").wait_for()
    expect(_shown(page)).to_have_text(re.compile(r"^([1-9]|[1-3]\d|4[0-2]) of 120 notes shown$"))  # 1 to 42
    screenshot(page, "facets-filtered")

    page.get_by_role("button", name="Clear filters").click()
    wait_idle(page)
    expect(_shown(page)).to_have_text("120 of 120 notes shown")
