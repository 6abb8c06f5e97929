"""The Filter popover of the Explore page: exact value lists, text search and ranges per column.

The cross-filter charts (facets.py) are quick; these are precise (any value, not only the ten most
common; "contains" for near-unique text columns; exact numeric and date bounds). Both apply.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from core.clusters import column_kind

LIST_MAX = 200  # columns with more distinct values are filtered by "contains", not by a list


def filter_mask(frame: pd.DataFrame, columns: list[str], kinds: dict[str, str]) -> np.ndarray:
    """One widget per column (keys explore_filter_<column>); the rows passing all of them."""
    mask = np.ones(len(frame), dtype=bool)
    for col in columns:
        values = frame[col]
        kind = column_kind(values, kinds)
        key = f"explore_filter_{col}"
        if kind == "categorical" and values.nunique() <= LIST_MAX:
            chosen = st.multiselect(col, sorted(values.dropna().astype(str).unique()), key=key, placeholder="all")
            if chosen:
                mask &= values.astype(str).isin(chosen).to_numpy()
        elif kind == "categorical":
            text = st.text_input(col, key=key, placeholder="contains…")
            if text:
                mask &= values.astype(str).str.contains(text, case=False, regex=False).fillna(False).to_numpy()
        elif values.notna().any():
            mask &= _range(values, kind, col, key)
    return mask


def _range(values: pd.Series, kind: str, label: str, key: str) -> np.ndarray:
    series = pd.to_datetime(values) if kind == "date" else values.astype(float)
    low, high = series.min(), series.max()
    if kind == "date":  # whole days: the upper day counts in full
        low, high = low.date(), high.date()
    if not low < high:
        return np.ones(len(values), dtype=bool)
    picked = st.slider(label, low, high, (low, high), key=key)
    if picked == (low, high):  # untouched: missing values stay in
        return np.ones(len(values), dtype=bool)
    if kind == "date":
        start, end = pd.Timestamp(picked[0]), pd.Timestamp(picked[1]) + pd.Timedelta(days=1)
        return ((series >= start) & (series < end)).to_numpy()
    return ((series >= picked[0]) & (series <= picked[1])).to_numpy()
