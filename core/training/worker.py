"""Running queued training jobs: one job's run, and the worker process's loop.

The one module of core/training that reads the store: it turns a job row of `core.jobs` into a
`train()` call (texts and labels from the store, checkpoints beside it, progress and the cancel
flag through the jobs table) and registers the saved encoder; a "setfit" job into SetFit curves
stored as runs (`run_setfit_job`). The queue itself, and which process may run what, live in
core/jobs.py; `python -m core.jobs worker` lands in `main` here.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import traceback
from pathlib import Path

import pandas as pd

from core import jobs
from core.encoders import CARD, sync
from core.options import EvaluateOptions, PretrainOptions
from core.store import Corpus, Store, StoreError
from core.training.devicelock import hold
from core.training.progress import JobProgress

_terminating = False  # SIGTERM: stop at the next step, keep a checkpoint, stay resumable


def training_data(store: Store, corpus: Corpus, opts: PretrainOptions, ords: list[int] | None = None):
    """Texts (and labels for the metadata objective) in corpus order, all or those at `ords`."""
    texts = store.texts(corpus, ords)["text"].tolist()
    if opts.objective != "metadata":
        return texts, None
    meta = store.documents(corpus, with_text=False)
    column = meta[opts.label] if ords is None else meta.loc[meta["ord"].isin(ords), opts.label]
    return texts, [None if pd.isna(v) else str(v) for v in column]


def _complete(store: Store, j: dict, card: dict) -> dict:
    """Register the saved encoder everywhere, then mark the job done with its result."""
    sync(store)
    opts = PretrainOptions(**j["params"]["options"])
    result = {"encoder": opts.name, "path": j["params"]["out_dir"], "objective": opts.objective, "steps": card["steps"],
              "seconds": round(card["seconds"], 2), "final_loss": card["final_loss"], "usable_docs": card["usable_docs"]}
    jobs.update(store, j["id"], "state = 'done', result = ?, finished = current_timestamp", [json.dumps(result)])
    return result


def run_job(store: Store, job_id: int, report=None) -> dict | None:
    """Train a claimed job to the end; returns its result, or None if it was cancelled or halted.
    A failure marks the job failed (one line) and is raised again."""
    from core.training import parallel, train

    j = jobs.job(store, job_id)
    params, opts = j["params"], PretrainOptions(**j["params"]["options"])
    if opts.nproc > 1 and not parallel.active():
        return _run_ranks(store, j, report)
    out_dir, checkpoints = Path(params["out_dir"]), jobs.checkpoint_dir(store, job_id)
    card_file = out_dir / CARD
    if card_file.exists() and json.loads(card_file.read_text()).get("job_id") == job_id:
        return _complete(store, j, json.loads(card_file.read_text()))  # saved, then killed before 'done'
    progress = _progress(JobProgress, store, j, report)
    # How the encoder was made, beside what train() records (objective, settings, curve, time, hardware)
    provenance = {"corpus": params["corpus"], "data_hash": params["data_hash"], "job_id": job_id,
                  "base_encoder": opts.base, "base_fingerprint": params["base_fingerprint"], "submitted": j["created"]}
    try:
        corpus = store.corpus(params["corpus"])
        if corpus.data_hash != params["data_hash"]:
            raise StoreError(f"corpus '{corpus.name}' changed after the job was submitted; submit it again")
        texts, labels = training_data(store, corpus, opts)
        with progress:  # leaving it writes the last figures
            r = train(texts, labels, params["base_path"], opts, out_dir, progress=progress,
                      should_stop=lambda: _terminating or progress.should_stop(), checkpoint_dir=checkpoints,
                      checkpoint_every=0, checkpoint_seconds=jobs.CHECKPOINT_S, card_extra=provenance)
    except Exception as exc:
        _failed(store, job_id, exc)
        shutil.rmtree(checkpoints, ignore_errors=True)
        raise
    if not r.cancelled:
        return _complete(store, j, json.loads(card_file.read_text()))
    return _stopped(store, job_id)


def _run_ranks(store: Store, j: dict, report) -> dict | None:
    """The job in `nproc` processes (its rank 0 lands in run_job again); the job row says how it ended."""
    from core.training.launch import run_ranks

    code = run_ranks(store, j["id"], j["params"]["options"]["nproc"], j["device"], report, lambda: _terminating)
    ended = jobs.job(store, j["id"])
    if ended["state"] == "done":
        return ended["result"]
    if ended["state"] == "failed":
        raise StoreError(ended["error"])
    if ended["state"] == "running":  # the ranks died before rank 0 could record why
        if _terminating:
            return _stopped(store, j["id"])
        _failed(store, j["id"], RuntimeError(f"a training process ended with exit code {code}; see its output"))
        raise StoreError(jobs.job(store, j["id"])["error"])
    return None  # cancelled, or interrupted to resume later


def _progress(kind: type[JobProgress], store: Store, j: dict, report) -> JobProgress:
    """Progress written to the job's row, and its cancel flag read, every few seconds."""
    return kind(lambda state: jobs.update(store, j["id"], "progress = ?", [json.dumps(state)]),
                lambda: jobs.job(store, j["id"])["cancel_requested"], j["progress"], report, jobs.PROGRESS_S)


def _failed(store: Store, job_id: int, exc: Exception) -> None:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    jobs.update(store, job_id, "state = 'failed', error = ?, finished = current_timestamp", [message])


def _stopped(store: Store, job_id: int) -> None:
    if _terminating:  # the machine is going down: resumable (from the checkpoint just written, if any)
        jobs.update(store, job_id, "state = 'interrupted'", [])
    else:
        jobs.mark_cancelled(store, job_id, "cancelled")


class _Fractions(JobProgress):
    """A job's progress from `(fraction, message)` reports, the way core functions give them."""

    def __call__(self, fraction: float, message: str = "") -> None:
        if self.report is not None:
            self.report(fraction, message)
        with self._lock:
            self._latest = {"fraction": fraction, "message": message}


def run_setfit_job(store: Store, job_id: int, report=None) -> dict | None:
    """Compute and store a claimed job's SetFit curves; returns {corpus, label, encoders: {id: summary}},
    or None if it was cancelled or halted (a halted job starts over when resumed: nothing was stored).
    A failure marks the job failed (one line) and is raised again."""
    from core.evaluation import fewshot_corpus
    from core.setfit import Cancelled

    j = jobs.job(store, job_id)
    params, progress = j["params"], _progress(_Fractions, store, j, report)
    try:
        with progress:
            found = fewshot_corpus(store, params["corpus"], params["encoders"], EvaluateOptions(**params["options"]),
                                   progress, finetune=PretrainOptions(**params["finetune"]),
                                   should_stop=lambda: _terminating or progress.should_stop())
    except Cancelled:
        return _stopped(store, job_id)
    except Exception as exc:
        _failed(store, job_id, exc)
        raise
    result = found | {"encoders": {e: curve["summary"] for e, curve in found["encoders"].items()}}
    jobs.update(store, job_id, "state = 'done', result = ?, finished = current_timestamp", [json.dumps(result)])
    return result


RUNS = {"pretrain": run_job, "setfit": run_setfit_job}  # job kind -> what runs it


def work(store: Store, device: str) -> None:
    """Resume interrupted jobs, then run queued ones oldest first, until none is left."""
    while not _terminating:
        with hold(jobs.lock_path(store, device)) as held:
            if not held:
                return  # another process trains on this device; it takes the queue next
            jobs.recover(store)
            while not _terminating and (found := jobs.pending(store, device)):
                pick = min(found, key=lambda j: (j["state"] == "queued", j["id"]))
                if jobs.claim(store, pick["id"]):
                    print(f"job {pick['id']}: running", flush=True)
                    try:
                        RUNS[pick["kind"]](store, pick["id"])
                    except Exception:
                        traceback.print_exc()  # the job is marked failed; the log keeps the details
                    print(f"job {pick['id']}: {jobs.job(store, pick['id'])['state']}", flush=True)
        if not jobs.pending(store, device):
            return  # else a job was queued while the lock was let go: go round again


def _on_sigterm(signum, frame) -> None:
    global _terminating
    _terminating = True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m core.jobs", description="NoteSpace background training worker")
    parser.add_argument("verb", choices=["worker"])
    parser.add_argument("--db", required=True)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    work(Store(args.db), args.device)
