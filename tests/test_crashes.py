"""SIGKILL mid-work leaves a consistent store: no half-ingested corpus, partial embeddings resumed."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import duckdb
import pandas as pd
import pytest

from core.embed import embed_corpus, load_embeddings
from core.options import EmbedOptions
from core.store import Store

pytestmark = pytest.mark.robustness  # make test-robustness (docs/testing.md)

SEED = 20261125


def run_and_kill(args: list[str], env: dict, delay: float) -> int:
    """Start `notespace ARGS`, SIGKILL it after `delay` seconds; returns its exit code."""
    proc = subprocess.Popen([sys.executable, "-m", "core.cli", *args], env=os.environ | env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    return proc.wait(30)


def consistent_corpora(db_path) -> list[tuple[str, int]]:
    """Every visible corpus is whole: its documents and metadata rows match its row count."""
    con = duckdb.connect(str(db_path))
    try:
        found = []
        if not con.execute("SELECT 1 FROM duckdb_tables() WHERE table_name = 'corpora'").fetchall():
            return found  # killed before it made the schema (a loaded machine starts slowly): no corpus
        for cid, name, n_docs in con.execute("SELECT id, name, n_docs FROM corpora").fetchall():
            docs = con.execute("SELECT count(*) FROM documents WHERE corpus_id = ?", [cid]).fetchone()[0]
            meta = con.execute(f"SELECT count(*) FROM meta_c{cid}").fetchone()[0]
            assert n_docs == docs == meta, (name, n_docs, docs, meta)
            found.append((name, n_docs))
        orphans = con.execute("SELECT count(*) FROM documents WHERE corpus_id NOT IN (SELECT id FROM corpora)").fetchone()[0]
        assert orphans == 0
        return found
    finally:
        con.close()


def test_killed_ingest_leaves_no_half_corpus(tmp_path):
    path = tmp_path / "big.csv"
    pd.DataFrame({"text": [f"note {i} on ward {i % 9}" for i in range(300_000)],
                  "ward": [f"w{i % 9}" for i in range(300_000)]}).to_csv(path, index=False)
    rng = random.Random(SEED)
    db = tmp_path / "store.duckdb"
    env = {"NOTESPACE_DB": str(db)}
    for attempt in range(3):
        run_and_kill(["ingest", str(path), "--name", f"big{attempt}", "--text", "text"], env, rng.uniform(1.5, 4.0))
        for name, n in consistent_corpora(db):
            assert n == 300_000  # a corpus is there whole, or not at all
    # the store still works after the kills
    done = subprocess.run([sys.executable, "-m", "core.cli", "ingest", str(path), "--name", "final", "--text", "text"],
                          env=os.environ | env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert ("final", 300_000) in consistent_corpora(db)


def test_killed_embed_resumes_where_it_stopped(tmp_path, models_dir):
    from core.corpus import ingest_frame
    from core.embed import CHUNK_DOCS
    from sample_data.synthetic import synthetic_notes

    db = tmp_path / "store.duckdb"
    ingest_frame(Store(db), synthetic_notes(3 * CHUNK_DOCS, seed=2), "notes", "text", "note_id")
    env = os.environ | {"NOTESPACE_DB": str(db), "NOTESPACE_MODELS": str(models_dir)}
    proc = subprocess.Popen([sys.executable, "-m", "core.cli", "embed", "--corpus", "notes", "--encoder", "tiny",
                             "--precision", "fp32"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:  # kill right after the first chunk was computed, while the rest is in flight
        if "embedded" in line:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL

    con = duckdb.connect(str(db))
    stored = con.execute("SELECT count(*) FROM vectors_d32").fetchone()[0]
    con.close()
    assert stored % CHUNK_DOCS == 0 and stored < 3 * CHUNK_DOCS  # whole chunks only, never a torn one
    opts = EmbedOptions(encoder="tiny", precision="fp32")
    resumed = embed_corpus(Store(db), "notes", opts)
    assert (resumed["cached"], resumed["computed"]) == (stored, 3 * CHUNK_DOCS - stored)
    assert load_embeddings(Store(db), "notes", opts, compute_missing=False).shape == (3 * CHUNK_DOCS, 32)
    consistent_corpora(db)


# ---- projection: the runs row and its coordinates land together or not at all ----------------------

PROJECT_NOTES = 3000


def whole_projections(db_path) -> list[tuple[int, int]]:
    """Every stored map is whole (its coordinates are all there) and no coordinates lack their run;
    returns (run id, points) of the maps."""
    con = duckdb.connect(str(db_path))
    try:
        runs = con.execute("SELECT r.id, r.corpus_id, CAST(json_extract(r.result, '$.n') AS INTEGER), c.n_docs, "
                           "(SELECT count(*) FROM projections p WHERE p.run_id = r.id) FROM runs r "
                           "JOIN corpora c ON c.id = r.corpus_id WHERE r.kind = 'projection'").fetchall()
        for run_id, _, n, n_docs, points in runs:
            assert n == n_docs == points, (run_id, n, n_docs, points)  # no run without all its coordinates
        orphans = con.execute("SELECT count(*) FROM projections WHERE run_id NOT IN "
                              "(SELECT id FROM runs WHERE kind = 'projection')").fetchone()[0]
        assert orphans == 0  # no coordinates without their run
        return [(r[0], r[4]) for r in runs]
    finally:
        con.close()


def test_killed_projection_leaves_the_whole_map_or_none(tmp_path, models_dir):
    """SIGKILL `notespace project --method umap` at seeded random points: while the map is computed
    (within 1.5 s of its first progress line), and around the moment it is written (within 50 ms
    after "UMAP layout done", before "map N stored")."""
    from core.corpus import ingest_frame
    from core.maps import find_projection
    from core.options import ProjectOptions
    from sample_data.synthetic import synthetic_notes

    db = tmp_path / "store.duckdb"
    ingest_frame(Store(db), synthetic_notes(PROJECT_NOTES, seed=4), "notes", "text", "note_id", ["specialty"])
    embed_corpus(Store(db), "notes", EmbedOptions(encoder="tiny"))
    env = os.environ | {"NOTESPACE_DB": str(db), "NOTESPACE_MODELS": str(models_dir), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "core.cli", "project", "--corpus", "notes", "--encoder", "tiny",
               "--method", "umap"]
    rng = random.Random(SEED)
    outcomes = []
    for when, marker, most in (("computing", "map of", 1.5), ("writing", "UMAP layout done", 0.05),
                               ("writing", "UMAP layout done", 0.05)):
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for line in proc.stderr:  # progress lines (at most two a second, and every 100 %)
            if marker in line or "stored" in line:
                break
        time.sleep(rng.uniform(0.0, most))
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        maps = whole_projections(db)
        outcomes.append((when, proc.returncode, len(maps)))
        if maps:  # a map that made it is found again from now on, not written again
            break
    assert any(code == -signal.SIGKILL for _, code, _ in outcomes), outcomes
    consistent_corpora(db)
    # the store still works after the kills: the map is computed (or found) and whole
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (outcomes, done.stderr)
    result = json.loads(done.stdout)
    assert result["n"] == PROJECT_NOTES and whole_projections(db) == [(result["projection"], PROJECT_NOTES)], outcomes
    assert find_projection(Store(db), "notes", ProjectOptions(encoder="tiny"))["projection"] == result["projection"]


# ---- training: a worker killed while it saves the encoder registers no half-written encoder ---------
# (killed mid-training, recovered and resumed from its checkpoint: tests/test_jobs.py)


def test_worker_killed_while_saving_registers_no_half_encoder(db_path, models_dir, synthetic_df, monkeypatch):
    from core import jobs
    from core.corpus import ingest_frame
    from core.encoders import list_encoders
    from core.options import PretrainOptions

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("NOTESPACE_CHECKPOINT_S", "0.5")  # read by the worker: resumable from a recent step
    store = Store(db_path)
    ingest_frame(store, synthetic_df, "clinic", "text", "note_id", ["specialty"])
    opts = PretrainOptions(objective="mlm", name="saved", base="tiny", steps=40, batch_size=4, max_length=32, lr=3e-3)
    job_id = jobs.submit_pretrain(store, "clinic", opts)
    rng = random.Random(SEED)
    deadline = time.monotonic() + 180
    pid = None
    while time.monotonic() < deadline:  # the worker saves into a temporary sibling, then renames it
        if pid is None and jobs.job(store, job_id)["state"] == "running":
            pid = jobs.job(store, job_id)["pid"]
        if pid and any(name.startswith(".saved.tmp-") for name in os.listdir(models_dir)):
            time.sleep(rng.uniform(0.0, 0.02))  # a seeded point within the save
            os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.0005)
    else:
        pytest.fail(f"never saw the worker save: {jobs.job(store, job_id)}")
    registered = lambda: {e.id for e in list_encoders(store)}  # noqa: E731
    try:
        for _ in range(600):  # gone once the kernel has dropped its device lock
            if jobs.holder(jobs.lock_path(store, "cpu")) is None:
                break
            time.sleep(0.05)
        whole = (models_dir / "saved" / "notespace_card.json").exists()  # killed after the rename: complete
        assert jobs.recover(store) == [job_id] and jobs.job(store, job_id)["state"] == "interrupted"
        assert not [e for e in registered() if e.startswith(".")]  # never a temporary folder
        assert ("saved" in registered()) == whole

        jobs.ensure_worker(store, "cpu")  # the Resume button
        for _ in range(1200):
            if jobs.job(store, job_id)["state"] in ("done", "failed"):
                break
            time.sleep(0.1)
        j = jobs.job(store, job_id)
        assert j["state"] == "done" and j["result"]["steps"] == 40, j["error"]
        assert "saved" in registered() and not [e for e in registered() if e.startswith(".")]
    finally:
        for j in jobs.state.select(store, states=("running",)):
            try:
                os.kill(j["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_a_save_killed_after_its_card_leaves_no_encoder(db_path, models_dir):
    """The folder a worker killed between writing the card and renaming leaves behind (see
    core/training/save.py): complete, card included, under its temporary name. It is not an encoder."""
    from core.encoders import list_encoders

    leftover = models_dir / ".saved.tmp-4242"
    shutil.copytree(models_dir / "tiny", leftover)
    (leftover / "notespace_card.json").write_text(json.dumps({"objective": "mlm", "job_id": 1}))
    assert {e.id for e in list_encoders(Store(db_path))} == {"minilm", "tiny"}
