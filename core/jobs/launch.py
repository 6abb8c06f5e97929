"""Start a claimed training job as `nproc` data-parallel processes (torchrun) and wait for them.

The job's own process (the worker, or `notespace pretrain`) keeps the device lock and its place in
the jobs table; torchrun starts the ranks (core/jobs/rank.py), and rank 0 alone reads the
store, reports progress, polls the cancel flag and saves, as a single-process run would. Here we
only relay the job's progress to `report` and pass a stop on (SIGTERM to the ranks' process group:
they checkpoint at the next step and leave the job resumable). No torch in this module.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from core.jobs import state
from core.store import Store

ROOT = Path(__file__).resolve().parent.parent.parent
STOP_GRACE_S = 60  # a step and a checkpoint; then the ranks are killed


def command(store: Store, job_id: int, nproc: int, device: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "core.jobs.rank", "--db", str(store.path), "--job", str(job_id), "--device", device]


def run_ranks(store: Store, job_id: int, nproc: int, device: str, report: Callable[[float, str], None] | None = None,
              stopping: Callable[[], bool] = lambda: False, poll_s: float = 1.0) -> int:
    """Run the ranks to their end; returns torchrun's exit code. An exception raised by `report`
    (Ctrl-C) stops the ranks first, then propagates."""
    # CPU ranks share the cores out (torchrun would give each 1 thread, with a warning)
    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // nproc))
    env = os.environ | {"OMP_NUM_THREADS": threads}
    # stdout carries the CLI's JSON only: the ranks' output goes to stderr
    proc = subprocess.Popen(command(store, job_id, nproc, device), cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                            stdout=sys.stderr.fileno(), start_new_session=True)
    stopped = False
    try:
        while True:
            try:
                return proc.wait(timeout=poll_s)
            except subprocess.TimeoutExpired:
                pass
            if stopping() and not stopped:
                os.killpg(proc.pid, signal.SIGTERM)
                stopped = True
            if report is not None:
                progress = state.get(store, job_id)["progress"]
                report(progress.get("fraction", 0.0), progress.get("message", ""))
    except BaseException:
        _stop(proc)
        raise


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
