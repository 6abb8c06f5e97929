"""In a real browser: open Few-shot on a small embedded corpus, run a learning curve, see the chart."""

from playwright.sync_api import expect

from tests.e2e.conftest import only_tiny, open_page, screenshot, settled, wait_idle


def test_learning_curve_in_the_browser(embedded_clinic, page, app_url):
    open_page(page, app_url, "Few-shot")
    only_tiny(page)

    page.get_by_role("button", name="Run learning curve").click()
    wait_idle(page)
    settled(page)  # the step runs in the background, with its progress bar
    page.get_by_text("held-out notes score every encoder").wait_for()
    page.locator(".js-plotly-plot").first.wait_for()
    expect(page.locator(".js-plotly-plot")).to_have_count(2)  # the learning curve and the confusion matrix
    expect(page.get_by_test_id("stDownloadButton")).to_have_count(1)
    screenshot(page, "fewshot-curve")
