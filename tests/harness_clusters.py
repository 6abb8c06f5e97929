"""AppTest harness: the cluster and labelling components on the corpus "notes" with the encoder "tiny"."""

import os

import streamlit as st

from core.store import Store
from pages.components.clusters import cluster_panel, cluster_table
from pages.components.labelling import labelling_panel

store = Store(os.environ["NOTESPACE_DB"])
corpus = store.corpus("notes")
frame = store.documents(corpus, with_text=False)
view = cluster_panel(store, "notes", "tiny", frame)
st.session_state["harness_view"] = view
if view is not None:
    cluster_table(view, frame, corpus.meta)
st.session_state["harness_predicted"] = labelling_panel(store, "notes", "tiny",
                                                        st.session_state.get("explore_selected_ords", []))
