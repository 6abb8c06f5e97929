"""One stage of work kept in the store: found again by its cache key, else computed, its rows
written and its run (provenance) recorded in one transaction.

Maps, clusterings and evaluations are stages. A stage that fails or is cancelled (core.errors.Cancelled)
while computing writes nothing, and one that fails while writing its rows rolls back with its run, so
a stage is either complete in the store or absent.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import duckdb

from core.store import Store


@cache
def code_version() -> dict:
    """The code that makes a result: NoteSpace's version and, run from a git checkout, its commit and
    whether tracked files had uncommitted changes (read once per process: the code loaded then)."""
    try:
        out = {"notespace": version("notespace")}
    except PackageNotFoundError:
        out = {"notespace": "unknown"}
    root = Path(__file__).resolve().parent.parent
    if (root / ".git").exists():
        def git(*args: str) -> str:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        try:
            out |= {"commit": git("rev-parse", "HEAD"),
                    "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
        except (OSError, subprocess.CalledProcessError):
            pass
    return out


def cache_key(obj) -> str:
    """A stage's cache key: a hash of everything its result depends on (JSON, keys sorted)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Stage:
    """What identifies a stage's run: its kind and cache key, and the provenance recorded with it."""
    kind: str
    key: str
    corpus_id: int | None
    encoder_id: str | None
    params: dict
    inputs: dict


@dataclass
class Computed:
    """What a stage's computation returns: its result (the run's JSON), parameters known only once it
    ran (a sample size, a warm start), and the rows that belong to the run, written with it."""
    result: dict
    params: dict = field(default_factory=dict)
    write: Callable[[duckdb.DuckDBPyConnection, int], None] | None = None  # (connection, run id)


@dataclass(frozen=True)
class Run:
    id: int
    result: dict
    cached: bool  # found in the store (True) or computed by this call


def stored_or_computed(store: Store, stage: Stage, compute: Callable[[], Computed] | None,
                       started: float | None = None) -> Run | None:
    """The stored run of `stage`, else `compute()` it and record it (compute=None: look only, None
    on a miss). The run's seconds count from `started` (time.perf_counter(); default: now)."""
    hit = store.find_run(stage.kind, stage.key)
    if hit or compute is None:
        return Run(hit["id"], hit["result"], cached=True) if hit else None
    started = time.perf_counter() if started is None else started
    out = compute()
    with store.transaction() as con:  # the run and its rows land together or not at all
        run_id = store.record_run(con, stage.kind, corpus_id=stage.corpus_id, encoder_id=stage.encoder_id,
                                  cache_key=stage.key, params=stage.params | out.params, inputs=stage.inputs,
                                  result=out.result, seconds=round(time.perf_counter() - started, 3))
        if out.write:
            out.write(con, run_id)
    return Run(run_id, out.result, cached=False)
