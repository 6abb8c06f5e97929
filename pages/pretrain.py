"""Pretrain: adapt an encoder to a corpus in the background, and follow every training job."""

import plotly.graph_objects as go
import streamlit as st

from core import background, jobs, speed
from core.devices import resolve_device
from core.encoders import list_encoders
from core.options import PretrainOptions
from core.training.progress import duration
from core.training.registry import get_objective, objectives
from core.training.settings import suggested_options
from pages.common import choose, corpus_picker, failure_text, store


st.title("Pretrain")
st.caption("Continue pre-training an encoder on your notes so that it organises them better. Training runs in "
           "the background on this machine: you can leave this page, reload it or follow it from another tab.")
device = resolve_device()


def chosen_options(corpus: str) -> PretrainOptions:
    """The settings in the form, read from the session state (so a click gets what is on screen)."""
    state, objective = st.session_state, st.session_state["pt_objective"]
    tag = f"{device}_{objective}"
    return PretrainOptions(
        objective=objective, name=state[f"pt_name_{corpus}_{objective}"].strip(), base=state["pt_base"],
        label=(state.get("pt_label") or "") if get_objective(objective).needs_label else "", steps=int(state[f"pt_steps_{tag}"]),
        batch_size=int(state[f"pt_batch_{tag}"]), lr=float(state[f"pt_lr_{tag}"]),
        max_length=int(state[f"pt_length_{tag}"]), device=device, nproc=int(state.get("pt_nproc", 1)))


def launch(corpus: str) -> None:
    opts = chosen_options(corpus)
    try:
        job_id = jobs.submit_pretrain(store(), corpus, opts)
    except Exception as exc:
        st.session_state["pt_message"] = ("error", failure_text(exc))
    else:
        st.session_state["pt_message"] = ("success", f"Job {job_id} queued: it will save the encoder '{opts.name}'.")
        del st.session_state[f"pt_name_{corpus}_{opts.objective}"]  # the next run suggests a fresh name


def estimate_panel(corpus: str, opts: PretrainOptions) -> None:
    """The run time of these settings on this machine: the stored figure at once, else timed in the
    background while Launch stays usable (core/speed.py)."""
    try:
        estimate = speed.stored(store(), opts)
        job = speed.measure_in_background(store(), corpus, opts) if estimate is None or estimate["stale"] else None
    except Exception as exc:
        st.warning(f"No run-time estimate: {failure_text(exc)}")
        return
    if estimate is None:
        measuring(job)
        return
    ahead = [j for j in jobs.list_jobs(store()) if j["state"] in jobs.ACTIVE and j["device"] == device]
    st.info(f"Estimated run time on **{device}**: about **{duration(estimate['seconds'])}** "
            f"({estimate['step_s']:.2f} s per step, timed on this machine with these settings, on a sample of "
            f"'{estimate['corpus']}'"
            + (f"; timed in one process, {opts.nproc} processes share the work)" if opts.nproc > 1 else ")")
            + (f"; it starts once the {len(ahead)} job(s) ahead of it are done." if ahead else "."),
            icon=":material/timer:")


@st.fragment(run_every=1.0)
def measuring(job) -> None:
    """Progress of the timing of new settings; the page redraws with the figure once it is stored."""
    if job.error:
        st.warning(f"No run-time estimate: timing these settings failed ({job.error}).")
        if st.button("Time them again", key="pt_estimate_retry"):
            background.forget(job)
            st.rerun(scope="app")
        return
    if job.done:
        st.rerun(scope="app")
    st.progress(min(job.fraction, 0.99), text=f"Run-time estimate: measuring… timing a few steps of these settings "
                                                f"on this machine ({job.elapsed:.0f} s). Launch does not wait for it.")


with st.container(border=True):
    st.subheader("New training job")
    corpus = corpus_picker()
    if corpus:
        c = store().corpus(corpus)
        encoders = list_encoders(store())
        left, middle, right = st.columns(3)
        left.selectbox("Start from encoder", [e.id for e in encoders], key="pt_base",
                       format_func={e.id: f"{e.id} ({e.kind}, {e.dim}-d)" for e in encoders}.get,
                       help="Any registered encoder, one adapted here too: e.g. MLM first, then DeCLUTR.")
        registered = objectives()  # every objective of core/training/objectives/, with what it declares
        names = list(registered)
        objective = middle.selectbox("Objective", names, key="pt_objective",
                                     index=names.index(PretrainOptions().objective),
                                     help=" ".join(f"**{k}**: {o.help}" for k, o in registered.items()))
        chosen = registered[objective]
        right.selectbox("Label column", [k for k, kind in c.meta.items() if kind == "categorical"], key="pt_label",
                        disabled=not chosen.needs_label,
                        help="For objectives that learn from a label: notes with the same value are pulled together.")
        st.caption(chosen.help)
        name_key = f"pt_name_{corpus}_{objective}"
        if name_key not in st.session_state:
            st.session_state[name_key] = jobs.suggest_name(store(), corpus, objective)
        st.text_input("Name of the new encoder", key=name_key, help="Saved as a folder under models/.")
        # Defaults suit the device and the objective; keys carry both, so switching resets them.
        d, tag = suggested_options(device, objective), f"{device}_{objective}"
        cols = st.columns(4)
        cols[0].number_input("Steps", 1, 1_000_000, d["steps"], key=f"pt_steps_{tag}")
        cols[1].number_input("Batch size (notes)", chosen.min_batch, 1024, d["batch_size"], key=f"pt_batch_{tag}")
        cols[2].number_input("Max length (tokens)", 8, 4096, d["max_length"], key=f"pt_length_{tag}")
        cols[3].number_input("Learning rate", 1e-7, 1e-2, d["lr"], format="%.0e", key=f"pt_lr_{tag}")
        st.number_input("Training processes", 1, 64, 1, key="pt_nproc",
                        help="Data-parallel: one process per GPU (or CPU cores shared out); each takes an "
                             "equal part of every batch, so the batch size must divide by it.")
        estimate_panel(corpus, chosen_options(corpus))
        st.button("Launch training", type="primary", key="pt_launch", on_click=launch, args=(corpus,))
        kind, text = st.session_state.pop("pt_message", (None, None))
        if kind:
            getattr(st, kind)(text)


def loss_figure(curve: list, steps: int) -> go.Figure:
    fig = go.Figure(go.Scatter(x=[p[0] for p in curve], y=[p[1] for p in curve], mode="lines"))
    fig.update_layout(height=200, margin=dict(l=0, r=0, t=10, b=0), xaxis_title="step", yaxis_title="loss")
    return fig.update_xaxes(range=[0, steps])  # the whole run's width: how far along it is shows


def describe(j: dict) -> str:
    o = j["params"]["options"]
    objective = f"{o['objective']} ({o['label']})" if o["label"] else o["objective"]
    return f"**#{j['id']} {o['name']}** · {objective} from `{o['base']}` on `{j['params']['corpus']}`"


def active_card(j: dict) -> None:
    p, stopping = j["progress"], j["cancel_requested"] and j["state"] == "running"
    with st.container(border=True):
        head, buttons = st.columns([4, 1])
        state = "cancelling…" if stopping else j["state"]
        head.markdown(f"{describe(j)} · :blue-badge[{state}]")
        if j["state"] == "interrupted":
            head.caption("Its process stopped (restart, crash or kill). Resume continues from the last checkpoint.")
            buttons.button("Resume", key=f"pt_resume_{j['id']}", on_click=jobs.ensure_worker, args=(store(), j["device"]))
        buttons.button("Cancel", key=f"pt_cancel_{j['id']}", disabled=stopping,
                       on_click=jobs.cancel_job, args=(store(), j["id"]))
        st.progress(min(1.0, float(p.get("fraction", 0.0))), text=p.get("message", ""))
        if p.get("curve"):
            figures = st.columns(4)
            figures[0].metric("Step", f"{p['step']} / {p['steps']}")
            figures[1].metric("Loss", f"{p['loss']:.3f}")
            figures[2].metric("Tokens / s", f"{p['tokens_per_s']:,.0f}")
            figures[3].metric("Time left", duration(p["eta_s"]))
            st.plotly_chart(loss_figure(p["curve"], p["steps"]), key=f"pt_curve_{j['id']}")


def finished_card(j: dict) -> None:
    r = j["result"]
    with st.container(border=True):
        if j["state"] != "done":
            icon = ":material/error:" if j["state"] == "failed" else ":material/cancel:"
            st.markdown(f"{icon} {describe(j)} · {j['state']}: {j['error'] or ''}")
            return
        st.markdown(f":material/check_circle: {describe(j)} · done: encoder **{r['encoder']}**, {r['steps']} steps "
                    f"in {duration(r['seconds'])}, final loss {r['final_loss']:.3f}, {r['usable_docs']:,} notes used")
        explore, data, curve = st.columns([1, 1, 3])
        if explore.button("Explore with it", key=f"pt_explore_{j['id']}", icon=":material/scatter_plot:"):
            choose(corpus=j["params"].get("corpus"), encoder=r["encoder"])
            st.switch_page("pages/explore.py")
        if data.button("Embed on Data", key=f"pt_data_{j['id']}", icon=":material/upload_file:"):
            choose(corpus=j["params"].get("corpus"), encoder=r["encoder"])
            st.switch_page("pages/data.py")
        with curve.expander("Loss curve"):
            st.plotly_chart(loss_figure(j["progress"].get("curve", []), r["steps"]), key=f"pt_done_curve_{j['id']}")


def signature(all_jobs: list[dict]) -> list:
    # Ids only: queued -> running is redrawn by the card itself; a full rerun for it could come a moment
    # after Launch and drop the "queued" message the run before it had shown.
    return [j["id"] for j in all_jobs if j["state"] in jobs.ACTIVE]


all_jobs = jobs.list_jobs(store(), "pretrain")  # SetFit jobs show on the Few-shot page
st.session_state["pt_signature"] = signature(all_jobs)


@st.fragment(run_every=2)
def active_jobs() -> None:
    current = jobs.list_jobs(store(), "pretrain")
    if signature(current) != st.session_state["pt_signature"]:
        st.rerun()  # a job was added or ended, here or in another tab: redraw the whole page
    for j in current:
        if j["state"] in jobs.ACTIVE:
            active_card(j)


st.subheader("Training jobs")
if st.session_state["pt_signature"]:
    active_jobs()  # polls the store every 2 s, only while a job is queued or running: idle means idle
else:
    st.caption("No job is queued or running (one started elsewhere shows when this page reruns).")
finished = [j for j in all_jobs if j["state"] not in jobs.ACTIVE]
for j in finished[:10]:
    finished_card(j)
if len(finished) > 10:
    st.caption(f"{len(finished) - 10} older jobs: `notespace jobs` lists them all.")
