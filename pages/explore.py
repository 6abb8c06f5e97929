"""Explore: the map of a corpus, coloured by any metadata; select, search, read, cluster, label,
compare, export.

Its session state (what is selected, read, searched, filtered) is defined once, in
pages/components/state.py, with the functions that change it.

The page lays out its containers top to bottom first and fills them in the order the data needs
(clusters and labels before the colour picker, filters before the map), so panels drawn below
the map can still shape it.
"""

import os

import numpy as np
import streamlit as st

from core.encoders import list_encoders
from core.labels import label_series, label_sets
from core.options import ProjectOptions
from core.palette import DEFAULT_TOP, PALETTE
from core.search import search as find_like, wants_index
from core.space import EmbeddingSpace
from pages.common import corpus_picker, encoder_picker, store
from pages.components import loaders, state
from pages.components.clusters import cluster_labels, cluster_panel, cluster_table, default_clustering
from pages.components.compare import OVERLAP, compare_view, describe
from pages.components.facets import active_filters, facet_mask, metadata_charts
from pages.components.filters import filter_mask
from pages.components.labelling import labelling_panel
from core.clusters import column_kind
from pages.components.map import COLOUR_KEY, colour_palettes, draw_map
from pages.components.selection import hover_preview, note_reader, search_results, selection_panel

MAX_POINTS = int(os.environ.get("NOTESPACE_MAP_MAX_POINTS", "1000000"))
state.start()
state.keep_settings({
    "explore_method": "umap", "explore_view": "Map", "explore_size": 4, "explore_opacity": 0.75,
    "explore_max_points": MAX_POINTS, "explore_k": 20, "explore_top_colours": DEFAULT_TOP,
    "explore_cluster_labels": True, "explore_n_neighbors": ProjectOptions.n_neighbors,
    "explore_min_dist": ProjectOptions.min_dist, "explore_seed": ProjectOptions.seed,
})

st.title("Explore")
top = st.columns([2, 2, 1.3, 1.3])
with top[0]:
    corpus_name = corpus_picker()
if not corpus_name:
    st.stop()
if st.session_state.get("explore_corpus") != corpus_name:  # ords and columns belong to a corpus: start afresh
    for key in [k for k in st.session_state if str(k).startswith(("explore_filter_", "facet_filter::"))]:
        del st.session_state[key]
    for key in ("explore_chart_columns", COLOUR_KEY):
        st.session_state.pop(key, None)
    state.reset()
    st.session_state["explore_corpus"] = corpus_name
with top[1]:
    encoder = encoder_picker()
method = top[2].radio("Map", ["umap", "pca"], format_func=str.upper, horizontal=True, key="explore_method",
                      help="UMAP keeps neighbourhoods (trustworthiness ~0.94 against PCA's ~0.74); PCA is linear "
                           "and instant, and stands in while a UMAP map is computed.")
view = top[3].radio("View", ["Map", "Compare"], horizontal=True, key="explore_view",
                    help="Compare: two encoders side by side, aligned, with linked selection")
corpus = store().corpus(corpus_name)
db = str(store().path)

controls = st.columns([1.2, 1.2, 4], vertical_alignment="bottom")
with controls[1].popover("Display", icon=":material/tune:", width="stretch"):
    point_size = st.slider("Point size", 1, 15, key="explore_size")
    opacity = st.slider("Opacity", 0.1, 1.0, step=0.05, key="explore_opacity")
    max_points = st.number_input("Most points drawn", 100, 2_000_000, step=10_000, key="explore_max_points",
                                 help="Above this a random sample is drawn (and said so); selections, search and "
                                      "downloads still cover every note.")
    k_results = st.slider("Search results", 5, 100, step=5, key="explore_k")
    top_colours = st.number_input("Colours", 1, len(PALETTE), key="explore_top_colours",
                                  help="How many of a column's most common values get a colour of their own; the "
                                       f"rest share grey as 'other'. Beyond {len(PALETTE)}, colours look alike.")
    show_labels = st.toggle("Cluster labels", key="explore_cluster_labels",
                            help="The names of the largest clusters at their centres, whatever colours the map "
                                 "(as many as fit without overlapping: zoom in for more)")
    st.markdown("**UMAP settings**")
    n_neighbors = st.slider("Neighbours", 5, 100, key="explore_n_neighbors",
                            help="Small: local detail; large: global structure")
    min_dist = st.slider("Minimum distance", 0.0, 0.99, step=0.05, key="explore_min_dist")
    seed = st.number_input("Seed", -1, 2**31 - 1, key="explore_seed",
                           help="Same seed, same map; -1 is faster (multi-threaded) but not reproducible")
opts = ProjectOptions(encoder=encoder, method=method, n_neighbors=n_neighbors, min_dist=min_dist, seed=int(seed))
shown_map = loaders.current_map(corpus_name, opts)
if shown_map is None:
    loaders.offer_embedding(corpus_name, encoder)
    st.stop()
result, job = shown_map
frame = loaders.map_frame(db, result["projection"])
kinds = dict(corpus.meta)
meta_columns = [c for c in frame.columns if c not in ("ord", "doc_id", "x", "y", "preview")]

# containers, top to bottom
caption_slot, progress_slot = st.container(), st.container()
if view == "Map":  # the charts beside the map; under the two maps when comparing
    map_slot, charts_slot = st.columns([7, 3])
else:
    map_slot, charts_slot = st.container(), st.expander("Metadata charts", expanded=True, icon=":material/bar_chart:")
# lazy tabs: a tab's tables are computed only while it is open (a selection on 50k notes waited ~0.2 s
# for the cluster table behind a closed tab); switching tabs reruns the page
notes_tab, clusters_tab, label_tab, export_tab = st.tabs(
    ["Selection and search", "Clusters", "Label from the map", "Export"], key="explore_tab", on_change="rerun")

# ---- derived colour columns: clusters, labels made on the map, predictions ---------------------

with clusters_tab:
    clusters, cluster_job = default_clustering(store(), corpus_name, encoder,
                                               lambda: cluster_panel(store(), corpus_name, encoder, frame))
    if clusters is not None:
        if clusters_tab.open:
            cluster_table(clusters, frame, kinds)
        frame = frame.assign(cluster=clusters.column().to_numpy())
with label_tab:
    predicted = labelling_panel(store(), corpus_name, encoder, state.selected())
derived = {f"map: {name}": label_series(store(), corpus_name, name) for name in label_sets(store(), corpus_name)}
if predicted is not None:
    derived["predicted"] = predicted
frame = frame.assign(**{name: frame["ord"].map(series).to_numpy(dtype=object) for name, series in derived.items()})
colour_columns = (meta_columns + (["cluster"] if clusters is not None else []) + list(derived)
                  + ([OVERLAP] if view == "Compare" else []))
if st.session_state.get(COLOUR_KEY, "") not in colour_columns:  # first visit, or a column went away
    categorical = [c for c in meta_columns if column_kind(frame[c], kinds) == "categorical"]
    st.session_state[COLOUR_KEY] = (categorical or meta_columns or [None])[0]

# ---- filters: the popover's lists and ranges, and the cross-filter charts ----------------------

with controls[0].popover("Filter", icon=":material/filter_list:", width="stretch"):
    mask = filter_mask(frame, meta_columns, kinds)
with charts_slot:
    chart_columns = st.multiselect("Charts of", meta_columns, default=meta_columns[:3], key="explore_chart_columns")
# the charts' filters shape the map now; the charts are drawn last, so that after a selection its
# table reaches the browser before them (drawing three charts there took ~0.2 s of the round trip)
mask &= facet_mask(frame, active_filters(chart_columns), kinds)
st.session_state[state.FILTER] = None if mask.all() else frame["ord"][mask].tolist()

# ---- search: a typed query, or the neighbours of a note, in the full embedding space -----------
# exact on small corpora; through a cell index on large ones (core/search.py), exact until it is built


def new_query() -> None:
    st.session_state[state.SEARCH_NOTE] = None  # typing a query replaces a note's neighbours


query = controls[2].text_input("Find notes like…", key=state.QUERY, on_change=new_query,
                               placeholder="type a phrase, e.g. shortness of breath on exertion")
search = None
if st.session_state[state.SEARCH_NOTE] is not None or query.strip():
    space = EmbeddingSpace(**result["embedding"])  # the map's space: search reads the vectors it was drawn from
    X = loaders.vectors(db, corpus_name, corpus.data_hash, space)
    index = loaders.search_index(db, corpus_name, corpus.data_hash, space)
    note = st.session_state[state.SEARCH_NOTE]
    if note is not None:
        idx, sims = find_like(X, X[note], k_results, exclude=[note], index=index)
        title = f"Notes like {frame['doc_id'].iloc[note]}"
    else:
        idx, sims = find_like(X, loaders.query_vector(db, space, query.strip()), k_results, index=index)
        title = f"Notes like “{query.strip()}”"
    how = ("approximate, through a cell index" if index is not None
           else "exact (a cell index for faster search is being built)" if wants_index(len(X)) else "exact")
    search = (idx, sims, title, f"{X.shape[1]}-d {space.describe()}", how)
st.session_state[state.HIGHLIGHT] = search[0].tolist() if search else []

# ---- the map: filtered, then sampled above the limit (never silently) ---------------------------

drawn = np.array(mask, dtype=bool)  # per row of the frame (a mask: `isin` of 1M ords took 0.3-0.7 s a run)
if drawn.sum() > max_points:
    rows = np.flatnonzero(drawn)
    keep = np.random.default_rng(0).choice(len(rows), size=int(max_points), replace=False)
    drawn[:] = False
    drawn[rows[np.sort(keep)]] = True
    drawn |= frame["ord"].isin(st.session_state[state.HIGHLIGHT]).to_numpy()
    caption_slot.warning(f"Drawing a random sample of {int(max_points):,} of {mask.sum():,} notes to keep the map "
                         f"responsive (raise 'Most points drawn' under Display). Search, filters and downloads "
                         f"cover every note.", icon=":material/info:")
shown = frame["ord"].to_numpy()[drawn]
info = (f"{len(shown):,} of {len(frame):,} notes drawn · {describe(result)} "
        + ("(from the store)" if result["cached"] else f"(computed in {result['seconds']:.1f} s)"))
if result["method"] == "umap":
    info += f" · {n_neighbors} neighbours, min. distance {min_dist}, seed {seed}"
caption_slot.caption(info)

# the stored columns' palettes and codes are computed once (a selection reruns the page), the rest each run
sources = {c: (db, "map", result["projection"]) for c in meta_columns}
if clusters is not None:
    sources["cluster"] = (db, "clustering", clusters.clustering_id)
palettes = colour_palettes(frame, colour_columns, kinds, int(top_colours), sources)


def cluster_names(part):
    """The names of the largest clusters at their centres (the map shows those that fit)."""
    return cluster_labels(part, clusters.labels[part.index.to_numpy()], clusters.names)


annotate = cluster_names if show_labels and clusters is not None else None
draw = {"highlight_ords": st.session_state[state.HIGHLIGHT], "selection_key": state.SELECTED,
        "on_selection": state.drop_stale, "selection_revision": st.session_state[state.REVISION],
        "palettes": palettes, "sources": sources, "top": int(top_colours), "kinds": kinds,
        "point_size": point_size, "opacity": opacity,
        "preview": lambda ord_: hover_preview(store(), corpus, frame, ord_)}
with map_slot:
    if view == "Compare":
        pending = compare_view(corpus, opts, result, frame, shown, colour_columns, draw,
                               [e.id for e in list_encoders(store())], annotate)
    else:
        part = frame[drawn]
        draw_map(part, [c for c in colour_columns if c in part], st.session_state[COLOUR_KEY], key="explore_map",
                 labels=annotate(part) if annotate else (), **draw)
        pending = []
with progress_slot:
    pending = loaders.failed(pending + [j for j in (job, cluster_job) if j])
    if pending:
        loaders.wait_for(pending)

# ---- below the map: search results, selection, reader; export -----------------------------------

if notes_tab.open:
    with notes_tab:
        reading = st.session_state[state.READ]
        tables, reader = st.columns([3, 2]) if reading is not None else (st.container(), None)
        with tables:
            if search is not None:
                search_results(frame, *search)
                st.button("Clear search", key="explore_clear_search", icon=":material/close:",
                          on_click=state.clear_search)
            selection_panel(store(), corpus, frame, state.selected())
        if reader is not None:
            with reader:
                note_reader(store(), corpus, frame, reading)

with export_tab:
    buttons = st.container(horizontal=True)
    name = f"{corpus_name}-{encoder}-{result['method']}"
    buttons.download_button("Coordinates + metadata (Parquet)", lambda: loaders.map_parquet(result["projection"]),
                            file_name=f"{name}.parquet", on_click="ignore", icon=":material/table:")

with charts_slot:
    metadata_charts(frame, chart_columns, state.selected() or None, kinds)
