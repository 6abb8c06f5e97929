"""Shared bits of the Streamlit views: the store, pickers, progress bars. No logic beyond the UI."""

from __future__ import annotations

import streamlit as st

from core.encoders import list_encoders
from core.store import Corpus, Store


@st.cache_resource
def _store(path: str | None) -> Store:
    return Store(path)


def store() -> Store:
    """The store named by NOTESPACE_DB (or the default), shared by every session of this server."""
    import os

    return _store(os.environ.get("NOTESPACE_DB"))


def corpus_picker(label: str = "Corpus", key: str = "corpus") -> str | None:
    names = [c.name for c in store().corpora()]
    if not names:
        st.info("No corpus yet: load a demo corpus or upload a file on the **Data** page.")
        st.page_link("pages/data.py", label="Go to Data", icon=":material/upload_file:")
        return None
    if st.session_state.get(key) not in names:
        st.session_state[key] = names[0]
    return st.selectbox(label, names, key=key)


def encoder_picker(label: str = "Encoder", key: str = "encoder", multiple: bool = False):
    encoders = list_encoders(store())
    ids = [e.id for e in encoders]
    names = {e.id: f"{e.id} ({e.kind}, {e.dim}-d)" for e in encoders}
    if multiple:
        return st.multiselect(label, ids, default=ids[:2], format_func=names.get, key=key)
    return st.selectbox(label, ids, format_func=names.get, key=key)


def label_picker(container, corpus: Corpus, encoders: list[str], key: str, verb: str) -> tuple[str, tuple]:
    """The label column: metadata columns, then the derived ones of the chosen encoders ("cluster",
    "map: SET"). Returns the label and a key for session results that changes with a derived column's
    values (a new clustering, more map labels), so results of old values are never shown as current."""
    from core.evaluation import derived_label_columns, labels_digest

    derived = {name: found for name, found in derived_label_columns(store(), corpus.name, encoders).items()
               if name not in corpus.meta}
    columns = list(corpus.meta) + list(derived)
    if not columns:
        st.info(f"This corpus has no label column to {verb}: ingest it with metadata on the Data page, or cluster "
                "it or label notes on the Explore page.")
        st.stop()
    if st.session_state.get(key) not in columns:  # e.g. "cluster" after deselecting the clustered encoder
        st.session_state.pop(key, None)
    categorical = [col for col in corpus.meta if corpus.meta[col] == "categorical"]
    label = container.selectbox(
        "Label column", columns, index=columns.index((categorical or columns)[0]), key=key,
        help="Metadata columns, then derived ones: 'cluster' (the latest clustering with the first chosen encoder "
             "that has one) and 'map: SET' (labels made on the map). Notes without a value are left out.")
    if label not in derived:
        return label, (label, None)
    encoder, values = derived[label]
    if label == "cluster":
        container.caption(f"Clusters found with **{encoder}**; noise is left out. Separability of an encoder's own "
                          "clusters is inflated by construction (they were found in its space), so it is only "
                          "meaningful across encoders, not as a score of its own or against metadata columns.")
    else:
        container.caption(f"{values.notna().sum():,} notes labelled on the map; the others are left out.")
    return label, (label, labels_digest(values))


def progress_bar(text: str):
    """A progress bar and the `(fraction, message)` callback that core functions report to."""
    bar = st.progress(0.0, text=text)

    def update(fraction: float, message: str = "") -> None:
        bar.progress(min(max(float(fraction), 0.0), 1.0), text=message or text)

    return bar, update
