"""Colours shared by every page, so a category looks the same on the map, in charts and tables.

`category_colours(values)` is deterministic: give it every note's value of a column (not a
filtered subset) and the `top` most common values get the first, most distinct colours, ties
broken by the value's text. Missing values are always grey; the rest share one light grey, shown as
"other (N values)" (`other_name`), so no colour ever stands for two values. `top` is the user's
choice (DEFAULT_TOP, at most len(PALETTE): beyond that, colours can no longer be told apart).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import numpy as np
import pandas as pd

# Tableau 10 first (distinct, readable on white), then lighter/darker companions; no greys, which
# mean "missing" and "other" here.
PALETTE = (
    "#4E79A7", "#F28E2B", "#E15759", "#59A14F", "#B07AA1", "#EDC948", "#76B7B2", "#FF9DA7",
    "#9C755F", "#7570B3", "#A0CBE8", "#FFBE7D", "#8CD17D", "#B6992D", "#499894", "#FF9D9A",
    "#D37295", "#D4A6C8", "#D7B5A6", "#E7298A", "#1B9E77", "#66A61E", "#A6761D", "#86BCB6",
)
MISSING = "(missing)"
MISSING_COLOUR = "#9E9E9E"
OTHER_COLOUR = "#CFCFCF"
DEFAULT_TOP = 10  # Tableau 10: distinct for most readers; up to len(PALETTE) on request
SEQUENTIAL = "Viridis"  # numeric and date columns: perceptually uniform, readable in grey print


def category_label(value) -> str:
    """The text a category is shown (and keyed) by; missing values become "(missing)"."""
    if value is None or (not isinstance(value, (list, tuple)) and pd.isna(value)):
        return MISSING
    if isinstance(value, pd.Timestamp):
        return value.date().isoformat() if value == value.normalize() else value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def category_labels(values: Iterable) -> np.ndarray:
    """`category_label` of every value, as an object array; fast on 100k notes (each distinct value
    is labelled once)."""
    codes, uniques = pd.factorize(pd.Series(list(values) if not hasattr(values, "__len__") else values,
                                            dtype=object), use_na_sentinel=True)
    labels = np.array([category_label(u) for u in uniques] + [MISSING], dtype=object)
    return labels[codes]  # code -1 (missing) picks the last entry


def category_order(values: Iterable) -> list[str]:
    """Distinct labels, most common first (ties by text); "(missing)" always last."""
    counts = Counter(dict(pd.Series(category_labels(values)).value_counts()))
    missing = counts.pop(MISSING, 0)
    return sorted(counts, key=lambda label: (-counts[label], label)) + ([MISSING] if missing else [])


def top_colours(top: int) -> int:
    """How many values get a colour of their own: `top`, within 1..len(PALETTE)."""
    return max(1, min(int(top), len(PALETTE)))


def other_name(n_values: int) -> str:
    """The legend entry of the values without a colour of their own."""
    return f"other ({n_values:,} value{'s' if n_values != 1 else ''})"


def category_colours(values: Iterable, grey: Iterable[str] = (), top: int = DEFAULT_TOP) -> dict[str, str]:
    """label -> "#RRGGBB" for every distinct value (labels as `category_label` writes them), plus
    "(missing)". The `top` most common values (see `top_colours`) get distinct colours; rarer ones
    share OTHER_COLOUR. Labels in `grey` mean "no category" (e.g. a clustering's "noise") and are grey.
    """
    grey, top = set(grey), top_colours(top)
    ranked = [label for label in category_order(values) if label != MISSING and label not in grey]
    colours = {label: PALETTE[i] if i < top else OTHER_COLOUR for i, label in enumerate(ranked)}
    return colours | {label: MISSING_COLOUR for label in grey} | {MISSING: MISSING_COLOUR}
