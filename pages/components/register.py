"""Register a local sentence-transformers folder as an encoder: the app's `notespace encoders --add`."""

from __future__ import annotations

import streamlit as st

from core.encoders import register_local
from pages.common import failure_text, store

_OUTCOME = "register_local_outcome"


def register_local_form(select_key: str | None = None) -> None:
    """A folded form; a registered encoder is selected in the selectbox `select_key`."""
    outcome = st.session_state.pop(_OUTCOME, None)
    with st.expander("Register a local model", expanded=outcome is not None):
        if outcome:
            (st.success if outcome[0] == "ok" else st.error)(outcome[1])
        with st.form("register_local", border=False):
            st.text_input("Model folder", key="register_local_path", placeholder="/path/to/a/sentence-transformers/model",
                          help="A folder on this machine with safetensors weights. It is loaded once to check it; "
                               "nothing in it is run as code, so a folder that needs its own code is refused.")
            st.text_input("Name", key="register_local_name", help="Its id in NoteSpace (default: the folder's name).")
            st.form_submit_button("Register", on_click=_register, args=(select_key,))


def _register(select_key: str | None) -> None:
    # A callback runs before the next rerun, so the pickers drawn then already list the new encoder.
    try:
        enc = register_local(store(), st.session_state["register_local_path"].strip(),
                             st.session_state["register_local_name"].strip() or None)
    except Exception as exc:
        st.session_state[_OUTCOME] = ("error", failure_text(exc))
        return
    st.session_state[_OUTCOME] = ("ok", f"Registered **{enc.id}** ({enc.dim}-d).")
    if select_key:
        st.session_state[select_key] = enc.id
