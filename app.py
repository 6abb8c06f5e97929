"""NoteSpace: see, measure and adapt how a language model organises your notes. Local and offline."""

import streamlit as st

# An emoji favicon is drawn by the browser; a ":material/...:" one is fetched from Google's font CDN.
st.set_page_config(page_title="NoteSpace", page_icon="🔬", layout="wide")

from core.caches import remove_leftovers, route_library_caches  # noqa: E402
from core.projection import warm_up_in_background  # noqa: E402  (set_page_config must come first)
from pages.common import store  # noqa: E402
from pages.components.door import account_bar, closed_door  # noqa: E402


@st.cache_resource(show_spinner=False)
def _server_started() -> None:
    """Once per server process: caches into private folders, files older versions left in the temp folder gone."""
    route_library_caches()
    remove_leftovers()


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
    account_bar()
    warm_up_in_background()  # UMAP ready before the first map is asked for (idempotent)
    with store().session():  # the page's dozens of short reads open the file once; long work lets go of it
        st.navigation(pages).run()
else:
    title, view = door
    # the door as the only page, not an st.stop(): a run of app.py that ends without st.navigation would
    # leave Streamlit serving every file in pages/ on its own, ungated
    st.navigation([st.Page(view, title=title)]).run()
