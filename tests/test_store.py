import subprocess
import sys
import time

import duckdb
import pytest

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
