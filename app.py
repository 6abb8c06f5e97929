"""NoteSpace: see, measure and adapt how a language model organises your notes. Local and offline."""

import streamlit as st

st.set_page_config(page_title="NoteSpace", page_icon=":material/scatter_plot:", layout="wide")

from core.projection import warm_up_in_background  # noqa: E402  (set_page_config must come first)
from pages.common import warn_if_exposed  # noqa: E402

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
warn_if_exposed()
warm_up_in_background()  # UMAP ready before the first map is asked for (idempotent)
st.navigation(pages).run()
