"""Where a job's files live, beside the store file: the device locks, checkpoints, the workers' log."""

from __future__ import annotations

import os
from pathlib import Path

from core.store import Store

PROGRESS_S = 2.0  # how often a running job writes its progress and reads its cancel flag
CHECKPOINT_S = float(os.environ.get("NOTESPACE_CHECKPOINT_S", "120"))  # the most work a crash can lose


def lock_path(store: Store, device: str) -> Path:
    return store.path.with_name(f"{store.path.name}.train-{device}.lock")


def checkpoint_dir(store: Store, job_id: int) -> Path:
    return store.path.parent / "checkpoints" / f"{store.path.stem}-job-{job_id}"


def worker_log(store: Store) -> Path:
    return store.path.with_name(store.path.name + ".worker.log")
