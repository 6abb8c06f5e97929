"""How some notes (a selection, a cluster) differ from all notes shown: `core.clusters.compare_to_corpus`
as two tables, category shares with their lift, and medians of numbers and dates. One display for the
selection panel and the cluster table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from core.clusters import compare_to_corpus
from core.palette import category_label


def _median_text(value, kind: str) -> str:
    if pd.isna(value):
        return ""
    return category_label(pd.Timestamp(value).normalize()) if kind == "date" else f"{value:,.4g}"


def differences(mask: np.ndarray, metadata: pd.DataFrame, kinds: dict, part: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Category shares (most over-represented first per column), and medians of numbers and dates, of the
    notes under `mask` (called `part`: "selection", "cluster") against all notes."""
    cmp = compare_to_corpus(mask, metadata, kinds, top_n=5)
    cats = cmp[cmp["kind"] == "categorical"].sort_values(["column", "lift"], ascending=[True, False], kind="stable")
    cats = cats.assign(value=cats["value"].map(category_label))[
        ["column", "value", "share_in_selection", "share_overall", "lift"]].astype(
        {"share_in_selection": float, "share_overall": float, "lift": float})
    nums = cmp[cmp["kind"] != "categorical"]
    nums = pd.DataFrame({"column": nums["column"], **{
        label: [_median_text(v, k) for v, k in zip(nums[field], nums["kind"])]
        for label, field in ((f"median in {part}", "median_in_selection"), ("median in corpus", "median_overall"))}})
    return cats, nums


def show_differences(mask: np.ndarray, metadata: pd.DataFrame, kinds: dict, part: str) -> None:
    cats, nums = differences(mask, metadata, kinds, part)
    share = dict(format="percent", min_value=0, max_value=1)
    if len(cats):
        st.dataframe(cats, hide_index=True, width="stretch", column_config={
            "column": st.column_config.TextColumn("Metadata column"), "value": st.column_config.TextColumn("Value"),
            "share_in_selection": st.column_config.ProgressColumn(f"in {part}", **share),
            "share_overall": st.column_config.ProgressColumn("in corpus", **share),
            "lift": st.column_config.NumberColumn("Lift", format="%.2f×", help=f"share in {part} / share in corpus"),
        })
    if len(nums):
        st.dataframe(nums, hide_index=True, width="stretch",
                     column_config={"column": st.column_config.TextColumn("Metadata column")})
