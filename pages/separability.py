"""Separability: how clearly each encoder's space separates a metadata column, and which columns it encodes."""

import html

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from core.evaluation import METRICS, audit_corpus, evaluate_corpus, metrics_frame, per_class_frame
from core.options import EvaluateOptions
from core.store import StoreError
from pages.common import corpus_picker, encoder_picker, label_picker, progress_bar, store

ARROW = {"higher": "↑", "lower": "↓"}
SHORT = {"silhouette": "Silhouette", "knn_accuracy": "kNN accuracy", "linear_probe_accuracy": "Linear probe",
         "davies_bouldin": "Davies-Bouldin", "calinski_harabasz": "Calinski-Harabasz", "alignment": "Alignment",
         "uniformity": "Uniformity"}
MAX_CLASSES_SHOWN = 25  # a bar chart of 100+ classes is unreadable; the table has them all


def plain(text) -> str:
    """User text (class and column names) for plotly, which would otherwise read it as HTML."""
    return html.escape(str(text), quote=False)


def fmt(value, low=None, high=None) -> str:
    if pd.isna(value):
        return "n/a"
    text = f"{value:.3f}" if abs(value) < 1e4 else f"{value:.4g}"
    return text + (f" [{low:.3f}, {high:.3f}]" if pd.notna(low) and pd.notna(high) else "")


def metrics_chart(frame, colours) -> go.Figure:
    """One small panel per metric (scales differ), one bar per encoder, 95% intervals as error bars."""
    titles = [f"{SHORT[key]} {ARROW[better]}" for key, _, better, _ in METRICS]
    fig = make_subplots(rows=2, cols=4, subplot_titles=titles, vertical_spacing=0.18, horizontal_spacing=0.07)
    for i, (key, *_rest) in enumerate(METRICS):
        part = frame[frame["key"] == key]
        for row in part.itertuples():
            has_ci = pd.notna(row.low) and pd.notna(row.high) and pd.notna(row.value)
            fig.add_trace(go.Bar(
                x=[row.encoder], y=[row.value], name=row.encoder, marker_color=colours[row.encoder],
                legendgroup=row.encoder, showlegend=i == 0,
                error_y=dict(type="data", symmetric=False, array=[row.high - row.value] if has_ci else [0],
                             arrayminus=[row.value - row.low] if has_ci else [0], visible=has_ci),
                hovertemplate=f"{row.encoder}: {fmt(row.value, row.low, row.high)}<extra></extra>",
            ), row=i // 4 + 1, col=i % 4 + 1)
    # the eighth panel is empty: the legend goes there
    fig.update_layout(height=520, margin=dict(t=40, b=10, l=10, r=10), bargap=0.35,
                      legend=dict(x=0.8, y=0.25, xanchor="left", yanchor="middle", title="encoder"))
    fig.update_xaxes(showticklabels=False)
    return fig


def show_result(result: dict, colours: dict) -> None:
    first = next(iter(result["encoders"].values()))
    dropped = len(first.get("dropped_classes") or {})
    st.caption(f"{first['n']:,} labelled notes in {first['n_classes']} classes"
               + (f"; {dropped} classes with a single note left out" if dropped else "")
               + (f"; {first['n_unlabelled']:,} notes without a label left out" if first.get("n_unlabelled") else "")
               + f". kNN with k = {first['knn_k']}; intervals are 95% bootstrap intervals.")
    frame = metrics_frame(result)
    table = frame.assign(cell=[fmt(v, lo, hi) for v, lo, hi in zip(frame["value"], frame["low"], frame["high"])])
    table = table.pivot_table(index=["metric", "better"], columns="encoder", values="cell", aggfunc="first", sort=False)
    st.dataframe(table[list(result["encoders"])].reset_index().assign(better=lambda t: t["better"].map(ARROW)),
                 hide_index=True, width="stretch")
    st.plotly_chart(metrics_chart(frame, colours), key="sep_metrics_chart")

    st.subheader("Per class")
    per = per_class_frame(result)
    names = {"knn_accuracy": "kNN accuracy", "silhouette": "Silhouette", "alignment": "Alignment (lower is tighter)"}
    metric = st.radio("Per-class metric", list(names), format_func=names.get, horizontal=True, key="sep_class_metric")
    sizes = per.groupby("class")["n"].first().sort_values(ascending=False, kind="stable")
    shown = sizes.index[:MAX_CLASSES_SHOWN][::-1]  # plotly draws horizontal bars bottom-up: largest at the top
    if len(sizes) > len(shown):
        st.caption(f"The {len(shown)} largest of {len(sizes)} classes; the table below lists every class.")
    groups = list(per.set_index("class").loc[shown].reset_index().groupby("encoder", sort=False))
    # grouped horizontal bars stack the first trace lowest: add them reversed so each group reads like the legend
    fig = go.Figure([go.Bar(y=[plain(c) for c in part["class"]], x=part[metric], name=enc, orientation="h",
                            marker_color=colours[enc]) for enc, part in groups[::-1]])
    fig.update_layout(barmode="group", height=80 + len(shown) * (12 + 10 * len(groups)),
                      xaxis_title=names[metric], margin=dict(t=10, b=10, l=10, r=10),
                      legend=dict(orientation="h", y=1.02, yanchor="bottom", traceorder="reversed"))
    st.plotly_chart(fig, key="sep_class_chart")
    wide = per.pivot_table(index=["class", "n"], columns="encoder", values=metric, sort=False).reset_index()
    st.dataframe(wide.sort_values("n", ascending=False), hide_index=True, width="stretch",
                 column_config={"class": st.column_config.TextColumn("class"), "n": "notes"}
                 | {e: st.column_config.NumberColumn(e, format="%.3f") for e in result["encoders"]})


def show_audit(audit: dict, label: str) -> None:
    ranking = audit["ranking"]
    if not ranking:
        st.info("No metadata column has two or more groups to compare.")
    else:
        ranked = ranking[::-1]  # plotly draws horizontal bars bottom-up: best at the top
        fig = go.Figure(go.Bar(
            y=[plain(r["column"]) for r in ranked], x=[r["score"] for r in ranked], orientation="h",
            marker_color=["#d62728" if r["column"] == label else "#1f77b4" for r in ranked],
            hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
        fig.update_layout(height=max(220, 34 * len(ranked) + 80), margin=dict(t=10, b=10, l=10, r=10),
                          xaxis=dict(title="chance-corrected balanced kNN accuracy", range=[min(0, *fig.data[0].x), 1]))
        st.plotly_chart(fig, key="sep_audit_chart")
        st.dataframe(ranking, hide_index=True, width="stretch",
                     column_order=["column", "kind", "score", "n_groups", "n_notes", "knn_accuracy",
                                   "majority_baseline", "silhouette"],
                     column_config={"column": st.column_config.TextColumn("column")}
                     | {c: st.column_config.NumberColumn(c, format="%.3f")
                        for c in ("score", "knn_accuracy", "majority_baseline", "silhouette")})
    if audit["skipped"]:
        st.caption("Not scored:")
        st.dataframe([{"column": c, "why": why} for c, why in audit["skipped"].items()], hide_index=True)


st.title("Separability")
st.caption("How clearly each encoder's space separates the values of a metadata column (or of clusters and map "
           "labels), measured in the full embedding space (not on a 2-D map), with 95% intervals.")
corpus = corpus_picker()
if corpus:
    c = store().corpus(corpus)
    left, right = st.columns([1, 2])
    with right:  # first: the derived label columns ("cluster") depend on the encoders
        encoders = encoder_picker("Encoders", key="sep_encoders", multiple=True)
    label, label_key = label_picker(left, c, encoders, "sep_label", "measure")
    knn_k = st.slider("k of the kNN accuracy", 1, 50, 10, key="sep_k")
    opts = EvaluateOptions(label=label, shots="", knn_k=knn_k)
    results = st.session_state.setdefault("sep_results", {})
    key = (c.id, label_key, tuple(encoders), knn_k)
    if st.button("Measure separability", type="primary", key="sep_run", disabled=not encoders):
        bar, update = progress_bar("Loading the vectors…")
        try:
            results[key] = evaluate_corpus(store(), corpus, encoders, opts, progress=update)
        except (StoreError, ValueError) as exc:
            st.error(str(exc))
        bar.empty()
    elif encoders and key not in results:  # measured before (this or an earlier session): shown at once
        found = evaluate_corpus(store(), corpus, encoders, opts, compute=False)
        if found:
            results[key] = found
    colours = {e: qualitative.Plotly[i % 10] for i, e in enumerate(encoders)}
    if results.get(key):
        show_result(results[key], colours)

        st.subheader("Confound audit")
        st.caption("Which metadata does the space encode? Every column is scored by how well a note's nearest "
                   "neighbours predict its value (0 = not at all, 1 = perfectly; numbers and dates in quartiles). "
                   "A high score for a column you did not train on (site, date) is a possible confound.")
        audit_encoder = st.selectbox("Encoder to audit", encoders, key="sep_audit_encoder")
        audit_key = (c.id, audit_encoder, knn_k)
        audits = st.session_state.setdefault("sep_audits", {})
        if st.button("Audit metadata columns", key="sep_audit_run"):
            bar, update = progress_bar("Loading the vectors…")
            audits[audit_key] = audit_corpus(store(), corpus, audit_encoder, k=knn_k, progress=update)
            bar.empty()
        elif audit_key not in audits:
            found = audit_corpus(store(), corpus, audit_encoder, k=knn_k, compute=False)
            if found:
                audits[audit_key] = found
        if audits.get(audit_key):
            show_audit(audits[audit_key], label)
    elif encoders:
        st.info("Pick a label column and encoders, then **Measure separability**. Results are kept in the store, "
                "so they show at once next time.")
