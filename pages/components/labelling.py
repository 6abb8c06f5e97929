"""Label from the map: name the selected notes, train a few-shot classifier on those labels, see
its predictions for every note and which notes to label next (uncertain and unlike those labelled).

Labels are stored (core.labels), so they survive reloads and are shared with the command line.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.labels import add_labels, clear_labels, get_labels, label_sets, predict_from_labels
from core.store import Store
from pages.common import failure_text
from pages.components import state
from pages.text import for_markdown

PREVIEW_CHARS = 200
# what the tables call core.labels' columns
COUNT_NAMES = {"class": "Label", "labelled": "Labelled by hand", "predicted": "Predicted",
               "mean_confidence": "Mean confidence of the predictions"}
SUGGESTION_NAMES = {"id": "Note", "predicted": "Predicted label", "confidence": "Confidence", "note": "Text"}


def _label_selection(store: Store, corpus: str, label_set: str) -> None:
    """Label the selected notes; the selection is then used up: cleared with its lasso, and the label
    typed for it, so no old selection dims the map the labels recolour."""
    label = st.session_state["labelling_label"]
    try:
        n = add_labels(store, corpus, label_set, state.selected(), label)
    except Exception as exc:
        st.session_state["labelling_message"] = ("error", failure_text(exc))
        return
    st.session_state["labelling_message"] = ("success", f"Labelled {n:,} notes as “{for_markdown(label.strip())}”.")
    st.session_state["labelling_label"] = ""
    state.clear_selection()


def _label_controls(store: Store, corpus: str, label_set: str, selected: list[int]) -> None:
    label_col, button_col = st.columns([3, 1], vertical_alignment="bottom")
    label = label_col.text_input("Label for the selected notes", key="labelling_label", placeholder="e.g. chest pain")
    button_col.button(f"Label {len(selected):,} notes", key="labelling_add", type="primary",
                      disabled=not selected or not label.strip(), on_click=_label_selection,
                      args=(store, corpus, label_set))
    kind, text = st.session_state.pop("labelling_message", (None, None))
    if kind:
        getattr(st, kind)(text)


def _remove_controls(store: Store, corpus: str, label_set: str, classes: list[str]) -> None:
    pick, remove, clear = st.columns([2, 1, 1], vertical_alignment="bottom")
    label = pick.selectbox("Label", classes, key="labelling_remove_label")
    if remove.button("Remove this label", key="labelling_remove"):
        clear_labels(store, corpus, label_set, label=label)
        st.rerun()
    if clear.button("Clear the set", key="labelling_clear"):
        clear_labels(store, corpus, label_set)
        st.rerun()


def _suggestions(store: Store, corpus: str, preds) -> None:
    """The next notes worth labelling as a table (the grid shows text as text, never as HTML)."""
    ords = preds.suggestions.tolist()
    if not ords:
        return
    texts = store.texts(store.corpus(corpus), ords).set_index("ord")
    scores = preds.model.frame().iloc[ords]
    table = pd.DataFrame({"ord": ords, "id": texts.loc[ords, "doc_id"].to_numpy(),
                          "predicted": scores["predicted"].to_numpy(), "confidence": scores["confidence"].to_numpy(),
                          "note": [t if len(t) <= PREVIEW_CHARS else t[:PREVIEW_CHARS] + "…"
                                   for t in texts.loc[ords, "text"]]}).rename(columns=SUGGESTION_NAMES)
    head, button = st.columns([3, 1], vertical_alignment="bottom")
    head.caption("Label these next: the classifier is least sure about them, and they differ from the notes "
                 "labelled so far.")
    button.button("Select them on the map", key="labelling_select_suggested", on_click=state.select, args=(ords,))
    st.dataframe(table, hide_index=True, width="stretch",
                 column_config={"ord": None, "Confidence": st.column_config.NumberColumn(format="%.2f")})


def labelling_panel(store: Store, corpus: str, encoder: str, selected_ords, n_suggest: int = 10
                    ) -> pd.Series | None:
    """Label the selection, train on the labels, predict the rest, suggest the next notes.

    Returns the predicted label of every note (a Series indexed by ord, named "predicted") once
    notes of two classes are labelled, else None; the map can colour by it:
    `frame["predicted"] = frame["ord"].map(predicted)`.
    """
    selected = [int(o) for o in (selected_ords if selected_ords is not None else [])]
    sets = label_sets(store, corpus)
    label_set = st.text_input("Label set", value=sets[0] if sets else "map labels", key="labelling_set",
                              help="the labels of one task; a note has at most one label per set").strip()
    if not label_set:
        st.warning("Name the label set first.")
        return None
    _label_controls(store, corpus, label_set, selected)
    labels = get_labels(store, corpus, label_set)
    if labels.empty:
        st.caption("Select notes on the map, type a label and press **Label**. Label notes of two or more "
                   "classes to train a classifier that predicts a label for every other note.")
        return None
    counts = labels["label"].value_counts()
    st.dataframe(counts.rename("Notes labelled").rename_axis("Label").reset_index(), hide_index=True)
    _remove_controls(store, corpus, label_set, counts.index.tolist())
    if len(counts) < 2:
        st.info("Label notes of at least two different classes to train a classifier.")
        return None
    preds = predict_from_labels(store, corpus, encoder, label_set, n_suggest=n_suggest)
    st.caption(f"A logistic regression on the {encoder} embeddings, trained on the {len(labels):,} labelled "
               "notes, predicts every note:")
    st.dataframe(preds.counts().rename(columns=COUNT_NAMES), hide_index=True, width="stretch",
                 column_config={COUNT_NAMES["mean_confidence"]: st.column_config.NumberColumn(format="%.2f")})
    _suggestions(store, corpus, preds)
    return preds.predicted
