import subprocess
import sys

import duckdb
import pytest

import core.store as store_mod
from core.corpus import ingest_frame
from core.store import SCHEMA_VERSION, Store, StoreError, safe_name


def test_migrations_are_idempotent(db_path):
    Store(db_path).summary()
    Store(db_path).summary()  # a second process-level open re-runs nothing
    con = duckdb.connect(str(db_path))
    assert con.execute("SELECT count(*), max(version) FROM schema_version").fetchone() == (SCHEMA_VERSION, SCHEMA_VERSION)
    tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    con.close()
    assert {"corpora", "documents", "encoders", "embedding_sets", "runs", "jobs"} <= tables


def test_transaction_rolls_back_everything(db_path):
    store = Store(db_path)
    with pytest.raises(RuntimeError):
        with store.transaction() as con:
            con.execute("INSERT INTO corpora (name) VALUES ('half')")
            raise RuntimeError("boom")
    assert store.corpora() == []


HOLDER = "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('held', flush=True); sys.stdin.readline()"


class LockHolder:
    """A second process that holds the store's file lock until told to let go (no timing involved)."""

    def __init__(self, path):
        self.proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "held"

    def release(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write("\n")
            self.proc.stdin.flush()
            self.proc.wait(30)


class FakeClock:
    """Stands in for core.store's `time`: sleeping only advances the clock, and is recorded."""

    def __init__(self, on_sleep=None):
        self.now, self.sleeps, self.on_sleep = 0.0, [], on_sleep

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.on_sleep:
            self.on_sleep(len(self.sleeps))


def backoff(n: int) -> list[float]:
    """The documented waits: 20 ms, doubling, at most 0.5 s."""
    return [min(0.02 * 2 ** i, 0.5) for i in range(n)]


def test_connect_retries_with_backoff_while_another_process_holds_the_file(db_path, monkeypatch):
    store = Store(db_path)
    store.summary()
    holder = LockHolder(db_path)
    try:  # the holder lets go during the 7th wait: the 8th attempt gets the file
        clock = FakeClock(on_sleep=lambda n: n == 7 and holder.release())
        monkeypatch.setattr(store_mod, "time", clock)
        assert store.summary()["corpora"] == 0
    finally:
        holder.release()
    assert clock.sleeps == pytest.approx(backoff(7))


def test_connect_gives_up_with_the_lock_error_after_the_timeout(db_path, monkeypatch):
    store = Store(db_path)
    store.summary()
    monkeypatch.setattr(store_mod, "LOCK_TIMEOUT_S", 3.0)
    clock = FakeClock()
    monkeypatch.setattr(store_mod, "time", clock)
    holder = LockHolder(db_path)
    try:
        with pytest.raises(StoreError, match="(?i)lock"):
            store.summary()
    finally:
        holder.release()
    waits = clock.sleeps
    assert waits == pytest.approx(backoff(len(waits)))
    assert sum(waits[:-1]) <= 3.0 < sum(waits)  # tried until the deadline had passed, then no more
    monkeypatch.undo()
    assert store.summary()["corpora"] == 0  # and the file works once it is free


def test_runs_record_provenance(db_path):
    store = Store(db_path)
    with store.transaction() as con:
        run_id = store.record_run(con, "projection", cache_key="k1", params={"n_neighbors": 15}, result={"n": 3})
    found = store.find_run("projection", "k1")
    assert found["id"] == run_id and found["params"] == {"n_neighbors": 15} and found["result"] == {"n": 3}
    assert store.find_run("projection", "other") is None


@pytest.mark.parametrize("bad", ["", "a b", "../x", "-x", "x" * 65, "naïve"])
def test_safe_name_rejects(bad):
    with pytest.raises(StoreError):
        safe_name(bad)


def test_unknown_corpus_names_the_known_ones(db_path):
    with pytest.raises(StoreError, match="no corpus named 'x'"):
        Store(db_path).corpus("x")


def test_a_fresh_store_object_can_start_with_an_arrow_query(db_path, synthetic_df):
    ingest_frame(Store(db_path), synthetic_df, "notes", "text")
    reopened = Store(db_path)  # its first connection runs the migration check, then the caller's query
    corpus = Store(db_path).corpus("notes")
    assert len(reopened.documents(corpus)) == len(synthetic_df)


def test_small_vector_commits_are_not_merged_into_whole_row_groups(db_path):
    """Merging them made every checkpoint rewrite up to 122,880 vectors in memory (see store.DUCKDB_CONFIG)."""
    store = Store(db_path)
    with store.connect() as con:
        con.execute("CREATE TABLE v (i INTEGER, x FLOAT[2])")
    for start in range(0, 5 * 1000, 1000):
        with store.transaction() as con:
            con.execute(f"INSERT INTO v SELECT i, [i::FLOAT, -i::FLOAT] FROM range({start}, {start + 1000}) r(i)")
    with store.connect() as con:
        row_groups = con.execute("SELECT count(DISTINCT row_group_id) FROM pragma_storage_info('v')").fetchall()[0][0]
        assert con.execute("SELECT count(*), sum(i) FROM v").fetchall()[0] == (5000, sum(range(5000)))
    assert row_groups == 5


def other_process_can_open(path) -> bool:
    """Whether another process gets the file now (DuckDB locks it for the life of a process's instance)."""
    probe = "import duckdb, sys\ntry:\n    duckdb.connect(sys.argv[1]).close()\nexcept duckdb.IOException:\n    sys.exit(3)"
    return subprocess.run([sys.executable, "-c", probe, str(path)], timeout=60).returncode == 0


def test_a_session_holds_the_file_for_its_reads_and_lets_go_for_long_work_and_at_its_end(db_path, monkeypatch):
    store = Store(db_path)
    store.summary()
    opened = []
    real_connect = duckdb.connect
    monkeypatch.setattr(store_mod.duckdb, "connect", lambda *a, **k: opened.append(a) or real_connect(*a, **k))
    assert other_process_can_open(db_path)  # between operations nobody holds the file
    with store.session():
        assert not other_process_can_open(db_path)
        with store.session():  # sessions nest
            store.summary(), store.corpora()
            with store.released():  # long work: other processes get the file meanwhile
                assert other_process_can_open(db_path)
            store.summary()
        assert not other_process_can_open(db_path)
    assert other_process_can_open(db_path)
    assert len(opened) == 5  # the session's opening, one per read (3), the reopening after released()
    with pytest.raises(ZeroDivisionError), store.session():
        1 / 0
    assert other_process_can_open(db_path)  # a failure inside a session lets go too
