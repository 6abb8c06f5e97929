"""Background training jobs: a queue in the store's `jobs` table, one worker process per device.

Training takes minutes to hours, so it runs in its own process: it survives page reloads, shows in
every browser tab and in `notespace jobs`, and never blocks the app. The store is opened only
briefly (docs/architecture.md): progress and the cancel flag every ~2 s.

    state.py       the jobs table: rows and every state change (claim, progress, done, failed,
                   cancelled, interrupted); the only SQL about jobs
    files.py       the device lock files, checkpoints and worker log beside the store
    devicelock.py  one training process per device (an flock holding the holder's pid)
    queue.py       submit, list, cancel, recover; start a worker
    runners.py     one job's run: pretraining (texts from the store into `core.training.train`) or SetFit
    worker.py      the worker process's loop (`python -m core.jobs worker`)
    foreground.py  `notespace pretrain`: a job run in the command's process, Ctrl-C cancelling it
    launch.py, rank.py  a job in `--nproc` data-parallel processes (torchrun)

The names below are the package's public face; pages and the CLI use them.
"""

from core.jobs.devicelock import hold, holder
from core.jobs.files import checkpoint_dir, lock_path
from core.jobs.foreground import run_pretrain_now
from core.jobs.queue import (cancel_job, ensure_worker, list_jobs, pending, queue_pretrain, recover, setfit_job,
                             submit_pretrain, submit_setfit, suggest_name)
from core.jobs.state import ACTIVE, JobRow
from core.jobs.state import get as job

__all__ = ["ACTIVE", "JobRow", "cancel_job", "checkpoint_dir", "ensure_worker", "hold", "holder", "job", "list_jobs",
           "lock_path", "pending", "queue_pretrain", "recover", "run_pretrain_now", "setfit_job", "submit_pretrain",
           "submit_setfit", "suggest_name"]
