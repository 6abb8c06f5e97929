"""Data-parallel pre-training (`--nproc`): 2 CPU processes under torchrun (gloo) against one process.

The tiny random BERT is saved here without dropout: ranks run their own rows, so with dropout on
they would draw different dropout masks than one process does (the same distribution, not the same
numbers). Without it, every rank computes exactly its rows of the single-process step (the batch's
MLM masks and DeCLUTR spans are drawn for the whole batch on every rank), so the losses may differ
only by float rounding: the gradient sum runs in another order (all-reduce) and the embeddings come
from smaller matrix products. Tolerance: 1e-4 relative per step over K = 4 steps at lr 3e-3, far
above that rounding (about 1e-6 here) and far below what a wrong batch split, a missing gather
(negatives from half the batch) or unsynchronised weights give (1e-2 and more, checked by hand).
"""

from __future__ import annotations

import json
import os
import shutil

import pytest
from sentence_transformers import SentenceTransformer

from core import encoders, jobs
from core.corpus import ingest_frame
from core.encoders import get_encoder, list_encoders
from core.options import PretrainOptions
from core.store import Store, StoreError
from core.training.checkpoint import checkpoints
from core.training.loop import train
from core.jobs.runners import training_data

pytestmark = pytest.mark.robustness  # make test-robustness (docs/testing.md)

K = 4


@pytest.fixture()
def store(db_path, models_dir, synthetic_df, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    config = models_dir / "tiny" / "config.json"
    settings = json.loads(config.read_text())
    config.write_text(json.dumps(settings | {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}))
    s = Store(db_path)
    ingest_frame(s, synthetic_df, "clinic", "text", "note_id", ["specialty", "site"])
    return s


def options(objective: str, name: str, **kw) -> PretrainOptions:
    return PretrainOptions(**{"objective": objective, "name": name, "base": "tiny", "steps": K, "batch_size": 8,
                              "max_length": 64, "lr": 3e-3, "device": "cpu", **kw})


@pytest.mark.parametrize("objective, extra", [("mlm", {}), ("declutr", {"mlm_weight": 0.0}),
                                              ("metadata", {"label": "specialty", "mlm_weight": 0.0})])
def test_two_processes_train_as_one_on_the_same_global_batch(store, tmp_path, objective, extra):
    opts = options(objective, f"ddp-{objective}", nproc=2, **extra)
    result = jobs.run_pretrain_now(store, "clinic", opts)
    card = json.loads((encoders.models_dir() / opts.name / "notespace_card.json").read_text())
    assert result["steps"] == K and card["processes"] == 2 and card["params"]["nproc"] == 2

    texts, labels = training_data(store, store.corpus("clinic"), opts)
    single = train(texts, labels, get_encoder(store, "tiny").path, opts.replace(nproc=1), tmp_path / "single")
    assert card["losses"] == pytest.approx(single.losses, rel=1e-4)
    assert len(set(single.losses)) == K  # the losses move: equal curves mean equal training

    path = encoders.models_dir() / opts.name  # rank 0 saved a loadable sentence-transformers folder
    assert f"ddp-{objective}" in {e.id for e in list_encoders(store)}
    vectors = SentenceTransformer(str(path), device="cpu").encode(texts[:3])
    assert vectors.shape == (3, 32)


def test_a_batch_that_does_not_divide_over_the_processes_is_refused(store):
    with pytest.raises(ValueError, match="batch size .* divide evenly over the 3 training processes"):
        jobs.run_pretrain_now(store, "clinic", options("mlm", "odd", nproc=3))
    assert jobs.list_jobs(store) == []


def test_a_stopped_parallel_run_resumes_from_rank_zeros_checkpoint(store, tmp_path, monkeypatch):
    """A stop (SIGTERM: the machine going down) reaches every rank, rank 0 checkpoints, the job is
    resumable, and the rerun finishes with the losses of an uninterrupted single-process run.
    Rank 0 holds before step HOLD_AT + 1 until the stop arrives (tests/harness_held_rank.py), so the
    stop lands there however fast the machine trains."""
    from core.jobs import launch, runners

    steps, hold_at = 8, 2
    opts = options("mlm", "resumed", nproc=2, steps=steps)

    def stop_once_training() -> bool:  # the parent's view of a SIGTERM, once rank 0 reported a step
        return jobs.job(store, 1)["progress"].get("step", 0) >= 1

    real_run, real_command = launch.run_ranks, launch.command
    monkeypatch.setenv("NOTESPACE_TEST_HOLD_AT", str(hold_at))
    monkeypatch.setattr(launch, "command", lambda *a: [
        "tests.harness_held_rank" if part == "core.jobs.rank" else part for part in real_command(*a)])
    monkeypatch.setattr(launch, "run_ranks", lambda *a, **k: real_run(*a[:5], stopping=stop_once_training, poll_s=0.2))
    monkeypatch.setattr(runners, "_halting", False)
    j = jobs.queue_pretrain(store, "clinic", opts, pid=os.getpid())
    assert jobs.state.claim(store, j["id"], os.getpid())
    monkeypatch.setattr(runners, "_halting", True)  # how _run_ranks learns the stop was a shutdown
    assert runners.run_pretrain(store, j["id"]) is None
    stopped = jobs.job(store, j["id"])
    assert stopped["state"] == "interrupted" and stopped["progress"]["step"] == hold_at + 1
    assert [p.name for p in checkpoints(jobs.checkpoint_dir(store, j["id"]))] == [f"step-{hold_at + 1:08d}"]

    monkeypatch.setattr(runners, "_halting", False)
    monkeypatch.setattr(launch, "run_ranks", real_run)
    monkeypatch.setattr(launch, "command", real_command)
    assert jobs.state.claim(store, j["id"], os.getpid())
    result = runners.run_pretrain(store, j["id"])
    assert result["steps"] == steps and jobs.job(store, j["id"])["state"] == "done"
    card = json.loads((encoders.models_dir() / "resumed" / "notespace_card.json").read_text())
    assert card["resumed_from"] == hold_at + 1

    texts, labels = training_data(store, store.corpus("clinic"), opts)
    single = train(texts, labels, get_encoder(store, "tiny").path, opts.replace(nproc=1), tmp_path / "single")
    assert card["losses"] == pytest.approx(single.losses, rel=1e-4)
    shutil.rmtree(tmp_path / "single")


def test_store_errors_in_rank_zero_fail_the_job_in_one_line(store):
    opts = options("mlm", "gone", nproc=2)
    j = jobs.queue_pretrain(store, "clinic", opts, pid=os.getpid())
    assert jobs.state.claim(store, j["id"], os.getpid())
    with store.transaction() as con:  # the corpus changes after the job was queued
        con.execute("UPDATE corpora SET data_hash = 'changed' WHERE name = 'clinic'")
    from core.jobs import runners

    with pytest.raises(StoreError, match="changed after the job was submitted"):
        runners.run_pretrain(store, j["id"])
    assert jobs.job(store, j["id"])["state"] == "failed"
