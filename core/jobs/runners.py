"""Running one claimed job: a pretraining job into a saved, registered encoder; a SetFit job into
few-shot curves stored as runs.

The bridge between the store and the store-free training code: texts and labels come from the
store, checkpoints lie beside it (files.py), progress and the cancel flag go through the jobs table
(state.py), and the saved encoder is registered. A failure marks the job failed and is raised again.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from core.cards import read_card
from core.encoders import sync
from core.errors import Cancelled, one_line
from core.jobs import state
from core.jobs.files import CHECKPOINT_S, PROGRESS_S, checkpoint_dir
from core.options import EvaluateOptions, PretrainOptions
from core.store import Corpus, Store, StoreError
from core.training.progress import JobProgress
from core.training.registry import get_objective

_halting = False  # the machine is going down (SIGTERM): stop at the next step, keep a checkpoint, stay resumable


def halt() -> None:
    """Stop the running job at its next step and leave it resumable (a SIGTERM handler calls this)."""
    global _halting
    _halting = True


def halting() -> bool:
    return _halting


def column_values(store: Store, corpus: Corpus, column: str) -> list:
    """One metadata column's values in corpus order (an objective's `check_corpus` reads its label)."""
    return store.documents(corpus, with_text=False)[column].tolist()


def training_data(store: Store, corpus: Corpus, opts: PretrainOptions, ords: list[int] | None = None):
    """Texts (and labels, for an objective that needs them) in corpus order, all or those at `ords`."""
    texts = store.texts(corpus, ords)["text"].tolist()
    if not get_objective(opts.objective).needs_label:
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
    state.done(store, j["id"], result)
    return result


def run_pretrain(store: Store, job_id: int, report=None) -> dict | None:
    """Train a claimed job to the end; returns its result, or None if it was cancelled or halted."""
    from core.training import parallel, train

    j = state.get(store, job_id)
    params, opts = j["params"], PretrainOptions(**j["params"]["options"])
    if opts.nproc > 1 and not parallel.active():
        return _run_ranks(store, j, report)
    out_dir, checkpoints = Path(params["out_dir"]), checkpoint_dir(store, job_id)
    saved = read_card(out_dir)
    if saved is not None and saved.get("job_id") == job_id:
        return _complete(store, j, saved)  # saved, then killed before 'done'
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
                      should_stop=lambda: _halting or progress.should_stop(), checkpoint_dir=checkpoints,
                      checkpoint_every=0, checkpoint_seconds=CHECKPOINT_S, card_extra=provenance)
    except Exception as exc:
        _failed(store, job_id, exc)
        shutil.rmtree(checkpoints, ignore_errors=True)
        raise
    if not r.cancelled:
        return _complete(store, j, read_card(out_dir))
    return _stopped(store, job_id)


def _run_ranks(store: Store, j: dict, report) -> dict | None:
    """The job in `nproc` processes (its rank 0 lands in run_pretrain again); the job row says how it ended."""
    from core.jobs.launch import run_ranks

    code = run_ranks(store, j["id"], j["params"]["options"]["nproc"], j["device"], report, halting)
    ended = state.get(store, j["id"])
    if ended["state"] == "done":
        return ended["result"]
    if ended["state"] == "failed":
        raise StoreError(ended["error"])
    if ended["state"] == "running":  # the ranks died before rank 0 could record why
        if _halting:
            return _stopped(store, j["id"])
        _failed(store, j["id"], RuntimeError(f"a training process ended with exit code {code}; see its output"))
        raise StoreError(state.get(store, j["id"])["error"])
    return None  # cancelled, or interrupted to resume later


def _progress(kind: type[JobProgress], store: Store, j: dict, report) -> JobProgress:
    """Progress written to the job's row, and its cancel flag read, every few seconds."""
    return kind(lambda figures: state.progress(store, j["id"], figures),
                lambda: state.cancel_requested(store, j["id"]), j["progress"], report, PROGRESS_S)


def _failed(store: Store, job_id: int, exc: Exception) -> None:
    """The job shows the message's first line; whoever called the runner logs the traceback."""
    state.failed(store, job_id, one_line(exc))


def _stopped(store: Store, job_id: int) -> None:
    if _halting:  # the machine is going down: resumable (from the checkpoint just written, if any)
        state.interrupted(store, job_id)
    else:
        state.cancelled(store, job_id, "cancelled")
        shutil.rmtree(checkpoint_dir(store, job_id), ignore_errors=True)


class _Fractions(JobProgress):
    """A job's progress from `(fraction, message)` reports, the way core functions give them."""

    def __call__(self, fraction: float, message: str = "") -> None:
        if self.report is not None:
            self.report(fraction, message)
        with self._lock:
            self._latest = {"fraction": fraction, "message": message}


def run_setfit(store: Store, job_id: int, report=None) -> dict | None:
    """Compute and store a claimed job's SetFit curves; returns {corpus, label, encoders: {id: summary}},
    or None if it was cancelled or halted (a halted job starts over when resumed: nothing was stored)."""
    from core.evaluation.corpus import fewshot_corpus

    j = state.get(store, job_id)
    params, progress = j["params"], _progress(_Fractions, store, j, report)
    try:
        with progress:
            found = fewshot_corpus(store, params["corpus"], params["encoders"], EvaluateOptions(**params["options"]),
                                   progress, finetune=PretrainOptions(**params["finetune"]),
                                   should_stop=lambda: _halting or progress.should_stop())
    except Cancelled:
        return _stopped(store, job_id)
    except Exception as exc:
        _failed(store, job_id, exc)
        raise
    result = found | {"encoders": {e: curve["summary"] for e, curve in found["encoders"].items()}}
    state.done(store, job_id, result)
    return result


RUNNERS = {"pretrain": run_pretrain, "setfit": run_setfit}  # job kind -> what runs it
