"""Two encoders side by side on one corpus: aligned maps, linked selection, neighbourhood overlap.

The second map is rotated, scaled and shifted onto the first (least squares, `align_to`), because
UMAP's orientation is arbitrary: without it, two maps that agree would still look different.
Both maps write the same selection key and are linked in the browser: hovering or selecting in
one shows the same notes in the other at once, and so does hiding a category from the legend.
Cluster names start hidden, so they never cover the points being compared; each map's Labels button
shows them (outlined text without a box). The overlap colour is measured in each encoder's full space, not on the maps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import streamlit as st

from core.maps import MapJob, embedded
from core.options import ProjectOptions
from core.projection import align_to
from core.space import EmbeddingSpace
from core.store import Corpus
from pages.common import store
from pages.components import loaders
from pages.components.map import COLOUR_KEY, draw_map
from pages.components.register import register_local_form

OVERLAP = "neighbourhood overlap"
OVERLAP_K = 10


def describe(result: dict) -> str:
    return f"{result['method'].upper()} of {EmbeddingSpace(**result['embedding']).describe()}"


def compare_view(corpus: Corpus, opts: ProjectOptions, result_a: dict, frame: pd.DataFrame, shown_ords: Sequence[int],
                 colour_columns: list[str], draw: dict, encoders: list[str],
                 annotate: Callable[[pd.DataFrame], list[dict]] | None = None) -> list[MapJob]:
    """Draw map A (from `frame`) and map B (picked here) side by side; returns B's pending UMAP job.

    `annotate(rows)` gives the cluster labels of a map from its drawn rows.
    """
    others = [e for e in encoders if e != opts.encoder]
    if not others:
        st.info("Comparing needs a second encoder: adapt one on the **Pretrain** page, or register a local model.")
        register_local_form("explore_encoder_b")
        return []
    if st.session_state.get("explore_encoder_b") not in others:  # first offer one that needs no embedding
        ready = [e for e in others if embedded(store(), corpus.name, e)]
        st.session_state["explore_encoder_b"] = (ready or others)[0]
    picker, register = st.columns([2, 3])
    encoder_b = picker.selectbox("Compare with", others, key="explore_encoder_b")
    with register:
        register_local_form("explore_encoder_b")
    shown_b = loaders.current_map(corpus.name, opts.replace(encoder=encoder_b))
    if shown_b is None:
        loaders.offer_embedding(corpus.name, encoder_b)
        return []
    result_b, job = shown_b
    db = str(store().path)
    xy_b = align_to(frame[["x", "y"]].to_numpy(np.float32), loaders.coordinates(db, result_b["projection"]))
    frame_b = frame.assign(x=xy_b[:, 0], y=xy_b[:, 1])

    if OVERLAP in colour_columns:
        spaces = (tuple(result_a["embedding"].values()), tuple(result_b["embedding"].values()))
        scores = loaders.overlap(db, corpus.name, opts.encoder, encoder_b, corpus.data_hash, spaces, OVERLAP_K)
        frame = frame.assign(**{OVERLAP: scores[frame["ord"].to_numpy()]})
        frame_b = frame_b.assign(**{OVERLAP: frame[OVERLAP]})
        st.caption(f"Jaccard overlap of each note's {OVERLAP_K} nearest neighbours under {opts.encoder} and "
                   f"{encoder_b}, each in its full space (1 = same neighbours, 0 = none shared). "
                   f"Mean {scores.mean():.2f}, median {np.median(scores):.2f}.")
        draw = draw | {"ranges": {OVERLAP: (0.0, 1.0)}}

    left, right = st.columns(2)
    shown = frame["ord"].isin(shown_ords).to_numpy()
    for column, part, result, key in ((left, frame, result_a, "explore_map_a"),
                                      (right, frame_b, result_b, "explore_map_b")):
        with column:
            st.markdown(f"**{describe(result)}**")
            rows = part[shown]
            draw_map(rows, [c for c in colour_columns if c in rows], st.session_state.get(COLOUR_KEY), key=key,
                     labels=annotate(rows) if annotate else (), height=520, link=f"{corpus.name}/compare",
                     label_style="outline", labels_shown=False, **draw)
    return [job] if job else []
