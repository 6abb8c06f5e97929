"""AppTest of the Pretrain page: defaults, the run-time estimate timed in the background once, a refused
name, a tiny job launched and finished."""

import threading
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import jobs
from core.corpus import ingest_frame
from core.store import Store
from core.training import loop

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


def finish_timing() -> None:
    """Wait for the page's background timing of the settings, as its poll would."""
    for thread in threading.enumerate():
        if thread.name == "notespace-speed":
            thread.join(120)


def estimate_text(at) -> str:
    return " ".join(i.value for i in at.info if "Estimated run time" in i.value)


def test_estimate_is_timed_in_the_background_once_and_launch_never_waits(one_thread, db_path, models_dir,
                                                                          synthetic_df, monkeypatch):
    ingest_frame(Store(db_path), synthetic_df, "clinic", "text", "note_id", ["specialty", "site", "age"])
    release, calls, real = threading.Event(), [], loop.measure_speed

    def held_timer(*args, **kwargs):  # a spy that times for real once released
        calls.append(args[3])
        release.wait(60)
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "measure_speed", held_timer)

    def visit() -> AppTest:
        at = AppTest.from_file(APP, default_timeout=120)
        at.run()
        at.session_state["pt_base"] = "tiny"
        at.switch_page("pages/pretrain.py").run()
        assert not at.exception
        return at

    at = visit()
    try:
        waiting = [p.proto.text for p in at.get("progress")]
        assert any("Run-time estimate: measuring…" in t and "Launch does not wait" in t for t in waiting), waiting
        assert not estimate_text(at)  # no figure of other settings meanwhile
        assert not at.button(key="pt_launch").disabled
    finally:
        release.set()
    finish_timing()
    at.run()
    assert "timed on this machine with these settings, on a sample of 'clinic'" in estimate_text(at)
    assert not at.get("progress")

    second = visit()  # a new session: the figure comes from the store, nothing is timed again
    assert estimate_text(second) == estimate_text(at) and len(calls) == 1
    second.number_input(key="pt_batch_cpu_mlm").set_value(4).run()  # other settings: measuring, no old figure
    assert not estimate_text(second)
    assert any("measuring…" in p.proto.text for p in second.get("progress"))
    finish_timing()
    assert [o.batch_size for o in calls] == [16, 4]


def started_after_the_first_look(monkeypatch) -> None:
    """Every listing of the training jobs after the first sees queued jobs running: the worker picks a
    job up at the worst moment, between the page's listing and its poll's."""
    real, listings = jobs.list_jobs, []

    def list_jobs_as_the_worker_starts(store, kind=None):
        found = real(store, kind)
        listings.append(kind)
        if listings.count("pretrain") < 2:
            return found
        return [{**j, "state": "running"} if j["state"] == "queued" else j for j in found]

    monkeypatch.setattr(jobs, "list_jobs", list_jobs_as_the_worker_starts)


def test_launch_a_tiny_job_and_watch_it_finish(pretrain_page, db_path, monkeypatch):
    at = pretrain_page
    assert at.selectbox(key="pt_label").disabled and at.selectbox(key="pt_label").options == ["specialty", "site"]
    assert at.number_input(key="pt_steps_cpu_mlm").value == 300  # the CPU default
    at.number_input(key="pt_steps_cpu_mlm").set_value(12)
    at.number_input(key="pt_batch_cpu_mlm").set_value(8)
    at.number_input(key="pt_length_cpu_mlm").set_value(64).run()
    assert at.text_input(key="pt_name_clinic_mlm").value == "clinic-mlm"
    finish_timing()
    at.run()
    assert "Estimated run time on **cpu**" in estimate_text(at), [w.value for w in at.warning]

    at.text_input(key="pt_name_clinic_mlm").set_value("tiny")
    at.button(key="pt_launch").click().run()
    assert any("an encoder named 'tiny' exists already" in e.value for e in at.error)

    at.text_input(key="pt_name_clinic_mlm").set_value("clinic-mlm")
    with monkeypatch.context() as patch:
        started_after_the_first_look(patch)
        at.button(key="pt_launch").click().run()
    assert any("Job 1 queued" in s.value for s in at.success), [e.value for e in at.error]
    assert at.text_input(key="pt_name_clinic_mlm").value == "clinic-mlm-2"  # a fresh name for the next one

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and jobs.list_jobs(Store(db_path))[0]["state"] != "done":
        time.sleep(0.5)
    at.run()  # a reload: the job lives in the store, not in the session
    assert not at.exception
    assert any("done: encoder **clinic-mlm**, 12 steps" in m.value for m in at.markdown), jobs.list_jobs(Store(db_path))
    assert "clinic-mlm (adapted, 32-d)" in at.selectbox(key="pt_base").options  # the base of a next run
    assert any("No job is queued or running" in c.value for c in at.caption)
