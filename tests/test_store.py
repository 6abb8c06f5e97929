import subprocess
import sys
import time

import duckdb
import pytest

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


def test_connect_waits_while_another_process_holds_the_file(db_path):
    store = Store(db_path)
    store.summary()
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, time; c = duckdb.connect({str(db_path)!r}); print('held', flush=True); time.sleep(1.5)"],
        stdout=subprocess.PIPE, text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    started = time.monotonic()
    assert store.summary()["corpora"] == 0  # blocked until the other process let go, then succeeded
    assert time.monotonic() - started > 0.3
    holder.wait(10)


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
