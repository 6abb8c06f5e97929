"""The worker process: `python -m core.jobs worker --db PATH --device D`, started by `ensure_worker`.

It takes the device's lock, resumes interrupted jobs, then runs queued ones oldest first until none
is left. SIGTERM (a shutdown) stops the running job at its next step with a checkpoint, resumable.
Its output goes to the store's worker log (files.worker_log): a line per job, a traceback per failure.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal

from core.jobs import runners, state
from core.jobs.devicelock import hold
from core.jobs.files import lock_path
from core.jobs.queue import pending, recover
from core.store import Store

log = logging.getLogger(__name__)


def work(store: Store, device: str, pid: int) -> None:
    """Resume interrupted jobs, then run queued ones oldest first, until none is left."""
    while not runners.halting():
        with hold(lock_path(store, device)) as held:
            if not held:
                return  # another process trains on this device; it takes the queue next
            recover(store)
            while not runners.halting() and (found := pending(store, device)):
                pick = min(found, key=lambda j: (j["state"] == "queued", j["id"]))
                if state.claim(store, pick["id"], pid):
                    log.info("job %s: running", pick["id"])
                    try:
                        runners.RUNNERS[pick["kind"]](store, pick["id"])
                    except Exception:  # the job is marked failed with one line; the log keeps the traceback
                        log.exception("job %s failed", pick["id"])
                    log.info("job %s: %s", pick["id"], state.get(store, pick["id"])["state"])
        if not pending(store, device):
            return  # else a job was queued while the lock was let go: go round again


def on_sigterm(signum, frame) -> None:
    runners.halt()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m core.jobs", description="NoteSpace background training worker")
    parser.add_argument("verb", choices=["worker"])
    parser.add_argument("--db", required=True)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    signal.signal(signal.SIGTERM, on_sigterm)
    work(Store(args.db), args.device, os.getpid())
