"""AppTest of the Data page: load a demo corpus, embed it, see the cache at work."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.scale import ray_installed

APP = str(Path(__file__).resolve().parent.parent / "app.py")


@pytest.fixture()
def data_page(db_path, models_dir):
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("pages/data.py").run()
    assert not at.exception
    return at


def test_load_demo_then_embed_then_cached(data_page, db_path):
    at = data_page
    at.selectbox(key="demo_name").select("drug-reviews")
    at.button(key="load_demo").click().run()
    assert not at.exception
    assert any("Loaded 'drug-reviews': 979 notes" in s.value for s in at.success)
    at.selectbox(key="encoder").select("tiny")
    at.button(key="embed").click().run()
    assert any("979 notes: 978 embedded now" in s.value for s in at.success), [s.value for s in at.success]
    at.button(key="embed").click().run()
    assert any("978 from the cache" in s.value or "979 from the cache" in s.value for s in at.success)
    at.button(key="load_demo").click().run()
    assert any("already loaded" in i.value for i in at.info)


def test_empty_store_points_to_the_demo(data_page):
    assert data_page.selectbox(key="demo_name").value == "drug-reviews"
    assert any("No corpus yet" in i.value for i in data_page.info)


def _upload(at, name: str, content: bytes):
    at.file_uploader[0].set_value((name, content, "text/csv"))
    return at.run()


def _widget(widgets, label: str):
    return next(w for w in widgets if w.label == label)


@pytest.mark.parametrize("rerun_each_time", [False, True], ids=["sent together", "one rerun per widget"])
def test_exactly_the_chosen_columns_are_stored_whatever_the_order(data_page, db_path, rerun_each_time):
    """The reported bug: tick two metadata columns, then change the text column; all columns got stored."""
    from core.store import Store
    from tests.test_bad_inputs import export_csv

    at = _upload(data_page, "export.csv", export_csv())
    touches = [lambda: _widget(at.multiselect, "Metadata columns").set_value(["medical_specialty", "keywords"]),
               lambda: _widget(at.selectbox, "Text column").select("description"),
               lambda: _widget(at.selectbox, "Text column").select("transcription"),
               lambda: _widget(at.text_input, "Corpus name").set_value("export")]
    for touch in touches:
        widget = touch()
        if rerun_each_time:
            widget.run()
    at.button(key="ingest_submit").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    corpus = Store(db_path).corpus("export")
    assert (corpus.text_column, list(corpus.meta)) == ("transcription", ["medical_specialty", "keywords"])


def test_the_preview_shows_what_will_be_stored_before_anything_is(data_page, db_path):
    from core.store import Store
    from tests.test_bad_inputs import _with_duplicates, export_csv

    at = _upload(data_page, "export.csv", export_csv(_with_duplicates()))
    assert at.selectbox(key="ingest_text").value == "transcription"  # the longest texts, not the index column
    at.multiselect(key="ingest_meta").set_value(["medical_specialty"]).run()
    preview = at.dataframe[1].value
    assert list(preview.columns) == ["(id)", "(text)", "medical_specialty"]
    assert " Urology" not in set(preview["medical_specialty"])  # trimmed, as it will be stored
    warnings = " ".join(w.value for w in at.warning)
    assert "3 notes repeat an earlier note's text" in warnings and "leading or trailing spaces" in warnings
    assert "different values of column 'medical_specialty'" in warnings
    assert Store(db_path).corpora() == []  # nothing written yet


def test_a_refused_text_column_needs_confirmation(data_page, db_path):
    from core.store import Store
    from tests.test_bad_inputs import export_csv

    at = _upload(data_page, "export.csv", export_csv())
    at.selectbox(key="ingest_text").select("Unnamed: 0").run()
    assert any("holds only numbers" in e.value for e in at.error)
    assert at.button(key="ingest_submit").disabled
    at.checkbox(key="ingest_force").check().run()
    at.button(key="ingest_submit").click().run()
    assert Store(db_path).corpus("export").text_column == "Unnamed: 0"


def test_upload_leaves_no_file(data_page, db_path, tmp_path, monkeypatch):
    """Uploads are parsed from memory: nothing lands in the temp folder or beside the store."""
    import tempfile

    from tests.test_bad_inputs import export_csv

    temp = tmp_path / "system-temp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setattr(tempfile, "tempdir", str(temp))  # gettempdir() caches its answer
    beside = set(db_path.parent.iterdir())
    at = _upload(data_page, "export.csv", export_csv())
    _widget(at.selectbox, "Text column").select("transcription").run()
    _widget(at.text_input, "Corpus name").set_value("export").run()
    at.button(key="ingest_submit").click().run()
    assert any("Ingested 'export'" in s.value for s in at.success)
    assert list(temp.rglob("*")) == []
    assert {p.name for p in set(db_path.parent.iterdir()) - beside} <= {db_path.name, db_path.name + ".wal"}


def test_delete_names_what_goes_then_deletes(data_page, db_path):
    from core.store import Store

    at = data_page
    at.button(key="load_demo").click().run()
    at.selectbox(key="delete_name").select("drug-reviews").run()
    assert any("removes its 979 notes" in w.value and "Adapted encoders stay" in w.value for w in at.warning)
    assert at.button(key="delete_button").disabled
    at.checkbox(key="delete_confirm").check().run()
    at.button(key="delete_button").click().run()
    assert any("Deleted 'drug-reviews': 979 notes" in s.value for s in at.success)
    assert Store(db_path).corpora() == []


def test_the_chosen_corpus_and_encoder_follow_the_session_across_pages(data_page, db_path):
    from core.corpus import ingest_frame
    from core.store import Store
    from sample_data.synthetic import synthetic_notes

    for name in ("first", "second"):
        ingest_frame(Store(db_path), synthetic_notes(30, seed=1), name, "text", "note_id")
    at = data_page.run()
    at.selectbox(key="corpus").select("second").run()
    assert at.selectbox(key="encoder").value == "minilm"  # the first; the session then chooses another
    chosen = "tiny"
    at.selectbox(key="encoder").select(chosen).run()
    at.switch_page("pages/pretrain.py").run()
    assert not at.exception
    assert at.selectbox(key="corpus").value == "second"
    at.selectbox(key="corpus").select("first").run()
    at.switch_page("pages/data.py").run()
    assert (at.selectbox(key="corpus").value, at.selectbox(key="encoder").value) == ("first", chosen)


@pytest.mark.robustness
@pytest.mark.skipif(not ray_installed(), reason="the optional extra 'scale' (make test installs it)")
def test_where_ray_is_installed_the_page_embeds_on_a_local_ray(data_page, db_path, synthetic_df):
    from core.corpus import ingest_frame
    from core.embed import load_embeddings
    from core.options import EmbedOptions
    from core.store import Store

    ingest_frame(Store(db_path), synthetic_df.head(20), "clinic", "text", "note_id")
    at = data_page
    at.run()
    at.selectbox(key="encoder").select("tiny")
    at.radio(key="embed_engine").set_value("ray").run()
    assert at.text_input(key="embed_ray_address").value == "" and at.number_input(key="embed_ray_workers").value == 1
    at.button(key="embed").click().run(timeout=600)  # the run starts and stops a local Ray: slow on a loaded machine
    assert not at.exception and not at.error
    assert any("20 notes: 20 embedded now" in s.value for s in at.success), [s.value for s in at.success]
    assert load_embeddings(Store(db_path), "clinic", EmbedOptions(encoder="tiny"), compute_missing=False).shape == (20, 32)
