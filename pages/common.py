"""Shared bits of the Streamlit views: the store, pickers, progress bars. No logic beyond the UI."""

from __future__ import annotations

import streamlit as st

from core.encoders import list_encoders
from core.store import Store


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


def progress_bar(text: str):
    """A progress bar and the `(fraction, message)` callback that core functions report to."""
    bar = st.progress(0.0, text=text)

    def update(fraction: float, message: str = "") -> None:
        bar.progress(min(max(float(fraction), 0.0), 1.0), text=message or text)

    return bar, update


def exposure_warning(address: str, has_login: bool) -> str | None:
    """The warning to show when the server listens beyond this machine without access control."""
    if address in ("127.0.0.1", "localhost", "::1") or has_login:
        return None
    return (f"NoteSpace is listening on '{address or 'all interfaces'}', beyond this machine, without login. "
            "Configure Streamlit's OIDC login ([auth] in secrets.toml) or a reverse proxy with access control "
            "before sharing it (see docs/privacy.md).")


def warn_if_exposed() -> None:
    """Notes are sensitive: warn on every page when the server is reachable from elsewhere."""
    try:
        has_login = "auth" in st.secrets
    except Exception:  # no secrets.toml at all
        has_login = False
    message = exposure_warning(st.get_option("server.address") or "", has_login)
    if message:
        st.warning(message)
