"""Work the app computes in a daemon thread, one job per key and process, polled by the pages.

For work of seconds to minutes that lands in the store (a UMAP map, a clustering): every session
of the server that asks for the same thing shares one computation, and the page keeps drawing
meanwhile. Training, which takes longer and competes for a device, goes through core/jobs/.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.errors import Cancelled, UserError, one_line

Progress = Callable[[float, str], None]
CANCELLED = "cancelled"
log = logging.getLogger(__name__)


@dataclass
class Job:
    """Work running in a thread: the page polls `fraction`, `message`, `done`, `error`; `result` when done."""

    opts: Any  # the options the work was started with (a ProjectOptions, a ClusterOptions)
    started: float = field(default_factory=time.monotonic)
    fraction: float = 0.0
    message: str = "starting"
    result: Any = None
    error: str | None = None  # one line for the page: the message of a UserError, else "internal error: ..."
    traceback: str | None = None  # the whole traceback of a failure that is not a UserError (also logged)
    thread: threading.Thread | None = None
    cancel_requested: bool = False

    @property
    def done(self) -> bool:
        return self.thread is not None and not self.thread.is_alive()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def report(self, fraction: float, message: str = "") -> None:
        if self.cancel_requested:  # threads cannot be stopped from outside: the work stops at its next report
            raise Cancelled
        self.fraction, self.message = float(fraction), message or self.message

    def cancel(self) -> None:
        """Stop the work at its next progress report; the job then ends with error CANCELLED."""
        self.cancel_requested = True
        self.message = "cancelling…"


_jobs: dict[tuple, Job] = {}
_lock = threading.Lock()


def start(key: tuple, opts: Any, work: Callable[[Progress], Any], once: bool = False) -> Job:
    """Run `work(progress)` in a daemon thread under `key` (kind first: "map", ...), or return the
    job registered under it.

    A failed job stays registered, with its error, until `forget(job)` (the page offers to try
    again). A job that finished well is dropped, so the next call finds its result in the store;
    with `once` it stays, so the key never runs again in this process: work nobody asked for must
    not restart on every rerun if its result goes missing.
    """
    with _lock:
        job = _jobs.get(key)
        if job is None:
            job = _jobs[key] = Job(opts)
            job.thread = threading.Thread(target=_run, args=(key, job, work, once), daemon=True,
                                          name=f"notespace-{key[0]}")
            job.thread.start()
        return job


def _run(key: tuple, job: Job, work: Callable[[Progress], Any], once: bool) -> None:
    try:
        job.result = work(job.report)
    except Cancelled:
        job.error = CANCELLED
        return
    except UserError as exc:  # shown on the page as it is; the job stays until the user retries
        job.error = one_line(exc)
        return
    except Exception as exc:  # a bug: a short line on the page, the whole traceback in the server log
        job.error, job.traceback = f"internal error: {one_line(exc)}", traceback.format_exc()
        log.error("background %s failed\n%s", key[0], job.traceback)
        return
    if not once:
        with _lock:
            if _jobs.get(key) is job:
                del _jobs[key]


def get(key: tuple) -> Job | None:
    """The job registered under `key` (running, failed, or finished with `once`), else None; starts nothing."""
    with _lock:
        return _jobs.get(key)


def running() -> list[Job]:
    """The jobs still working (every one is registered until it ends)."""
    with _lock:
        return [job for job in _jobs.values() if not job.done]


def forget(job: Job) -> None:
    """Drop a job (a failed one, to try again) so the next `start` under its key runs afresh."""
    with _lock:
        for key, value in list(_jobs.items()):
            if value is job:
                del _jobs[key]
