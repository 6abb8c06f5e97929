"""Below the map: the notes selected on it, search results, and a reader for one note.

Tables show short previews; whole notes are read from the store only for the one note in the
reader and for the files a user downloads (generated when the button is clicked).
"""

from __future__ import annotations

import io
import zlib

import numpy as np
import pandas as pd
import streamlit as st

from core.export import safe_csv
from core.palette import category_label
from core.store import Corpus, Store
from pages.components import state
from pages.components.differences import show_differences
from pages.text import for_markdown

TABLE_ROWS = 500  # rows sent to a table (~180 KB with previews; 2,000 sent ~0.7 MB); downloads hold every note
MAP_COLUMNS = ["x", "y"]
PREVIEW_CHARS = 400  # of the note under the pointer on the map


def _table(frame: pd.DataFrame, key: str, extra: dict | None = None) -> None:
    """Notes as a table; clicking a row opens that note in the reader."""
    shown = frame.drop(columns=[c for c in MAP_COLUMNS if c in frame]).head(TABLE_ROWS)
    # Streamlit keeps a keyed table's ticked row when its rows change: a table of other notes gets a
    # key of its own, so no tick is left on a note that was never opened
    key = f"{key}:{zlib.crc32(shown['ord'].to_numpy(np.int64).tobytes()):08x}"
    for col in shown.columns:  # dates without a time of day read better as dates
        dates = shown[col].dropna()
        if pd.api.types.is_datetime64_any_dtype(dates) and (dates.dt.normalize() == dates).all():
            shown[col] = shown[col].dt.date

    def opened() -> None:
        rows = st.session_state[key].selection.rows
        if rows:
            state.read(shown["ord"].iloc[rows[0]])

    config = {"ord": None, "doc_id": st.column_config.TextColumn("note"),
              "preview": st.column_config.TextColumn("preview", width="large")} | (extra or {})
    st.dataframe(shown, key=key, on_select=opened, selection_mode="single-row", hide_index=True,
                 column_config=config, height=min(400, 38 + 35 * len(shown)))
    if len(frame) > TABLE_ROWS:
        st.caption(f"The table lists the first {TABLE_ROWS:,} of {len(frame):,} notes; the downloads hold all of them.")


def _full_notes(store: Store, corpus: Corpus, frame: pd.DataFrame) -> pd.DataFrame:
    texts = store.texts(corpus, frame["ord"].tolist())[["ord", "text"]]
    keep = [c for c in frame.columns if c not in MAP_COLUMNS + ["preview"]]
    return frame[keep].merge(texts, on="ord").drop(columns="ord")


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def selection_panel(store: Store, corpus: Corpus, frame: pd.DataFrame, selected: list[int]) -> None:
    """The selected notes: how they differ from the corpus, the table, downloads."""
    if not selected:
        st.caption("Select notes on the map with its Box or Lasso tool (above the map), or click a note. "
                   "Double-click an empty spot of the map to clear the selection.")
        return
    mask = frame["ord"].isin(selected).to_numpy()
    chosen = frame[mask]
    head = st.container(horizontal=True, horizontal_alignment="distribute", vertical_alignment="center")
    head.markdown(f"**{len(chosen):,} notes selected** ({len(chosen) / max(len(frame), 1):.1%} of the corpus)",
                  width="content")
    head.button("Clear selection", key="explore_clear_selection", icon=":material/deselect:",
                on_click=state.clear_selection)
    metadata = frame[[c for c in corpus.meta if c in frame]]
    differences = st.expander("How the selection differs from the corpus", expanded=True) if len(
        metadata.columns) else None
    st.caption("Tick a row to read the whole note.")
    _table(chosen, "explore_selection_table")
    if differences is not None:  # filled after the table, which so reaches the browser first
        with differences:
            show_differences(mask, metadata, corpus.meta, "selection")
    buttons = st.container(horizontal=True)
    buttons.download_button("Selection as CSV", lambda: safe_csv(_full_notes(store, corpus, chosen)),
                         file_name=f"{corpus.name}-selection.csv", mime="text/csv", icon=":material/download:",
                         on_click="ignore", help="Whole notes with their metadata; safe to open in a spreadsheet")
    buttons.download_button("Selection as Parquet", lambda: _parquet(_full_notes(store, corpus, chosen)),
                          file_name=f"{corpus.name}-selection.parquet", icon=":material/download:",
                          on_click="ignore")


def search_results(frame: pd.DataFrame, ords: np.ndarray, sims: np.ndarray, title: str, space: str,
                   how: str) -> None:
    """Search results, best first, with their cosine similarity in the full embedding space; `how`
    says how they were found (exact, or approximate through a cell index)."""
    by_ord = frame.set_index("ord", drop=False)
    results = by_ord.loc[ords].reset_index(drop=True)
    results.insert(0, "similarity", sims.astype(float))
    st.markdown(f"**{for_markdown(title)}**: {len(results)} nearest notes, ringed on the map")
    st.caption(f"Cosine similarity in the full {space} embedding space (not distances on the map); "
               f"search {how}.")
    _table(results, "explore_search_table", {"similarity": st.column_config.ProgressColumn(
        format="%.3f", min_value=min(0.0, float(sims.min(initial=0))), max_value=1.0)})


def hover_preview(store: Store, corpus: Corpus, frame: pd.DataFrame, ord_: int) -> dict:
    """What the map shows for the one note under the pointer: its id, the start of its text and its
    metadata, as plain text (the map sets it as text, never as HTML)."""
    row = frame[frame["ord"] == ord_]
    text = " ".join(str(store.texts(corpus, [ord_])["text"].iloc[0]).split())
    if len(text) > PREVIEW_CHARS:
        text = text[: PREVIEW_CHARS - 1].rstrip() + "…"
    meta = [[c, category_label(row[c].iloc[0])] for c in corpus.meta if c in row][:6]
    return {"ord": int(ord_), "doc_id": str(row["doc_id"].iloc[0]) if len(row) else str(ord_), "text": text,
            "meta": meta}


def note_reader(store: Store, corpus: Corpus, frame: pd.DataFrame, ord_: int) -> None:
    """One whole note, as plain text (never rendered as HTML or Markdown), with its metadata."""
    row = frame[frame["ord"] == ord_]
    if row.empty:
        return
    text = store.texts(corpus, [ord_])["text"].iloc[0]
    with st.container(border=True):
        st.markdown(f"**Note {for_markdown(row['doc_id'].iloc[0])}**")
        meta = {c: row[c].iloc[0] for c in corpus.meta if c in row}
        if meta:
            st.caption(" · ".join(f"{for_markdown(c)}: {for_markdown(category_label(v))}" for c, v in meta.items()))
        st.text(text, wrap=True)
        buttons = st.container(horizontal=True)
        buttons.button("Find similar notes", key="explore_find_similar", icon=":material/search:",
                       on_click=state.search_like, args=(ord_,))
        buttons.button("Close", key="explore_close_reader", icon=":material/close:",
                       on_click=state.read, args=(None,))
