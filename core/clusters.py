"""Clusters of notes: density clusters (HDBSCAN) or KMeans, labelled with distinctive terms.

- HDBSCAN runs on a 5-D UMAP reduction (cosine) of the full embedding, not on the 2-D map (which
  distorts densities) nor on 384-D vectors (where density estimates degrade). Noise stays -1: the
  UI shows it as its own group, so notes that fit nowhere are never hidden.
- Above projection.SAMPLE_ABOVE notes HDBSCAN clusters a sample (as maps do), and every other note
  joins the cluster most common among its 10 nearest sample notes; the run's params say "sample".
- KMeans runs on the full, L2-normalised space (spherical-like, matching cosine geometry).
- Cluster ids are renumbered by size (0 = largest), so colours and tables are stable and readable.
- Labels are class-based TF-IDF (as in BERTopic): a term scores high when it is frequent in the
  cluster and rare across clusters.
- In the store, a clustering is one "cluster" run with its members and labels (one transaction), found
  again by a cache key over the resolved parameters, the data hash and the encoder fingerprint.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

from core.encoders import get_encoder
from core.errors import UserError
from core.geometry import unit_rows
from core.neighbours import neighbours_in_sample
from core.options import ClusterOptions
from core.space import EmbeddingSpace, remembered
from core.stages import Computed, Stage, cache_key, stored_or_computed
from core.store import Corpus, Store, StoreError, arrow

# Words every clinical note uses: they would top every cluster's label and say nothing.
CLINICAL_STOP_WORDS = frozenset("""
patient patients pt pts reports reported denies denied history hx noted today mg ml mcg daily bid
tid qid prn po dose doses yesterday tomorrow week weeks day days month months year years old
reviewed review plan follow followup seen see discussed advised continue continued currently
current presents presented presenting states stated complains complaint noting normal well also
per dr mr mrs ms clinic visit appointment please thank thanks
""".split())
STOP_WORDS = frozenset(ENGLISH_STOP_WORDS) | CLINICAL_STOP_WORDS
# Tokens of >= 3 characters that are not pure numbers ("5mg" stays, "2024" goes).
TOKEN_PATTERN = r"(?u)\b(?!\d+\b)\w{3,}\b"

REDUCE_DIMS = 5  # the dimension HDBSCAN sees; BERTopic's default, and HDBSCAN is fast there
MAX_DEFAULT_K = 50  # more KMeans clusters than this are unreadable in a legend


def default_min_cluster_size(n: int) -> int:
    """About 1 % of the notes, at least 5 (so small corpora still get clusters), at most 1000."""
    return int(min(1000, max(5, round(n / 100))))


def default_k(n: int) -> int:
    """sqrt(n/2) clusters, between 2 and MAX_DEFAULT_K (and never more than n)."""
    return int(min(n, max(2, min(MAX_DEFAULT_K, round(math.sqrt(n / 2))))))


def _by_size(labels: np.ndarray) -> np.ndarray:
    """Renumber clusters 0..m-1 by decreasing size (ties by old id); -1 stays -1."""
    ids, counts = np.unique(labels[labels >= 0], return_counts=True)
    order = ids[np.lexsort((ids, -counts))]
    remap = np.full(labels.max() + 2 if len(labels) else 1, -1, dtype=np.int64)
    remap[order] = np.arange(len(order))
    return np.where(labels >= 0, remap[np.maximum(labels, 0)], -1)


def cluster_embeddings(X, opts: ClusterOptions | None = None) -> np.ndarray:
    """One label per row of X (int64, -1 = noise), clusters numbered by decreasing size."""
    opts = opts or ClusterOptions()
    X = np.ascontiguousarray(X, dtype=np.float32)
    n = len(X)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if opts.method == "kmeans":
        from sklearn.cluster import KMeans

        k = opts.k or default_k(n)
        if k > n:
            raise UserError(f"cannot make {k} clusters of {n} notes")
        km = KMeans(n_clusters=k, n_init=3, random_state=opts.seed)
        return _by_size(km.fit_predict(unit_rows(X)).astype(np.int64))
    if opts.method != "hdbscan":
        raise UserError(f"unknown clustering method {opts.method!r} (hdbscan or kmeans)")
    from sklearn.cluster import HDBSCAN

    from core.projection import SAMPLE_ABOVE, SAMPLE_SIZE, sample_rows, umap_embed

    mcs = opts.min_cluster_size or default_min_cluster_size(n)
    if n < 2 * mcs:  # not even two clusters possible: everything is one group
        return np.zeros(n, dtype=np.int64)
    if n > SAMPLE_ABOVE:  # as for maps (projection.py): cluster a sample, the rest join their neighbours'
        rows = sample_rows(n, SAMPLE_SIZE, opts.seed)
        sample_opts = opts.replace(min_cluster_size=max(5, round(mcs * len(rows) / n)))
        return _by_size(_join_neighbours(X, rows, cluster_embeddings(X[rows], sample_opts), opts.seed))
    # min_dist=0 packs clusters tightly, which is what density clustering wants (not for viewing);
    # 200 epochs (UMAP's own choice above 10k notes) gave the same clusters as 500 in half the time.
    Z = umap_embed(X, REDUCE_DIMS, n_neighbors=15, min_dist=0.0, metric="cosine", seed=opts.seed, n_epochs=200)
    # min_samples below min_cluster_size: HDBSCAN's default (= min_cluster_size) calls a large
    # share of notes noise once min_cluster_size scales with the corpus.
    hdb = HDBSCAN(min_cluster_size=mcs, min_samples=min(mcs, 10), copy=False)
    return _by_size(hdb.fit_predict(Z).astype(np.int64))


def _sampled(method: str, n: int) -> dict:
    """What a clustering records beyond its options: the sample HDBSCAN saw, for large corpora."""
    from core.projection import SAMPLE_ABOVE, SAMPLE_SIZE

    return {"sample": SAMPLE_SIZE} if method == "hdbscan" and n > SAMPLE_ABOVE else {}


def _join_neighbours(X, rows, sample_labels, seed: int, k: int = 10) -> np.ndarray:
    """Labels of all rows of X: the sample rows keep theirs, every other row takes the most common
    label among its k nearest sample rows (noise included; a tie goes to the nearest one's)."""
    labels = np.empty(len(X), dtype=np.int64)
    labels[rows] = sample_labels
    shifted = np.asarray(sample_labels) + 1  # noise -1 -> column 0
    width = int(shifted.max(initial=0)) + 1
    for part, idx, _ in neighbours_in_sample(X, rows, k, max(seed, 0)):
        m = len(part)
        votes = np.bincount((np.arange(m)[:, None] * width + shifted[idx]).ravel(),
                            minlength=m * width).reshape(m, width).astype(np.float32)
        votes[np.arange(m), shifted[idx[:, 0]]] += 0.5
        labels[part] = votes.argmax(axis=1) - 1
    return labels


def label_clusters(texts, labels, top_n: int = 5) -> dict[int, list[str]]:
    """The `top_n` most distinctive terms (unigrams and bigrams) of each cluster, by c-TF-IDF.

    All the notes of a cluster form one document; tf = term count / words in the cluster,
    idf = log(1 + mean words per cluster / term count over all clusters). Noise (-1) is labelled
    too, as the UI shows it as a group.
    """
    texts = pd.Series(texts).fillna("").astype(str).to_numpy(dtype=object)
    labels = np.asarray(labels)
    ids = np.unique(labels)
    if len(texts) == 0:
        return {}
    vec = CountVectorizer(ngram_range=(1, 2), stop_words=sorted(STOP_WORDS), token_pattern=TOKEN_PATTERN,
                          min_df=2 if len(texts) >= 200 else 1, max_features=100_000)
    try:
        counts = vec.fit_transform(texts)
    except ValueError:  # nothing but stop words and numbers
        return {int(c): [] for c in ids}
    # Sum the rows of each cluster: one "class document" per cluster.
    member = sparse.csr_matrix((np.ones(len(labels)), (np.searchsorted(ids, labels), np.arange(len(labels)))),
                               shape=(len(ids), len(labels)))
    tf = (member @ counts).toarray().astype(np.float64)
    words = tf.sum(axis=1, keepdims=True)
    idf = np.log1p(words.mean() / np.maximum(tf.sum(axis=0), 1))
    scores = tf / np.maximum(words, 1) * idf
    vocab = vec.get_feature_names_out()
    out: dict[int, list[str]] = {}
    for row, c in enumerate(ids):
        chosen: list[str] = []
        seen: set[str] = set()
        for j in np.argsort(-scores[row], kind="stable"):
            if len(chosen) == top_n or scores[row, j] <= 0:
                break
            tokens = set(vocab[j].split())
            if tokens <= seen:  # "chest" after "chest pain" adds nothing
                continue
            chosen.append(str(vocab[j]))
            seen |= tokens
        out[int(c)] = chosen
    return out


def central_examples(X, labels, n: int = 3) -> dict[int, list[int]]:
    """Row indices of the `n` notes closest (cosine) to each cluster's centroid, closest first."""
    U = unit_rows(X)
    labels = np.asarray(labels)
    out: dict[int, list[int]] = {}
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        centroid = U[rows].mean(axis=0)
        sims = U[rows] @ (centroid / max(np.linalg.norm(centroid), 1e-12))
        out[int(c)] = rows[np.argsort(-sims, kind="stable")[:n]].tolist()
    return out


def column_kind(series: pd.Series, kinds: dict[str, str] | None = None) -> str:
    """"categorical", "numeric" or "date": the store's kind when known, else from the dtype."""
    if kinds and series.name in kinds:
        return kinds[series.name]
    if pd.api.types.is_bool_dtype(series):
        return "categorical"
    if pd.api.types.is_numeric_dtype(series):
        return "numeric"
    if pd.api.types.is_datetime64_any_dtype(series):
        return "date"
    return "categorical"


def compare_to_corpus(mask, metadata: pd.DataFrame, kinds: dict[str, str] | None = None,
                      top_n: int | None = 10) -> pd.DataFrame:
    """How a selection of notes differs from the whole corpus, column by column.

    `mask`: boolean array (or row positions) over metadata's rows. `kinds`: column -> "categorical"
    | "numeric" | "date" (the store's corpus.meta), else guessed from dtypes. Categorical columns
    give one row per value (the `top_n` most common in the selection; missing values count as
    "(missing)"): count and share in the selection, share overall, lift = the ratio of the two.
    Numeric and date columns give one row with mean and median in the selection and overall.
    Near-unique columns (ids, free text) are skipped.
    """
    mask = np.asarray(mask)
    if mask.dtype != bool:
        positions, mask = mask, np.zeros(len(metadata), dtype=bool)
        mask[positions] = True
    n, n_sel = len(metadata), int(mask.sum())
    rows = []
    for col in metadata.columns:
        s = metadata[col]
        kind = (kinds or {}).get(col) or column_kind(s)
        if kind == "categorical":  # counted over integer codes: at 1M notes, object values took ~0.5 s a column
            codes, uniques = pd.factorize(s)  # values in order of first appearance; missing is -1
            values = uniques.tolist() + ["(missing)"]
            codes = np.where(codes < 0, len(uniques), codes)
            overall = np.bincount(codes, minlength=len(values))
            present = np.flatnonzero(overall)
            if n >= 20 and len(present) > 0.5 * n:
                continue
            inside = np.bincount(codes[mask], minlength=len(values))
            by_overall = present[np.argsort(-overall[present], kind="stable")]  # ties: first seen first
            order = by_overall[np.argsort(-inside[by_overall], kind="stable")]
            for i in order[:top_n] if top_n else order:
                share_in = inside[i] / n_sel if n_sel else float("nan")
                share_all = overall[i] / n
                rows.append({"column": col, "kind": kind, "value": values[i], "count_in_selection": int(inside[i]),
                             "share_in_selection": share_in, "share_overall": share_all,
                             "lift": share_in / share_all})
        else:
            values = pd.to_datetime(s, errors="coerce") if kind == "date" else pd.to_numeric(s, errors="coerce")
            sel = values[mask]
            rows.append({"column": col, "kind": kind, "value": None, "count_in_selection": int(sel.notna().sum()),
                         "mean_in_selection": sel.mean(), "mean_overall": values.mean(),
                         "median_in_selection": sel.median(), "median_overall": values.median()})
    columns = ["column", "kind", "value", "count_in_selection", "share_in_selection", "share_overall", "lift",
               "mean_in_selection", "mean_overall", "median_in_selection", "median_overall"]
    return pd.DataFrame(rows, columns=columns)


def cluster_summary(labels, metadata: pd.DataFrame, terms: dict[int, list[str]] | None = None,
                    examples: dict[int, list[int]] | None = None, kinds: dict[str, str] | None = None
                    ) -> pd.DataFrame:
    """One row per cluster (noise included, last): size, share, label terms, central examples, and
    per metadata column the cluster's most common value with its share in the cluster, its share
    overall and the lift (categorical), or the cluster's median (numeric, date)."""
    labels = np.asarray(labels)
    ids = sorted(np.unique(labels).tolist(), key=lambda c: (c < 0, c))
    out = []
    for c in ids:
        mask = labels == c
        row = {"cluster": int(c), "noise": c < 0, "size": int(mask.sum()), "share": float(mask.mean()),
               "terms": list((terms or {}).get(c, [])), "examples": list((examples or {}).get(c, []))}
        cmp = compare_to_corpus(mask, metadata, kinds, top_n=1)
        for rec in cmp.itertuples(index=False):
            if rec.kind == "categorical":
                row[f"{rec.column}_top"] = rec.value
                row[f"{rec.column}_share"] = rec.share_in_selection
                row[f"{rec.column}_overall"] = rec.share_overall
                row[f"{rec.column}_lift"] = rec.lift
            else:
                row[f"{rec.column}_median"] = rec.median_in_selection
        out.append(row)
    return pd.DataFrame(out)


# ---------------------------------------------------------------- on a corpus in the store
CACHE_VERSION = 1  # bump when the algorithm changes, so stored clusterings are not reused


@dataclass(frozen=True)
class ClusteringResult:
    id: int
    corpus_id: int
    encoder_id: str
    labels: np.ndarray  # cluster per document, in ord order (-1 = noise)
    terms: dict[int, list[str]]
    examples: dict[int, list[int]]  # ords of the most central notes, closest first
    params: dict


def cluster_names(terms: dict[int, list[str]], n_terms: int = 3) -> dict[int, str]:
    """Readable names from the first terms, each word once ("3: chest palpitations angina"); noise is "noise"."""
    words = {int(c): dict.fromkeys(w for term in t[:n_terms] for w in term.split()) for c, t in terms.items()}
    return {c: "noise" if c < 0 else " ".join([f"{c}:", *w]).rstrip(":") for c, w in words.items()}


def _stage(corpus: Corpus, space: EmbeddingSpace, enc, opts: ClusterOptions) -> Stage:
    """A clustering of the corpus in this embedding space: its params, inputs and cache key."""
    params = _resolved(opts, corpus.n_docs) | {"encoder": enc.id, "version": CACHE_VERSION}
    inputs = {"corpus_id": corpus.id, "data_hash": corpus.data_hash, "embedding": space.cache_params(enc)}
    key = cache_key([params, inputs])
    return Stage("cluster", key, corpus.id, enc.id, params, inputs)


def _resolved(opts: ClusterOptions, n: int) -> dict:
    """Parameters with the size defaults filled in: the same effective settings share one cache entry."""
    if opts.min_cluster_size < 0 or opts.k < 0:
        raise UserError("--min-cluster-size and --k must be >= 0 (0 = scaled to the corpus size)")
    if opts.method == "kmeans":
        return {"method": "kmeans", "k": opts.k or default_k(n), "seed": opts.seed}
    if opts.method != "hdbscan":
        raise UserError(f"unknown clustering method {opts.method!r} (hdbscan or kmeans)")
    if opts.min_cluster_size == 1:  # HDBSCAN's own minimum
        raise UserError("--min-cluster-size must be at least 2")
    mcs = opts.min_cluster_size or default_min_cluster_size(n)
    return {"method": "hdbscan", "min_cluster_size": mcs, "seed": opts.seed}


def cluster_corpus(store: Store, corpus_name: str, opts: ClusterOptions = ClusterOptions(),
                   progress: Callable[[float, str], None] | None = None) -> dict:
    """The `cluster` verb: {"clustering", "n_clusters", "noise", "labels": {cluster: [terms]}, "seconds",
    "embedding"}, in the corpus's embedding space (core/space.py). A clustering already in the store is
    returned at once (seconds = this call's time)."""
    from core.embed import corpus_space

    started = time.perf_counter()
    report = progress or (lambda fraction, message="": None)
    corpus = store.corpus(corpus_name)
    enc = get_encoder(store, opts.encoder)
    encoder_id = enc.id
    _resolved(opts, corpus.n_docs)  # bad options fail before any embedding
    space = remembered(store, corpus, encoder_id)
    hit = stored_or_computed(store, _stage(corpus, space, enc, opts), None) if space else None
    if hit:
        report(1.0, f"clustering {hit.id} found in the store")
        return ({"clustering": hit.id} | hit.result
                | {"seconds": round(time.perf_counter() - started, 4), "embedding": space.public()})

    space = corpus_space(store, corpus.name, encoder_id, progress=lambda f, m="": report(0.3 * f, m))
    stage = _stage(corpus, space, enc, opts)
    params = stage.params

    def cluster() -> Computed:
        X = space.load(store, corpus)
        report(0.3, f"clustering {len(X):,} notes ({params['method']})")
        sizes = {k: v for k, v in params.items() if k in ("k", "min_cluster_size")}
        labels = cluster_embeddings(X, opts.replace(**sizes))
        report(0.8, "labelling clusters")
        docs = store.texts(corpus)
        ords = docs["ord"].to_numpy(dtype=np.int64)
        terms = label_clusters(docs["text"], labels)
        examples = {c: ords[rows].tolist() for c, rows in central_examples(X, labels).items()}
        result = {"n_clusters": int(labels.max(initial=-1) + 1), "noise": int((labels < 0).sum()),
                  "labels": {str(c): t for c, t in terms.items()}}
        return Computed(result, _sampled(params["method"], len(X)),
                        partial(_write_members, store, ords=ords, labels=labels, terms=terms, examples=examples))

    run = stored_or_computed(store, stage, cluster, started)
    report(1.0, f"{run.result['n_clusters']} clusters, {run.result['noise']:,} noise notes")
    return ({"clustering": run.id} | run.result
            | {"seconds": round(time.perf_counter() - started, 4), "embedding": space.public()})


def _write_members(store: Store, con, run_id: int, ords: np.ndarray, labels: np.ndarray,
                   terms: dict[int, list[str]], examples: dict[int, list[int]]) -> None:
    """A clustering's members and labels, written in its run's transaction."""
    with store.python_data():
        con.register("new_members", pd.DataFrame({"ord": ords, "cluster": labels}))
        con.execute("INSERT INTO cluster_members SELECT ?, ord, cluster FROM new_members", [run_id])
        con.unregister("new_members")
    con.executemany("INSERT INTO cluster_labels VALUES (?, ?, ?, ?, ?)",
                    [[run_id, int(c), int(size), json.dumps(terms.get(int(c), [])), json.dumps(examples[int(c)])]
                     for c, size in zip(*np.unique(labels, return_counts=True))])


def load_clustering(store: Store, clustering_id: int) -> ClusteringResult:
    """A stored clustering: labels per document (ord order), terms, central examples, parameters."""
    with store.connect() as con:
        run = con.execute("SELECT corpus_id, encoder_id, params FROM runs WHERE id = ? AND kind = 'cluster'",
                          [int(clustering_id)]).fetchall()
        if not run:
            raise StoreError(f"no clustering with id {clustering_id}; run `notespace cluster` first")
        members = arrow(con, "SELECT cluster FROM cluster_members WHERE run_id = ? ORDER BY ord", [int(clustering_id)])
        rows = con.execute("SELECT cluster, terms, examples FROM cluster_labels WHERE run_id = ? ORDER BY cluster",
                           [int(clustering_id)]).fetchall()
    run = run[0]
    return ClusteringResult(int(clustering_id), run[0], run[1], members.column("cluster").to_numpy().astype(np.int64),
                            {int(c): json.loads(t) for c, t, _ in rows}, {int(c): json.loads(e) for c, _, e in rows},
                            json.loads(run[2]))


def latest_clustering(store: Store, corpus_name: str, encoder_id: str) -> ClusteringResult | None:
    """The newest clustering of the corpus as it is now, with the encoder's current vectors (else None)."""
    corpus = store.corpus(corpus_name)
    enc = get_encoder(store, encoder_id)
    space = remembered(store, corpus, enc.id)
    if space is None:
        return None
    encoder_id, embedding = enc.id, space.cache_params(enc)
    for run in store.runs(kind="cluster", corpus_id=corpus.id):
        inputs = run["inputs"] or {}
        if (run["encoder_id"] == encoder_id and inputs.get("data_hash") == corpus.data_hash
                and inputs.get("embedding") == embedding):
            return load_clustering(store, run["id"])
    return None

