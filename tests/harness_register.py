"""AppTest harness: a picker, then the register-a-local-model form that selects into it (as on Compare)."""

import streamlit as st

from core.encoders import list_encoders
from pages.common import store
from pages.components.register import register_local_form

st.selectbox("Compare with", [e.id for e in list_encoders(store())], key="picked")
register_local_form("picked")
