"""Threads of one process writing the store at once: what Streamlit sessions of one app server do.

Across processes DuckDB's file lock serialises everything (Store.connect() retries). Within one
process the connections share one database instance and its optimistic transactions, so two
sessions doing the same first-time write at the same moment (creating a table, registering an
encoder) conflict unless the store serialises them. Found by tests/e2e/test_concurrency.py: three
users opening Explore at once on an encoder whose vector table did not exist yet.
"""

from __future__ import annotations

import shutil
import threading

import pytest

from core.embed import Settings
from core.encoders import get_encoder, list_encoders
from core.options import EmbedOptions
from core.space import EmbeddingSpace
from core.store import Store

USERS = 4
ATTEMPTS = 3


def at_once(work, users: int = USERS) -> list[str]:
    """Run `work` in `users` threads released together; returns the errors they raised."""
    start, errors = threading.Barrier(users), []

    def run() -> None:
        start.wait()
        try:
            work()
        except Exception as exc:  # collected: the test names them all
            errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")

    threads = [threading.Thread(target=run) for _ in range(users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return errors


def test_sessions_opening_a_fresh_store_at_once(tmp_path):
    for attempt in range(ATTEMPTS):  # a race: tried a few times, on a fresh file each time
        store = Store(tmp_path / f"fresh{attempt}.duckdb")  # shared by the sessions, as pages/common.py shares it
        assert at_once(store.summary) == []
        assert store.summary()["corpora"] == 0


def test_sessions_creating_the_first_vector_set_of_a_dimension_at_once(tmp_path, models_dir):
    for attempt in range(ATTEMPTS):
        store = Store(tmp_path / f"fresh{attempt}.duckdb")
        enc = get_encoder(store, "tiny")
        settings = Settings.resolve(enc, EmbedOptions(encoder="tiny"))
        space = EmbeddingSpace(enc.id, settings.max_length, settings.long_notes, settings.precision)
        ids: list[int] = []
        assert at_once(lambda: ids.append(space.create_set(store))) == []
        assert len(set(ids)) == 1 and len(ids) == USERS  # one set, found by everyone


def test_sessions_registering_a_new_encoder_folder_at_once(db_path, models_dir):
    store = Store(db_path)
    list_encoders(store)
    for attempt in range(ATTEMPTS):  # e.g. a colleague's encoder copied into models/
        shutil.copytree(models_dir / "tiny", models_dir / f"copied{attempt}")
        assert at_once(lambda: list_encoders(store)) == []
        assert f"copied{attempt}" in {e.id for e in list_encoders(store)}


@pytest.mark.parametrize("rounds", [3])
def test_sessions_reading_while_others_write(db_path, models_dir, rounds):
    """Reads and writes of different rows from several threads: nothing fails, nothing is lost."""
    from core.corpus import ingest_frame
    from sample_data.synthetic import synthetic_notes

    store = Store(db_path)
    store.summary()
    frames = [synthetic_notes(50, seed=i) for i in range(USERS)]
    counter = iter(range(USERS * rounds))
    lock = threading.Lock()

    def work() -> None:
        for _ in range(rounds):
            with lock:
                i = next(counter)
            ingest_frame(store, frames[i % USERS], f"c{i}", "text", "note_id", ["specialty"])
            store.corpora(), store.summary()

    assert at_once(work) == []
    assert sorted(c.name for c in store.corpora()) == sorted(f"c{i}" for i in range(USERS * rounds))


def test_a_lock_held_past_the_timeout_ends_in_one_clear_line(db_path):
    """Another process keeps the file longer than NOTESPACE_LOCK_TIMEOUT (60 s by default; 1 s here):
    the command gives up with one line naming the holder, writes nothing, and works once it is free."""
    import os
    import subprocess
    import sys

    Store(db_path).summary()
    holder = subprocess.Popen([sys.executable, "-c", f"import duckdb, time; c = duckdb.connect({str(db_path)!r}); "
                               "print('held', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        env = os.environ | {"NOTESPACE_LOCK_TIMEOUT": "1"}
        command = [sys.executable, "-m", "core.cli", "--db", str(db_path), "corpora"]
        blocked = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        assert blocked.returncode == 2 and blocked.stdout == ""  # a user error: one line, exit 2
        lines = blocked.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("notespace corpora: error: IO Error: Could not set lock on file")
        assert f"(PID {holder.pid})" in lines[0]
    finally:
        holder.kill()
        holder.wait(10)
    freed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert freed.returncode == 0 and freed.stdout.strip() == "[]", freed.stderr


def test_writing_from_arrow_while_other_threads_connect(db_path):
    """What `embed_corpus` does (a writer thread inserts a chunk of vectors from an Arrow table while
    the tokenizer thread reads the next texts), and the app server too (a map stored by one session
    while others render). DuckDB's Python client registers its scan functions again on every
    connect, so a statement scanning registered Python data while another thread connects can fail
    with "Table Function with name python_arrow_scan does not exist"."""
    import time

    import numpy as np

    from core.space import write_vectors

    store = Store(db_path)
    with store.transaction() as con:
        con.execute("CREATE TABLE vectors_d8 (set_id INTEGER, text_hash VARCHAR, vector FLOAT[8], "
                    "PRIMARY KEY (set_id, text_hash))")
    writes, stop, errors = 400, threading.Event(), []

    def write() -> None:
        try:
            for i in range(writes):  # a failed write is counted, and the next one tried
                _collect(lambda i=i: write_vectors(store, 1, 8, [f"h{i}-{k}" for k in range(20)],
                                                    np.ones((20, 8), np.float32)), errors)
        finally:
            stop.set()

    def read() -> None:
        while not stop.is_set():
            _collect(store.corpora, errors)

    threads = [threading.Thread(target=f) for f in (write, read, read)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert errors == [], f"{len(errors)} failures in {time.monotonic() - started:.1f} s, first: {errors[0]}"
    with store.connect() as con:
        assert con.execute("SELECT count(*) FROM vectors_d8").fetchone()[0] == writes * 20  # nothing lost


def _collect(work, errors: list[str]) -> None:
    """Run `work`; an error it raises is collected."""
    try:
        work()
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
