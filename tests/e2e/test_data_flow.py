"""In a real browser: open the app, load a demo corpus, embed it, see the result."""

from playwright.sync_api import expect

from tests.e2e.conftest import open_page, screenshot, wait_idle


def test_load_demo_and_embed(page, app_url):
    open_page(page, app_url, "Data")
    page.get_by_role("button", name="Load demo corpus").click()
    wait_idle(page)
    page.get_by_text("Loaded 'drug-reviews': 979 notes").wait_for()

    page.get_by_test_id("stSelectbox").filter(has_text="Encoder").click()
    page.get_by_role("option", name="tiny (adapted, 32-d)").click()
    wait_idle(page)
    page.get_by_role("button", name="Embed", exact=True).click()
    wait_idle(page)
    page.get_by_text("978 embedded now").wait_for()
    expect(page.get_by_test_id("stDataFrame").first).to_be_visible()
    screenshot(page, "data-embedded")
