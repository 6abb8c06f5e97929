"""Clusters on the Explore page: compute (or reload) a clustering, name it on the map, tabulate it.

`cluster_panel` returns a `ClusterView` aligned with the page's frame (rows carry an `ord`), so the
map can colour by `view.column()`, draw `cluster_labels(...)` at cluster centres and filter on
clusters like on any metadata column. Noise (-1) is always its own group, named "noise".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import streamlit as st

from core import background
from core.clusters import (
    cluster_corpus, cluster_names, cluster_summary, default_k, default_min_cluster_size,
    latest_clustering, load_clustering,
)
from core.options import ClusterOptions
from core.store import Store, StoreError
from pages.components import state, steps
from pages.components.differences import show_differences

EXAMPLE_CHARS = 600


@dataclass
class ClusterView:
    clustering_id: int
    labels: np.ndarray  # cluster per row of the frame given to cluster_panel (-1 = noise)
    ords: np.ndarray  # the frame's ords, row by row
    names: dict[int, str]  # "3: chest pain troponin", -1: "noise"
    terms: dict[int, list[str]]
    examples: dict[int, list[str]]  # texts of the most central notes, closest first
    params: dict

    def column(self) -> pd.Series:
        """Readable cluster per row, for colouring, filtering or as a label column."""
        ids, rows = np.unique(self.labels, return_inverse=True)  # per cluster, not per note: 1M notes in ~0.05 s
        return pd.Series(np.array([self.names.get(int(c), str(c)) for c in ids], dtype=object)[rows],
                         name="cluster", dtype=object)

    def members(self, cluster: int) -> list[int]:
        return self.ords[self.labels == cluster].tolist()


def _stored(store: Store, corpus: str, encoder: str, shown_key: str):
    """The clustering computed last in this session (under `shown_key`), else the newest stored one."""
    try:
        return (load_clustering(store, st.session_state[shown_key]) if shown_key in st.session_state
                else latest_clustering(store, corpus, encoder))
    except StoreError:  # the store file was replaced under this session: forget the stale id
        st.session_state.pop(shown_key, None)
        return None


def _setting(params: dict) -> str:
    """The setting that shapes a clustering, as its header and the controls say it."""
    if params["method"] == "kmeans":
        return f"k = {params['k']}"
    return f"minimum cluster size {params['min_cluster_size']}"


def cluster_panel(store: Store, corpus: str, encoder: str, frame: pd.DataFrame) -> ClusterView | None:
    """Controls (method, size, Compute) and the clustering to show: the one computed last in this
    session, else the newest stored one for this corpus and encoder. None until one exists.

    The controls start from the settings of the clustering shown (again whenever another one is
    shown: another encoder's, a new one), and settings not computed yet are said to be so, so the
    header and the inputs never disagree silently."""
    info = store.corpus(corpus)
    n = info.n_docs
    shown_key = f"clusters::{info.id}::{info.data_hash}::{encoder}"  # a re-ingested corpus never shows old clusters
    found = _stored(store, corpus, encoder, shown_key)
    controls = {"clusters_method": "hdbscan", "clusters_min_size": default_min_cluster_size(n),
                "clusters_k": default_k(n)}
    if found is not None and st.session_state.get("clusters_synced") != found.id:
        hdbscan = found.params["method"] == "hdbscan"
        controls |= {"clusters_method": found.params["method"], "clusters_min_size" if hdbscan else "clusters_k":
                     found.params["min_cluster_size" if hdbscan else "k"]}
        st.session_state.update(controls, clusters_synced=found.id)
    for key, value in controls.items():
        st.session_state.setdefault(key, value)
    for key in ("clusters_min_size", "clusters_k"):  # within this corpus's bounds
        st.session_state[key] = min(max(2, int(st.session_state[key])), max(2, n))
    method_col, size_col, button_col = st.columns([2, 2, 1], vertical_alignment="bottom")
    method = method_col.radio("Clustering", ["hdbscan", "kmeans"], horizontal=True, key="clusters_method",
                              format_func={"hdbscan": "density (HDBSCAN)", "kmeans": "k-means"}.get,
                              help="HDBSCAN finds clusters of any number and leaves notes that fit none as noise; "
                                   "k-means splits every note into k groups.")
    if method == "hdbscan":
        size = size_col.number_input("Minimum cluster size", 2, max(2, n), key="clusters_min_size",
                                     help="default: about 1 % of the notes")
        opts = ClusterOptions(encoder=encoder, method=method, min_cluster_size=int(size))
    else:
        k = size_col.number_input("Number of clusters", 2, max(2, n), key="clusters_k",
                                  help="default: √(notes / 2), at most 50")
        opts = ClusterOptions(encoder=encoder, method=method, k=int(k))
    chosen = {"method": method, "k": opts.k, "min_cluster_size": opts.min_cluster_size}
    job_key = ("cluster", str(store.path), info.id, info.data_hash, encoder, opts)
    button_col.button("Compute clusters", key="clusters_compute", disabled=steps.running(job_key), on_click=steps.start,
                      args=(job_key, opts, lambda progress: cluster_corpus(store, corpus, opts, progress)))
    computed = steps.follow(job_key, f"Clusters with {_setting(chosen)}", "clusters_cancel")
    if computed is not None:
        st.success(f"{computed['n_clusters']} clusters and {computed['noise']:,} noise notes "
                   f"({computed['seconds']:.1f} s).")
        st.session_state.update({shown_key: computed["clustering"], "clusters_synced": computed["clustering"]})
        found = _stored(store, corpus, encoder, shown_key)
    if found is None:
        st.caption("No clusters yet for this corpus and encoder (the map starts the default ones by itself): "
                   "choose a method and press **Compute clusters**.")
        return None
    st.caption(f"Showing clustering {found.id} ({found.params['method']}, {_setting(found.params)}, seed "
               f"{found.params['seed']}); `notespace cluster` with the same settings reuses it.")
    if _setting(chosen) != _setting(found.params):
        st.info(f"The map and this table show the clusters found with {_setting(found.params)}; press "
                f"**Compute clusters** to find them with {_setting(chosen)}.", icon=":material/info:")
    ords = frame["ord"].to_numpy(dtype=np.int64)
    texts = store.texts(info, sorted({o for ex in found.examples.values() for o in ex}))
    text_of = dict(zip(texts["ord"].tolist(), texts["text"].tolist()))
    return ClusterView(found.id, found.labels[ords], ords, cluster_names(found.terms), found.terms,
                       {c: [text_of[o] for o in ex if o in text_of] for c, ex in found.examples.items()}, found.params)


def default_clustering(store: Store, corpus: str, encoder: str, shown: Callable[[], ClusterView | None]
                       ) -> tuple[ClusterView | None, background.Job | None]:
    """The clustering `shown()` finds, and the job of the default one (HDBSCAN, default size) while it
    runs or after it failed. Where `shown()` finds none, the default clustering starts in the
    background, once per server for the corpus as it is now and the encoder: should its clustering
    go missing (deleted, say), it is not computed again on every rerun."""
    info = store.corpus(corpus)
    key = ("cluster", str(store.path), info.id, info.data_hash, encoder)
    # looked at before the store, so a job that stores its clustering in between is still waited for
    before = background.get(key)
    finished = before is not None and before.done and not before.error
    view = shown()
    if view is not None or finished:
        return view, None
    opts = ClusterOptions(encoder=encoder)
    return None, before or background.start(key, opts, lambda progress: cluster_corpus(store, corpus, opts, progress),
                                             once=True)


def cluster_labels(frame_with_xy: pd.DataFrame, labels, names: dict[int, str], max_labels: int = 60,
                   max_chars: int = 26) -> list[dict]:
    """The names of the `max_labels` largest clusters at their median x, y, largest first, as the
    map draws them ({x, y, text, size}; the map places them without overlap, so zooming in shows more).

    Medians, not means: a few stray members must not drag a label into empty space. Noise gets no
    label (its points are spread everywhere). The text is plain: the map draws it on a canvas.
    """
    labels = np.asarray(labels)
    ids, sizes = np.unique(labels[labels >= 0], return_counts=True)
    out = []
    order = np.argsort(-sizes, kind="stable")[:max_labels]
    for c, size in zip(ids[order], sizes[order]):
        rows = labels == c
        name = " ".join(names.get(int(c), str(c)).split())
        short = name if len(name) <= max_chars else name[:max_chars - 1].rstrip() + "…"
        out.append({"x": float(np.median(frame_with_xy["x"].to_numpy()[rows])),
                    "y": float(np.median(frame_with_xy["y"].to_numpy()[rows])), "text": short, "size": int(size)})
    return out


def _summary_table(view: ClusterView, meta: pd.DataFrame, kinds: dict[str, str]) -> pd.DataFrame:
    """One row per cluster: name, size, share, terms, and per column its most common value with that value's
    share in the cluster and lift against all notes shown (categorical) or its median (numbers, dates)."""
    summary = cluster_summary(view.labels, meta, view.terms, kinds=kinds)
    table = pd.DataFrame({"cluster": [view.names.get(c, str(c)) for c in summary["cluster"]],
                          "notes": summary["size"], "share": summary["share"],
                          "terms": [", ".join(t) for t in summary["terms"]]})
    for column, kind in kinds.items():
        if kind == "categorical" and f"{column}_top" in summary:
            table[column] = [f"{v} ({s:.0%}, ×{lift:.1f} vs all)" if isinstance(v, str) else ""
                             for v, s, lift in zip(summary[f"{column}_top"], summary[f"{column}_share"],
                                                   summary[f"{column}_lift"])]
        elif f"{column}_median" in summary:
            table[f"{column} (median)"] = summary[f"{column}_median"]
    return table


def cluster_table(view: ClusterView, frame: pd.DataFrame, kinds: dict[str, str]) -> None:
    """Per cluster: size, label terms, top metadata values against the corpus, central notes, and a
    button that selects the cluster on the map (pages/components/state.py)."""
    kinds = {c: k for c, k in kinds.items() if c in frame.columns}
    meta = frame[list(kinds)]
    st.dataframe(_summary_table(view, meta, kinds), hide_index=True, width="stretch",
                 column_config={"share": st.column_config.ProgressColumn("share", format="percent", min_value=0,
                                                                         max_value=1)})
    ids = sorted(np.unique(view.labels).tolist(), key=lambda c: (c < 0, c))
    pick, button = st.columns([4, 1], vertical_alignment="bottom")
    cluster = pick.selectbox("Look at a cluster", ids, format_func=lambda c: view.names.get(c, str(c)),
                             key="clusters_focus")
    members = view.members(cluster)
    button.button(f"Select its {len(members):,} notes", key="clusters_select", on_click=state.select, args=(members,),
                  help="select this cluster on the map")
    mask = view.labels == cluster
    if kinds:
        st.caption("How this cluster differs from all notes shown (lift > 1: more common in the cluster).")
        show_differences(mask, meta, kinds, "cluster")
    st.caption("Most central notes (closest to the cluster's centre in the embedding space):")
    for text in view.examples.get(cluster, []):
        with st.container(border=True):
            st.text(text if len(text) <= EXAMPLE_CHARS else text[:EXAMPLE_CHARS] + "…")
