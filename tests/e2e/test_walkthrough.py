"""In a real browser, as a new user would: upload an export, embed it, explore it, time a training run,
then open Separability and Few-shot. Checks issue 17's parts precisely (the legend's "other (N values)",
the Clusters header with the setting used, a cleared selection closing the reader, the run-time
estimate never blocking Launch) and the wording of the other pages loosely (it is theirs to change).
"""

from __future__ import annotations

import re

import pandas as pd
import pytest
from playwright.sync_api import expect

from sample_data.synthetic import synthetic_notes
from tests.e2e.conftest import TINY, box_select, map_frame, open_page, pick, screenshot, tick_first_row, wait_idle

pytestmark = pytest.mark.filterwarnings("ignore:precomputed_knn")
WARDS = 30


@pytest.fixture(scope="module")
def export_csv(tmp_path_factory):
    """What a records system exports: an unnamed index column first, long-ish notes, one note twice,
    and a column with more values than the palette has colours."""
    notes = synthetic_notes(160, seed=5, min_words=60, max_words=150).drop(columns=["note_id", "visit_date"])
    notes["ward"] = [f"ward {i % WARDS:02d}" for i in range(len(notes))]
    notes = pd.concat([notes, notes.iloc[[0]]], ignore_index=True)  # a duplicate
    path = tmp_path_factory.mktemp("export") / "ward-export.csv"
    notes.to_csv(path)  # the index as an unnamed first column
    return path


def test_data_explore_pretrain_separability_fewshot(page, app_url, export_csv):
    # ---- Data (i14's page: its wording checked loosely) -------------------------------------------
    open_page(page, app_url, "Data")
    page.get_by_role("tab", name=re.compile("upload", re.I)).click()
    page.locator('input[type="file"]').first.set_input_files(str(export_csv))
    wait_idle(page)
    page.get_by_role("button", name=re.compile("^ingest", re.I)).first.click()
    wait_idle(page)
    expect(page.get_by_text(re.compile(r"ingested", re.I)).first).to_be_visible(timeout=120_000)
    pick(page, "Encoder", TINY)
    page.get_by_role("button", name="Embed", exact=True).click()
    wait_idle(page)
    expect(page.get_by_text(re.compile(r"embedded", re.I)).first).to_be_visible(timeout=120_000)

    # ---- Explore: colours, clusters header, selection and reader ----------------------------------
    page.get_by_test_id("stSidebarNav").get_by_text("Explore", exact=True).click()
    wait_idle(page)
    pick(page, "Encoder", TINY)
    chart = map_frame(page)
    chart.locator("#colour").select_option("ward")
    chart.locator("#legend .entry", has_text=f"other ({WARDS - 10} values)").wait_for()
    assert chart.locator("#legend .entry").count() == 11  # ten wards, then "other"

    page.get_by_role("tab", name="Clusters").click()
    header = page.get_by_text(re.compile("^Showing clustering"))
    header.wait_for(timeout=300_000)  # the default clustering runs in the background first
    assert "minimum cluster size 5" in header.inner_text()
    size = page.get_by_label("Minimum cluster size", exact=True)
    expect(size).to_have_value("5")
    size.fill("10")
    size.press("Enter")
    wait_idle(page)
    page.get_by_text("press Compute clusters to find them with minimum cluster size 10").wait_for()
    assert "minimum cluster size 5" in header.inner_text()  # what the map shows, until computed

    page.get_by_role("tab", name="Selection and search").click()
    box_select(page)
    table = page.locator('[data-testid="stDataFrame"]:visible').last  # the selected notes
    tick_first_row(page, table)  # opens the reader
    close = page.get_by_role("button", name="Close")
    close.wait_for()
    screenshot(page, "walkthrough-reader")
    page.get_by_test_id("stBaseButton-secondary").filter(has_text="Clear selection").click()
    wait_idle(page)
    expect(close).to_have_count(0)
    expect(page.get_by_text("notes selected")).to_have_count(0)

    # ---- Pretrain: the estimate never blocks Launch -----------------------------------------------
    page.get_by_test_id("stSidebarNav").get_by_text("Pretrain", exact=True).click()
    wait_idle(page)
    pick(page, "Start from encoder", TINY)
    launch = page.get_by_role("button", name="Launch training")
    expect(launch).to_be_enabled()  # whether or not these settings are timed yet
    estimate = page.get_by_text(re.compile("Estimated run time on"))
    measuring = page.get_by_text(re.compile("Run-time estimate: measuring…"))
    expect(estimate.or_(measuring).first).to_be_visible()
    expect(estimate).to_contain_text("timed on this machine with these settings", timeout=120_000)
    expect(launch).to_be_enabled()

    # ---- Separability and Few-shot (i21's pages: they open on this corpus without an error) -------
    for title in ("Separability", "Few-shot"):
        page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
        wait_idle(page)
        page.get_by_role("heading", name=title).first.wait_for()
        expect(page.get_by_test_id("stException")).to_have_count(0)
    screenshot(page, "walkthrough-end")
