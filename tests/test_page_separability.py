"""AppTest of the Separability page: measure two encoders, audit the metadata, find it all again later."""

import json
import threading
from pathlib import Path

import pytest
from sklearn.metrics import silhouette_score
from streamlit.testing.v1 import AppTest

from core.embed import load_embeddings
from core.evaluation.metrics import METRICS
from core.options import EmbedOptions
from tests.conftest import settle

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def open_page(encoders: list[str]) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("pages/separability.py").run()
    at.multiselect(key="sep_encoders").set_value(encoders).run()
    assert not at.exception
    return at


@pytest.fixture()
def clinic(db_path, models_dir, synthetic_df, second_encoder_path):
    import shutil

    from core.corpus import ingest_frame
    from core.store import Store

    shutil.copytree(second_encoder_path, models_dir / "tiny-b")  # a second encoder (other weights) to compare with
    ingest_frame(Store(db_path), synthetic_df, "clinic", "text", "note_id", ["specialty", "site", "age"])
    return Store(db_path)


def test_measure_audit_and_reopen_without_recomputing(clinic):
    at = open_page(["tiny", "tiny-b"])
    assert at.selectbox(key="sep_label").value == "specialty"  # the first categorical column
    assert any("Measure separability" in i.value for i in at.info)
    at.button(key="sep_run").click().run()
    settle(at)
    assert not at.exception and not at.error
    table = at.table[0].value.reset_index()
    assert list(table["Measure"]) == [m[1] for m in METRICS] and {"tiny", "tiny-b"} <= set(table.columns)
    assert set(table["Better"]) == {"higher is better", "lower is better"} and table["What this means"].all()
    assert table["tiny"].str.match(r"-?\d+\.\d{3} \[").all()  # every metric carries a 95% interval
    silhouette_row = [m[0] for m in METRICS].index("silhouette")
    for encoder in ("tiny", "tiny-b"):  # each column measured its own encoder: sklearn's silhouette as the oracle
        X = load_embeddings(clinic, "clinic", EmbedOptions(encoder=encoder), compute_missing=False)
        expected = silhouette_score(X, clinic.documents(clinic.corpus("clinic"))["specialty"], metric="cosine")
        assert table[encoder].iloc[silhouette_row].startswith(f"{expected:.3f} [")
    assert table["tiny"].iloc[silhouette_row] != table["tiny-b"].iloc[silhouette_row]
    assert table["tiny-b minus tiny"].str.contains("better|worse|no clear difference").all()  # a paired verdict each
    words = " ".join(m.value for m in at.markdown)
    assert "the label separates" in words and "by always answering the largest class" in words
    assert "Beyond chance" in words
    (class_chart,) = (json.loads(c.proto.spec) for c in at.get("plotly_chart"))  # no one-bar metric charts
    assert "cardiology" in json.dumps(class_chart)

    at.button(key="sep_audit_run").click().run()
    settle(at)
    audit_chart = json.loads(at.get("plotly_chart")[1].proto.spec)
    assert set(audit_chart["data"][0]["y"]) == {"specialty", "site", "age"}

    runs = len(clinic.runs())
    again = open_page(["tiny", "tiny-b"])  # a new session: results come from the store at once
    assert len(again.get("plotly_chart")) == 2 and not again.info
    assert len(clinic.runs()) == runs


def test_clusters_are_offered_as_a_label_once_the_corpus_is_clustered(clinic):
    from core.clusters import cluster_corpus
    from core.options import ClusterOptions

    assert "cluster" not in open_page(["tiny", "tiny-b"]).selectbox(key="sep_label").options
    cluster_corpus(clinic, "clinic", ClusterOptions(encoder="tiny", method="kmeans", k=3))
    at = open_page(["tiny", "tiny-b"])
    assert at.selectbox(key="sep_label").options == ["specialty", "site", "age", "cluster"]
    at.selectbox(key="sep_label").set_value("cluster").run()
    assert not at.exception and any("inflated by construction" in c.value for c in at.caption)


def test_a_measurement_shows_its_progress_and_can_be_cancelled(clinic, monkeypatch):
    """Measuring runs in the background: the page says what it is doing, Cancel stops it with nothing
    stored, and Measure starts it afresh. The real evaluation waits at its start until the test has
    pressed Cancel, so the job is surely running then."""
    from core.evaluation import corpus as evaluation

    started, release, measure = threading.Event(), threading.Event(), evaluation.evaluate_corpus

    def held(*args, **kwargs):
        if kwargs.get("progress"):  # the page's job, not its look-up in the store
            started.set()
            release.wait(60)
        return measure(*args, **kwargs)

    monkeypatch.setattr(evaluation, "evaluate_corpus", held)
    at = open_page(["tiny"])
    at.button(key="sep_run").click().run()
    assert started.wait(60)
    (bar,) = at.get("progress")
    assert bar.proto.text.startswith("Measuring separability: ") and at.button(key="sep_run").disabled
    at.button(key="sep_cancel").click().run()
    release.set()
    settle(at)
    assert any(i.value == "Measuring separability: cancelled; no result was stored." for i in at.info)
    assert clinic.runs("evaluate") == [] and not at.table and not at.get("progress")

    at.button(key="sep_run").click().run()  # again, to the end
    settle(at)
    assert not at.exception and not at.error and len(clinic.runs("evaluate")) == 1
    assert not any("cancelled" in i.value for i in at.info) and at.table[0].value.index.name == "Measure"
