"""SIGKILL mid-work leaves a consistent store: no half-ingested corpus, partial embeddings resumed."""

from __future__ import annotations

import os
import random
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
