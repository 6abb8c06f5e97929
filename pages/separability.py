"""separability page (being built)."""

import streamlit as st

st.title("separability")
st.info("This page arrives with its issue.")
