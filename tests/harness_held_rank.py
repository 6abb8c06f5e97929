"""A training rank (core/jobs/rank.py) whose rank 0 holds before step HOLD_AT + 1 until a stop reaches it.

tests/test_distributed.py starts the ranks with this module instead of core.jobs.rank, so the stop
lands at a chosen step however fast the machine trains (no race between the run's end and the stop).
"""

import os
import time

from core.jobs import rank, runners
from core.training import loop, parallel

HOLD_AT = int(os.environ["NOTESPACE_TEST_HOLD_AT"])
HOLD_LIMIT_S = 120  # a stop that never comes fails the test instead of hanging it

real_run_step = loop.run_step


def held_run_step(run, opts, batches, step):
    if step == HOLD_AT + 1 and parallel.rank() == 0:
        deadline = time.monotonic() + HOLD_LIMIT_S
        while not runners.halting() and time.monotonic() < deadline:
            time.sleep(0.05)
    return real_run_step(run, opts, batches, step)


loop.run_step = held_run_step
rank.main()
