"""explore page (being built)."""

import streamlit as st

st.title("explore")
st.info("This page arrives with its issue.")
