"""core.jobs: validation, a foreground run, background workers (queue, cancel, kill and resume), Ctrl-C, the CLI.

Everything trains the tiny random BERT ('tiny' in the models_dir fixture) for a few steps; workers
are real detached processes with one torch thread each (the cores are shared).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest

from core import encoders, jobs
from core.corpus import ingest_frame
from core.embed import load_embeddings
from core.encoders import list_encoders
from core.options import EmbedOptions, PretrainOptions
from core.store import Store, StoreError
from core.training.settings import suggested_options
from tests.conftest import wait_for

RESULT_KEYS = {"encoder", "path", "objective", "steps", "seconds", "final_loss", "usable_docs"}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # for training in this process; OMP_NUM_THREADS does it for the workers
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def store(db_path, models_dir, synthetic_df, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    s = Store(db_path)
    ingest_frame(s, synthetic_df, "clinic", "text", "note_id", ["specialty", "site"])
    yield s
    for j in jobs.state.select(s, states=("running",)):  # a failed test must not leave a worker training
        try:
            os.kill(j["pid"], signal.SIGKILL)
        except ProcessLookupError:
            pass


def tiny(name: str = "new", **kw) -> PretrainOptions:
    return PretrainOptions(**{"objective": "mlm", "name": name, "base": "tiny", "steps": 10, "batch_size": 8,
                              "max_length": 64, "lr": 3e-3, **kw})


def state(store: Store, job_id: int) -> str:
    return jobs.job(store, job_id)["state"]


@pytest.fixture()
def ctrl_c():
    """Ctrl-C as a terminal delivers it, also where this suite runs with SIGINT ignored (a background
    job of a shell script), which every process it starts would inherit: yields press(pid)."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield lambda pid=os.getpid(): os.kill(pid, signal.SIGINT)
    signal.signal(signal.SIGINT, before)


@pytest.mark.parametrize("corpus, changes, message", [
    ("nope", {}, "no corpus named 'nope'"),
    ("clinic", {"name": ""}, "name the new encoder"),
    ("clinic", {"name": "bad name"}, "invalid name"),
    ("clinic", {"name": "tiny"}, "an encoder named 'tiny' exists already"),
    ("clinic", {"base": "nope"}, "unknown encoder 'nope'"),
    ("clinic", {"objective": "metadata"}, "needs a label column (--label) of corpus 'clinic': one of specialty, site"),
    ("clinic", {"objective": "metadata", "label": "ward"}, "needs a label column"),
    ("clinic", {"objective": "metadata", "label": "specialty", "batch_size": 3}, "batch size of 4 or more"),
    ("clinic", {"max_length": 1000}, "max length must be between 8 and 512"),
    ("clinic", {"steps": 0}, "steps, batch size"),
    ("clinic", {"objective": "simcse"}, "unknown objective"),
])
def test_bad_settings_are_refused_before_anything_is_queued(store, corpus, changes, message):
    with pytest.raises((StoreError, ValueError)) as err:
        jobs.submit_pretrain(store, corpus, tiny(**{"name": "new", **changes}))
    assert message in str(err.value)
    assert jobs.list_jobs(store) == []


def test_a_name_being_made_is_taken_and_suggestions_avoid_it(store):
    store_job = jobs.queue_pretrain(store, "clinic", tiny("clinic-mlm"), pid=os.getpid())
    assert jobs.suggest_name(store, "clinic", "mlm") == "clinic-mlm-2"
    with pytest.raises(StoreError, match=f"job {store_job['id']} is already making"):
        jobs.submit_pretrain(store, "clinic", tiny("clinic-mlm"))
    jobs.cancel_job(store, store_job["id"])


def test_defaults_suit_the_device():
    cpu, gpu = suggested_options("cpu", "mlm"), suggested_options("cuda", "mlm")
    assert suggested_options("cpu", "declutr")["batch_size"] < cpu["batch_size"] < gpu["batch_size"]


def test_run_now_registers_an_encoder_that_embeds_differently(store):
    reports = []
    result = jobs.run_pretrain_now(store, "clinic", tiny("adapted", steps=12), progress=lambda f, m: reports.append((f, m)))
    assert set(result) == RESULT_KEYS and result["steps"] == 12 and result["usable_docs"] == 120
    assert reports[-1][0] == 1.0 and reports[-1][1].startswith("step 12/12 loss ") and "tok/s" in reports[-1][1]
    assert "adapted" in {e.id for e in list_encoders(store)}
    card = json.loads((encoders.models_dir() / "adapted" / "notespace_card.json").read_text())
    clinic = store.corpus("clinic")
    assert (card["corpus"], card["data_hash"], card["job_id"], card["base_encoder"]) == ("clinic", clinic.data_hash, 1, "tiny")
    assert card["objective"] == "mlm" and len(card["losses"]) == 12 and card["hardware"]["device"] == "cpu"
    done = jobs.list_jobs(store)[0]
    assert done["state"] == "done" and done["result"] == result and done["progress"]["curve"][-1][0] == 12
    before = load_embeddings(store, "clinic", EmbedOptions(encoder="tiny"))
    after = load_embeddings(store, "clinic", EmbedOptions(encoder="adapted"))
    assert before.shape == after.shape == (120, 32) and not np.allclose(before, after, atol=1e-3)


def test_worker_runs_queued_jobs_one_per_device(store):
    first = jobs.submit_pretrain(store, "clinic", tiny("first", steps=30))
    second = jobs.submit_pretrain(store, "clinic", tiny("second", objective="metadata", label="specialty"))
    wait_for(lambda: state(store, first) == "running")
    assert state(store, second) == "queued"  # the device is busy: it waits its turn
    wait_for(lambda: state(store, second) in ("done", "failed"))
    a, b = jobs.job(store, first), jobs.job(store, second)
    assert (a["state"], b["state"]) == ("done", "done"), (a["error"], b["error"])
    assert b["started"] >= a["finished"]
    assert set(b["result"]) == RESULT_KEYS and b["result"]["objective"] == "metadata"
    assert {"first", "second"} <= {e.id for e in list_encoders(store)}
    log = (store.path.parent / "store.duckdb.worker.log").read_text()
    assert "job 1: done" in log and "job 2: running" in log  # one worker took both


def test_cancel_queued_and_running_jobs_while_a_command_waits_its_turn(store):
    running = jobs.submit_pretrain(store, "clinic", tiny("long", steps=100_000))
    queued = jobs.submit_pretrain(store, "clinic", tiny("later"))
    wait_for(lambda: jobs.job(store, running)["progress"].get("step"))
    messages, results = [], {}  # `notespace pretrain` meanwhile: it waits for the device, then runs here
    command = threading.Thread(target=lambda: results.update(r=jobs.run_pretrain_now(
        store, "clinic", tiny("foreground", steps=5), progress=lambda fraction, message: messages.append(message))))
    command.start()
    wait_for(lambda: f"queued behind job {running}" in messages)
    assert jobs.cancel_job(store, queued) == "cancelled"  # at once
    assert jobs.cancel_job(store, running) == "running"  # stops at its next look at the flag
    wait_for(lambda: state(store, running) == "cancelled", timeout=30)
    command.join(60)
    assert results["r"]["encoder"] == "foreground" and results["r"]["steps"] == 5
    assert not (encoders.models_dir() / "long").exists() and not jobs.checkpoint_dir(store, running).exists()
    assert {"long", "later"}.isdisjoint(e.id for e in list_encoders(store))


@pytest.mark.parametrize("moment", ["recorded", "queued", "training"])
def test_ctrl_c_at_any_moment_cancels_the_foreground_job(store, ctrl_c, monkeypatch, moment):
    """`notespace pretrain` gets Ctrl-C (SIGINT to this process) just after its job is recorded (inside
    a store call), while it waits for the device, or while it trains: the job ends cancelled."""
    pressed = []

    def press_once() -> None:
        if not pressed:
            pressed.append(True)
            ctrl_c()

    trigger = {"queued": "waiting for the device", "training": "step "}.get(moment)

    def progress(fraction: float, message: str) -> None:
        if trigger and message.startswith(trigger):
            press_once()

    if moment == "recorded":  # the job's row is committed; reading it back is the last call of the insert
        real_get = jobs.state.get

        def job_after_ctrl_c(*args) -> dict:
            press_once()
            return real_get(*args)

        monkeypatch.setattr(jobs.state, "get", job_after_ctrl_c)
    device_busy = jobs.hold(jobs.lock_path(store, "cpu")) if moment == "queued" else contextlib.nullcontext()
    with device_busy, pytest.raises(KeyboardInterrupt):
        jobs.run_pretrain_now(store, "clinic", tiny("stopped", steps=50), progress=progress)
    assert pressed and [(j["state"], j["error"]) for j in jobs.list_jobs(store)] == [("cancelled", "cancelled with Ctrl-C")]
    assert not jobs.pending(store, "cpu") and not (encoders.models_dir() / "stopped").exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl-C raises again


@pytest.mark.robustness
def test_killed_worker_is_recovered_and_resumed_from_its_checkpoint(store, monkeypatch):
    # a checkpoint every 0.1 s (read by the worker processes) and far more steps than that: the kill
    # lands mid-run even where a step takes a few milliseconds
    monkeypatch.setenv("NOTESPACE_CHECKPOINT_S", "0.1")
    steps = 200
    job_id = jobs.submit_pretrain(store, "clinic", tiny("resumed", steps=steps, batch_size=4, max_length=32))
    folder = jobs.checkpoint_dir(store, job_id)
    wait_for(lambda: list(folder.glob("step-*")), every=0.02)
    pid = jobs.job(store, job_id)["pid"]
    os.kill(pid, signal.SIGKILL)
    # Gone once the kernel has dropped its lock (its main thread can be a zombie before the rest exit)
    wait_for(lambda: jobs.holder(jobs.lock_path(store, "cpu")) is None)
    assert state(store, job_id) == "running"  # nobody has looked yet
    assert jobs.recover(store) == [job_id] and state(store, job_id) == "interrupted"

    jobs.ensure_worker(store, "cpu")  # what the page's Resume button does
    wait_for(lambda: state(store, job_id) in ("done", "failed"), timeout=120)
    j = jobs.job(store, job_id)
    assert j["state"] == "done" and j["result"]["steps"] == steps, j["error"]
    assert j["progress"]["resumed_from"] > 0 and not folder.exists()
    card = json.loads((encoders.models_dir() / "resumed" / "notespace_card.json").read_text())
    assert card["resumed_from"] == j["progress"]["resumed_from"] and len(card["losses"]) == steps


def notespace(*args, db, models):
    env = os.environ | {"NOTESPACE_DB": str(db), "NOTESPACE_MODELS": str(models)}
    return subprocess.run([sys.executable, "-m", "core.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300)


def test_cli_pretrain_and_jobs(store, db_path, models_dir, ctrl_c):
    out = notespace("pretrain", "--corpus", "clinic", "--objective", "declutr", "--name", "cli-declutr", "--base", "tiny",
                    "--steps", "6", "--batch-size", "8", "--max-length", "64", db=db_path, models=models_dir)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert set(result) == RESULT_KEYS and result["objective"] == "declutr" and result["steps"] == 6
    assert result["path"] == str(models_dir / "cli-declutr") and "step 6/6" in out.stderr

    with subprocess.Popen([sys.executable, "-m", "core.cli", "pretrain", "--corpus", "clinic", "--name", "stopped",
                           "--base", "tiny", "--steps", "100000", "--batch-size", "4", "--max-length", "32"],
                          env=os.environ | {"NOTESPACE_DB": str(db_path)}, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as command:
        err: list[str] = []  # read as it comes, so that every wait below is bounded
        reader = threading.Thread(target=lambda: [err.append(line) for line in command.stderr], daemon=True)
        reader.start()
        try:  # a loaded machine can take minutes to import torch and load the model
            wait_for(lambda: command.poll() is not None or any("step " in line for line in err), timeout=300)
            assert command.poll() is None, "".join(err)  # training has begun
            ctrl_c(command.pid)
            assert command.wait(timeout=120) == 130, "".join(err)
        finally:
            command.kill()  # a no-op once it has exited; else a failed check leaves nothing training
        reader.join(30)
        assert "".join(err).strip().endswith("notespace: cancelled") and command.stdout.read() == ""

    listed = json.loads(notespace("jobs", db=db_path, models=models_dir).stdout)
    assert [(j["id"], j["state"]) for j in listed] == [(2, "cancelled"), (1, "done")]
    assert {"id", "kind", "state", "progress", "params", "result", "error", "created", "started",
            "finished"} <= set(listed[1]) and listed[1]["result"] == result
    assert not (models_dir / "stopped").exists()
