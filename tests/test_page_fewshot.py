"""AppTest of the Few-shot page: a small learning curve, its table, confusion matrix and predictions;
the SetFit option's background job, cancelled and then run to its curve."""

import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import settle

APP = str(Path(__file__).resolve().parent.parent / "app.py")
ACTIVE = ("queued", "running", "interrupted")


def open_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("pages/fewshot.py").run()
    at.multiselect(key="fs_encoders").set_value(["tiny"])
    at.multiselect(key="fs_shots").set_value([1, 2, 4])
    at.number_input(key="fs_seeds").set_value(2).run()
    assert not at.exception
    return at


@pytest.fixture()
def clinic(db_path, models_dir, synthetic_df):
    from core.corpus import ingest_frame
    from core.store import Store

    ingest_frame(Store(db_path), synthetic_df, "clinic", "text", "note_id", ["specialty", "site"])
    return Store(db_path)


def test_learning_curve_table_confusion_and_download(clinic):
    at = open_page()
    at.button(key="fs_run").click().run()
    settle(at)
    assert not at.exception and not at.error
    curve = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert curve["layout"]["xaxis"]["type"] == "log" and curve["layout"]["xaxis"]["tickvals"] == [1, 2, 4]
    lines = [t for t in curve["data"] if t.get("name") == "tiny"]
    assert len(lines) == 1 and len(curve["data"]) == 2  # the mean line and its interval band
    table = at.table[0].value.reset_index()
    assert list(table["Notes per class"]) == [1, 2, 4] and table["tiny"].str.match(r"\d\.\d{3} \[").all()
    assert "Classes with all training notes used" in table.columns
    assert any("Macro-F1 (higher is better)" in c.value for c in at.caption)
    confusion = json.loads(at.get("plotly_chart")[1].proto.spec)["data"][0]
    assert confusion["type"] == "heatmap" and sorted(confusion["x"]) == ["cardiology", "orthopaedics", "psychiatry",
                                                                         "urology"]
    assert at.get("download_button")[0].proto.label.startswith("Download predictions")
    every = next(e for e in at.expander if e.label.startswith("Every class"))
    classes = every.dataframe[0].value  # all four classes, worst first, with the curve's own per-class F1
    assert sorted(classes["Class"]) == ["cardiology", "orthopaedics", "psychiatry", "urology"]
    assert classes["F1"].is_monotonic_increasing and every.label == "Every class (4)"

    at.radio(key="fs_metric").set_value("accuracy").run()
    chart = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert chart["layout"]["yaxis"]["title"]["text"] == "Accuracy"
    assert {a["text"].split(":")[0] for a in chart["layout"]["annotations"]} == {"always the largest class", "guessing"}
    table = at.table[0].value
    assert table["Always the largest class"].str.match(r"0\.\d{3}").all() and (table["Guessing"] == "0.250").all()

    runs = len(clinic.runs("fewshot"))
    again = open_page()  # a new session finds the stored curve without running it
    assert len(again.get("plotly_chart")) == 2 and len(clinic.runs("fewshot")) == runs


def wait_for_setfit(store, check) -> dict:
    from core.jobs import list_jobs

    deadline = time.monotonic() + 300  # generous: the worker process starts torch on shared, loaded cores
    while not check(j := list_jobs(store, "setfit")[0]) and time.monotonic() < deadline:
        time.sleep(0.3)
    return j


@pytest.fixture()
def setfit_page(clinic, monkeypatch):
    from core.jobs import cancel_job, list_jobs

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the worker's torch: the cores are shared
    yield open_page()
    for j in list_jobs(clinic, "setfit"):  # a failed test must not leave a worker fine-tuning
        cancel_job(clinic, j["id"])


def test_setfit_runs_in_the_background_can_be_cancelled_and_draws_its_curve(clinic, setfit_page):
    at = setfit_page
    at.multiselect(key="fs_shots").set_value([1, 2]).run()
    at.checkbox(key="fs_setfit").check().run()
    at.number_input(key="fs_setfit_steps").set_value(10_000).run()
    at.button(key="fs_setfit_run").click().run()
    assert not at.exception and not at.error
    j = wait_for_setfit(clinic, lambda j: "fine-tuning step" in j["progress"]["message"] or j["state"] not in ACTIVE)
    assert j["state"] == "running", j
    at.run()
    assert any(m.value.startswith("SetFit job #1") for m in at.markdown)
    at.button(key="fs_setfit_cancel").click().run()
    assert wait_for_setfit(clinic, lambda j: j["state"] not in ACTIVE)["state"] == "cancelled"
    at.run()
    assert any("was cancelled" in w.value for w in at.warning)

    at.number_input(key="fs_setfit_steps").set_value(3).run()  # new settings: a new job
    at.button(key="fs_setfit_run").click().run()
    j = wait_for_setfit(clinic, lambda j: j["id"] == 2 and j["state"] not in ACTIVE)
    assert j["state"] == "done", j["error"]
    at.run()
    assert not at.exception and not at.error
    names = {t.get("name") for t in json.loads(at.get("plotly_chart")[0].proto.spec)["data"]}
    assert names == {"tiny + SetFit", None}  # its mean line and band; the frozen curve was not asked for
    at.button(key="fs_run").click().run()
    settle(at)
    names = {t.get("name") for t in json.loads(at.get("plotly_chart")[0].proto.spec)["data"]}
    assert names == {"tiny", "tiny + SetFit", None}  # side by side
    table = at.table[0].value
    assert table.index.name == "Notes per class" and list(table.columns)[:2] == ["tiny", "tiny + SetFit"]
    compared = at.table[1].value  # SetFit pairs with the frozen curve: same test notes, same draws
    assert set(compared.index) == {"tiny + SetFit minus tiny"} and set(compared["Notes per class"]) == {1, 2}
