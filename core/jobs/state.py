"""The jobs table: every read and every change of a job's state, and the only SQL about jobs.

States: queued -> running -> done | failed | cancelled; running -> interrupted (its process is gone)
-> running. Each change is one function, guarded where two processes may race for it (`claim`).
Rows come back as `JobRow` dicts (the CLI prints them as JSON).
"""

from __future__ import annotations

import json
from typing import Any, TypedDict

from core.store import Store, StoreError

ACTIVE = ("queued", "running", "interrupted")  # states of a job that has not ended
_KEYS = ("id", "kind", "state", "progress", "params", "result", "error", "created", "started", "finished",
         "device", "cancel_requested", "pid")


class JobRow(TypedDict):
    id: int
    kind: str  # "pretrain" or "setfit"
    state: str
    progress: dict  # fraction, message and the run's figures
    params: dict  # what was asked for
    result: dict | None
    error: str | None
    created: str
    started: str | None
    finished: str | None
    device: str
    cancel_requested: bool
    pid: int | None  # the process running it, or the command waiting for it


def select(store: Store, kind: str | None = None, states: tuple[str, ...] | None = None,
           device: str | None = None, job_id: int | None = None) -> list[JobRow]:
    """Jobs matching every filter given, newest first."""
    where, values = ["true"], []
    for column, value in (("kind", kind), ("device", device), ("id", job_id)):
        if value is not None:
            where.append(f"{column} = ?")
            values.append(value)
    if states is not None:
        where.append(f"state IN ({', '.join('?' * len(states))})")
        values.extend(states)
    with store.connect() as con:
        rows = con.execute(f"SELECT {', '.join(_KEYS)} FROM jobs WHERE {' AND '.join(where)} ORDER BY id DESC",
                           values).fetchall()
    out = [dict(zip(_KEYS, r)) for r in rows]
    for j in out:
        j["progress"], j["params"] = json.loads(j["progress"] or "{}"), json.loads(j["params"] or "{}")
        j["result"] = json.loads(j["result"]) if j["result"] else None
        j.update({k: str(j[k]) for k in ("created", "started", "finished") if j[k] is not None})
    return out  # type: ignore[return-value]


def get(store: Store, job_id: int) -> JobRow:
    found = select(store, job_id=int(job_id))
    if not found:
        raise StoreError(f"no job {job_id}; see `notespace jobs`")
    return found[0]


def insert(store: Store, kind: str, params: dict, device: str, pid: int | None) -> int:
    """A new queued job; `pid` is the command that will run it itself (None: a worker takes it)."""
    with store.transaction() as con:
        return con.execute(
            "INSERT INTO jobs (kind, params, state, progress, pid, device) VALUES (?, ?, 'queued', ?, ?, ?) "
            "RETURNING id", [kind, json.dumps(params), json.dumps({"fraction": 0.0, "message": "queued"}), pid, device],
        ).fetchone()[0]


def _set(store: Store, job_id: int, changes: dict[str, Any], finished: bool = False) -> None:
    sets = [f"{column} = ?" for column in changes] + (["finished = current_timestamp"] if finished else [])
    with store.transaction() as con:
        con.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE id = ?", [*changes.values(), job_id])


def claim(store: Store, job_id: int, pid: int) -> bool:
    """Take a queued or interrupted job for process `pid`; only one process can win it."""
    with store.transaction() as con:
        return con.execute(
            "UPDATE jobs SET state = 'running', pid = ?, started = coalesce(started, current_timestamp), "
            "progress = json_merge_patch(progress, ?) WHERE id = ? AND state IN ('queued', 'interrupted') RETURNING id",
            [pid, json.dumps({"message": "loading the base encoder and the notes"}), job_id]).fetchone() is not None


def progress(store: Store, job_id: int, state: dict) -> None:
    _set(store, job_id, {"progress": json.dumps(state)})


def done(store: Store, job_id: int, result: dict) -> None:
    _set(store, job_id, {"state": "done", "result": json.dumps(result)}, finished=True)


def failed(store: Store, job_id: int, message: str) -> None:
    _set(store, job_id, {"state": "failed", "error": message}, finished=True)


def cancelled(store: Store, job_id: int, why: str) -> None:
    _set(store, job_id, {"state": "cancelled", "error": why}, finished=True)


def interrupted(store: Store, job_id: int, was: str | None = None, pid: int | None = None) -> None:
    """Resumable later. With `was` and `pid`: only if the job is still in that state under that process
    (another process may have moved it on since it was read)."""
    if was is None:
        _set(store, job_id, {"state": "interrupted"})
        return
    with store.transaction() as con:
        con.execute("UPDATE jobs SET state = 'interrupted' WHERE id = ? AND state = ? AND pid = ?", [job_id, was, pid])


def request_cancel(store: Store, job_id: int) -> bool:
    """Flag the job to stop; a queued or interrupted one is cancelled at once (returns True), a running
    one stops when its process next reads the flag."""
    with store.transaction() as con:
        stopped = con.execute("UPDATE jobs SET state = 'cancelled', cancel_requested = true, finished = current_timestamp "
                              "WHERE id = ? AND state IN ('queued', 'interrupted') RETURNING id", [job_id]).fetchone()
        con.execute("UPDATE jobs SET cancel_requested = true WHERE id = ? AND state = 'running'", [job_id])
    return stopped is not None


def cancel_requested(store: Store, job_id: int) -> bool:
    return bool(get(store, job_id)["cancel_requested"])
