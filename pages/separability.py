"""Separability: how clearly each encoder's space separates a metadata column, and which columns it encodes."""


import plotly.graph_objects as go
import streamlit as st
from plotly.colors import qualitative

from core.evaluation.corpus import audit_corpus, evaluate_corpus
from core.evaluation.tables import fmt, metrics_table, per_class_frame, separation_words, struggling_classes
from core.intervals import N_BOOT
from core.options import EvaluateOptions
from pages.common import corpus_picker, encoder_picker, label_picker, store
from pages.components import steps
from pages.text import for_markdown, for_plotly

COLOURS = qualitative.Plotly
MAX_CLASSES_SHOWN = 25  # a bar chart of 100+ classes is unreadable; the table has them all
PER_CLASS = {"knn_accuracy": "Nearest notes share the label", "silhouette": "Nearer own label (silhouette)",
             "alignment": "Spread inside the label (lower is tighter)"}


def headline(name: str, entry: dict) -> None:
    """In words: how well the label separates, the kNN accuracy beside its baselines and beyond chance."""
    score, (low, high) = entry.get("knn_chance_corrected"), entry["knn_accuracy_ci"]
    st.markdown(f"**{for_markdown(name)}**: the label separates **{separation_words(score)}**. "
                f"For {entry['knn_accuracy']:.0%} of notes (95% interval {low:.0%} to {high:.0%}) most of the "
                f"{entry['knn_k']} nearest notes share its label, against {entry['majority_baseline']:.0%} by always "
                f"answering the largest class and {entry['chance']:.0%} by guessing. Beyond chance: "
                f"{fmt(score, entry['knn_chance_corrected_ci'])} (0 = no better than guessing, 1 = every class "
                "always right).")


def show_result(result: dict, colours: dict) -> None:
    first = next(iter(result["encoders"].values()))
    dropped = len(first.get("dropped_classes") or {})
    st.caption(f"{first['n']:,} labelled notes in {first['n_classes']} classes"
               + (f"; {dropped} classes with a single note left out" if dropped else "")
               + (f"; {first['n_unlabelled']:,} notes without a label left out" if first.get("n_unlabelled") else "")
               + f". Intervals are 95% bootstrap intervals over {N_BOOT:,} resamples of the notes; a difference between "
                 "encoders is paired (both resampled alike) and called better or worse only when its interval "
                 "excludes 0.")
    for name, entry in result["encoders"].items():
        headline(name, entry)
    st.caption("Words for the score beyond chance (a rule of thumb of NoteSpace, not a standard): strongly from 0.6, "
               "moderately from 0.3, weakly from 0.1, hardly at all below.")
    st.table(metrics_table(result).set_index("Measure"))  # a plain table: long explanations wrap, nothing hides

    st.subheader("Classes that separate much worse than average")
    for name, entry in result["encoders"].items():
        weak = struggling_classes(entry["per_class"], "knn_accuracy", entry["knn_accuracy"])
        if not weak:
            st.caption(f"{for_markdown(name)}: no class is 0.2 or more below the overall kNN accuracy "
                       f"({fmt(entry['knn_accuracy'])}).")
            continue
        st.caption(f"{for_markdown(name)}: {len(weak)} classes at least 0.2 below the overall kNN accuracy "
                   f"({fmt(entry['knn_accuracy'])}), worst first.")
        st.dataframe([{"Class": w["class"], "Notes": w["n"], PER_CLASS["knn_accuracy"]: w["knn_accuracy"],
                       PER_CLASS["silhouette"]: w["silhouette"]} for w in weak], hide_index=True, width="stretch",
                     column_config={"Class": st.column_config.TextColumn("Class")}
                     | {c: st.column_config.NumberColumn(c, format="%.3f")
                        for c in (PER_CLASS["knn_accuracy"], PER_CLASS["silhouette"])})

    st.subheader("Every class")
    per = per_class_frame(result)
    metric = st.radio("Per-class measure", list(PER_CLASS), format_func=PER_CLASS.get, horizontal=True,
                      key="sep_class_metric")
    sizes = per.groupby("class")["n"].first().sort_values(ascending=False, kind="stable")
    shown = sizes.index[:MAX_CLASSES_SHOWN][::-1]  # plotly draws horizontal bars bottom-up: largest at the top
    if len(sizes) > len(shown):
        st.caption(f"The {len(shown)} largest of {len(sizes)} classes; the table below lists every class.")
    groups = list(per.set_index("class").loc[shown].reset_index().groupby("encoder", sort=False))
    # grouped horizontal bars stack the first trace lowest: add them reversed so each group reads like the legend
    fig = go.Figure([go.Bar(y=[for_plotly(c) for c in part["class"]], x=part[metric], name=enc, orientation="h",
                            marker_color=colours[enc]) for enc, part in groups[::-1]])
    fig.update_layout(barmode="group", height=80 + len(shown) * (12 + 10 * len(groups)),
                      xaxis_title=PER_CLASS[metric], margin=dict(t=10, b=10, l=10, r=10),
                      legend=dict(orientation="h", y=1.02, yanchor="bottom", traceorder="reversed"))
    st.plotly_chart(fig, key="sep_class_chart")
    wide = per.pivot_table(index=["class", "n"], columns="encoder", values=metric, sort=False).reset_index()
    st.dataframe(wide.sort_values("n", ascending=False), hide_index=True, width="stretch",
                 column_config={"class": st.column_config.TextColumn("Class"), "n": "Notes"}
                 | {e: st.column_config.NumberColumn(e, format="%.3f") for e in result["encoders"]})


AUDIT_COLUMNS = {"column": "Metadata column", "kind": "Kind", "score": "Beyond chance (0 = none, 1 = always)",
                 "n_groups": "Values compared", "n_notes": "Notes", "knn_accuracy": "Nearest notes share the value",
                 "majority_baseline": "Always the largest value", "silhouette": "Nearer own value (silhouette)"}


def show_audit(audit: dict, label: str) -> None:
    ranking = audit["ranking"]
    if not ranking:
        st.info("No metadata column has two or more groups to compare.")
    else:
        ranked = ranking[::-1]  # plotly draws horizontal bars bottom-up: best at the top
        fig = go.Figure(go.Bar(
            y=[for_plotly(r["column"]) for r in ranked], x=[r["score"] for r in ranked], orientation="h",
            marker_color=["#d62728" if r["column"] == label else "#1f77b4" for r in ranked],
            hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
        fig.update_layout(height=max(220, 34 * len(ranked) + 80), margin=dict(t=10, b=10, l=10, r=10),
                          xaxis=dict(title="nearest notes share the value, beyond chance (0-1)", range=[min(0, *fig.data[0].x), 1]))
        st.plotly_chart(fig, key="sep_audit_chart")
        st.dataframe(ranking, hide_index=True, width="stretch",
                     column_order=list(AUDIT_COLUMNS),
                     column_config={"column": st.column_config.TextColumn("Metadata column"),
                                    "kind": st.column_config.TextColumn("Kind"),
                                    "n_groups": st.column_config.NumberColumn("Values compared"),
                                    "n_notes": st.column_config.NumberColumn("Notes")}
                     | {c: st.column_config.NumberColumn(AUDIT_COLUMNS[c], format="%.3f")
                        for c in ("score", "knn_accuracy", "majority_baseline", "silhouette")})
    if audit["skipped"]:
        st.caption("Not scored:")
        st.dataframe([{"Metadata column": c, "Why": why} for c, why in audit["skipped"].items()], hide_index=True)


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
    db = store()
    job_key = ("evaluate", str(db.path), *key)
    st.button("Measure separability", type="primary", key="sep_run", disabled=not encoders or steps.running(job_key),
              on_click=steps.start, args=(job_key, opts, lambda progress: evaluate_corpus(db, corpus, encoders, opts,
                                                                                           progress=progress)))
    if measured := steps.follow(job_key, "Measuring separability", "sep_cancel"):
        results[key] = measured
    elif encoders and key not in results and not steps.running(job_key):  # measured before: shown at once
        found = evaluate_corpus(db, corpus, encoders, opts, compute=False)
        if found:
            results[key] = found
    colours = {e: COLOURS[i % len(COLOURS)] for i, e in enumerate(encoders)}
    if results.get(key):
        show_result(results[key], colours)

        st.subheader("Confound audit")
        st.caption("Which metadata does the space encode? Every column is scored by how well a note's nearest "
                   "neighbours predict its value (0 = not at all, 1 = perfectly; numbers and dates in quartiles). "
                   "A high score for a column you did not train on (site, date) is a possible confound.")
        audit_encoder = st.selectbox("Encoder to audit", encoders, key="sep_audit_encoder")
        audit_key = (c.id, audit_encoder, knn_k)
        audits = st.session_state.setdefault("sep_audits", {})
        audit_job = ("confound_audit", str(db.path), *audit_key)
        st.button("Audit metadata columns", key="sep_audit_run", disabled=steps.running(audit_job),
                  on_click=steps.start, args=(audit_job, audit_key, lambda progress: audit_corpus(
                      db, corpus, audit_encoder, k=knn_k, progress=progress)))
        if audited := steps.follow(audit_job, "Auditing the metadata columns", "sep_audit_cancel"):
            audits[audit_key] = audited
        elif audit_key not in audits and not steps.running(audit_job):
            found = audit_corpus(db, corpus, audit_encoder, k=knn_k, compute=False)
            if found:
                audits[audit_key] = found
        if audits.get(audit_key):
            show_audit(audits[audit_key], label)
    elif encoders and not steps.running(job_key):
        st.info("Pick a label column and encoders, then **Measure separability**. Results are kept in the store, "
                "so they show at once next time.")
