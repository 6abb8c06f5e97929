"""What the Explore page reads from core, cached per server, and the map that is ready to show now.

Caches are keyed by the store's path and by ids of stored, immutable things (a map id, a corpus
data hash), so they never serve stale data when a corpus or encoder changes.
"""

from __future__ import annotations

import tempfile
from dataclasses import astuple
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from core import background, maps
from core.background import Job
from core.embed import corpus_space, embed_query
from core.neighbours import CellIndex
from core.options import ProjectOptions
from core.search import wants_index
from core.space import EmbeddingSpace
from pages.common import progress_bar, show_failure, store


@st.cache_data(max_entries=6, show_spinner="Reading the map…")
def map_frame(db: str, projection_id: int) -> pd.DataFrame:
    """ord, doc_id, x, y, preview, metadata of a stored map."""
    return maps.map_frame(store(), projection_id)


@st.cache_data(max_entries=6, show_spinner=False)
def coordinates(db: str, projection_id: int) -> np.ndarray:
    return maps.load_projection(store(), projection_id)[["x", "y"]].to_numpy(np.float32)


@st.cache_resource(max_entries=2, show_spinner="Reading the vectors…")
def _vectors(db: str, corpus: str, data_hash: str, space_fields: tuple) -> np.ndarray:
    return EmbeddingSpace(*space_fields).load(store(), store().corpus(corpus))


def vectors(db: str, corpus: str, data_hash: str, space: EmbeddingSpace) -> np.ndarray:
    """The corpus's vectors in that space (read-only, shared by sessions: 50k x 384 is 77 MB)."""
    return _vectors(db, corpus, data_hash, astuple(space))


@st.cache_resource(max_entries=2, show_spinner=False)
def _index_job(db: str, corpus: str, data_hash: str, space_fields: tuple) -> Job:
    X = _vectors(db, corpus, data_hash, space_fields)
    return background.start(("search index", db, corpus, data_hash, space_fields), None, lambda progress: CellIndex(X))


def search_index(db: str, corpus: str, data_hash: str, space: EmbeddingSpace) -> CellIndex | None:
    """The cell index that searches a large corpus (core.search.wants_index), built in the background
    once per server for these vectors; None for a corpus searched exactly, and while it is being built
    (exact search answers meanwhile). Its job is kept only by this cache, so an evicted index is freed."""
    if not wants_index(len(vectors(db, corpus, data_hash, space))):
        return None
    job = _index_job(db, corpus, data_hash, astuple(space))
    return job.result if job.done else None


@st.cache_data(max_entries=64, show_spinner="Embedding the query…")
def _query_vector(db: str, space_fields: tuple, text: str) -> np.ndarray:
    return embed_query(store(), text, EmbeddingSpace(*space_fields))


def query_vector(db: str, space: EmbeddingSpace, text: str) -> np.ndarray:
    """A typed query, embedded in the space of the vectors it is compared with."""
    return _query_vector(db, astuple(space), text)


@st.cache_data(max_entries=4, show_spinner="Comparing neighbourhoods in both full spaces…")
def overlap(db: str, corpus: str, encoder_a: str, encoder_b: str, data_hash: str, spaces: tuple,
            k: int = 10) -> np.ndarray:
    """`spaces` (the two encoders' spaces, as tuples) keys the cache: re-embedding changes the answer."""
    return maps.neighbourhood_overlap(store(), corpus, encoder_a, encoder_b, k)


def map_parquet(projection_id: int) -> bytes:
    """The map's coordinates with doc_id and metadata, as Parquet bytes (made when downloaded)."""
    with tempfile.TemporaryDirectory() as folder:
        return maps.export_projection(store(), projection_id, Path(folder) / "map.parquet").read_bytes()


def offer_embedding(corpus: str, encoder: str) -> None:
    """Say that the corpus has no vectors for this encoder yet, and offer to embed it here."""
    st.info(f"'{corpus}' is not embedded with '{encoder}' yet. Embed it here, or on the command line with "
            f"`notespace embed --corpus {corpus} --encoder {encoder}`.")
    if st.button(f"Embed with {encoder}", type="primary", key=f"explore_embed_{encoder}"):
        bar, update = progress_bar("Loading the encoder…")
        try:
            corpus_space(store(), corpus, encoder, progress=update)  # the corpus's space, else the defaults
        except Exception as exc:
            show_failure(exc)
            return
        st.rerun()


def current_map(corpus: str, opts: ProjectOptions) -> tuple[dict, Job | None] | None:
    """The map to draw now, and the UMAP job still computing (None when the asked-for map is shown);
    None when the corpus is not embedded with the encoder yet.

    A stored map comes back at once. A missing PCA map is computed here (well under a second after
    the vectors are read). A missing UMAP map is computed in the background while PCA stands in.
    """
    hit = maps.find_projection(store(), corpus, opts)
    if hit:
        return hit, None
    if not maps.embedded(store(), corpus, opts.encoder):
        return None
    if opts.method == "pca":
        bar, update = progress_bar("Computing the PCA map…")
        result = maps.project_corpus(store(), corpus, opts, progress=update)
        bar.empty()
        return result, None
    job = maps.project_in_background(store(), corpus, opts)
    return current_map(corpus, opts.replace(method="pca"))[0], job


def _describe(job: Job) -> tuple[str, str]:
    """What a background job computes, and what the page shows until it is stored."""
    if isinstance(job.opts, ProjectOptions):
        return f"UMAP map with {job.opts.encoder}", "PCA is shown until it is ready."
    return f"Clusters with {job.opts.encoder}", "Their names appear on the map once they are stored."


@st.fragment(run_every=1.0)
def wait_for(jobs: list[Job]) -> None:
    """Progress of the maps and clusterings being computed; reruns the page once they are all stored."""
    if all(job.done for job in jobs):
        st.rerun(scope="app")
    for job in jobs:
        title, meanwhile = _describe(job)
        bar, cancel = st.columns([6, 1], vertical_alignment="bottom")
        bar.progress(min(job.fraction, 0.99), text=f"{title}: {job.message} ({job.elapsed:.0f} s). {meanwhile}")
        cancel.button("Cancel", key=f"explore_cancel_{title}", on_click=job.cancel, disabled=job.cancel_requested,
                      help="Stops at its next step; what is shown now stays.")


def failed(jobs: list[Job]) -> list[Job]:
    """Show the jobs that failed or were cancelled, with a button to start again; returns those still running."""
    for job in [j for j in jobs if j.error]:
        title, _ = _describe(job)
        if job.error == background.CANCELLED:
            st.info(f"{title}: cancelled.", icon=":material/cancel:")
        else:
            st.error(f"{title} failed: {job.error}")
        if st.button("Start again" if job.error == background.CANCELLED else "Try again", key=f"explore_retry_{title}"):
            background.forget(job)
            st.rerun()
    return [j for j in jobs if not j.error]
