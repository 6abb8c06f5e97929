"""core.stages on a real DuckDB store: a hit computes nothing, a miss computes once and records its run
with its rows, and a failure or a cancel at any point leaves the store exactly as it was."""

from __future__ import annotations

from dataclasses import replace

import pytest

from core.errors import Cancelled
from core.stages import Computed, Stage, stored_or_computed
from core.store import Store

STAGE = Stage("projection", "key-1", None, "tiny", {"method": "pca"}, {"data_hash": "abc"})


@pytest.fixture()
def store(tmp_path) -> Store:
    return Store(tmp_path / "stages.duckdb")


def _write_points(n: int, fail_after: int | None = None):
    """Rows of the run (map coordinates), one statement each; raises after `fail_after` of them."""
    def write(con, run_id: int) -> None:
        for ord_ in range(n):
            if ord_ == fail_after:
                raise RuntimeError("disk full")
            con.execute("INSERT INTO projections VALUES (?, ?, ?, ?)", [run_id, ord_, float(ord_), 0.5])
    return write


class Spy:
    """A stage's computation that counts its calls."""

    def __init__(self, out: Computed | BaseException):
        self.out, self.calls = out, 0

    def __call__(self) -> Computed:
        self.calls += 1
        if isinstance(self.out, BaseException):
            raise self.out
        return self.out


def _everything(store: Store) -> dict[str, list]:
    """Every row of every table, in a stable order."""
    with store.connect() as con:
        tables = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() ORDER BY table_name").fetchall()]
        return {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in tables}


def test_a_miss_computes_once_and_records_the_run_with_its_rows_and_a_hit_computes_nothing(store):
    compute = Spy(Computed({"n": 3}, {"sample": None}, _write_points(3)))
    run = stored_or_computed(store, STAGE, compute)
    assert compute.calls == 1 and not run.cached and run.result == {"n": 3}
    [recorded] = store.runs(kind="projection")
    assert recorded["id"] == run.id and recorded["encoder_id"] == "tiny" and recorded["corpus_id"] is None
    assert recorded["params"] == {"method": "pca", "sample": None}  # the stage's and the computed ones
    assert recorded["inputs"] == {"data_hash": "abc"} and recorded["result"] == {"n": 3}
    assert recorded["seconds"] >= 0
    with store.connect() as con:
        assert con.execute("SELECT run_id, ord, x FROM projections ORDER BY ord").fetchall() == [
            (run.id, 0, 0.0), (run.id, 1, 1.0), (run.id, 2, 2.0)]

    before = _everything(store)
    again = Spy(Computed({"n": 99}))
    hit = stored_or_computed(store, STAGE, again)
    assert again.calls == 0 and hit.cached and (hit.id, hit.result) == (run.id, {"n": 3})
    assert stored_or_computed(store, STAGE, None) == hit
    assert _everything(store) == before


def test_looking_only_finds_nothing_and_writes_nothing(store):
    before = _everything(store)
    assert stored_or_computed(store, STAGE, None) is None
    assert _everything(store) == before


def test_another_key_is_another_run(store):
    first = stored_or_computed(store, STAGE, Spy(Computed({"n": 1})))
    other = Spy(Computed({"n": 2}))
    second = stored_or_computed(store, replace(STAGE, key="key-2"), other)
    assert other.calls == 1 and second.id != first.id and second.result == {"n": 2}


@pytest.mark.parametrize("failing", [
    Spy(RuntimeError("bug in the computation")),
    Spy(Cancelled("stopped by the user")),  # a cancel records nothing either
    Spy(Computed({"n": 5}, write=_write_points(5, fail_after=0))),  # before any row
    Spy(Computed({"n": 5}, write=_write_points(5, fail_after=3))),  # after the run and 3 of its rows
], ids=["compute fails", "compute cancelled", "write fails at once", "write fails midway"])
def test_a_failure_or_a_cancel_leaves_the_store_exactly_as_it_was(store, failing):
    stored_or_computed(store, replace(STAGE, key="earlier"), Spy(Computed({"n": 2}, write=_write_points(2))))
    before = _everything(store)
    assert before["runs"] and before["projections"]
    with pytest.raises((RuntimeError, Cancelled)):
        stored_or_computed(store, STAGE, failing)
    assert failing.calls == 1
    assert _everything(store) == before
    assert stored_or_computed(store, STAGE, None) is None  # nothing half-stored to be found again

    retried = Spy(Computed({"n": 4}, write=_write_points(4)))
    run = stored_or_computed(store, STAGE, retried)  # the next try computes it whole
    assert retried.calls == 1 and not run.cached
    with store.connect() as con:
        assert con.execute("SELECT count(*) FROM projections WHERE run_id = ?", [run.id]).fetchone()[0] == 4

