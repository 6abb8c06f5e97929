"""In a real browser: open Few-shot on a small embedded corpus, run a learning curve, see the chart."""

from playwright.sync_api import expect

from tests.e2e.conftest import only_tiny, open_page, screenshot, start_step


def test_learning_curve_in_the_browser(embedded_clinic, page, app_url):
    open_page(page, app_url, "Few-shot")
    only_tiny(page)

    start_step(page, "Run learning curve", page.get_by_text("held-out notes score every encoder"))
    page.locator(".js-plotly-plot").first.wait_for()
    expect(page.locator(".js-plotly-plot")).to_have_count(2)  # the learning curve and the confusion matrix
    expect(page.get_by_test_id("stDownloadButton")).to_have_count(1)
    screenshot(page, "fewshot-curve")
