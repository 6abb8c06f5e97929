"""AppTest of the Few-shot page: a small learning curve, its table, confusion matrix and predictions."""

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parent.parent / "app.py")


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
    assert not at.exception and not at.error
    curve = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert curve["layout"]["xaxis"]["type"] == "log" and curve["layout"]["xaxis"]["tickvals"] == [1, 2, 4]
    lines = [t for t in curve["data"] if t.get("name") == "tiny"]
    assert len(lines) == 1 and len(curve["data"]) == 2  # the mean line and its interval band
    table = at.dataframe[0].value
    assert list(table["notes per class"]) == [1, 2, 4] and table["tiny"].str.match(r"\d\.\d{3} \[").all()
    confusion = json.loads(at.get("plotly_chart")[1].proto.spec)["data"][0]
    assert confusion["type"] == "heatmap" and sorted(confusion["x"]) == ["cardiology", "orthopaedics", "psychiatry",
                                                                         "urology"]
    assert at.get("download_button")[0].proto.label.startswith("Download predictions")

    at.radio(key="fs_metric").set_value("accuracy").run()
    assert json.loads(at.get("plotly_chart")[0].proto.spec)["layout"]["yaxis"]["title"]["text"] == "Accuracy"

    runs = len(clinic.runs("fewshot"))
    again = open_page()  # a new session finds the stored curve without running it
    assert len(again.get("plotly_chart")) == 2 and len(clinic.runs("fewshot")) == runs
