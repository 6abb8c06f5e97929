"""A training run's progress as a job shows it, and its cancel flag, kept in step with a store.

`train()` reports a dict every few steps; `JobProgress` turns it into the job's state (fraction,
one-line message, recent figures, a thinned loss curve). A background thread hands the newest state
to `write` and asks `read_cancel` every `every_s` seconds, so training never waits on the store: a
store that another process holds for a long while (a large ingest) delays the figures, not the run,
and a failed round is simply tried again. Store-free: the callbacks decide where things go.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)
FIGURES = ("step", "steps", "loss", "tokens_per_s", "eta_s", "elapsed_s")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    return f"{s // 60}m{s % 60:02d}s" if s < 3600 else f"{s // 3600}h{s % 3600 // 60:02d}m"


def describe(p: dict) -> str:
    return (f"step {p['step']}/{p['steps']} loss {p['loss']:.2f} · {p['tokens_per_s']:,.0f} tok/s · "
            f"ETA {duration(p['eta_s'])}")


class JobProgress:
    """Use as a context manager around `train()`: leaving it writes the last state."""

    def __init__(self, write: Callable[[dict], None], read_cancel: Callable[[], bool], previous: dict | None = None,
                 report: Callable[[float, str], None] | None = None, every_s: float = 2.0, points: int = 300) -> None:
        self.write, self.read_cancel, self.report = write, read_cancel, report
        self.every_s, self.points = every_s, points
        self.curve: list[list[float]] = list((previous or {}).get("curve", []))  # kept across a resume
        self.resumed_from: int | None = None
        self._latest: dict | None = None  # newest state not yet written
        self._lock, self._cancel, self._closing = threading.Lock(), threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._sync, name="job-progress", daemon=True)

    def __enter__(self) -> JobProgress:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._closing.set()
        self._thread.join()

    def __call__(self, p: dict) -> None:
        if self.resumed_from is None:  # the first report of this session says where it started
            self.resumed_from = p["step"] - 1
            self.curve = [pt for pt in self.curve if pt[0] < p["step"]]
        self.curve.append([p["step"], round(p["loss"], 4)])
        if len(self.curve) > self.points:  # halve evenly, keeping the newest point
            self.curve = self.curve[::2] + ([self.curve[-1]] if len(self.curve) % 2 == 0 else [])
        fraction, message = p["step"] / p["steps"], describe(p)
        if self.report is not None:
            self.report(fraction, message)
        with self._lock:
            self._latest = {"fraction": fraction, "message": message, "curve": list(self.curve),
                            "resumed_from": self.resumed_from, **{k: p[k] for k in FIGURES}}

    def should_stop(self) -> bool:
        return self._cancel.is_set()

    def _sync(self) -> None:
        while True:
            closing = self._closing.wait(self.every_s)
            with self._lock:
                state, self._latest = self._latest, None
            try:
                if state is not None:
                    self.write(state)
                if not closing and self.read_cancel():
                    self._cancel.set()
            except Exception as exc:  # noqa: BLE001 - the store stayed busy: keep training, retry next round
                log.warning("progress not saved yet: %s", exc)
                with self._lock:
                    self._latest = self._latest or state
            if closing:
                return
