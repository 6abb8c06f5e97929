"""A page's long step (Compute clusters, Measure separability, a learning curve) as a background job of
core/background.py: its button starts it, the page shows what it is doing and how far it is with a
Cancel button (polled only while it runs), and collects its result once, when it has finished.

Cancelling stops the work at its next progress report, as Ctrl-C stops the CLI's verb; its result is not
stored then (vectors it embedded on the way stay cached). Jobs are keyed by what they compute (with the
store's path), so a second press, or a second session asking for the same thing, follows the job running.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from core import background


def start(key: tuple, opts: Any, work: Callable[[background.Progress], Any]) -> None:
    """Start `work(progress)` under `key` (kind first), unless it runs already; a failed or cancelled job
    of the same key is forgotten first."""
    job = background.get(key)
    if job is not None and job.error:
        background.forget(job)
    # kept once finished, until `follow` collects its result (a finished job would otherwise be dropped)
    background.start(key, opts, work, once=True)


def running(key: tuple) -> bool:
    job = background.get(key)
    return job is not None and not job.done


@st.fragment(run_every=1.0)
def _poll(job: background.Job, title: str, cancel_key: str) -> None:
    if job.done:
        st.rerun(scope="app")
    bar, cancel = st.columns([6, 1], vertical_alignment="bottom")
    bar.progress(min(job.fraction, 0.99), text=f"{title}: {job.message} ({job.elapsed:.0f} s)")
    cancel.button("Cancel", key=cancel_key, on_click=job.cancel, disabled=job.cancel_requested,
                  help="Stops at its next step; no result of it is stored.")


def follow(key: tuple, title: str, cancel_key: str) -> Any:
    """The result of the job under `key` once it has finished well (collected once: the job is then
    forgotten), else None. While it runs: its progress and a Cancel button (widget key `cancel_key`);
    after it failed or was cancelled: why, until it is started again."""
    job = background.get(key)
    if job is None:
        return None
    if not job.done:
        _poll(job, title, cancel_key)
    elif job.error == background.CANCELLED:
        st.info(f"{title}: cancelled; no result was stored.", icon=":material/cancel:")
    elif job.error:
        st.error(f"{title} failed: {job.error}")
    else:
        background.forget(job)
        return job.result
    return None
