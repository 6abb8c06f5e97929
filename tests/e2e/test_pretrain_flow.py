"""In a real browser: launch a short training job on the Pretrain page and watch it run to the end."""

import re

import pytest
from playwright.sync_api import expect

from core.corpus import ingest_frame
from core.store import Store
from sample_data.synthetic import synthetic_notes
from tests.e2e.conftest import open_page, screenshot, wait_idle

pytestmark = pytest.mark.e2e  # (a pytestmark in conftest.py marks nothing)


@pytest.fixture(scope="module")
def app_env(app_env):
    """The served app (and the workers it starts) with one torch thread each: the cores are shared."""
    return app_env | {"OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module", autouse=True)
def clinic_corpus(app_env):
    """A corpus in the served app's store, put there the way the app itself does it."""
    ingest_frame(Store(app_env["NOTESPACE_DB"]), synthetic_notes(120, seed=1), "clinic", "text", "note_id",
                 ["specialty", "site"])


def set_number(page, label: str, value: int) -> None:
    field = page.get_by_label(label, exact=True)
    field.fill(str(value))
    field.press("Enter")
    wait_idle(page)


def test_launch_a_job_and_watch_it_finish(page, app_url):
    page.set_viewport_size({"width": 1400, "height": 2000})  # the form and the jobs panel in one screenshot
    open_page(page, app_url, "Pretrain")
    page.get_by_test_id("stSelectbox").filter(has_text="Start from encoder").click()
    page.get_by_role("option", name="tiny (adapted, 32-d)").click()
    wait_idle(page)
    set_number(page, "Steps", 200)
    set_number(page, "Batch size (notes)", 8)
    set_number(page, "Max length (tokens)", 64)
    page.get_by_text("Estimated run time on cpu").wait_for()
    screenshot(page, "pretrain-form")

    page.get_by_role("button", name="Launch training").click()
    page.get_by_text("Job 1 queued").wait_for()
    page.get_by_text("#1 clinic-mlm").first.wait_for()  # the jobs panel shows it without a reload
    running = page.get_by_text(re.compile(r"step \d+/200 loss")).first  # progress from the worker process
    done = page.get_by_text("done: encoder clinic-mlm", exact=False)
    running.or_(done).first.wait_for(timeout=180_000)  # a fast machine may finish between two looks
    if running.is_visible():
        curve = page.get_by_test_id("stPlotlyChart").locator(".main-svg").first
        curve.or_(done).first.wait_for(timeout=60_000)  # the loss curve drawn (or already done)
        screenshot(page, "pretrain-running")
    done.wait_for(timeout=180_000)
    expect(page.get_by_role("button", name="Explore with it")).to_have_count(1)  # drawn just after "done"
    screenshot(page, "pretrain-done")
