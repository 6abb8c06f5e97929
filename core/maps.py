"""Maps of a corpus in the store: computed once, kept with their provenance, found again for free.

`project_corpus` is the `project` verb. A map is keyed by a cache key over everything it depends
on: the encoder's fingerprint and embedding settings, the corpus's data hash (document ids and
texts) and the parameters that matter for its method (a PCA map ignores the UMAP settings). The
runs row (parameters, inputs, result) and the coordinates land in one transaction, so a map is
either complete in the store or absent, and reopening it costs one lookup.

The app never waits for UMAP: `project_in_background` computes it in a thread (core/background.py:
one per map and process, shared by every session) while the page shows the PCA map, which takes
well under a second; the page polls the job and swaps the UMAP map in when it is stored.

Large corpora: above projection.SAMPLE_ABOVE notes a UMAP map is a sampled UMAP with the other
notes placed from their neighbours (core/projection.py); its run's params say so ("sample",
"place_k"). Warm start: the last UMAP layout of each corpus and encoder (this process's, else the
newest stored one) starts the next UMAP of the same notes and seed, so changing min. distance or
neighbours moves the map rather than redrawing it; its kNN graph is kept too (up to SAMPLE_ABOVE
notes). The run's params name the map it started from ("init") and its epochs.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from core import background
from core.encoders import get_encoder
from core.errors import UserError
from core.options import ProjectOptions
from core.space import EmbeddingSpace, ready, remembered
from core.stages import Computed, Stage, cache_key, stored_or_computed
from core.store import Corpus, Store, StoreError, arrow, quote

Progress = background.Progress
KIND = "projection"
CACHE_VERSION = 1  # bump when the projection code changes the maps it draws, so old ones are not reused
RESERVED = ("ord", "doc_id", "x", "y", "preview")  # map-frame columns a metadata column must not shadow


def _quiet(fraction: float, message: str = "") -> None:
    pass


def method_params(opts: ProjectOptions) -> dict:
    """The settings that change the map: PCA depends on the metric only, UMAP on all of them."""
    if opts.method == "pca":
        return {"method": "pca", "metric": opts.metric}
    if opts.method == "umap":
        return {"method": "umap", "n_neighbors": opts.n_neighbors, "min_dist": opts.min_dist,
                "metric": opts.metric, "seed": opts.seed}
    raise UserError(f"unknown projection method {opts.method!r} (umap or pca)")


def _stage(store: Store, corpus: Corpus, opts: ProjectOptions, space: EmbeddingSpace,
           recorded: dict | None = None) -> Stage:
    """The map these options ask for in this embedding space: its params, inputs and cache key.
    Read-only: a lookup must not write, so the key names the space, not its stored set's id, which
    the run records among its inputs (`recorded`: inputs outside the key)."""
    enc = get_encoder(store, opts.encoder)
    params = method_params(opts) | {"encoder": enc.id, "version": CACHE_VERSION}
    inputs = {"corpus_id": corpus.id, "data_hash": corpus.data_hash, "fingerprint": enc.fingerprint,
              "embedding": space.cache_params(enc)}
    key = cache_key([params, inputs])
    return Stage(KIND, key, corpus.id, enc.id, params,
                 inputs | (recorded or {}))


def find_projection(store: Store, corpus_name: str, opts: ProjectOptions = ProjectOptions()) -> dict | None:
    """The stored map for these options (the `project` JSON with cached=True), else None; never computes."""
    started = time.perf_counter()
    with store.session():
        corpus = store.corpus(corpus_name)
        space = remembered(store, corpus, get_encoder(store, opts.encoder).id)
        hit = stored_or_computed(store, _stage(store, corpus, opts, space), None) if space else None
    if hit is None:
        return None
    return ({"projection": hit.id} | hit.result | {"embedding": space.public()}
            | {"seconds": round(time.perf_counter() - started, 4), "cached": True})


def project_corpus(store: Store, corpus_name: str, opts: ProjectOptions = ProjectOptions(),
                   progress: Progress | None = None) -> dict:
    """The `project` verb: {"projection", "corpus", "encoder", "method", "n", "seconds", "cached", "embedding"}.

    The map is drawn in the corpus's embedding space (core/space.py); notes not yet embedded there are
    embedded first (cached, as by `embed`).
    """
    from core.embed import corpus_space
    from core.neighbours import knn_graph
    from core.projection import SAMPLE_ABOVE, WARM_EPOCHS, compute_projection, sampling

    started = time.perf_counter()
    report = progress or _quiet
    with store.session():  # a dozen short lookups, one opening of the file
        hit = find_projection(store, corpus_name, opts)
        if hit:
            report(1.0, f"map {hit['projection']} found in the store")
            return hit | {"seconds": round(time.perf_counter() - started, 4)}
        corpus = store.corpus(corpus_name)
        if corpus.n_docs == 0:
            raise StoreError(f"corpus '{corpus.name}' holds no notes to draw")
        space = ready(store, corpus.name, opts.encoder)
    if space is None:  # notes to embed first: long work, so outside the session
        space = corpus_space(store, corpus.name, opts.encoder, progress=lambda f, m="": report(0.5 * f, m))
    with store.session():
        stage = _stage(store, corpus, opts, space, {"embedding_set": space.stored_set(store)})
        X = space.load(store, corpus)
    encoder_id, inputs = stage.encoder_id, stage.inputs
    drawn: dict = {}

    def draw() -> Computed:
        report(0.5, f"{opts.method.upper()} map of {len(X):,} notes")
        warm = last_layout(store, corpus, encoder_id, inputs, opts) if opts.method == "umap" else None
        if warm and len(warm.xy) != len(X):
            warm = None
        knn = warm.knn if warm else None
        with store.released():  # a layout takes seconds to minutes: the file is not held meanwhile
            if opts.method == "umap" and len(X) <= SAMPLE_ABOVE and (knn is None or knn[0].shape[1] < opts.n_neighbors):
                knn = knn_graph(X, min(len(X), max(KNN_KEPT, opts.n_neighbors)), opts.metric, include_self=True)
            xy = drawn["xy"] = compute_projection(X, opts, progress=lambda f, m="": report(0.5 + 0.5 * f, m),
                                                  init=warm.xy if warm else None, knn=knn)
        drawn["knn"] = knn
        return Computed({"corpus": corpus.name, "encoder": encoder_id, "method": opts.method, "n": len(xy)},
                        sampling(len(X), opts.method)
                        | ({"init": f"map {warm.projection}", "n_epochs": WARM_EPOCHS} if warm else {}),
                        partial(_write_coordinates, store, xy=xy))

    run = stored_or_computed(store, stage, draw, started)
    if opts.method == "umap" and not run.cached:
        _keep_layout(store, corpus, encoder_id, Layout(_same_notes(inputs), opts.metric, opts.seed, run.id,
                                                   drawn["xy"], drawn["knn"]))
    report(1.0, f"map {run.id} {'found in the store' if run.cached else 'stored'}")
    return ({"projection": run.id} | run.result
            | {"embedding": space.public(), "seconds": round(time.perf_counter() - started, 4), "cached": run.cached})


def _write_coordinates(store: Store, con, run_id: int, xy: np.ndarray) -> None:
    """A map's coordinates, written in its run's transaction: vectors come in ord order and ords are
    0..n-1 (see core.ingest.write)."""
    with store.python_data():
        con.register("new_xy", pa.table({"ord": np.arange(len(xy), dtype=np.int32), "x": xy[:, 0], "y": xy[:, 1]}))
        con.execute("INSERT INTO projections SELECT ?, ord, x, y FROM new_xy", [run_id])
        con.unregister("new_xy")


# ---- warm start: the last UMAP layout per corpus and encoder ------------------------------------

KNN_KEPT = 50  # neighbours kept with a layout: any Neighbours setting up to this reuses the graph


@dataclass
class Layout:
    inputs: dict  # what the layout's notes and vectors are (the map's inputs, without its stored set)
    metric: str
    seed: int
    projection: int
    xy: np.ndarray
    knn: tuple[np.ndarray, np.ndarray] | None


_layouts: dict[tuple, Layout] = {}
_layouts_lock = threading.Lock()


def _same_notes(inputs: dict) -> dict:
    return {k: inputs.get(k) for k in ("corpus_id", "data_hash", "fingerprint", "embedding")}


def last_layout(store: Store, corpus: Corpus, encoder_id: str, inputs: dict, opts: ProjectOptions) -> Layout | None:
    """The layout a UMAP map with these options may start from: the same notes, vectors, metric and
    seed; this process's last one, else the newest such map in the store."""
    with _layouts_lock:
        kept = _layouts.get((str(store.path), corpus.id, encoder_id))
    if kept and kept.inputs == _same_notes(inputs) and (kept.metric, kept.seed) == (opts.metric, opts.seed):
        return kept
    for run in store.runs(kind=KIND, corpus_id=corpus.id):
        params = run["params"] or {}
        if (run["encoder_id"] == encoder_id and params.get("method") == "umap"
                and (params.get("metric"), params.get("seed")) == (opts.metric, opts.seed)
                and _same_notes(run["inputs"] or {}) == _same_notes(inputs)):
            xy = load_projection(store, run["id"])[["x", "y"]].to_numpy(np.float32)
            return Layout(_same_notes(inputs), opts.metric, opts.seed, run["id"], xy, None)
    return None


def _keep_layout(store: Store, corpus: Corpus, encoder_id: str, layout: Layout) -> None:
    with _layouts_lock:
        _layouts[(str(store.path), corpus.id, encoder_id)] = layout


def _run(store: Store, projection_id: int) -> dict:
    with store.connect() as con:
        row = con.execute("SELECT corpus_id, encoder_id, params FROM runs WHERE id = ? AND kind = ?",
                          [int(projection_id), KIND]).fetchone()
    if row is None:
        raise StoreError(f"no map with id {projection_id}; run `notespace project` first")
    return {"corpus_id": row[0], "encoder_id": row[1], "params": json.loads(row[2] or "{}")}


def load_projection(store: Store, projection_id: int) -> pd.DataFrame:
    """The stored coordinates: ord, x, y in ord order."""
    _run(store, projection_id)
    with store.connect() as con:
        return arrow(con, "SELECT ord, x, y FROM projections WHERE run_id = ? ORDER BY ord",
                     [int(projection_id)]).to_pandas()


def _corpus_by_id(store: Store, corpus_id: int) -> Corpus:
    for corpus in store.corpora():
        if corpus.id == corpus_id:
            return corpus
    raise StoreError(f"the corpus of this map (id {corpus_id}) is no longer in the store")


def map_frame(store: Store, projection_id: int, preview_chars: int | None = 240) -> pd.DataFrame:
    """One row per note in ord order: ord, doc_id, x, y, preview (the note's first `preview_chars`
    characters; None = no preview) and every metadata column.

    Only the start of each note is read: the map never needs, or ships, whole notes. A metadata
    column named like a map column is renamed "<name> (metadata)".
    """
    corpus = _corpus_by_id(store, _run(store, projection_id)["corpus_id"])
    meta = ", ".join(f"m.{quote(c)}" + (f" AS {quote(c + ' (metadata)')}" if c in RESERVED else "")
                     for c in corpus.meta)
    preview = f"left(d.text, {int(preview_chars)}) AS preview, " if preview_chars else ""
    with store.connect() as con:
        return arrow(con,
            f"SELECT d.ord, d.doc_id, p.x, p.y, {preview}{meta + ', ' if meta else ''}1 AS _ "
            f"FROM documents d JOIN projections p ON p.run_id = ? AND p.ord = d.ord "
            f"JOIN {corpus.meta_table} m ON m.ord = d.ord WHERE d.corpus_id = ? ORDER BY d.ord",
            [int(projection_id), corpus.id]).to_pandas().drop(columns="_")


def export_projection(store: Store, projection_id: int, out_path: str | Path) -> Path:
    """Write doc_id, x, y and the metadata columns of a stored map to a Parquet file."""
    frame = map_frame(store, projection_id, preview_chars=None).drop(columns="ord")
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(out, index=False)
    return out


def embedded(store: Store, corpus_name: str, encoder_id: str) -> bool:
    """Whether every note of the corpus has its vector in its embedding space for this encoder."""
    return ready(store, corpus_name, encoder_id) is not None


def neighbourhood_overlap(store: Store, corpus_name: str, encoder_a: str, encoder_b: str, k: int = 10) -> np.ndarray:
    """Per note (ord order), the Jaccard overlap of its k nearest neighbours under the two encoders,
    each in the corpus's full embedding space for it (both must be embedded)."""
    from core.neighbours import neighbourhood_overlap as overlap

    corpus = store.corpus(corpus_name)
    spaces = [remembered(store, corpus, get_encoder(store, e).id) for e in (encoder_a, encoder_b)]
    for encoder, space in zip((encoder_a, encoder_b), spaces):
        if space is None:
            raise StoreError(f"corpus '{corpus.name}' is not embedded with '{encoder}' yet; run embed first")
    return overlap(spaces[0].load(store, corpus), spaces[1].load(store, corpus), k)


# ---- maps computed in the background ---------------------------------------------------------

MapJob = background.Job  # its `opts` are the map's ProjectOptions
forget = background.forget  # drops a failed map job, so that the next call tries again


def project_in_background(store: Store, corpus_name: str, opts: ProjectOptions) -> MapJob:
    """Start computing (and storing) this map in a daemon thread, or return the job already doing it.

    A job that finished well is forgotten, so the next call finds the map in the store; a failed job
    is kept, with its error, until `forget(job)` (the page offers to try again).
    """
    return background.start(("map", str(store.path), corpus_name, opts), opts,
                            lambda progress: project_corpus(store, corpus_name, opts, progress=progress))
