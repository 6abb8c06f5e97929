"""fewshot page (being built)."""

import streamlit as st

st.title("fewshot")
st.info("This page arrives with its issue.")
