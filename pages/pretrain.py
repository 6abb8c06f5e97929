"""pretrain page (being built)."""

import streamlit as st

st.title("pretrain")
st.info("This page arrives with its issue.")
