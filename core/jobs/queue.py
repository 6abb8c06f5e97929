"""Submitting, listing, cancelling and recovering jobs, and starting the worker process that runs them.

`submit_pretrain` (or `submit_setfit`: few-shot curves of an encoder fine-tuned per draw) checks the
request, queues a job and starts a detached worker (`python -m core.jobs worker --db PATH --device D`,
core/jobs/worker.py). The worker holds the device's lock file while it trains (devicelock.py): one
job per device, the others wait. `recover` marks 'interrupted' the running jobs whose process is
gone; a worker resumes those first, from their last checkpoint.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from core.devices import resolve_device
from core.encoders import get_encoder, list_encoders, models_dir
from core.jobs import state
from core.jobs.devicelock import holder
from core.jobs.files import checkpoint_dir, lock_path, worker_log
from core.jobs.state import ACTIVE, JobRow
from core.jobs.runners import column_values
from core.options import EvaluateOptions, PretrainOptions
from core.store import Store, StoreError, safe_name
from core.training.registry import get_objective
from core.training.settings import check_options

ROOT = Path(__file__).resolve().parent.parent.parent


def _taken(store: Store, name: str) -> str | None:
    """Why `name` cannot be a new encoder's name, or None."""
    if any(e.id == name for e in list_encoders(store)):
        return f"an encoder named '{name}' exists already"
    if (models_dir() / name).exists():
        return f"{models_dir() / name} exists already"
    busy = [j["id"] for j in state.select(store, kind="pretrain", states=ACTIVE)
            if j["params"]["options"]["name"] == name]
    return f"job {busy[0]} is already making an encoder named '{name}'" if busy else None


def suggest_name(store: Store, corpus: str, objective: str) -> str:
    name, k = f"{corpus}-{objective}", 2
    while _taken(store, name):
        name, k = f"{corpus}-{objective}-{k}", k + 1
    return name


def queue_pretrain(store: Store, corpus_name: str, opts: PretrainOptions, pid: int | None) -> JobRow:
    """Validate, then record a queued job (with the data hash and base fingerprint it was asked for);
    `pid`: the command that runs it itself (workers leave it alone), else None."""
    corpus = store.corpus(corpus_name)
    if not opts.name:
        raise StoreError("name the new encoder (--name); it becomes a folder under models/")
    if reason := _taken(store, safe_name(opts.name)):
        raise StoreError(f"{reason}; choose another name")
    base = get_encoder(store, opts.base)
    check_options(opts, base.path)
    get_objective(opts.objective).check_corpus(opts, corpus.name, list(corpus.meta),
                                               lambda column: column_values(store, corpus, column))
    opts = opts.replace(device=resolve_device(opts.device))
    params = {"corpus": corpus.name, "data_hash": corpus.data_hash, "options": opts.as_params(), "base_path": base.path,
              "base_fingerprint": base.fingerprint, "out_dir": str(models_dir() / opts.name)}
    return state.get(store, state.insert(store, "pretrain", params, opts.device, pid))


def submit_pretrain(store: Store, corpus: str, opts: PretrainOptions) -> int:
    """Check the settings, queue the job and make sure a worker will run it; returns the job id."""
    j = queue_pretrain(store, corpus, opts, pid=None)
    ensure_worker(store, j["device"])
    return j["id"]


def _setfit_params(corpus: str, encoder_ids: list[str], opts: EvaluateOptions, finetune: PretrainOptions) -> dict:
    finetune = finetune.replace(device=resolve_device(finetune.device))
    return {"corpus": corpus, "encoders": list(encoder_ids), "options": opts.as_params(),
            "finetune": finetune.as_params()}


def submit_setfit(store: Store, corpus: str, encoder_ids: list[str], opts: EvaluateOptions,
                  finetune: PretrainOptions) -> int:
    """Queue SetFit curves (`core.evaluation.corpus.fewshot_corpus` with `finetune`) for a worker, after the
    checks a run would fail; returns the job id. The curves are stored as runs, the job keeps a summary."""
    from core.evaluation.corpus import fewshot_corpus  # evaluation is heavy (sklearn); the queue stays light

    for e in encoder_ids:
        check_options(finetune, get_encoder(store, e).path)
    fewshot_corpus(store, corpus, encoder_ids, opts, compute=False, finetune=finetune)  # label, shots, seeds
    params = _setfit_params(corpus, encoder_ids, opts, finetune)
    job_id = state.insert(store, "setfit", params, params["finetune"]["device"], pid=None)
    ensure_worker(store, params["finetune"]["device"])
    return job_id


def setfit_job(store: Store, corpus: str, encoder_ids: list[str], opts: EvaluateOptions,
               finetune: PretrainOptions) -> JobRow | None:
    """The newest job asked for these SetFit curves, whatever its state (None: never asked for)."""
    params = _setfit_params(corpus, encoder_ids, opts, finetune)
    recover(store)  # a job whose worker died shows as interrupted, not running forever
    return next((j for j in state.select(store, kind="setfit") if j["params"] == params), None)


def ensure_worker(store: Store, device: str) -> None:
    """Start a detached worker for `device`, unless a process trains there (it takes queued jobs next)."""
    if holder(lock_path(store, device)) is not None:
        return
    env = os.environ | {"NOTESPACE_MODELS": str(models_dir()), "NOTESPACE_DB": str(store.path)}
    with open(worker_log(store), "a") as log:
        proc = subprocess.Popen([sys.executable, "-m", "core.jobs", "worker", "--db", str(store.path), "--device", device],
                                cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # outside the app's process group: a Ctrl-C there spares it
    threading.Thread(target=proc.wait, daemon=True).start()  # reap it when it ends: no zombie left behind


def list_jobs(store: Store, kind: str | None = None) -> list[dict]:
    """Every job (or every job of `kind`), newest first: id, kind, state, progress, params, result, error,
    times, device."""
    recover(store)
    return [{k: v for k, v in j.items() if k != "pid"} for j in state.select(store, kind=kind)]


def cancel_job(store: Store, job_id: int) -> str:
    """Queued and interrupted jobs stop at once; a running one at its next step (within ~2 s)."""
    if state.request_cancel(store, job_id):
        shutil.rmtree(checkpoint_dir(store, job_id), ignore_errors=True)
    return state.get(store, job_id)["state"]


def mark_cancelled(store: Store, job_id: int, why: str) -> None:
    """Cancelled, with nothing left to resume from."""
    state.cancelled(store, job_id, why)
    shutil.rmtree(checkpoint_dir(store, job_id), ignore_errors=True)


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
    candidates = [j for j in state.select(store, states=("running", "queued"))
                  if j["state"] == "running" or j["pid"] is not None]
    lost = [j for j in candidates
            if not _alive(j["pid"]) or (j["state"] == "running"
                                        and holder(lock_path(store, j["device"])) not in (j["pid"], -1))]
    for j in lost:
        state.interrupted(store, j["id"], was=j["state"], pid=j["pid"])
    return [j["id"] for j in lost]


def pending(store: Store, device: str) -> list[JobRow]:
    """Jobs a worker for `device` may take: interrupted ones, and queued ones no command waits for."""
    return [j for j in state.select(store, device=device, states=("queued", "interrupted"))
            if j["state"] == "interrupted" or j["pid"] is None]
