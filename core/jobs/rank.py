"""One data-parallel training process, started by torchrun (core/jobs/launch.py):

    python -m torch.distributed.run --standalone --nproc-per-node N -m core.jobs.rank --db STORE --job ID

Rank 0 runs the job as a single process would (core/jobs/runners.py: texts from the store,
progress, cancel flag, checkpoints, saving) and hands the texts and settings to the other ranks
inside `train()`; the other ranks never open the store. gloo on CPU, nccl on GPUs (one per rank).
"""

from __future__ import annotations

import argparse
import os
import signal

import torch
import torch.distributed as dist

from core.jobs import runners
from core.store import Store
from core.training import parallel
from core.training.loop import train


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m core.jobs.rank")
    parser.add_argument("--db", required=True)
    parser.add_argument("--job", type=int, required=True)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda signum, frame: runners.halt())  # rank 0 checkpoints and stops; the others follow it
    gpu = args.device == "cuda"
    if gpu:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group("nccl" if gpu else "gloo")
    try:
        if parallel.rank() == 0:
            runners.run_pretrain(Store(args.db), args.job)
            parallel.share(None)  # no further run: the other ranks leave
        else:
            while train(None, None, None, None, None) is not None:
                pass
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
