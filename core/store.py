"""The DuckDB store: one file holds corpora, documents, encoders, vectors, maps, runs and jobs.

Sharing the file between processes (app, background jobs, command line): DuckDB lets only one
process hold the file at a time, so nobody keeps a connection open. Every operation opens a short
connection through `Store.connect()`, which retries while another process holds the lock, and
closes it when done (see docs/architecture.md). Within one process DuckDB shares the instance, so
threads (Streamlit sessions) can connect concurrently, and a burst of short reads (a lookup, a page
run) opens the file once inside `Store.session()`.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from core.errors import UserError

SCHEMA_VERSION = 3
# Threads of one process share DuckDB's instance and its optimistic transactions: two sessions making
# the same first-time write (a table, a sequence, an encoder row) would conflict. Writes within a
# process therefore take turns; reads stay concurrent. Across processes the file lock serialises.
_WRITE_LOCK = threading.RLock()
# DuckDB's Python client registers its scan functions again on every connect, so a statement that
# scans Python data registered on a connection (con.register) fails with "Table Function with name
# python_arrow_scan does not exist" if another thread connects meanwhile: connecting and such
# statements take turns (Store.python_data).
_CONNECTING = threading.RLock()
# Vectors arrive in many small commits, and by default each checkpoint merges ("vacuums") the small
# row groups they make, rewriting up to a whole 122,880-row group of vectors in memory: a 600 MB
# spike at 200k notes. Small row groups scan as fast here, and whole row groups still go on delete.
DUCKDB_CONFIG = {"threads": 2, "max_vacuum_tasks": 0}
LOCK_TIMEOUT_S = float(os.environ.get("NOTESPACE_LOCK_TIMEOUT", "60"))

# Each entry migrates from version i to i+1; all statements are idempotent.
MIGRATIONS: list[list[str]] = [
    [
        "CREATE SEQUENCE IF NOT EXISTS corpus_id_seq",
        "CREATE SEQUENCE IF NOT EXISTS set_id_seq",
        "CREATE SEQUENCE IF NOT EXISTS run_id_seq",
        "CREATE SEQUENCE IF NOT EXISTS job_id_seq",
        """CREATE TABLE IF NOT EXISTS corpora (
            id INTEGER PRIMARY KEY DEFAULT nextval('corpus_id_seq'), name VARCHAR UNIQUE NOT NULL,
            source VARCHAR, text_column VARCHAR, id_column VARCHAR, meta JSON, n_docs INTEGER,
            skipped INTEGER, data_hash VARCHAR, params JSON, created TIMESTAMP DEFAULT current_timestamp)""",
        """CREATE TABLE IF NOT EXISTS documents (
            corpus_id INTEGER NOT NULL, ord INTEGER NOT NULL, doc_id VARCHAR NOT NULL, text VARCHAR NOT NULL,
            text_hash VARCHAR NOT NULL, n_chars INTEGER, PRIMARY KEY (corpus_id, ord))""",
        """CREATE TABLE IF NOT EXISTS encoders (
            id VARCHAR PRIMARY KEY, name VARCHAR, kind VARCHAR, path VARCHAR, fingerprint VARCHAR,
            dim INTEGER, provenance JSON, created TIMESTAMP DEFAULT current_timestamp)""",
        """CREATE TABLE IF NOT EXISTS embedding_sets (
            id INTEGER PRIMARY KEY DEFAULT nextval('set_id_seq'), cache_key VARCHAR UNIQUE NOT NULL,
            fingerprint VARCHAR, dim INTEGER, params JSON, created TIMESTAMP DEFAULT current_timestamp)""",
        """CREATE TABLE IF NOT EXISTS runs (
            id INTEGER PRIMARY KEY DEFAULT nextval('run_id_seq'), kind VARCHAR NOT NULL, corpus_id INTEGER,
            encoder_id VARCHAR, cache_key VARCHAR, params JSON, inputs JSON, result JSON,
            seconds DOUBLE, created TIMESTAMP DEFAULT current_timestamp)""",
        "CREATE TABLE IF NOT EXISTS projections (run_id INTEGER, ord INTEGER, x FLOAT, y FLOAT)",
        "CREATE TABLE IF NOT EXISTS cluster_members (run_id INTEGER, ord INTEGER, cluster INTEGER)",
        """CREATE TABLE IF NOT EXISTS cluster_labels (
            run_id INTEGER, cluster INTEGER, size INTEGER, terms JSON, examples JSON)""",
        """CREATE TABLE IF NOT EXISTS jobs (
            id INTEGER PRIMARY KEY DEFAULT nextval('job_id_seq'), kind VARCHAR, params JSON, state VARCHAR,
            progress JSON, result JSON, error VARCHAR, pid INTEGER, device VARCHAR,
            cancel_requested BOOLEAN DEFAULT false, created TIMESTAMP DEFAULT current_timestamp,
            started TIMESTAMP, finished TIMESTAMP)""",
        """CREATE TABLE IF NOT EXISTS map_labels (
            corpus_id INTEGER, label_set VARCHAR, ord INTEGER, label VARCHAR,
            created TIMESTAMP DEFAULT current_timestamp)""",
    ],
    [  # pretraining speed per machine, base encoder and settings (core/speed.py)
        """CREATE TABLE IF NOT EXISTS speed_estimates (
            cache_key VARCHAR PRIMARY KEY, machine JSON, params JSON, setup_s DOUBLE, step_s DOUBLE,
            device VARCHAR, measured TIMESTAMP DEFAULT current_timestamp)""",
    ],
    [  # the embedding space each corpus was last embedded in, per encoder (core/space.py)
        """CREATE TABLE IF NOT EXISTS corpus_spaces (
            corpus_id INTEGER, encoder_id VARCHAR, space JSON, updated TIMESTAMP DEFAULT current_timestamp,
            PRIMARY KEY (corpus_id, encoder_id))""",
        # stores embedded before: the settings of each corpus's latest embed run with each encoder
        """INSERT INTO corpus_spaces (corpus_id, encoder_id, space)
            SELECT corpus_id, encoder_id, json_object('encoder', encoder_id,
                'max_length', CAST(params->>'max_length' AS INTEGER), 'long_notes', params->>'long_notes',
                'precision', params->>'precision')
            FROM runs WHERE kind = 'embed' AND corpus_id IS NOT NULL AND params->>'long_notes' IN ('truncate', 'chunk')
            QUALIFY row_number() OVER (PARTITION BY corpus_id, encoder_id ORDER BY id DESC) = 1
            ON CONFLICT DO NOTHING""",
    ],
]


class StoreError(UserError):
    """A user-facing problem with the store (missing corpus, unknown encoder, ...)."""


@dataclass(frozen=True)
class Corpus:
    id: int
    name: str
    source: str
    text_column: str
    id_column: str | None
    meta: dict[str, str]  # column -> "categorical" | "numeric" | "date"
    n_docs: int
    skipped: int
    data_hash: str

    @property
    def meta_table(self) -> str:
        return meta_table(self.id)


def meta_table(corpus_id: int) -> str:
    return f"meta_c{int(corpus_id)}"


def vector_table(dim: int) -> str:
    return f"vectors_d{int(dim)}"


def quote(identifier: str) -> str:
    """Quote a user-supplied column name as a SQL identifier."""
    return '"' + str(identifier).replace('"', '""') + '"'


def default_path() -> Path:
    return Path(os.environ.get("NOTESPACE_DB") or Path.home() / ".notespace" / "notespace.duckdb")


class Store:
    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path else default_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._migrated = False
        self._held = threading.local()  # the connection a thread's session keeps open (Store.session)

    def _open(self) -> duckdb.DuckDBPyConnection:
        """A new connection; waits (with back-off) while another process holds the file."""
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        delay = 0.02
        while True:
            try:
                with _CONNECTING:
                    con = duckdb.connect(str(self.path), config=DUCKDB_CONFIG)
                break
            except duckdb.IOException as exc:
                locked = "lock" in str(exc).lower()
                if locked and time.monotonic() > deadline:  # the user's to fix: another program holds the file
                    raise StoreError(str(exc)) from exc
                if not locked:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
        if not self._migrated:
            try:
                with _WRITE_LOCK:
                    self._migrate(con)
            except BaseException:
                con.close()
                raise
        return con

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short-lived connection, closed when the block ends."""
        con = self._open()
        try:
            yield con
        finally:
            con.close()

    @contextmanager
    def session(self) -> Iterator[None]:
        """Keep the file open across a burst of short reads and writes (a lookup, a page run): the
        connections this process makes meanwhile share DuckDB's open instance, well under a millisecond
        each against ~15 ms to open the file. Other processes wait for the file meanwhile, so long work
        inside a session runs in `released()`. Sessions nest; each thread holds its own."""
        if getattr(self._held, "con", None) is not None:
            yield
            return
        self._held.con = self._open()
        try:
            yield
        finally:
            con, self._held.con = self._held.con, None
            if con is not None:
                con.close()

    @contextmanager
    def released(self) -> Iterator[None]:
        """Long work (embedding, ingesting, a layout) inside a session: this thread's hold on the file is
        let go meanwhile, so other processes (job workers, the command line) are not kept waiting."""
        con = getattr(self._held, "con", None)
        if con is None:
            yield
            return
        con.close()
        self._held.con = None
        try:
            yield
        finally:
            self._held.con = self._open()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection inside BEGIN/COMMIT: everything or nothing lands."""
        with _WRITE_LOCK, self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def write(self, work, attempts: int = 5):
        """Run `work(con)` in a transaction, retrying when a concurrent session of this process
        wrote the same rows first (DuckDB's optimistic write-write conflict)."""
        for attempt in range(attempts):
            try:
                with self.transaction() as con:
                    return work(con)
            except duckdb.TransactionException:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))

    @contextmanager
    def python_data(self) -> Iterator[None]:
        """Around statements that read Python objects registered on a connection (see _CONNECTING)."""
        with _CONNECTING:
            yield

    def _migrate(self, con: duckdb.DuckDBPyConnection) -> None:
        con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER)")
        # fetchall, not fetchone: a result left unfinished would refuse the caller's next con.sql()
        version = con.execute("SELECT max(version) FROM schema_version").fetchall()[0][0] or 0
        for target in range(version + 1, len(MIGRATIONS) + 1):
            con.execute("BEGIN TRANSACTION")
            for statement in MIGRATIONS[target - 1]:
                con.execute(statement)
            con.execute("INSERT INTO schema_version VALUES (?)", [target])
            con.execute("COMMIT")
        self._migrated = True

    # ---- corpora and documents -------------------------------------------------------------

    def corpora(self) -> list[Corpus]:
        with self.connect() as con:
            rows = con.execute(
                "SELECT id, name, source, text_column, id_column, meta, n_docs, skipped, data_hash "
                "FROM corpora ORDER BY id"
            ).fetchall()
        return [_corpus(r) for r in rows]

    def corpus(self, name: str) -> Corpus:
        for corpus in self.corpora():
            if corpus.name == name:
                return corpus
        known = ", ".join(c.name for c in self.corpora()) or "none yet"
        raise StoreError(f"no corpus named '{name}' (corpora in the store: {known}); ingest it first")

    def documents(self, corpus: Corpus, with_text: bool = True, limit: int | None = None) -> pd.DataFrame:
        """One row per document in corpus order: ord, doc_id, [text], metadata columns."""
        text = "d.text, " if with_text else ""
        limit_sql = f" LIMIT {int(limit)}" if limit else ""
        with self.connect() as con:
            return arrow(con,
                f"SELECT d.ord, d.doc_id, {text}m.* EXCLUDE (ord) FROM documents d "
                f"JOIN {corpus.meta_table} m USING (ord) WHERE d.corpus_id = ? ORDER BY d.ord{limit_sql}",
                [corpus.id],
            ).to_pandas()

    def text_hashes(self, corpus: Corpus) -> list[str]:
        """The text hash of every document, in corpus order: identical texts share one."""
        with self.connect() as con:
            rows = con.execute("SELECT text_hash FROM documents WHERE corpus_id = ? ORDER BY ord", [corpus.id]).fetchall()
        return [r[0] for r in rows]

    def texts(self, corpus: Corpus, ords: list[int] | None = None) -> pd.DataFrame:
        """ord, doc_id, text, text_hash for all (or some) documents, in corpus order."""
        with self.connect() as con:
            if ords is None:
                query, params = "", [corpus.id]
            else:  # a join, not list_contains: a hash join stays fast on large corpora
                query, params = "JOIN (SELECT unnest(?::INTEGER[]) AS ord) USING (ord)", [list(map(int, ords)), corpus.id]
            return arrow(con, f"SELECT ord, doc_id, text, text_hash FROM documents {query} "
                              f"WHERE corpus_id = ? ORDER BY ord", params).to_pandas()

    # ---- runs: every stage's parameters and inputs beside its output ---------------------

    def record_run(self, con: duckdb.DuckDBPyConnection, kind: str, *, corpus_id: int | None = None,
                   encoder_id: str | None = None, cache_key: str | None = None, params: dict | None = None,
                   inputs: dict | None = None, result: dict | None = None, seconds: float | None = None) -> int:
        row = con.execute(
            "INSERT INTO runs (kind, corpus_id, encoder_id, cache_key, params, inputs, result, seconds) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            [kind, corpus_id, encoder_id, cache_key, _json(params), _json(inputs), _json(result), seconds],
        ).fetchone()
        return int(row[0])

    def find_run(self, kind: str, cache_key: str) -> dict | None:
        with self.connect() as con:
            row = con.execute(
                "SELECT id, params, inputs, result, seconds, created FROM runs "
                "WHERE kind = ? AND cache_key = ? ORDER BY id DESC LIMIT 1",
                [kind, cache_key],
            ).fetchone()
        return _run(row) if row else None

    def runs(self, kind: str | None = None, corpus_id: int | None = None) -> list[dict]:
        where, params = ["1=1"], []
        if kind:
            where.append("kind = ?"), params.append(kind)
        if corpus_id is not None:
            where.append("corpus_id = ?"), params.append(corpus_id)
        with self.connect() as con:
            rows = con.execute(
                f"SELECT id, params, inputs, result, seconds, created, kind, corpus_id, encoder_id "
                f"FROM runs WHERE {' AND '.join(where)} ORDER BY id DESC", params
            ).fetchall()
        return [_run(r[:6]) | {"kind": r[6], "corpus_id": r[7], "encoder_id": r[8]} for r in rows]

    def summary(self) -> dict[str, int]:
        """Counts shown on the Home page."""
        with self.connect() as con:
            counts = {
                t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("corpora", "documents", "encoders", "embedding_sets", "runs", "jobs")
            }
            tables = [r[0] for r in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE table_name LIKE 'vectors_d%'").fetchall()]
            counts["vectors"] = sum(con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables)
        return counts


def arrow(con: duckdb.DuckDBPyConnection, query: str, params: list | None = None):
    """A query's result as an Arrow table (the fast path into numpy and pandas)."""
    return con.sql(query, params=params).to_arrow_table()


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=str)


def _corpus(row) -> Corpus:
    return Corpus(row[0], row[1], row[2], row[3], row[4], json.loads(row[5] or "{}"), row[6], row[7], row[8])


def _run(row) -> dict:
    load = lambda v: json.loads(v) if v else None  # noqa: E731
    return {"id": row[0], "params": load(row[1]), "inputs": load(row[2]), "result": load(row[3]),
            "seconds": row[4], "created": str(row[5])}


def safe_name(name: str) -> str:
    """Names of corpora and encoders: letters, digits, '-', '_' and '.' only."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name or ""):
        raise StoreError(
            f"invalid name '{name}': use 1-64 letters, digits, '.', '_' or '-' (starting with a letter or digit)"
        )
    return name
