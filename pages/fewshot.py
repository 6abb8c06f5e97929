"""Few-shot: learning curves of a classifier trained on a few labelled notes per class, on frozen embeddings,
and optionally SetFit curves of the encoder fine-tuned on those notes (a background job)."""


import plotly.graph_objects as go
import streamlit as st
from plotly.colors import hex_to_rgb, qualitative

from core import jobs
from core.evaluation.corpus import fewshot_corpus
from core.evaluation.metrics import comparisons
from core.evaluation.tables import (
    FEWSHOT_WORDS, comparisons_table, exhausted_shots, fewshot_class_frame, fewshot_table, fmt, struggling_classes,
)
from core.export import safe_csv
from core.fewshot import LearningCurve, summary_frame
from core.options import EvaluateOptions, PretrainOptions
from core.setfit import finetune_options
from pages.common import corpus_picker, encoder_picker, failure_text, label_picker, store
from pages.components import steps
from pages.text import for_plotly

SHOTS = [1, 2, 4, 8, 16, 32, 64, 128]
CLASSIFIERS = {"logreg": "Logistic regression", "knn": "k nearest neighbours"}
METRIC_NAMES = FEWSHOT_WORDS
METRIC_MEANING = {"macro_f1": "Macro-F1 (higher is better): the F1 score of each class averaged over classes, so a "
                              "small class counts as much as a large one; 1 = every note right.",
                  "accuracy": "Accuracy (higher is better): share of test notes given their right label; compare it "
                              "with always answering the largest class and with guessing."}
MAX_CLASSES_SHOWN = 25  # a confusion matrix of 100 classes is unreadable
OTHER = "(other classes)"
SETFIT = " + SetFit"  # a SetFit curve's name: its encoder's, then this


def curve_chart(frame, metric: str, colours: dict, baselines: dict[str, float]) -> go.Figure:
    """Mean over seeds per encoder, with its 95% interval as a shaded band; x on a log2 scale."""
    fig = go.Figure()
    for enc, part in frame.groupby("encoder", sort=False):
        part = part.sort_values("shot")
        low, high = part[f"{metric}_low"].fillna(part[metric]), part[f"{metric}_high"].fillna(part[metric])
        r, g, b = hex_to_rgb(colours[enc])
        fig.add_trace(go.Scatter(x=list(part["shot"]) + list(part["shot"])[::-1], y=list(high) + list(low)[::-1],
                                 fill="toself", fillcolor=f"rgba({r},{g},{b},0.18)", line=dict(width=0), mode="lines",
                                 hoverinfo="skip", showlegend=False, legendgroup=enc))
        fig.add_trace(go.Scatter(x=part["shot"], y=part[metric], name=enc, mode="lines+markers", legendgroup=enc,
                                 line=dict(color=colours[enc], width=2.5), customdata=list(zip(low, high)),
                                 hovertemplate=f"{enc}, %{{x}} per class: %{{y:.3f}} "
                                               "[%{customdata[0]:.3f}, %{customdata[1]:.3f}]<extra></extra>"))
    for name, value in baselines.items():
        fig.add_hline(y=value, line_dash="dot", line_color="grey", annotation_text=f"{name}: {value:.3f}")
    shots = sorted(frame["shot"].unique())
    fig.update_layout(height=420, margin=dict(t=10, b=10, l=10, r=10), legend=dict(orientation="h", y=1.08),
                      xaxis=dict(type="log", tickvals=shots, ticktext=[str(s) for s in shots],
                                 title="labelled notes per class (log scale)"),
                      yaxis=dict(title=METRIC_NAMES[metric], range=[0, 1.02]))
    return fig


def confusion_chart(cm) -> go.Figure:
    """Counts summed over seeds; colour is the share of each true class, so small classes stay visible."""
    share = cm.div(cm.sum(axis=1).clip(lower=1), axis=0)
    fig = go.Figure(go.Heatmap(z=share.to_numpy(), x=[for_plotly(c) for c in cm.columns], y=[for_plotly(c) for c in cm.index],
                               text=cm.where(cm > 0, "").to_numpy(), colorscale="Blues", zmin=0, zmax=1,
                               texttemplate="%{text}", customdata=cm.to_numpy(),
                               colorbar=dict(title="share of row"),
                               hovertemplate="true %{y}, predicted %{x}: %{customdata}<extra></extra>"))
    fig.update_layout(height=220 + 26 * len(cm), margin=dict(t=10, b=10, l=10, r=10),
                      xaxis=dict(title="predicted", tickangle=-40, tickmode="linear"),
                      yaxis=dict(title="true", autorange="reversed", tickmode="linear"))
    return fig


def largest_classes(cm, n: int):
    """The n most frequent true classes; predictions of any other class are pooled in one column."""
    keep = cm.sum(axis=1).nlargest(n, keep="first").index
    return cm.loc[keep, keep].assign(**{OTHER: cm.loc[keep].drop(columns=keep).sum(axis=1)})


def show_result(result: dict, corpus_name: str, colours: dict) -> None:
    curves = {e: LearningCurve.from_dict(d) for e, d in result["encoders"].items()}
    summaries = {e: d["summary"] for e, d in result["encoders"].items()}
    first = next(iter(curves.values()))
    dropped = len(first.dropped_classes)
    st.caption(f"{len(first.classes)} classes; the same {len(first.test_idx):,} held-out notes score every encoder "
               f"and shot count ({CLASSIFIERS[first.classifier].lower()}, {len({r.seed for r in first.runs})} draws "
               "of the training notes; mean over draws with a 95% bootstrap interval over test notes and draws). "
               "Identical texts never sit on both sides."
               + (f" {dropped} classes with fewer than two different notes left out." if dropped else ""))
    metric = st.radio("Measure", list(METRIC_NAMES), format_func=METRIC_NAMES.get, horizontal=True, key="fs_metric")
    st.caption(METRIC_MEANING[metric])
    frame = summary_frame(summaries)
    point = next(iter(next(iter(summaries.values())).values()))
    baselines = ({"always the largest class": point["majority_baseline"], "guessing": point["chance"]}
                 if metric == "accuracy" else {})
    st.plotly_chart(curve_chart(frame, metric, colours, baselines), key="fs_curve_chart")
    st.table(fewshot_table(summaries, metric).set_index("Notes per class"))
    skipped = exhausted_shots(summaries)
    if skipped:
        st.caption(f"At {', '.join(map(str, sorted(skipped)))} per class some classes have every training note in "
                   "every draw, so their draws do not vary: those counts get no verdict.")
    if len(curves) > 1:
        st.subheader(f"Each encoder against {next(iter(curves))}")
        st.caption("Paired: both encoders scored on the same test notes and draws, resampled alike; better or worse "
                   "only when the 95% interval of the difference excludes 0.")
        comps = comparisons({e: {"fewshot": d} for e, d in result["encoders"].items()})
        st.table(comparisons_table(comps, skipped).set_index("Compared"))

    st.subheader("Classes learnt much worse than average")
    left, right = st.columns(2)
    encoder = left.selectbox("Encoder", list(curves), key="fs_cm_encoder")
    shot = right.selectbox("Labelled notes per class", sorted(frame["shot"].unique()), key="fs_cm_shot",
                           index=len(frame["shot"].unique()) - 1)
    curve, summary = curves[encoder], summaries[encoder][str(shot)]
    classes = fewshot_class_frame(summary["per_class"])
    weak = {w["class"] for w in struggling_classes(summary["per_class"], "f1", summary["macro_f1"])}
    columns = {"Class": st.column_config.TextColumn("Class"), "F1": st.column_config.NumberColumn(format="%.3f"),
               "Share of its notes found": st.column_config.NumberColumn(format="%.3f")}
    if weak:
        st.caption(f"{len(weak)} classes with an F1 at least 0.2 below the macro-F1 ({fmt(summary['macro_f1'])}), "
                   "worst first; mean over draws.")
        st.dataframe(classes[classes["Class"].isin(weak)], hide_index=True, width="stretch", column_config=columns)
    else:
        st.caption(f"No class is 0.2 or more below the macro-F1 ({fmt(summary['macro_f1'])}).")
    with st.expander(f"Every class ({len(classes)})"):
        st.dataframe(classes, hide_index=True, width="stretch", column_config=columns, key="fs_every_class")

    st.subheader("Confusion matrix and predictions")
    cm = curve.confusion_frame(shot, seed=None)
    if len(cm) > MAX_CLASSES_SHOWN:
        st.caption(f"The {MAX_CLASSES_SHOWN} most frequent of {len(cm)} classes, summed over every seed; "
                   f"'{OTHER}' pools predictions of the rest.")
        cm = largest_classes(cm, MAX_CLASSES_SHOWN)
    else:
        st.caption("Summed over every seed.")
    st.plotly_chart(confusion_chart(cm), key="fs_confusion_chart")
    docs = store().documents(store().corpus(corpus_name))
    predictions = curve.predictions_frame(shot, seed=None, ids=docs["doc_id"].to_numpy())
    predictions["text"] = predictions["id"].map(docs.set_index("doc_id")["text"])
    predictions = predictions[["seed", "id", "true", "predicted", "confidence", "correct", "text"]]
    wrong = predictions[(predictions["seed"] == 0) & ~predictions["correct"]]
    st.caption(f"{len(wrong):,} of {len(curve.test_idx):,} test notes misclassified with seed 0, "
               "least confident first:")
    st.dataframe(wrong.sort_values("confidence").drop(columns=["seed", "correct"]).head(200), hide_index=True,
                 width="stretch", column_config={"id": st.column_config.TextColumn("Note"),
                                                 "true": st.column_config.TextColumn("True label"),
                                                 "predicted": st.column_config.TextColumn("Predicted label"),
                                                 "confidence": st.column_config.NumberColumn("Confidence", format="%.3f"),
                                                 "text": st.column_config.TextColumn("Text", width="large")})
    st.download_button("Download predictions (CSV, every seed)", safe_csv(predictions), key="fs_download",
                       file_name=f"{corpus_name}-{encoder}-{shot}-per-class-predictions.csv", mime="text/csv",
                       on_click="ignore", icon=":material/download:")


def launch_setfit(corpus: str, encoders: list[str], opts: EvaluateOptions, finetune: PretrainOptions) -> None:
    try:
        jobs.submit_setfit(store(), corpus, encoders, opts, finetune)
    except Exception as exc:
        st.session_state["fs_setfit_error"] = failure_text(exc)


@st.fragment(run_every=2)
def setfit_progress(corpus: str, encoders: list[str], opts: EvaluateOptions, finetune: PretrainOptions) -> None:
    j = jobs.setfit_job(store(), corpus, encoders, opts, finetune)
    if j is None or j["state"] not in jobs.ACTIVE:
        st.rerun()  # done, failed or cancelled: redraw the page with its curves or why it stopped
    stopping = j["cancel_requested"] and j["state"] == "running"
    with st.container(border=True):
        head, buttons = st.columns([4, 1])
        head.markdown(f"SetFit job #{j['id']} · :blue-badge[{'cancelling…' if stopping else j['state']}]")
        if j["state"] == "interrupted":
            head.caption("Its process stopped (restart, crash or kill); resuming starts the curves over.")
            buttons.button("Resume", key="fs_setfit_resume", on_click=jobs.ensure_worker, args=(store(), j["device"]))
        buttons.button("Cancel", key="fs_setfit_cancel", disabled=stopping, on_click=jobs.cancel_job,
                       args=(store(), j["id"]))
        st.progress(min(1.0, float(j["progress"].get("fraction", 0.0))), text=j["progress"].get("message", ""))


def setfit_panel(corpus: str, encoders: list[str], opts: EvaluateOptions, finetune: PretrainOptions) -> dict | None:
    """Launch, follow or cancel the SetFit job of these settings; returns its stored curves once done."""
    found = fewshot_corpus(store(), corpus, encoders, opts, compute=False, finetune=finetune)
    if found:
        return found
    j = jobs.setfit_job(store(), corpus, encoders, opts, finetune)
    if j and j["state"] in jobs.ACTIVE:
        setfit_progress(corpus, encoders, opts, finetune)
        return None
    if j and j["state"] in ("failed", "cancelled"):
        st.warning(f"The last SetFit job with these settings was {j['state']}"
                   + (f": {j['error']}" if j["state"] == "failed" else "."))
    st.button("Run SetFit in the background", key="fs_setfit_run", on_click=launch_setfit,
              args=(corpus, encoders, opts, finetune))
    if error := st.session_state.pop("fs_setfit_error", None):
        st.error(error)
    return None


def with_setfit(result: dict | None, tuned: dict | None) -> dict | None:
    """The frozen-embedding curves and the SetFit ones as one result to draw (SetFit curves last)."""
    if not tuned:
        return result
    curves = {e + SETFIT: curve for e, curve in tuned["encoders"].items()}
    return (result or tuned) | {"encoders": (result["encoders"] if result else {}) | curves}


st.title("Few-shot")
st.caption("How well a simple classifier on frozen embeddings learns a label from a few labelled notes per class. "
           "Every encoder is trained and tested on the same notes, so the curves compare like with like.")
corpus = corpus_picker()
if corpus:
    c = store().corpus(corpus)
    left, right = st.columns([1, 2])
    with right:  # first: the derived label columns ("cluster") depend on the encoders
        encoders = encoder_picker("Encoders", key="fs_encoders", multiple=True)
    label, label_key = label_picker(left, c, encoders, "fs_label", "learn")
    a, b, d = st.columns([2, 1, 1])
    shots = a.multiselect("Labelled notes per class", SHOTS, default=SHOTS[:6], key="fs_shots")
    seeds = b.number_input("Seeds", 1, 20, 5, key="fs_seeds", help="random draws of the labelled notes per point")
    classifier = d.radio("Classifier", list(CLASSIFIERS), format_func=CLASSIFIERS.get, key="fs_classifier")
    opts = EvaluateOptions(label=label, shots=",".join(map(str, shots)), seeds=int(seeds), classifier=classifier)
    option, tuning = st.columns([3, 1])
    setfit = option.checkbox("SetFit (fine-tunes the encoder; slower, runs in the background)", key="fs_setfit",
                             help="For every seed and shot count, each encoder is fine-tuned contrastively on just "
                                  "those labelled notes (same-label notes pulled together, others pushed apart), then "
                                  "logistic regression is fitted on its new vectors. Same test and training notes as "
                                  "the other curves; with one note per class there is no pair to learn from, so the "
                                  "encoder is used as it is.")
    tuning_steps = tuning.number_input("Fine-tuning steps", 1, 10_000, finetune_options().steps,
                                       key="fs_setfit_steps", disabled=not setfit, help="per seed and shot count")
    finetune = finetune_options(steps=int(tuning_steps))
    results = st.session_state.setdefault("fs_results", {})
    key = (c.id, label_key, tuple(encoders), opts)
    db = store()
    job_key = ("fewshot", str(db.path), *key)
    st.button("Run learning curve", type="primary", key="fs_run",
              disabled=not (encoders and shots) or steps.running(job_key), on_click=steps.start,
              args=(job_key, opts, lambda progress: fewshot_corpus(db, corpus, encoders, opts, progress=progress)))
    if curves := steps.follow(job_key, "Learning curve", "fs_cancel"):
        results[key] = curves
    elif encoders and shots and key not in results and not steps.running(job_key):  # run before: shown at once
        found = fewshot_corpus(db, corpus, encoders, opts, compute=False)
        if found:
            results[key] = found
    tuned = None
    if setfit and encoders and shots:
        tuned = results.get((key, finetune)) or setfit_panel(corpus, encoders, opts, finetune)
        if tuned:  # stored for good: later reruns of this session skip the look-up
            results[(key, finetune)] = tuned
            st.caption(f"ENCODER{SETFIT}: logistic regression on the encoder's vectors after {finetune.steps} "
                       "fine-tuning steps on the labelled notes of each seed and shot count.")
    shown = with_setfit(results.get(key), tuned)
    if shown:
        show_result(shown, corpus, {e: qualitative.Plotly[i % 10] for i, e in enumerate(shown["encoders"])})
    elif encoders and not steps.running(job_key):
        st.info("Choose the label, encoders and shot counts, then **Run learning curve**. Results are kept in the "
                "store, so they show at once next time.")
