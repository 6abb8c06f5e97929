"""Who may see the notes: on this machine anyone; beyond it only someone signed in through [auth],
and on the allow-list if one is set. app.py asks before every page run; the store asks again when a
page runs without app.py (below)."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

from core.access import allow_list_from_env, exposure_refusal, is_allowed, login_configured


def _has_login() -> bool:
    try:
        return login_configured(st.secrets)
    except Exception:  # no secrets.toml at all
        return False


def closed_door() -> tuple[str, Callable[[], None]] | None:
    """The title and view a visitor gets instead of the app when they may not see the notes, else None."""
    if not _has_login():
        refusal = exposure_refusal(st.get_option("server.address"), has_login=False)
        if refusal is None:
            return None

        def refused() -> None:
            st.error(f"NoteSpace is {refusal}")

        return "NoteSpace", refused
    if not st.user.is_logged_in:
        def sign_in() -> None:
            st.title("NoteSpace")
            st.write("Sign in to see the notes.")
            st.button("Log in", on_click=st.login, icon=":material/login:")

        return "Sign in", sign_in
    email = st.user.get("email")
    if not is_allowed(email, allow_list_from_env()):
        def not_allowed() -> None:
            st.error(f"{email or 'This account'} is not allowed to use this NoteSpace: ask its administrator to "
                     "add you, or log out and sign in with another account.")
            st.button("Log out", on_click=st.logout, icon=":material/logout:")

        return "Not allowed", not_allowed
    return None


def account_bar() -> None:
    """Who is signed in, and the way out (nothing without login)."""
    if _has_login():
        st.sidebar.caption(f"Signed in as {st.user.get('email') or st.user.get('name') or 'an account without e-mail'}")
        st.sidebar.button("Log out", on_click=st.logout, icon=":material/logout:", key="logout")


def stop_unless_allowed() -> None:
    """Until app.py has called st.navigation once in a server process, Streamlit serves every file in
    pages/ as a page of its own (its old multipage mode), without app.py: the first visitor of a fresh
    `streamlit run app.py` who opens /explore got that page without the door. `notespace app` starts
    the server with that mode off (core.cli.serve_command); for any other start, a page run in it
    shows the door here, before the store gives it a note."""
    if not PagesManager.uses_pages_directory:
        return
    door = closed_door()
    if door is not None:
        _, view = door
        view()
        st.stop()
