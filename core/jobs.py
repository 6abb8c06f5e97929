"""Background training jobs: a queue in the store's `jobs` table, one worker process per device.

Training takes minutes to hours, so it runs in its own process: it survives page reloads, shows in
every browser tab and in `notespace jobs`, and never blocks the app. `submit_pretrain` (or
`submit_setfit`: few-shot curves of an encoder fine-tuned per draw) queues a job and starts a
detached worker (`python -m core.jobs worker --db PATH --device D`, whose loop and runs
are core/training/worker.py). The worker holds the device's lock file while it trains
(core/training/devicelock.py): one job per device, the others wait. `recover` marks 'interrupted'
the running jobs whose process is gone; a worker resumes those first, from their last checkpoint.
The store is opened only briefly (docs/architecture.md): progress and the cancel flag every ~2 s.
States: queued -> running -> done | failed | cancelled; running -> interrupted (process gone) -> running.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


from core.encoders import get_encoder, list_encoders, models_dir
from core.options import EvaluateOptions, PretrainOptions
from core.store import Store, StoreError, safe_name
from core.training.devicelock import hold, holder
from core.training.settings import check_options

ROOT = Path(__file__).resolve().parent.parent
PROGRESS_S = 2.0  # how often a running job writes its progress and reads its cancel flag
CHECKPOINT_S = float(os.environ.get("NOTESPACE_CHECKPOINT_S", "120"))  # the most work a crash can lose
_KEYS = ("id", "kind", "state", "progress", "params", "result", "error", "created", "started", "finished",
         "device", "cancel_requested", "pid")


def detect_device(requested: str = "auto") -> str:
    from core.embed import resolve_device

    return resolve_device(requested)


# ---- submitting ----------------------------------------------------------------------------------


ACTIVE = ("queued", "running", "interrupted")  # states of a job that has not ended


def _taken(store: Store, name: str) -> str | None:
    """Why `name` cannot be a new encoder's name, or None."""
    if any(e.id == name for e in list_encoders(store)):
        return f"an encoder named '{name}' exists already"
    if (models_dir() / name).exists():
        return f"{models_dir() / name} exists already"
    busy = [j["id"] for j in _rows(store, f"kind = 'pretrain' AND state IN {ACTIVE}")
            if j["params"]["options"]["name"] == name]
    return f"job {busy[0]} is already making an encoder named '{name}'" if busy else None


def suggest_name(store: Store, corpus: str, objective: str) -> str:
    name, k = f"{corpus}-{objective}", 2
    while _taken(store, name):
        name, k = f"{corpus}-{objective}-{k}", k + 1
    return name


def _insert(store: Store, corpus_name: str, opts: PretrainOptions, pid: int | None) -> dict:
    """Validate, then record a queued job (with the data hash and base fingerprint it was asked for)."""
    corpus = store.corpus(corpus_name)
    if not opts.name:
        raise StoreError("name the new encoder (--name); it becomes a folder under models/")
    if reason := _taken(store, safe_name(opts.name)):
        raise StoreError(f"{reason}; choose another name")
    base = get_encoder(store, opts.base)
    check_options(opts, base.path)
    if opts.objective == "metadata":
        if opts.label not in corpus.meta:
            raise StoreError(f"the metadata objective needs a label column (--label) of corpus '{corpus.name}': "
                             f"one of {', '.join(corpus.meta) or 'none (the corpus has no metadata)'}")
        counts = store.documents(corpus, with_text=False)[opts.label].dropna().astype(str).value_counts()
        if (counts >= 2).sum() < 2:
            raise StoreError(f"column '{opts.label}' needs 2 or more values held by 2 or more notes each")
    opts = opts.replace(device=detect_device(opts.device))
    params = {"corpus": corpus.name, "data_hash": corpus.data_hash, "options": opts.as_params(), "base_path": base.path,
              "base_fingerprint": base.fingerprint, "out_dir": str(models_dir() / opts.name)}
    return _queue(store, "pretrain", params, opts.device, pid)


def _queue(store: Store, kind: str, params: dict, device: str, pid: int | None) -> dict:
    with store.transaction() as con:
        job_id = con.execute(
            "INSERT INTO jobs (kind, params, state, progress, pid, device) VALUES (?, ?, 'queued', ?, ?, ?) "
            "RETURNING id", [kind, json.dumps(params), json.dumps({"fraction": 0.0, "message": "queued"}), pid, device],
        ).fetchone()[0]
    return job(store, job_id)


def submit_pretrain(store: Store, corpus: str, opts: PretrainOptions) -> int:
    """Check the settings, queue the job and make sure a worker will run it; returns the job id."""
    j = _insert(store, corpus, opts, pid=None)
    ensure_worker(store, j["device"])
    return j["id"]


def _setfit_params(corpus: str, encoder_ids: list[str], opts: EvaluateOptions, finetune: PretrainOptions) -> dict:
    finetune = finetune.replace(device=detect_device(finetune.device))
    return {"corpus": corpus, "encoders": list(encoder_ids), "options": opts.as_params(),
            "finetune": finetune.as_params()}


def submit_setfit(store: Store, corpus: str, encoder_ids: list[str], opts: EvaluateOptions,
                  finetune: PretrainOptions) -> int:
    """Queue SetFit curves (`core.evaluation.fewshot_corpus` with `finetune`) for a worker, after the
    checks a run would fail; returns the job id. The curves are stored as runs, the job keeps a summary."""
    from core.evaluation import fewshot_corpus

    for e in encoder_ids:
        check_options(finetune, get_encoder(store, e).path)
    fewshot_corpus(store, corpus, encoder_ids, opts, compute=False, finetune=finetune)  # label, shots, seeds
    params = _setfit_params(corpus, encoder_ids, opts, finetune)
    j = _queue(store, "setfit", params, params["finetune"]["device"], pid=None)
    ensure_worker(store, j["device"])
    return j["id"]


def setfit_job(store: Store, corpus: str, encoder_ids: list[str], opts: EvaluateOptions,
               finetune: PretrainOptions) -> dict | None:
    """The newest job asked for these SetFit curves, whatever its state (None: never asked for)."""
    params = _setfit_params(corpus, encoder_ids, opts, finetune)
    recover(store)  # a job whose worker died shows as interrupted, not running forever
    return next((j for j in _rows(store, "kind = 'setfit'") if j["params"] == params), None)


def ensure_worker(store: Store, device: str) -> None:
    """Start a detached worker for `device`, unless a process trains there (it takes queued jobs next)."""
    if holder(lock_path(store, device)) is not None:
        return
    env = os.environ | {"NOTESPACE_MODELS": str(models_dir()), "NOTESPACE_DB": str(store.path)}
    with open(store.path.with_name(store.path.name + ".worker.log"), "a") as log:
        proc = subprocess.Popen([sys.executable, "-m", "core.jobs", "worker", "--db", str(store.path), "--device", device],
                                cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # outside the app's process group: a Ctrl-C there spares it
    threading.Thread(target=proc.wait, daemon=True).start()  # reap it when it ends: no zombie left behind


# ---- reading, cancelling, recovering -------------------------------------------------------------


def _rows(store: Store, where: str = "true", params: list | None = None) -> list[dict]:
    with store.connect() as con:
        rows = con.execute(f"SELECT {', '.join(_KEYS)} FROM jobs WHERE {where} ORDER BY id DESC", params or []).fetchall()
    out = [dict(zip(_KEYS, r)) for r in rows]
    for j in out:
        j["progress"], j["params"] = json.loads(j["progress"] or "{}"), json.loads(j["params"] or "{}")
        j["result"] = json.loads(j["result"]) if j["result"] else None
        j.update({k: str(j[k]) for k in ("created", "started", "finished") if j[k] is not None})
    return out


def list_jobs(store: Store, kind: str | None = None) -> list[dict]:
    """Every job (or every job of `kind`), newest first: id, kind, state, progress, params, result, error,
    times, device."""
    recover(store)
    rows = _rows(store, "kind = ?", [kind]) if kind else _rows(store)
    return [{k: v for k, v in j.items() if k != "pid"} for j in rows]


def job(store: Store, job_id: int) -> dict:
    found = _rows(store, "id = ?", [int(job_id)])
    if not found:
        raise StoreError(f"no job {job_id}; see `notespace jobs`")
    return found[0]


def cancel_job(store: Store, job_id: int) -> str:
    """Queued and interrupted jobs stop at once; a running one at its next step (within ~2 s)."""
    with store.transaction() as con:
        stopped = con.execute("UPDATE jobs SET state = 'cancelled', cancel_requested = true, finished = current_timestamp "
                              "WHERE id = ? AND state IN ('queued', 'interrupted') RETURNING id", [job_id]).fetchone()
        con.execute("UPDATE jobs SET cancel_requested = true WHERE id = ? AND state = 'running'", [job_id])
    if stopped:
        shutil.rmtree(checkpoint_dir(store, job_id), ignore_errors=True)
    return job(store, job_id)["state"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        pass
    return True


def recover(store: Store) -> list[int]:
    """Mark 'interrupted' the running jobs whose process died or is not the one training on the device
    (a reused pid), and queued `notespace pretrain` jobs whose command is gone; returns their ids."""
    lost = [j for j in _rows(store, "state = 'running' OR (state = 'queued' AND pid IS NOT NULL)")
            if not _alive(j["pid"]) or (j["state"] == "running"
                                        and holder(lock_path(store, j["device"])) not in (j["pid"], -1))]
    if lost:
        with store.transaction() as con:
            for j in lost:
                con.execute("UPDATE jobs SET state = 'interrupted' WHERE id = ? AND state = ? AND pid = ?",
                            [j["id"], j["state"], j["pid"]])
    return [j["id"] for j in lost]


def lock_path(store: Store, device: str) -> Path:
    return store.path.with_name(f"{store.path.name}.train-{device}.lock")


def checkpoint_dir(store: Store, job_id: int) -> Path:
    return store.path.parent / "checkpoints" / f"{store.path.stem}-job-{job_id}"


# ---- state changes shared with the worker (core/training/worker.py) --------------------------------


def update(store: Store, job_id: int, sql: str, values: list) -> None:
    with store.transaction() as con:
        con.execute(f"UPDATE jobs SET {sql} WHERE id = ?", [*values, job_id])


def claim(store: Store, job_id: int) -> bool:
    """Take a queued or interrupted job for this process (guarded: only one process can win it)."""
    with store.transaction() as con:
        return con.execute(
            "UPDATE jobs SET state = 'running', pid = ?, started = coalesce(started, current_timestamp), "
            "progress = json_merge_patch(progress, ?) WHERE id = ? AND state IN ('queued', 'interrupted') RETURNING id",
            [os.getpid(), json.dumps({"message": "loading the base encoder and the notes"}), job_id]).fetchone() is not None


def mark_cancelled(store: Store, job_id: int, why: str) -> None:
    update(store, job_id, "state = 'cancelled', error = ?, finished = current_timestamp", [why])
    shutil.rmtree(checkpoint_dir(store, job_id), ignore_errors=True)


def pending(store: Store, device: str) -> list[dict]:
    """Jobs a worker for `device` may take: interrupted ones, and queued ones no command waits for."""
    return _rows(store, "device = ? AND (state = 'interrupted' OR (state = 'queued' AND pid IS NULL))", [device])


@contextmanager
def _ctrl_c_checked() -> Iterator[Callable[[], None]]:
    """Within the block Ctrl-C only sets a flag, and the `check()` it yields raises KeyboardInterrupt
    once it is set. DuckDB turns a KeyboardInterrupt raised during a query into RuntimeError('Query
    interrupted'): a Ctrl-C landing in one of the many short store calls ended the command with that
    error and left its job queued or running with no process (so a worker later resumed it). A second
    Ctrl-C raises at once. Only the main thread gets signals, and a process started with SIGINT
    ignored (a background job of a shell script) keeps ignoring it."""
    pressed = threading.Event()

    def on_ctrl_c(signum, frame) -> None:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        pressed.set()

    def check() -> None:
        if pressed.is_set():
            raise KeyboardInterrupt

    ours = (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
    if ours:
        signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        yield check
    finally:
        if ours:
            signal.signal(signal.SIGINT, signal.default_int_handler)


def run_pretrain_now(store: Store, corpus: str, opts: PretrainOptions, progress=None) -> dict:
    """Queue a job and run it in this process (the CLI): waits its turn on the device, reports
    `(fraction, message)`, returns {encoder, path, objective, steps, seconds, final_loss, usable_docs}.
    Ctrl-C cancels the job, queued or running (at its next progress report); a second one stops at once."""
    from core.training.worker import run_job

    report = progress or (lambda fraction, message="": None)
    with _ctrl_c_checked() as check:
        j = _insert(store, corpus, opts, pid=os.getpid())  # a pid: workers leave this queued job alone

        def waiting() -> None:
            check()
            if job(store, j["id"])["state"] == "cancelled":
                raise StoreError(f"job {j['id']} was cancelled while it waited")
            running = _rows(store, "state = 'running' AND device = ?", [j["device"]])
            report(0.0, f"queued behind job {running[0]['id']}" if running else "waiting for the device")

        def reporting(fraction: float, message: str = "") -> None:
            check()
            report(fraction, message)

        try:
            with hold(lock_path(store, j["device"]), waiting):
                check()
                result = run_job(store, j["id"], reporting) if claim(store, j["id"]) else None
        except KeyboardInterrupt:
            mark_cancelled(store, j["id"], "cancelled with Ctrl-C")
            raise
        finally:  # background jobs queued meanwhile found the device busy: hand it over
            if pending(store, j["device"]):
                ensure_worker(store, j["device"])
    if result is None:
        raise StoreError(f"job {j['id']} was cancelled")
    return result


if __name__ == "__main__":  # python -m core.jobs worker --db PATH --device D (started by ensure_worker)
    from core.training.worker import main

    main()
