"""Background jobs: one per key, progress, errors kept until forgotten, `once` keys that never rerun."""

from __future__ import annotations

import threading
import time

from core import background
from core.errors import UserError


def _finished(job: background.Job) -> background.Job:
    job.thread.join(30)
    assert job.done
    return job


def test_one_job_per_key_reports_progress_and_is_dropped_when_it_finishes_well():
    release = threading.Event()

    def work(progress):
        progress(0.5, "half way")
        release.wait(30)
        return {"stored": 1}

    job = background.start(("test", "ok"), "opts", work)
    assert background.start(("test", "ok"), "other", work) is job and job.opts == "opts"
    assert job in background.running()
    release.set()
    _finished(job)
    assert job not in background.running()
    assert (job.fraction, job.message, job.result, job.error) == (0.5, "half way", {"stored": 1}, None)
    assert background.get(("test", "ok")) is None and job.elapsed > 0


def test_a_failed_job_keeps_its_error_until_forgotten():
    def fail(progress):
        raise UserError("no vectors\nsecond line")

    bad = _finished(background.start(("test", "bad"), None, fail))
    assert bad.error == "no vectors" and bad.traceback is None
    assert background.start(("test", "bad"), None, fail) is bad
    background.forget(bad)
    again = background.start(("test", "bad"), None, fail)
    assert again is not bad
    _finished(again)
    background.forget(again)


def test_a_bug_says_internal_error_and_keeps_its_whole_traceback_in_the_log(caplog):
    def deep_inside(progress):
        return {}["missing"]

    bug = _finished(background.start(("test", "bug"), None, deep_inside))
    assert bug.error == "internal error: 'missing'"
    assert "Traceback" in bug.traceback and "deep_inside" in bug.traceback and "KeyError" in bug.traceback
    assert any("deep_inside" in r.getMessage() for r in caplog.records if r.name == "core.background")
    background.forget(bug)


def test_a_once_job_never_runs_again_until_forgotten():
    runs = []
    job = _finished(background.start(("test", "once"), None, lambda progress: runs.append(1), once=True))
    assert background.start(("test", "once"), None, lambda progress: runs.append(1), once=True) is job
    assert background.get(("test", "once")) is job and runs == [1]
    background.forget(job)
    assert background.get(("test", "once")) is None


def test_a_cancelled_job_stops_at_its_next_report_and_says_so():
    started, steps = threading.Event(), []

    def work(progress):
        for step in range(1000):
            progress(step / 1000, f"step {step}")
            steps.append(step)
            started.set()
            time.sleep(0.01)
        return "finished"

    job = background.start(("test", "cancel"), None, work)
    started.wait(10)
    job.cancel()
    _finished(job)
    assert job.error == background.CANCELLED and job.result is None and len(steps) < 1000
    assert background.get(("test", "cancel")) is job  # kept, like a failure, until forgotten
    background.forget(job)
