"""AppTest of the Pretrain page: defaults and estimate, a refused name, a tiny job launched and finished."""

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.corpus import ingest_frame
from core.jobs import list_jobs
from core.store import Store

APP = str(Path(__file__).resolve().parent.parent / "app.py")


@pytest.fixture()
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the page times a few steps in this process; the cores are shared
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def pretrain_page(one_thread, db_path, models_dir, synthetic_df, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the worker's torch: the cores are shared
    ingest_frame(Store(db_path), synthetic_df, "clinic", "text", "note_id", ["specialty", "site", "age"])
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.session_state["pt_base"] = "tiny"  # spares timing the packaged MiniLM for the estimate
    at.switch_page("pages/pretrain.py").run()
    assert not at.exception
    return at


def test_launch_a_tiny_job_and_watch_it_finish(pretrain_page, db_path):
    at = pretrain_page
    assert at.selectbox(key="pt_label").disabled and at.selectbox(key="pt_label").options == ["specialty", "site"]
    assert at.number_input(key="pt_steps_cpu_mlm").value == 300  # the CPU default
    at.number_input(key="pt_steps_cpu_mlm").set_value(12)
    at.number_input(key="pt_batch_cpu_mlm").set_value(8)
    at.number_input(key="pt_length_cpu_mlm").set_value(64).run()
    assert at.text_input(key="pt_name_clinic_mlm").value == "clinic-mlm"
    assert any("Estimated run time on **cpu**" in i.value for i in at.info), [w.value for w in at.warning]

    at.text_input(key="pt_name_clinic_mlm").set_value("tiny")
    at.button(key="pt_launch").click().run()
    assert any("an encoder named 'tiny' exists already" in e.value for e in at.error)

    at.text_input(key="pt_name_clinic_mlm").set_value("clinic-mlm")
    at.button(key="pt_launch").click().run()
    assert any("Job 1 queued" in s.value for s in at.success), [e.value for e in at.error]
    assert at.text_input(key="pt_name_clinic_mlm").value == "clinic-mlm-2"  # a fresh name for the next one

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and list_jobs(Store(db_path))[0]["state"] != "done":
        time.sleep(0.5)
    at.run()  # a reload: the job lives in the store, not in the session
    assert not at.exception
    assert any("done: encoder **clinic-mlm**, 12 steps" in m.value for m in at.markdown), list_jobs(Store(db_path))
    assert "clinic-mlm (adapted, 32-d)" in at.selectbox(key="pt_base").options  # the base of a next run
    assert any("No job is queued or running" in c.value for c in at.caption)
