"""How long a pretraining run will take: a few steps timed once per machine, base encoder and
settings, kept in the store's `speed_estimates` table.

Timing takes seconds to a minute (the base encoder loads), so the Pretrain page never waits for it:
`stored` answers at once with the figure for exactly these settings, or None, and `measure_in_background`
times them in a thread (core/background.py) while Launch stays usable. A stored figure older than
REFRESH_DAYS is still shown, and timed again in the background (drivers and libraries change).
The corpus is not part of the key: steps are timed on a sample of the notes at hand, and at a fixed
batch size and max length the notes change a step's time far less than the machine and model do.
"""

from __future__ import annotations

import json
import os
import platform
from datetime import datetime, timedelta

import numpy as np

from core import background
from core.encoders import get_encoder
from core.devices import resolve_device
from core.options import PretrainOptions
from core.stages import cache_key
from core.store import Store
from core.training.registry import get_objective
from core.training.settings import check_options

REFRESH_DAYS = 30


def machine(device: str) -> dict:
    """What a step's time depends on besides the model and settings."""
    import torch  # only once a figure is looked up: the page's first draw need not wait for it

    from core.training.save import hardware

    info = hardware(torch.device(device))
    return {"host": platform.node(), "cpus": os.cpu_count(), "device": info["device"],
            "device_name": info["device_name"], "threads": info["threads"], "torch": info["torch"]}


def _key(store: Store, opts: PretrainOptions) -> tuple[str, dict, dict]:
    """(cache key, machine, settings) of `opts`; raises ValueError for settings no run could use."""
    base, device = get_encoder(store, opts.base), resolve_device(opts.device)
    check_options(opts, base.path)
    settings = {"base": opts.base, "fingerprint": base.fingerprint, "objective": opts.objective,
                "batch_size": opts.batch_size, "grad_accum": opts.grad_accum, "max_length": opts.max_length,
                "device": device}
    here = machine(device)
    digest = cache_key([here, settings])
    return digest, here, settings


def _estimate(row, steps: int) -> dict:
    setup_s, step_s, device, params, measured = row
    return {"seconds": setup_s + steps * step_s, "setup_s": setup_s, "step_s": step_s, "device": device,
            "corpus": json.loads(params).get("corpus"), "measured": measured,
            "stale": measured < datetime.now() - timedelta(days=REFRESH_DAYS)}


def stored(store: Store, opts: PretrainOptions) -> dict | None:
    """The stored figure for exactly these settings on this machine: {seconds (for opts.steps), setup_s,
    step_s, device, corpus (whose notes were timed), measured, stale}; None if never measured."""
    key, _, _ = _key(store, opts)
    with store.connect() as con:
        rows = con.execute("SELECT setup_s, step_s, device, params, measured FROM speed_estimates "
                           "WHERE cache_key = ?", [key]).fetchall()
    return _estimate(rows[0], opts.steps) if rows else None


def measure(store: Store, corpus: str, opts: PretrainOptions, progress=None) -> dict:
    """Time a few steps of `opts` on a sample of `corpus` and store the figure; returns `stored`'s dict."""
    from core.training.loop import measure_speed
    from core.jobs.runners import column_values, training_data

    key, here, settings = _key(store, opts)
    c = store.corpus(corpus)
    get_objective(opts.objective).check_corpus(opts, c.name, list(c.meta), lambda column: column_values(store, c, column))
    if progress:
        progress(0.1, "loading the base encoder and a sample of the notes")
    size = min(c.n_docs, max(64, 8 * opts.batch_size))
    ords = sorted(np.random.default_rng(0).choice(c.n_docs, size, replace=False).tolist())
    texts, labels = training_data(store, c, opts, ords)
    speed = measure_speed(texts, labels, get_encoder(store, opts.base).path, opts.replace(device=settings["device"]))

    def save(con) -> None:
        con.execute("INSERT OR REPLACE INTO speed_estimates (cache_key, machine, params, setup_s, step_s, device) "
                    "VALUES (?, ?, ?, ?, ?, ?)", [key, json.dumps(here), json.dumps(settings | {"corpus": corpus}),
                                                  speed["setup_s"], speed["step_s"], speed["device"]])

    store.write(save)
    if progress:
        progress(1.0, "measured")
    return stored(store, opts)


def measure_in_background(store: Store, corpus: str, opts: PretrainOptions) -> background.Job:
    """The job timing these settings on this machine, started unless one is running; one per key per server."""
    key, _, _ = _key(store, opts)
    return background.start(("speed", str(store.path), key), opts,
                            lambda progress: measure(store, corpus, opts, progress))
