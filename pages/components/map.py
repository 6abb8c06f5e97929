"""The map: a Streamlit custom component drawing the notes with regl-scatterplot (WebGL).

Its browser side is pages/components/mapview (frontend/src/index.js, built by `make mapview` into
mapview/build, which ships in the package: nothing is built or fetched at run time).

Why it is built this way:
- The points reach the browser once per map, as binary files on the app's own media endpoint:
  x, y (float32) and ord (int32), 12 bytes a note, and per colour column one byte a note (a code
  into that column's palette), fetched when the column is first chosen. No note text. The
  component's arguments stay small JSON, so a rerun that changes the selection or a preview does
  not send the points again.
- Colour, zoom, pan, hover, box / lasso selection, hiding categories from the legend (a filter;
  the selection keeps only the notes shown) and density shading happen in the browser; only the selected
  ords come back (into `selection_key`; a large selection both ways as a bitmask over the points, n/8
  bytes, not ~6.5 bytes an ord), and the ord of a note the pointer rests on, for which
  `preview` fetches that one note's preview. That round trip reruns only the map (a fragment).
- The palette of a column comes from all its notes (core.palette), so colours do not change
  when filters hide categories; numbers and dates are binned into 255 steps of a sequential scale.
- A column read from something stored (its `source`: the map's metadata, a clustering) gets its
  palette and codes computed once per server, not on every rerun (a selection reruns the page).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.colors
import streamlit as st
import streamlit.components.v1 as components
from streamlit import runtime
from streamlit.runtime.scriptrunner import get_script_run_ctx

from core.clusters import column_kind
from core.palette import (
    MISSING, MISSING_COLOUR, OTHER_COLOUR, SEQUENTIAL, category_colours, category_labels, other_name,
)

BUILD = Path(__file__).parent / "mapview" / "build"
SINGLE_COLOUR = "#4E79A7"
SCALE_STEPS = 255  # codes 0..254 are the scale, 255 is "missing"
COLOUR_KEY = "explore_colour"  # the column the user last coloured the map by (any map)
MASK_ABOVE = 1000  # a selection larger than this (and than 1/40 of the map) travels as a bitmask
_component = components.declare_component("notespace_map", path=str(BUILD))


def _hex(colour: str) -> str:
    r, g, b = (int(float(v)) for v in colour[colour.index("(") + 1: colour.index(")")].split(","))
    return f"#{r:02x}{g:02x}{b:02x}"


SCALE = [_hex(c) for c in plotly.colors.sample_colorscale(SEQUENTIAL, SCALE_STEPS)]


def point_bytes(frame: pd.DataFrame) -> bytes:
    """x and y as float32, then ord as int32, each a block of len(frame) values (12 bytes a note)."""
    return b"".join([frame["x"].to_numpy(np.float32).tobytes(), frame["y"].to_numpy(np.float32).tobytes(),
                     frame["ord"].to_numpy(np.int32).tobytes()])


def categorical_codes(values, colours: dict[str, str] | None = None) -> tuple[np.ndarray, dict]:
    """One uint8 code a note and the column's legend: every category with a colour of its own (in
    `colours`, from core.palette.category_colours of the whole column), then the rest as one
    "other (N values)", then "(missing)"."""
    labels = category_labels(values)
    colours = colours or category_colours(labels)
    codes_of_notes, uniques = pd.factorize(labels)
    present = set(uniques)
    named = [label for label in colours if label in present and label != MISSING and colours[label] != OTHER_COLOUR]
    rest = sorted(present - set(named) - {MISSING})
    legend = [{"label": label, "colour": colours[label]} for label in named]
    if rest:
        legend.append({"label": other_name(len(rest)), "colour": OTHER_COLOUR})
    if MISSING in present:
        legend.append({"label": MISSING, "colour": MISSING_COLOUR})
    code_of = {label: i for i, label in enumerate(named)}
    code_of |= {label: len(named) for label in rest} | ({MISSING: len(legend) - 1} if MISSING in present else {})
    codes = np.array([code_of[u] for u in uniques], dtype=np.uint8)[codes_of_notes]
    # the value a hover shows: the category itself, "other" for the rest
    values_of_codes = [entry["label"] for entry in legend]
    return codes, {"kind": "categorical", "palette": [e["colour"] for e in legend], "legend": legend,
                   "values": values_of_codes}


def scale_codes(values: pd.Series, kind: str, value_range: tuple[float, float] | None = None) -> tuple[np.ndarray, dict]:
    """Numbers or dates binned into SCALE_STEPS codes of the sequential scale; 255 is missing."""
    if kind == "date":
        stamps = pd.to_datetime(pd.Series(values), errors="coerce")
        numbers = ((stamps - pd.Timestamp("1970-01-01")).dt.total_seconds() / 86400.0).to_numpy(np.float64)
        text = lambda v: (pd.Timestamp("1970-01-01") + pd.Timedelta(days=float(v))).strftime("%Y-%m-%d")  # noqa: E731
    else:
        numbers = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(np.float64)
        text = lambda v: f"{v:,.4g}"  # noqa: E731
    known = np.isfinite(numbers)
    low, high = value_range or ((numbers[known].min(), numbers[known].max()) if known.any() else (0.0, 1.0))
    span = (high - low) or 1.0
    codes = np.full(len(numbers), SCALE_STEPS, dtype=np.uint8)
    codes[known] = np.clip(np.round((numbers[known] - low) / span * (SCALE_STEPS - 1)), 0, SCALE_STEPS - 1)
    steps = low + span * np.arange(SCALE_STEPS) / (SCALE_STEPS - 1)
    legend = [{"label": MISSING, "colour": MISSING_COLOUR}] if not known.all() else []
    return codes, {"kind": "scale", "palette": SCALE + [MISSING_COLOUR], "legend": legend,
                   "ramp": SCALE[:: SCALE_STEPS // 8] + [SCALE[-1]], "low": text(low), "high": text(high),
                   "values": [f"≈ {text(v)}" for v in steps] + [MISSING]}


def column_codes(frame: pd.DataFrame, column: str, kinds: dict[str, str] | None = None,
                 colours: dict[str, str] | None = None, value_range=None) -> tuple[np.ndarray, dict]:
    """The codes and legend of one colour column (of the rows drawn; `colours` from all notes)."""
    kind = column_kind(frame[column], kinds)
    if kind == "categorical":
        return categorical_codes(frame[column].to_numpy(dtype=object), colours)
    return scale_codes(frame[column], kind, value_range)


def colour_palettes(frame: pd.DataFrame, columns: Sequence[str], kinds: dict[str, str] | None, top: int,
                    sources: dict[str, tuple]) -> dict[str, dict[str, str]]:
    """The palette of every categorical column among `columns`, from all the notes of `frame` (so a
    filter never changes a category's colour); a clustering's "noise" is grey."""
    return {column: (_stored_palette(sources[column], column, top, frame[column]) if column in sources
                     else _palette(frame[column], column, top))
            for column in columns if column in frame and column_kind(frame[column], kinds) == "categorical"}


def _palette(values: pd.Series, column: str, top: int) -> dict[str, str]:
    return category_colours(values.to_numpy(dtype=object), grey=["noise"] if column == "cluster" else [], top=top)


@st.cache_data(max_entries=64, show_spinner=False)
def _stored_palette(source: tuple, column: str, top: int, _values: pd.Series) -> dict[str, str]:
    """`source` names the stored values (a store path and a map or clustering id), so they are not hashed."""
    return _palette(_values, column, top)


@st.cache_data(max_entries=64, show_spinner=False)
def _stored_codes(source: tuple, column: str, drawn: str, top: int, value_range, _frame: pd.DataFrame, _kinds,
                  _colours) -> tuple[np.ndarray, dict]:
    """`drawn` is a digest of the ords drawn, `top` what the palette `_colours` was made with."""
    return column_codes(_frame, column, _kinds, _colours, value_range)


def _url(data: bytes, name: str) -> str:
    """A URL on the app's own media endpoint serving `data` (kept while the session shows it)."""
    return runtime.get_instance().media_file_mgr.add(data, "application/octet-stream", f"notespace_map.{name}")


def map_payload(frame: pd.DataFrame, columns: Sequence[str], key: str, kinds: dict[str, str] | None = None,
                palettes: dict[str, dict[str, str]] | None = None,
                ranges: dict[str, tuple[float, float]] | None = None, sources: dict[str, tuple] | None = None,
                top: int | None = None) -> dict:
    """The component's data arguments: the points' URL and, per colour column, its codes' URL and legend
    (those of a column with a `source`, and the palette made with `top` colours, computed once)."""
    specs, sources = [], sources or {}
    drawn = hashlib.blake2b(frame["ord"].to_numpy(np.int64).tobytes(), digest_size=16).hexdigest() if sources else ""
    for column in columns:
        colours, value_range = (palettes or {}).get(column), (ranges or {}).get(column)
        if column in sources:
            codes, spec = _stored_codes(sources[column], column, drawn, top, value_range, frame, kinds, colours)
        else:
            codes, spec = column_codes(frame, column, kinds, colours, value_range)
        specs.append({"name": column, "url": _url(codes.tobytes(), f"{key}.{column}")} | spec)
    return {"points_url": _url(point_bytes(frame), f"{key}.points"), "n": len(frame), "columns": specs}


def selection_arg(drawn_ords: np.ndarray, selected: Sequence[int]) -> dict:
    """The selection for the browser: its ords, or, when large, a bitmask over the points in drawing
    order (base64, n/8 bytes; ords as JSON cost ~6.5 bytes each). Both sides read either form."""
    if len(selected) > MASK_ABOVE and len(selected) > len(drawn_ords) / 40:
        bits = np.isin(drawn_ords, np.asarray(selected, dtype=np.int64))
        return {"mask": base64.b64encode(np.packbits(bits, bitorder="little").tobytes()).decode()}
    return {"ords": [int(o) for o in selected]}


def selected_ords(value: dict, drawn_ords: np.ndarray) -> list[int]:
    """The ords of a selection the browser sent (as ords, or as a bitmask over the points drawn)."""
    if "selected_mask" in value:
        packed = np.frombuffer(base64.b64decode(value["selected_mask"]), dtype=np.uint8)
        bits = np.unpackbits(packed, count=len(drawn_ords), bitorder="little").astype(bool)
        return np.sort(drawn_ords[bits]).tolist()
    return sorted({int(o) for o in value.get("selected") or []})


def draw_map(frame: pd.DataFrame, columns: Sequence[str], colour: str | None = None, *, key: str,
             selection_key: str, on_selection: Callable[[list[int]], None] | None = None,
             kinds: dict[str, str] | None = None, palettes: dict[str, dict[str, str]] | None = None,
             ranges: dict[str, tuple[float, float]] | None = None, highlight_ords: Sequence[int] = (),
             labels: Sequence[dict] = (), selection_revision: int = 0,
             preview: Callable[[int], dict] | None = None, point_size: float = 4, opacity: float = 0.75,
             height: int | None = None, link: str | None = None, label_style: str = "box",
             labels_shown: bool = True, sources: dict[str, tuple] | None = None, top: int | None = None) -> None:
    """Show the notes of `frame` (ord, x, y and the `columns` it can be coloured by) on the map.

    The selection is kept as ords in `st.session_state[selection_key]`, written (and given to
    `on_selection`) when the user selects; a selection made off the map (a new
    `selection_revision`) is drawn on it. `labels` are {x, y, text} (plain text, drawn on a canvas,
    never parsed as HTML), largest first; `link` names a group of maps (Compare) that show each
    other's hover and selection (and legend filters); `label_style` "outline" draws labels without a
    box; `labels_shown` False starts with the labels hidden (the map's Labels button shows them).
    `sources` (column -> the stored thing its values come from) and `top` (the colours the palettes
    give) let a stored column's codes be computed once (see `colour_palettes`).
    """
    drawn_ords = frame["ord"].to_numpy(np.int64)
    args = map_payload(frame, columns, key, kinds, palettes, ranges, sources, top) | {
        "colour": st.session_state.get(COLOUR_KEY, colour) if st.session_state.get(COLOUR_KEY) in columns else colour,
        "highlight": [int(o) for o in highlight_ords], "labels": list(labels), "point_size": point_size,
        "opacity": opacity, "height": height, "link": link, "label_style": label_style, "labels_shown": labels_shown,
        "single_colour": SINGLE_COLOUR, "preview_on_hover": preview is not None,
        "selection": {"revision": selection_revision}
        | selection_arg(drawn_ords, st.session_state.get(selection_key) or []),
    }
    _interactive_map(args, key, partial(_changed, key, selection_key, on_selection, drawn_ords), preview)


def _changed(key: str, selection_key: str, on_selection, drawn_ords: np.ndarray) -> None:
    value = st.session_state.get(key) or {}
    if "colour" in value:
        st.session_state[COLOUR_KEY] = value["colour"]
    if value.get("event") == "select":
        ords = selected_ords(value, drawn_ords)
        st.session_state[selection_key] = ords
        if on_selection:
            on_selection(ords)
        st.session_state[f"{key}::selected"] = True  # the rest of the page shows the selection


@st.fragment
def _interactive_map(args: dict, key: str, changed: Callable[[], None], preview) -> None:
    """The component in a fragment: resting on a note reruns only this, to send its preview."""
    value = st.session_state.get(key) or {}
    if preview is not None and value.get("event") == "hover" and value.get("hover") is not None:
        args = args | {"preview": preview(int(value["hover"]))}
    _component(**args, key=key, default=None, on_change=changed)
    # a selection changes the page around the map: after a fragment rerun, run the whole page
    if st.session_state.pop(f"{key}::selected", False) and get_script_run_ctx().fragment_ids_this_run:
        st.rerun(scope="app")
