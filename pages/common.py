"""Shared bits of the Streamlit views: the store, pickers, progress bars, failures. No logic beyond the UI."""

from __future__ import annotations

import logging

import streamlit as st

from core.encoders import list_encoders
from core.errors import UserError
from core.store import Corpus, Store
from pages.components.door import stop_unless_allowed

log = logging.getLogger("notespace.pages")


@st.cache_resource
def _store(path: str | None) -> Store:
    return Store(path)


def store() -> Store:
    """The store named by NOTESPACE_DB (or the default), shared by every session of this server; every
    note a page shows comes through here, so here a page run without app.py meets the door too."""
    import os

    stop_unless_allowed()
    return _store(os.environ.get("NOTESPACE_DB"))


# The corpus and encoder chosen on any page are what every page opens on, for this browser session. A
# widget's own state does not outlive the pages that draw it, so the choice is kept under keys no widget owns.
CHOSEN_CORPUS, CHOSEN_ENCODER = "chosen_corpus", "chosen_encoder"


def choose(corpus: str | None = None, encoder: str | None = None) -> None:
    """Make these the session's corpus and encoder (e.g. before switching to a page that should show them)."""
    for shared, value in ((CHOSEN_CORPUS, corpus), (CHOSEN_ENCODER, encoder)):
        if value is not None:
            st.session_state[shared] = value


def _remember(key: str, shared: str) -> None:
    st.session_state[shared] = st.session_state[key]


def _shared_picker(label: str, options: list[str], key: str, shared: str, **kwargs) -> str | None:
    """A selectbox that opens on the session's choice and, when changed, changes it."""
    if st.session_state.get(shared) in options:
        st.session_state[key] = st.session_state[shared]
    elif options and st.session_state.get(key) not in options:
        st.session_state[key] = options[0]
    value = st.selectbox(label, options, key=key, on_change=_remember, args=(key, shared), **kwargs)
    if value is not None:
        st.session_state[shared] = value
    return value


def corpus_picker(label: str = "Corpus", key: str = "corpus") -> str | None:
    names = [c.name for c in store().corpora()]
    if not names:
        st.info("No corpus yet: load a demo corpus or upload a file on the **Data** page.")
        st.page_link("pages/data.py", label="Go to Data", icon=":material/upload_file:")
        return None
    return _shared_picker(label, names, key, CHOSEN_CORPUS)


def encoder_picker(label: str = "Encoder", key: str = "encoder", multiple: bool = False):
    encoders = list_encoders(store())
    ids = [e.id for e in encoders]
    names = {e.id: f"{e.id} ({e.kind}, {e.dim}-d)" for e in encoders}
    if multiple:  # opens on the session's encoder first
        chosen = st.session_state.get(CHOSEN_ENCODER)
        default = ([chosen] if chosen in ids else []) + [i for i in ids if i != chosen]
        return st.multiselect(label, ids, default=default[:2], format_func=names.get, key=key)
    return _shared_picker(label, ids, key, CHOSEN_ENCODER, format_func=names.get)


def label_picker(container, corpus: Corpus, encoders: list[str], key: str, verb: str) -> tuple[str, tuple]:
    """The label column: metadata columns, then the derived ones of the chosen encoders ("cluster",
    "map: SET"). Returns the label and a key for session results that changes with a derived column's
    values (a new clustering, more map labels), so results of old values are never shown as current."""
    from core.evaluation.label_values import derived_label_columns, labels_digest

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


def failure_text(exc: Exception) -> str:
    """What a page says about a failure: a UserError's own message (the user can act on it); anything
    else is a bug, said in one short line, with its whole traceback in the server log."""
    if isinstance(exc, UserError):
        return str(exc)
    log.error("internal error on a page", exc_info=exc)
    return f"Internal error ({type(exc).__name__}); the details are in the server log."


def show_failure(exc: Exception, where=None) -> None:
    """An error box with `failure_text(exc)`, in `where` (a container or column; default: the page)."""
    (where or st).error(failure_text(exc), icon=":material/error:")
