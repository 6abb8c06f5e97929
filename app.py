"""NoteSpace: see, measure and adapt how a language model organises your notes. Local and offline."""

import streamlit as st

# An emoji favicon is drawn by the browser; a ":material/...:" one is fetched from Google's font CDN.
st.set_page_config(page_title="NoteSpace", page_icon="🔬", layout="wide")

from core.access import allow_list_from_env, exposure_refusal, is_allowed, login_configured  # noqa: E402
from core.caches import remove_leftovers, route_library_caches  # noqa: E402
from core.projection import warm_up_in_background  # noqa: E402  (set_page_config must come first)
from pages.common import store  # noqa: E402


@st.cache_resource(show_spinner=False)
def _server_started() -> None:
    """Once per server process: caches into private folders, files older versions left in the temp folder gone."""
    route_library_caches()
    remove_leftovers()


def closed_door() -> st.Page | None:
    """The only page a visitor gets when they may not see the notes, else None: on this machine no login is
    needed; beyond it only signed in through [auth], and on the allow-list if one is set. Returned as a page,
    not an st.stop(), so that no run of the script ever ends without st.navigation (Streamlit would then
    serve every file in pages/ on its own, ungated)."""
    try:
        has_login = login_configured(st.secrets)
    except Exception:  # no secrets.toml at all
        has_login = False
    if not has_login:
        refusal = exposure_refusal(st.get_option("server.address"), has_login=False)
        if refusal is None:
            return None

        def refused() -> None:
            st.error(f"NoteSpace is {refusal}")

        return st.Page(refused, title="NoteSpace")
    if not st.user.is_logged_in:
        def sign_in() -> None:
            st.title("NoteSpace")
            st.write("Sign in to see the notes.")
            st.button("Log in", on_click=st.login, icon=":material/login:")

        return st.Page(sign_in, title="Sign in")
    email = st.user.get("email")
    if not is_allowed(email, allow_list_from_env()):
        def not_allowed() -> None:
            st.error(f"{email or 'This account'} is not allowed to use this NoteSpace: ask its administrator to "
                     "add you, or log out and sign in with another account.")
            st.button("Log out", on_click=st.logout, icon=":material/logout:")

        return st.Page(not_allowed, title="Not allowed")
    st.sidebar.caption(f"Signed in as {email or st.user.get('name') or 'an account without e-mail'}")
    st.sidebar.button("Log out", on_click=st.logout, icon=":material/logout:", key="logout")
    return None


_server_started()
door = closed_door()
pages = {
    "NoteSpace": [st.Page("pages/home.py", title="Home", icon=":material/home:", default=True)],
    "Workflow": [
        st.Page("pages/data.py", title="Data", icon=":material/upload_file:"),
        st.Page("pages/explore.py", title="Explore", icon=":material/scatter_plot:"),
        st.Page("pages/pretrain.py", title="Pretrain", icon=":material/model_training:"),
        st.Page("pages/separability.py", title="Separability", icon=":material/straighten:"),
        st.Page("pages/fewshot.py", title="Few-shot", icon=":material/target:"),
    ],
}
if door is None:
    warm_up_in_background()  # UMAP ready before the first map is asked for (idempotent)
    with store().session():  # the page's dozens of short reads open the file once; long work lets go of it
        st.navigation(pages).run()
else:
    st.navigation([door]).run()
