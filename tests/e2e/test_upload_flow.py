"""In a real browser: upload a messy export, see the preview and its warnings, ingest exactly the chosen columns."""

from core.store import Store
from tests.e2e.conftest import open_page, screenshot, wait_idle
from tests.test_bad_inputs import _with_duplicates, export_csv


def test_upload_preview_warnings_and_stored_columns(page, app_url, app_env, tmp_path):
    path = tmp_path / "export.csv"
    path.write_bytes(export_csv(_with_duplicates()))
    open_page(page, app_url, "Data")
    page.get_by_role("tab", name="Upload a file").click()
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(path))
    wait_idle(page)
    page.get_by_text("What will be stored").wait_for()
    alerts = page.get_by_test_id("stAlertContentWarning")
    alerts.filter(has_text="3 notes repeat an earlier note's text exactly").wait_for()
    alerts.filter(has_text="different values of column 'medical_specialty'").wait_for()
    alerts.filter(has_text="metadata column 'Unnamed: 0' has a different value in every row").wait_for()

    meta = page.get_by_test_id("stMultiSelect").filter(has_text="Metadata columns")
    for column in ("Unnamed: 0", "sample_name", "description"):  # keep medical_specialty and keywords
        meta.get_by_label(f"Remove {column}", exact=True).click()
        wait_idle(page)
    alerts.filter(has_text="metadata column 'Unnamed: 0'").wait_for(state="detached")
    page.get_by_role("button", name="Ingest", exact=True).click()
    wait_idle(page)
    page.get_by_text("Ingested 'export': 30 notes").wait_for()
    screenshot(page, "data-uploaded")
    corpus = Store(app_env["NOTESPACE_DB"]).corpus("export")
    assert (corpus.text_column, list(corpus.meta)) == ("transcription", ["medical_specialty", "keywords"])
