"""Cross-filtering metadata charts beside the map: click a bar or brush a range to filter the notes.

State: the filters live in `st.session_state["facet_filter::<column>"]`, as {"values": [...]} for a
categorical column or {"range": [lo, hi]} (lo <= value < hi; dates as ISO strings) for numbers and
dates. A chart's selection is only an edit of that state, applied in its `on_select` callback:
Streamlit remounts a chart whenever its figure changes (and every filter changes the figures),
which drops the chart's own selection, so the chart cannot be the place the filter is kept.
Callbacks fire only for the user's own clicks, so a remount never clears a filter; double-clicking
a chart to deselect does.

Each chart shows all notes in grey and, in colour, the notes passing the *other* charts' filters
(and inside the map's selection, when one is given); bars outside the chart's own filter fade.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.clusters import column_kind
from pages.text import for_markdown, for_plotly

FILTER = "facet_filter::"
TOP_N = 10  # categorical bars; the rest share one "(other)" bar
BINS = 20
OTHER, MISSING = "(other)", "(missing)"
ALL_COLOUR, SHOWN_COLOUR = "#d0d4da", "#1f77b4"


def _categories(series: pd.Series) -> pd.Series:
    """Values as strings, missing ones as "(missing)"; values beyond the TOP_N most common as "(other)".
    Categorical, its categories most common first (ties: first seen), then "(other)" if any: at 1M
    notes, a string for every note took ~0.5 s a column on every run (a selection reruns the page)."""
    codes, uniques = pd.factorize(series)  # missing: -1
    codes = np.where(codes < 0, len(uniques), codes)
    # values that read the same ("1" and 1, "(missing)" and a missing value) are one category
    merged, names = pd.factorize(pd.Index([str(u) for u in uniques] + [MISSING]))
    codes = merged[codes]
    counts = np.bincount(codes, minlength=len(names))
    order = np.argsort(-counts, kind="stable")
    top = order[:TOP_N][counts[order[:TOP_N]] > 0]
    position = np.full(len(names), len(top))  # the rest: "(other)", after the top
    position[top] = np.arange(len(top))
    codes = position[codes]
    categories = [*names[top], *([OTHER] if (codes == len(top)).any() else [])]
    return pd.Series(pd.Categorical.from_codes(codes, categories=categories), index=series.index, name=series.name)


def _numbers(series: pd.Series, kind: str) -> np.ndarray:
    """Numbers as float64 and dates as int64 nanoseconds (in float64), NaN where missing."""
    if kind == "date":
        dates = pd.to_datetime(series, errors="coerce").to_numpy(dtype="datetime64[ns]")
        return np.where(np.isnat(dates), np.nan, dates.astype("int64").astype(np.float64))
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _bound(value, kind: str) -> float:
    return float(pd.Timestamp(value).value) if kind == "date" else float(value)


def _column_mask(series: pd.Series, kind: str, rule: dict) -> np.ndarray:
    if kind == "categorical":
        return _categories(series).isin([str(v) for v in rule.get("values", [])]).to_numpy()
    lo, hi = (_bound(v, kind) for v in rule["range"])
    values = _numbers(series, kind)
    with np.errstate(invalid="ignore"):  # NaN (missing) compares False: outside every range
        return (values >= lo) & (values < hi)


def facet_mask(frame: pd.DataFrame, filters: dict[str, dict], kinds: dict[str, str] | None = None) -> np.ndarray:
    """Rows of `frame` passing every filter (an empty filter set passes everything)."""
    mask = np.ones(len(frame), dtype=bool)
    for column, rule in filters.items():
        if column in frame.columns and rule:
            kind = (kinds or {}).get(column) or column_kind(frame[column])
            mask &= _column_mask(frame[column], kind, rule)
    return mask


def filter_from_points(points: list[dict], kind: str) -> dict | None:
    """A chart selection (its points' customdata) as a filter; None when nothing is selected."""
    data = [p.get("customdata") for p in points if p.get("customdata") is not None]
    if not data:
        return None
    if kind == "categorical":
        return {"values": sorted({str(d[0] if isinstance(d, list) else d) for d in data})}
    # Selected bins become one range from the lowest to the highest (a brush is contiguous anyway).
    parse = pd.Timestamp if kind == "date" else float
    lo, hi = min(parse(d[0]) for d in data), max(parse(d[1]) for d in data)
    return {"range": [str(lo), str(hi)] if kind == "date" else [lo, hi]}


def _bins(values: np.ndarray, kind: str) -> tuple[np.ndarray, list]:
    """Bin edges over the finite values, and each bin's [lo, hi) as customdata (hi of the last bin
    nudged up so the maximum itself falls inside)."""
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return np.array([0.0, 1.0]), [[0.0, 1.0]]
    edges = np.histogram_bin_edges(finite, bins=BINS if finite.min() < finite.max() else 1)
    highs = edges[1:].copy()
    highs[-1] = np.nextafter(highs[-1], np.inf)
    if kind == "date":
        return edges, [[str(pd.Timestamp(int(lo))), str(pd.Timestamp(int(hi)))] for lo, hi in zip(edges, highs)]
    return edges, [[float(lo), float(hi)] for lo, hi in zip(edges, highs)]


def _chart(series: pd.Series, kind: str, shown: np.ndarray | None, rule: dict | None) -> go.Figure:
    """Bars of all notes (grey) and of the `shown` ones (colour); bars outside `rule` fade.
    Every bar carries its value (or its bin's [lo, hi)) as customdata, which a selection returns."""
    if kind == "categorical":
        values = _categories(series)
        custom = list(values.cat.categories)  # most common first, "(other)" last
        inside = np.isin(custom, rule["values"]) if rule else np.ones(len(custom), dtype=bool)

        def bars(rows: np.ndarray) -> dict:
            counts = values[rows].value_counts().reindex(custom, fill_value=0).to_numpy()
            return dict(y=[for_plotly(v) for v in custom], x=counts, orientation="h",
                        hovertemplate="%{y}: %{x:,} notes<extra></extra>")
    else:
        numbers = _numbers(series, kind)
        edges, custom = _bins(numbers, kind)
        inside = np.ones(len(custom), dtype=bool)
        if rule:
            lo, hi = (_bound(v, kind) for v in rule["range"])
            inside = (edges[1:] > lo) & (edges[:-1] < hi)
        centres, widths = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
        if kind == "date":  # plotly's date axes take datetimes for x and milliseconds for widths
            centres, widths = pd.to_datetime(centres.astype("int64")), widths / 1e6

        def bars(rows: np.ndarray) -> dict:
            counts = np.histogram(numbers[rows][np.isfinite(numbers[rows])], bins=edges)[0]
            return dict(x=centres, y=counts, width=widths, hovertemplate="around %{x}: %{y:,} notes<extra></extra>")
    fade = np.where(inside, 1.0, 0.35)
    fig = go.Figure(go.Bar(**bars(np.ones(len(series), dtype=bool)), customdata=custom, name="all notes",
                           marker_color=ALL_COLOUR if shown is not None else SHOWN_COLOUR, marker_opacity=fade))
    if shown is not None:
        fig.add_trace(go.Bar(**bars(shown), customdata=custom, name="shown", marker_color=SHOWN_COLOUR,
                             marker_opacity=fade))
    # Categories are clicked (shift-click adds bars), ranges are brushed. Streamlit allows only one:
    # in "select" drag mode it turns click-to-select off, so categorical charts keep the (inert,
    # as the axes are fixed) "pan" mode.
    if kind == "categorical":
        fig.update_layout(height=max(150, 22 * len(custom) + 40), dragmode="pan", clickmode="event+select",
                          bargap=0.15, yaxis_autorange="reversed")
    else:
        fig.update_layout(height=150, dragmode="select", selectdirection="h", bargap=0.02)
    fig.update_layout(barmode="overlay", showlegend=False, margin=dict(t=4, b=4, l=4, r=4))
    fig.update_xaxes(fixedrange=True)
    fig.update_yaxes(fixedrange=True)
    return fig


def _describe(column: str, rule: dict) -> str:
    if "values" in rule:
        return f"{for_markdown(column)} ∈ {{{', '.join(for_markdown(v) for v in rule['values'])}}}"
    lo, hi = (_short(v) for v in rule["range"])
    return f"{for_markdown(lo)} ≤ {for_markdown(column)} < {for_markdown(hi)}"


def _short(bound) -> str:
    """A range bound for people: 4 significant digits; a date without its time when it is midnight."""
    if isinstance(bound, str):  # dates are kept as ISO strings
        stamp = pd.Timestamp(bound)
        return stamp.strftime("%Y-%m-%d" if stamp == stamp.normalize() else "%Y-%m-%d %H:%M")
    return f"{bound:.4g}"


def _on_select(column: str, kind: str, chart_key: str) -> None:
    points = st.session_state[chart_key]["selection"]["points"]
    rule = filter_from_points(points, kind)
    if rule is None:
        st.session_state.pop(FILTER + column, None)
    else:
        st.session_state[FILTER + column] = rule


def clear_filters(columns=None) -> None:
    """Drop the facet filters of `columns` (all of them when None)."""
    for key in [k for k in st.session_state if str(k).startswith(FILTER)]:
        if columns is None or key[len(FILTER):] in columns:
            del st.session_state[key]


def active_filters(columns) -> dict[str, dict]:
    return {c: st.session_state[FILTER + c] for c in columns if st.session_state.get(FILTER + c)}


def metadata_charts(frame: pd.DataFrame, columns, selected_ords=None, kinds: dict[str, str] | None = None
                    ) -> np.ndarray:
    """One small chart per column; returns the mask of `frame`'s rows passing every chart filter.

    `selected_ords` (the map's selection, matched against frame["ord"]): those notes are drawn in
    colour against all notes. Filters on columns not shown are ignored (never an invisible filter).
    """
    columns = [c for c in columns if c in frame.columns]
    kinds = {c: (kinds or {}).get(c) or column_kind(frame[c]) for c in columns}
    filters = active_filters(columns)
    selected = None if selected_ords is None else frame["ord"].isin(list(selected_ords)).to_numpy()
    masks = {c: _column_mask(frame[c], kinds[c], filters[c]) for c in filters}
    mask = np.ones(len(frame), dtype=bool)
    for m in masks.values():
        mask &= m
    if filters:  # stacked, not side by side: the charts often sit in a narrow column
        st.caption(f"{int(mask.sum()):,} of {len(frame):,} notes pass: " +
                   "; ".join(_describe(c, r) for c, r in filters.items()))
        st.button("Clear filters", key="facet_clear_all", on_click=clear_filters, args=(columns,), type="tertiary",
                  icon=":material/filter_alt_off:")
    for column in columns:
        others = [m for c, m in masks.items() if c != column]
        if selected is not None:
            others.append(selected)
        shown = np.logical_and.reduce(others) if others else None
        head, clear = st.columns([4, 1], vertical_alignment="center")
        head.markdown(f"**{for_markdown(column)}**")
        if column in filters:
            clear.button("✕", key=f"facet_clear::{column}", help=f"clear the filter on {column}", type="tertiary",
                         on_click=clear_filters, args=([column],))
        chart_key = f"facet_chart::{column}"
        st.plotly_chart(_chart(frame[column], kinds[column], shown, filters.get(column)), key=chart_key,
                        on_select=partial(_on_select, column, kinds[column], chart_key),
                        selection_mode=("points", "box"), config={"displayModeBar": False})
    return mask
