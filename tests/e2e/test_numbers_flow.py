"""In a real browser: the Separability and Few-shot pages say in plain words what their numbers mean,
with baselines beside accuracies, intervals beside estimates and the classes that do worst."""

from playwright.sync_api import expect

from tests.e2e.conftest import only_tiny, open_page, screenshot, start_step, wait_idle


def test_separability_page_says_what_its_numbers_mean(embedded_clinic, page, app_url):
    open_page(page, app_url, "Separability")
    only_tiny(page)
    headline = page.get_by_text("the label separates")
    start_step(page, "Measure separability", headline)  # the step runs in the background, with its progress bar
    words = headline.inner_text()
    assert "by always answering the largest class" in words and "by guessing" in words and "Beyond chance" in words
    table = page.get_by_test_id("stTable")
    expect(table).to_contain_text("What this means")
    for text in ("Nearest notes share the label (kNN accuracy)", "Overlap between labels (Davies-Bouldin)",
                 "lower is better", "higher is better"):
        expect(table).to_contain_text(text)
    expect(table).not_to_contain_text("mean_confidence")
    expect(page.get_by_text("Classes that separate much worse than average")).to_be_visible()
    expect(page.get_by_text("below the overall kNN accuracy").first).to_be_visible()
    screenshot(page, "separability-plain-words")


def test_fewshot_page_puts_baselines_beside_accuracy(embedded_clinic, page, app_url):
    open_page(page, app_url, "Few-shot")
    only_tiny(page)
    start_step(page, "Run learning curve", page.get_by_text("Macro-F1 (higher is better)"))
    page.get_by_test_id("stRadio").filter(has_text="Measure").get_by_text("Accuracy", exact=True).click()
    wait_idle(page)
    expect(page.get_by_text("Accuracy (higher is better)")).to_be_visible()
    table = page.get_by_test_id("stTable").first
    for text in ("Always the largest class", "Guessing", "Classes with all training notes used"):
        expect(table).to_contain_text(text)
    expect(page.get_by_text("Classes learnt much worse than average")).to_be_visible()
    screenshot(page, "fewshot-baselines")
