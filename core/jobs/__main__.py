"""python -m core.jobs worker --db PATH --device D (started by core.jobs.queue.ensure_worker)."""

from core.jobs.worker import main

main()
