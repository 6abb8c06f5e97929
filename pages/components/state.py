"""The Explore page's session state, defined once: what is selected, read, searched and filtered.

Every panel reads these keys; selections change through `select` (or the map's callback, which
calls `drop_stale`), so whatever depends on a selection goes with it: the note reader closes
unless its note is still selected or a search result, and an outside change of the selection
(Clear, a cluster's notes, suggestions, labelling) makes the map drop the selection plotly keeps
itself (its lasso or box, and the dimming of the other notes).
"""

from __future__ import annotations

import streamlit as st

FILTER = "explore_filter_ords"  # list[int] | None: ords passing the filters (popover and charts; None = all)
SELECTED = "explore_selected_ords"  # list[int]: notes selected on the map (box, lasso or click, either map)
HIGHLIGHT = "explore_highlight_ords"  # list[int]: search results, best first (ringed on the map)
READ = "explore_read_ord"  # int | None: the note open in the reader
SEARCH_NOTE = "explore_search_note"  # int | None: the note whose neighbours are searched (else the typed query)
QUERY = "explore_query"  # str: the typed search text
REVISION = "explore_selection_revision"  # int: counts selections made off the map (the map redraws afresh)
DEFAULTS = {FILTER: None, SELECTED: [], HIGHLIGHT: [], READ: None, SEARCH_NOTE: None, REVISION: 0}
KEPT = "::kept"  # suffix of a setting's copy that outlives the page's widgets


def start() -> None:
    """Give every key its default where the session has none yet."""
    for key, default in DEFAULTS.items():
        st.session_state.setdefault(key, default)


def keep_settings(defaults: dict) -> None:
    """Give each setting (a widget key -> its default) its value for this run: the widget's, else the
    one it had when the user last left the page, else the default. Streamlit drops a widget's value
    once a run does not draw it, so without this a visit to another page would reset the page's
    settings (and a map switched to PCA would come back as UMAP, starting a UMAP job on every note).
    The widgets then take their values from the session, never a `value=` of their own."""
    for key, default in defaults.items():
        if key in st.session_state:
            st.session_state[key + KEPT] = st.session_state[key]
        else:
            st.session_state[key] = st.session_state.get(key + KEPT, default)


def reset() -> None:
    """Back to the defaults (another corpus: ords and columns belong to a corpus)."""
    st.session_state.update({k: v for k, v in DEFAULTS.items() if k != REVISION})
    st.session_state[REVISION] = st.session_state.get(REVISION, 0) + 1


def selected() -> list[int]:
    return list(st.session_state.get(SELECTED) or [])


def drop_stale(ords: list[int]) -> None:
    """After the selection became `ords`: close the reader of a note neither selected nor a search result."""
    reading = st.session_state.get(READ)
    if reading is not None and reading not in set(ords) | set(st.session_state.get(HIGHLIGHT) or []):
        st.session_state[READ] = None


def select(ords) -> None:
    """Make `ords` the selection from outside the map (a button), dropping what belonged to the old one."""
    ords = list(dict.fromkeys(int(o) for o in ords))
    st.session_state[SELECTED] = ords
    st.session_state[REVISION] = st.session_state.get(REVISION, 0) + 1
    drop_stale(ords)


def clear_selection() -> None:
    select([])


def clear_search() -> None:
    """Forget the search (typed or from a note), and close the reader of a result not selected."""
    st.session_state.update({SEARCH_NOTE: None, QUERY: "", HIGHLIGHT: []})
    drop_stale(selected())


def read(ord_: int | None) -> None:
    """Open a note in the reader (None closes it)."""
    st.session_state[READ] = None if ord_ is None else int(ord_)


def search_like(ord_: int) -> None:
    """Search the neighbours of a note (instead of the typed query)."""
    st.session_state[SEARCH_NOTE] = int(ord_)
