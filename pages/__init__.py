"""Thin Streamlit views; all logic lives in core/."""
