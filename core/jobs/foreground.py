"""`notespace pretrain`: a job queued and run in the command's own process, Ctrl-C cancelling it."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from core.errors import Cancelled
from core.jobs import state
from core.jobs.devicelock import hold
from core.jobs.files import lock_path
from core.jobs.queue import ensure_worker, mark_cancelled, pending, queue_pretrain
from core.jobs.runners import run_pretrain
from core.options import PretrainOptions
from core.store import Store


@contextmanager
def _ctrl_c_checked() -> Iterator[Callable[[], None]]:
    """Within the block Ctrl-C only sets a flag, and the `check()` it yields raises KeyboardInterrupt
    once it is set. DuckDB turns a KeyboardInterrupt raised during a query into RuntimeError('Query
    interrupted'): a Ctrl-C landing in one of the many short store calls ended the command with that
    error and left its job queued or running with no process (so a worker later resumed it). A second
    Ctrl-C raises at once. Only the main thread gets signals, and a process started with SIGINT
    ignored (a background job of a shell script) keeps ignoring it."""
    pressed = threading.Event()

    def on_ctrl_c(signum, frame) -> None:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        pressed.set()

    def check() -> None:
        if pressed.is_set():
            raise KeyboardInterrupt

    ours = (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
    if ours:
        signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        yield check
    finally:
        if ours:
            signal.signal(signal.SIGINT, signal.default_int_handler)


def run_pretrain_now(store: Store, corpus: str, opts: PretrainOptions, progress=None) -> dict:
    """Queue a job and run it in this process (the CLI): waits its turn on the device, reports
    `(fraction, message)`, returns {encoder, path, objective, steps, seconds, final_loss, usable_docs}.
    Ctrl-C cancels the job, queued or running (at its next progress report); a second one stops at once.
    Raises Cancelled when the job is cancelled from elsewhere (the page, `cancel_job`)."""
    report = progress or (lambda fraction, message="": None)
    with _ctrl_c_checked() as check:
        j = queue_pretrain(store, corpus, opts, pid=os.getpid())  # a pid: workers leave this queued job alone

        def waiting() -> None:
            check()
            if state.get(store, j["id"])["state"] == "cancelled":
                raise Cancelled(f"job {j['id']} was cancelled while it waited")
            running = state.select(store, states=("running",), device=j["device"])
            report(0.0, f"queued behind job {running[0]['id']}" if running else "waiting for the device")

        def reporting(fraction: float, message: str = "") -> None:
            check()
            report(fraction, message)

        try:
            with hold(lock_path(store, j["device"]), waiting):
                check()
                result = run_pretrain(store, j["id"], reporting) if state.claim(store, j["id"], os.getpid()) else None
        except KeyboardInterrupt:
            mark_cancelled(store, j["id"], "cancelled with Ctrl-C")
            raise
        finally:  # background jobs queued meanwhile found the device busy: hand it over
            if pending(store, j["device"]):
                ensure_worker(store, j["device"])
    if result is None:
        raise Cancelled(f"job {j['id']} was cancelled")
    return result
