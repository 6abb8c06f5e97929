"""core.setfit: per draw, a fine-tune on that draw's training notes only, paired with the frozen curves;
and the "setfit" job, run by a background worker, stores its curves as a run.

The tiny random BERT ('tiny' in the models_dir fixture) fine-tunes for a few steps, one torch thread.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from core import jobs, setfit
from core.corpus import ingest_frame
from core.evaluation.corpus import fewshot_corpus
from core.fewshot import learning_curve
from core.options import EvaluateOptions
from core.errors import Cancelled
from core.setfit import finetune_options, setfit_curve
from core.store import Store, StoreError
from sample_data.synthetic import synthetic_notes

SHOTS = (1, 2, 4)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the cores are shared; OMP_NUM_THREADS does it for the workers
    yield
    torch.set_num_threads(before)


def tiny(**changes):
    return finetune_options(**{"steps": 4, "batch_size": 8, "max_length": 32, "lr": 3e-3, "device": "cpu", **changes})


@pytest.fixture(scope="module")
def notes(tiny_encoder_path):
    from sentence_transformers import SentenceTransformer

    df = synthetic_notes(60, seed=1)
    assert df["text"].is_unique  # the texts a fine-tune sees identify its notes
    base = SentenceTransformer(str(tiny_encoder_path), device="cpu")
    return df, base, base.encode(df["text"].tolist())


def test_each_draw_fine_tunes_on_its_training_notes_only_and_pairs_with_the_frozen_curve(notes, tiny_encoder_path,
                                                                                         monkeypatch):
    import torch

    df, base, frozen_vectors = notes
    ids, by_text = df["note_id"].to_numpy(), dict(zip(df["text"], df["note_id"]))
    tuned = []  # (ids of the notes fine-tuned on, the tuned model), one per fine-tune

    def spy(texts, labels, *args):
        model = real(texts, labels, *args)
        tuned.append(([by_text[t] for t in texts], model))
        return model

    real = setfit.fine_tune
    monkeypatch.setattr(setfit, "fine_tune", spy)
    curve = setfit_curve(df["text"], df["specialty"], str(tiny_encoder_path), frozen_vectors, tiny(), max_length=64,
                         long_notes="truncate", shots=SHOTS, seeds=2)
    frozen = learning_curve(frozen_vectors, df["specialty"], shots=SHOTS, seeds=2)

    assert curve.to_dict().keys() == frozen.to_dict().keys() and curve.summary().keys() == frozen.summary().keys()
    assert np.array_equal(curve.test_idx, frozen.test_idx)  # the same held-out notes ...
    for a, b in zip(curve.runs, frozen.runs, strict=True):  # ... and the same labelled notes per point
        assert (a.shot, a.seed) == (b.shot, b.seed) and np.array_equal(a.train_idx, b.train_idx)
    test_ids = set(ids[curve.test_idx])
    fine_tuned = [r for r in curve.runs if r.shot > 1]  # 1 per class: no same-label pair, no fine-tune
    assert len(tuned) == len(fine_tuned) == 4
    for (seen, _), run in zip(tuned, fine_tuned):
        assert sorted(seen) == sorted(ids[run.train_idx]) and not set(seen) & test_ids
    before = base.state_dict()
    for _, model in tuned:
        after = model.state_dict()
        assert any(not torch.allclose(after[k], before[k]) for k in before)  # the weights did move
    assert curve.summary()["1"] == frozen.summary()["1"]  # the frozen vectors served the untuned draws


def test_a_tuned_encoder_reads_long_notes_as_the_corpus_space_does(notes):
    """The frozen vectors of a chunked space pool every window of a long note; the tuned encoder's
    vectors must too, or SetFit is compared on first windows against whole notes."""
    import torch

    _, model, _ = notes
    tok = model.tokenizer
    long_note = "chest pain radiating to the left arm, troponin raised; " * 12 + "stent placed in the LAD."
    texts = [long_note, "short note"]
    ids = tok(long_note, add_special_tokens=False)["input_ids"]
    assert len(ids) > 3 * 30
    windows, start = [], 0  # 30 of the note's tokens a window, 4 shared (32 // 8), written out here
    while True:
        windows.append([tok.cls_token_id, *ids[start:start + 30], tok.sep_token_id])
        if start + 30 >= len(ids):
            break
        start += 26
    with torch.inference_mode():
        per_window = [model({"input_ids": torch.tensor([w]), "attention_mask": torch.ones(1, len(w), dtype=torch.long),
                             "token_type_ids": torch.zeros(1, len(w), dtype=torch.long)})["sentence_embedding"][0].numpy()
                      for w in windows]
    whole = np.mean(per_window, axis=0)
    no_stop, quiet = (lambda: False), (lambda f, m: None)
    chunked = setfit.embed(model, texts, 32, "chunk", no_stop, quiet)
    first = setfit.embed(model, texts, 32, "truncate", no_stop, quiet)
    np.testing.assert_allclose(chunked[0], whole / np.linalg.norm(whole), atol=1e-5)
    np.testing.assert_allclose(first[0], per_window[0] / np.linalg.norm(per_window[0]), atol=1e-5)
    np.testing.assert_allclose(chunked[1], first[1], atol=1e-6)  # a one-window note reads the same either way


def test_should_stop_cancels_between_steps(notes, tiny_encoder_path):
    df, _, frozen_vectors = notes
    with pytest.raises(Cancelled):
        setfit_curve(df["text"], df["specialty"], str(tiny_encoder_path), frozen_vectors, tiny(), max_length=64,
                     long_notes="truncate", shots=(2,), seeds=1, should_stop=lambda: True)


def test_a_setfit_job_runs_in_a_worker_and_stores_its_curves(db_path, models_dir, synthetic_df, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the worker's torch
    store = Store(db_path)
    ingest_frame(store, synthetic_df, "clinic", "text", "note_id", ["specialty"])
    opts = EvaluateOptions(label="specialty", shots="1,2", seeds=2)
    with pytest.raises(StoreError, match="no metadata column 'ward'"):
        jobs.submit_setfit(store, "clinic", ["tiny"], opts.replace(label="ward"), tiny())
    assert jobs.list_jobs(store) == []  # refused before anything was queued

    job_id = jobs.submit_setfit(store, "clinic", ["tiny"], opts, tiny())
    assert jobs.setfit_job(store, "clinic", ["tiny"], opts, tiny())["id"] == job_id
    deadline = time.monotonic() + 300  # generous: a worker process starts torch on shared, loaded cores
    while jobs.job(store, job_id)["state"] not in ("done", "failed") and time.monotonic() < deadline:
        time.sleep(0.5)
    j = jobs.job(store, job_id)
    assert j["state"] == "done", j["error"]

    stored = fewshot_corpus(store, "clinic", ["tiny"], opts, compute=False, finetune=tiny())
    [run] = store.runs("setfit")
    assert run["params"]["encoder"] == "tiny" and run["params"]["finetune"]["steps"] == 4
    assert run["result"] == stored["encoders"]["tiny"] and j["result"]["encoders"]["tiny"] == run["result"]["summary"]
    frozen = fewshot_corpus(store, "clinic", ["tiny"], opts)["encoders"]["tiny"]
    assert stored["encoders"]["tiny"]["test_idx"] == frozen["test_idx"]  # paired with the frozen curve
    assert "job 1: done" in (store.path.parent / "store.duckdb.worker.log").read_text()
