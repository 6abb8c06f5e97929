"""One training run per device: an exclusive flock on a lock file that also holds the holder's pid.

A flock belongs to an open file and vanishes when its process dies, even on SIGKILL, so a crashed
run never leaves a stale lock behind. The holder writes its pid into the file, so other processes
can tell whether a job marked running really is the one training (`holder`), even after pid reuse.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def holder(path: Path) -> int | None:
    """Pid of the process holding the lock (-1 while it has not written it yet), None if nobody does."""
    if not path.exists():
        return None
    with open(path, "a+") as fh:
        try:  # a shared lock is granted only while nobody holds the exclusive one
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            text = fh.read().strip()
            return int(text) if text.isdigit() else -1
        return None  # closing the file drops this probe's lock


@contextmanager
def hold(path: Path, waiting: Callable[[], None] | None = None) -> Iterator[bool]:
    """Hold the lock while the block runs. Without `waiting`, yields False if another process keeps it
    for more than a second; with it, waits as long as needed, calling `waiting()` every second."""
    fh = open(path, "a+")
    try:
        deadline = time.monotonic() + 1.0  # outlasts another process's `holder` probe
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if waiting is None and time.monotonic() > deadline:
                    yield False
                    return
                if waiting is not None:
                    waiting()
                time.sleep(0.1 if waiting is None else 1.0)
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        yield True
    finally:
        fh.close()  # releases the lock
