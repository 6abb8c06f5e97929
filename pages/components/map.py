"""The map: a plotly Scattergl figure of a map frame, drawn with box / lasso selection.

A map frame is a DataFrame with one row per note: ord, doc_id, x, y, preview, metadata columns,
and hover (from `hover_texts`, computed once per map and cached: ~1 s at 50k notes). Any column
can colour the map, including ones a page adds (cluster names, neighbourhood overlap): strings
are categories, numbers and dates a colour scale.

Why it is built this way:
- Scattergl (WebGL) draws 50,000 points smoothly and renders without a GPU (software WebGL).
- Selections come back as point indices per trace, so every trace carries the notes' ords in
  `customdata`, and the selection is kept as ords, independent of traces, colours or sampling.
- Hover text is user text: plotly reads a subset of HTML in it, so it is escaped before our own
  <br> and <b> are added. Only a short preview of each note travels to the browser.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.clusters import column_kind
from core.palette import (
    MISSING, MISSING_COLOUR, OTHER_COLOUR, SEQUENTIAL, category_colours, category_labels, other_name,
)
from pages.text import for_plotly as plain

SINGLE_COLOUR = "#4E79A7"
HIGHLIGHT_COLOUR = "#111111"
PLOTLY_CONFIG = {
    "displaylogo": False,
    "scrollZoom": True,
    # the modebar's camera button saves the map as PNG (offline: drawn by the browser)
    "toImageButtonOptions": {"format": "png", "filename": "notespace-map", "scale": 2},
}
_WRAP = re.compile(r"(.{1,72})(?:\s+|$)")


def hover_chars(n: int) -> int:
    """Preview characters per hover: shorter on large maps, so 100k points stay under ~20 MB."""
    return 160 if n <= 20_000 else 100 if n <= 50_000 else 60


def hover_texts(frame: pd.DataFrame, columns: Sequence[str], preview_chars: int = 200) -> np.ndarray:
    """Per note: its escaped preview wrapped in lines, its id, then up to five metadata values."""
    columns = list(columns)[:5]
    cells = {c: category_labels(frame[c].to_numpy(dtype=object)) for c in columns}
    out = np.empty(len(frame), dtype=object)
    previews = frame["preview"].to_numpy(dtype=object) if "preview" in frame else [""] * len(frame)
    for i, (doc_id, preview) in enumerate(zip(frame["doc_id"].to_numpy(dtype=object), previews)):
        text = " ".join(str(preview or "").split())
        if len(text) > preview_chars:
            text = text[: preview_chars - 1].rstrip() + "…"
        lines = [html.escape(m.group(1), quote=False) for m in _WRAP.finditer(text)]
        meta = [f"{plain(c, 30)}: {plain(cells[c][i], 40)}" for c in columns]
        out[i] = "<br>".join([f"<b>{plain(doc_id, 40)}</b>"] + lines + meta)
    return out


def _trace(part: pd.DataFrame, name: str, marker: dict, selected: set[int] | None, **extra) -> go.Scattergl:
    ords = part["ord"].to_numpy()
    points = None
    if selected is not None:  # plotly dims the points a trace does not list as selected
        points = np.flatnonzero(np.isin(ords, list(selected))).tolist()
    hover = part["hover"].to_numpy(dtype=object) if "hover" in part else hover_texts(part, [])
    return go.Scattergl(
        x=part["x"].to_numpy(np.float32), y=part["y"].to_numpy(np.float32), customdata=ords.astype(np.int32),
        mode="markers", name=name, marker=marker, hovertext=hover, hoverinfo="text", selectedpoints=points,
        selected={"marker": {"opacity": 1.0}}, unselected={"marker": {"opacity": 0.2}}, **extra)


def _categorical(frame, column, colours, marker, selected) -> list[go.Scattergl]:
    labels = category_labels(frame[column].to_numpy(dtype=object))
    colours = colours or category_colours(frame[column].to_numpy(dtype=object))
    present = set(labels)
    # grey "no category" labels (e.g. noise) first, so the coloured categories are drawn over them
    named = sorted((label for label in colours if label in present and label != MISSING
                    and colours[label] != OTHER_COLOUR), key=lambda label: colours[label] != MISSING_COLOUR)
    # labels the palette has no colour of its own for, or that the caller's palette never saw
    rest = np.isin(labels, named + [MISSING], invert=True)
    traces = [_trace(frame[labels == label], plain(label, 40), marker | {"color": colours[label]}, selected,
                     legendgroup=label) for label in named]
    if rest.any():
        traces.append(_trace(frame[rest], other_name(len(set(labels[rest]))), marker | {"color": OTHER_COLOUR},
                             selected))
    if MISSING in present:
        traces.append(_trace(frame[labels == MISSING], MISSING, marker | {"color": MISSING_COLOUR}, selected))
    return traces


def _scale(frame, column, kind, marker, selected, colour_range, colour_title) -> list[go.Scattergl]:
    values = frame[column]
    if kind == "date":
        stamps = pd.to_datetime(values, errors="coerce")
        numbers = (stamps - pd.Timestamp("1970-01-01")).dt.total_seconds() / 86400.0
    else:
        numbers = pd.to_numeric(values, errors="coerce")
    known = numbers.notna().to_numpy()
    # the colorbar keeps to the lower part of the right edge: the legend ((missing), search results) is at its top
    colorbar = {"title": {"text": colour_title or plain(column, 30)}, "thickness": 14, "len": 0.75, "y": 0,
                "yanchor": "bottom"}
    if kind == "date" and known.any():  # tick labels as dates, not day numbers
        ticks = np.linspace(numbers[known].min(), numbers[known].max(), 5)
        colorbar |= {"tickvals": ticks, "ticktext": [(pd.Timestamp("1970-01-01") + pd.Timedelta(days=float(t)))
                                                      .strftime("%Y-%m-%d") for t in ticks]}
    low, high = colour_range or (None, None)
    traces = []
    if known.any():
        traces.append(_trace(frame[known], plain(column, 40), marker | {
            "color": numbers[known].to_numpy(np.float64), "colorscale": SEQUENTIAL, "cmin": low, "cmax": high,
            "showscale": True, "colorbar": colorbar}, selected, showlegend=False))
    if not known.all():
        traces.append(_trace(frame[~known], MISSING, marker | {"color": MISSING_COLOUR}, selected))
    return traces


def map_figure(frame: pd.DataFrame, colour_column: str | None = None, highlight_ords: Sequence[int] | None = None,
               annotations: Sequence[dict] | None = None, *, selected_ords: Sequence[int] | None = None,
               colours: dict[str, str] | None = None, kinds: dict[str, str] | None = None,
               point_size: float = 4, opacity: float = 0.75, height: int = 620, uirevision: str = "map",
               colour_range: tuple[float, float] | None = None, colour_title: str | None = None,
               dragmode: str | None = None, outlines: Sequence[dict] | None = None,
               selection_revision: int = 0) -> go.Figure:
    """The map as a figure: one trace per category (legend toggles them) or one colour-scaled trace.

    `highlight_ords` get a dark ring on top (search results); `selected_ords` stay bright while the
    rest fade; `annotations` are plotly annotation dicts whose text the caller has escaped (as
    components.clusters.cluster_annotations does for cluster names);
    `colours` maps category labels to colours (pass `category_colours` of the whole column so
    colours do not change when a filter hides categories); a new `selection_revision` (a selection
    made off the map) makes a new figure, so the browser drops the selection plotly kept itself.
    """
    marker = {"size": point_size, "opacity": opacity}
    selected = set(map(int, selected_ords)) if selected_ords else None
    kind = None if colour_column is None or frame.empty else column_kind(frame[colour_column], kinds)
    if kind is None:
        traces = [_trace(frame, "notes", marker | {"color": SINGLE_COLOUR}, selected, showlegend=False)]
    elif kind == "categorical":
        traces = _categorical(frame, colour_column, colours, marker, selected)
    else:
        traces = _scale(frame, colour_column, kind, marker, selected, colour_range, colour_title)
    if highlight_ords is not None and len(highlight_ords):
        rows = frame[frame["ord"].isin(list(highlight_ords))]
        traces.append(_trace(rows, "search results", {"size": point_size + 9, "symbol": "circle-open",
                                                      "color": HIGHLIGHT_COLOUR, "line": {"width": 2}}, None))
    fig = go.Figure(traces)
    axis = {"visible": False, "showgrid": False, "zeroline": False}
    fig.update_layout(
        height=height, margin={"l": 0, "r": 0, "t": 34, "b": 0}, hovermode="closest", uirevision=uirevision,
        dragmode=dragmode, selections=list(outlines or []),
        # no equal-aspect lock: it would shrink the map beside a long legend, and a map's axes have no units
        xaxis=axis, yaxis=axis,
        legend={"title": {"text": plain(colour_column, 30) if kind == "categorical" else ""},  # else on the colorbar
                "itemsizing": "constant"},
        hoverlabel={"align": "left"},
        annotations=list(annotations or []), meta={"selection_revision": selection_revision},
    )
    return fig


def selected_from_event(state) -> list[int]:
    """Ords of the notes in a plotly selection event (all traces, duplicates dropped)."""
    points = (state or {}).get("selection", {}).get("points", []) if state else []
    ords = set()
    for p in points:
        value = p.get("customdata")
        if isinstance(value, list):
            value = value[0] if value else None
        if value is not None:
            ords.add(int(value))
    return sorted(ords)


def tool_from_event(state) -> str | None:
    """The plotly drag mode a selection was made with ("select" or "lasso"); None for clicks."""
    selection = (state or {}).get("selection", {}) if state else {}
    return "select" if selection.get("box") else "lasso" if selection.get("lasso") else None


def outlines_from_event(state) -> list[dict]:
    """The event's box and lasso shapes as plotly layout selections, to draw them again."""
    selection = (state or {}).get("selection", {}) if state else {}
    shapes = [{"type": "rect", "xref": b.get("xref", "x"), "yref": b.get("yref", "y"),
               "x0": b["x"][0], "x1": b["x"][1], "y0": b["y"][0], "y1": b["y"][1]} for b in selection.get("box", [])]
    for lasso in selection.get("lasso", []):
        path = "M" + "L".join(f"{x},{y}" for x, y in zip(lasso["x"], lasso["y"])) + "Z"
        shapes.append({"type": "path", "xref": lasso.get("xref", "x"), "yref": lasso.get("yref", "y"), "path": path})
    return shapes


def _signature(frame: pd.DataFrame, colour_column, highlight_ords, annotations, options: dict) -> str:
    """A cheap fingerprint of everything a map's figure is drawn from, but the selection."""
    columns = ["ord", "x", "y"] + ([colour_column] if colour_column in frame else [])
    data = int(pd.util.hash_pandas_object(frame[columns], index=False).sum()) if len(frame) else 0
    return repr((data, len(frame), colour_column, list(highlight_ords or []), list(annotations or []),
                 sorted(options.items(), key=lambda kv: kv[0])))


def draw_map(frame: pd.DataFrame, colour_column: str | None = None, highlight_ords: Sequence[int] | None = None,
             annotations: Sequence[dict] | None = None, *, key: str, selection_key: str,
             on_selection: Callable[[list[int]], None] | None = None, **figure_options) -> go.Figure:
    """Show the map with point / box / lasso selection; returns its figure (for HTML export).

    The selection is kept as ords in `st.session_state[selection_key]`, written in a callback, i.e.
    only when the user selects (and given to `on_selection`). Streamlit gives a chart a new
    identity whenever its figure changes, which drops plotly's own selection and tool. So:
    - right after a selection on this map, with nothing else changed, the very same figure is drawn
      again: plotly keeps its selection, its tool, and double-click still clears it;
    - otherwise the figure shows the selection itself (the rest faded; the box or lasso drawn again
      when it was made here) and starts with the tool of the last selection.
    """
    tool_key, origin_key, drawn_key = "explore_map_tool", f"{key}::origin", f"{key}::drawn"
    signature = _signature(frame, colour_column, highlight_ords, annotations, figure_options)
    selected = list(st.session_state.get(selection_key) or [])
    origin = st.session_state.get(origin_key)  # the last selection made on this map, and what it was made on
    here = origin is not None and origin["ords"] == selected
    if here and origin["signature"] == signature and drawn_key in st.session_state:
        options = st.session_state[drawn_key]["options"]
    else:
        options = {"dragmode": st.session_state.get(tool_key), "selected_ords": selected or None,
                   "outlines": origin["outlines"] if here else None}
    st.session_state[drawn_key] = {"signature": signature, "options": options}
    fig = map_figure(frame, colour_column, highlight_ords, annotations, **figure_options, **options)

    def changed() -> None:
        state = st.session_state.get(key)
        ords = selected_from_event(state)
        st.session_state[tool_key] = tool_from_event(state) or st.session_state.get(tool_key)
        st.session_state[origin_key] = {"ords": ords, "signature": st.session_state[drawn_key]["signature"],
                                        "outlines": outlines_from_event(state)}
        st.session_state[selection_key] = ords
        if on_selection:
            on_selection(ords)

    st.plotly_chart(fig, key=key, on_select=changed, selection_mode=("points", "box", "lasso"),
                    config=PLOTLY_CONFIG, theme="streamlit")
    return fig
