"""A million notes on one machine: load, first map, UMAP-quality map, clusters, search, memory.

    python bench/million.py                 # 1,000,000 notes
    python bench/million.py --n 100000      # a smaller run first

Prints one JSON line: n, load_s, first_map_s, umap_s, trustworthiness_delta, clusters_s, search_ms,
peak_gb, and what they mean beside them (synthetic vectors, load average, the machine).

The vectors are SYNTHESISED, not embedded (embedding 1M notes on 2 CPU cores would take hours):
384-d, clustered (topics > subtopics > a few latent directions each, plus noise), written through
the store's own write path (corpus ingest, then the vector cache of the packaged MiniLM's settings),
with short synthetic texts made of each topic's words and a metadata column (`specialty`). The
store is built once per size in a child process (bench/out/million-N.duckdb), so the timed
process's peak memory is the pipeline's alone. Each stage then runs the app's own code path:

- load_s: core.embed.load_embeddings (DuckDB -> numpy);
- first_map_s: maps.project_corpus with PCA (load + PCA + storing the coordinates);
- umap_s: maps.project_corpus with UMAP (above projection.SAMPLE_ABOVE notes: UMAP of a sample,
  the rest placed from their nearest sample notes);
- trustworthiness_delta: on a random 100k subset (all notes when fewer), trustworthiness (k=10,
  5,000 notes scored) of a full UMAP of the subset minus that of the subset's points in the stored
  map; positive = the sampled map is that much less faithful;
- clusters_s: clusters.cluster_corpus (HDBSCAN, c-TF-IDF labels);
- search_ms: median of 50 queries on neighbours.CellIndex over all notes, with its recall@10
  against exact search and its build time beside it;
- peak_gb: the process's peak resident memory (ru_maxrss).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT))

from core import maps  # noqa: E402
from core.options import ClusterOptions, EmbedOptions, ProjectOptions  # noqa: E402
from core.store import Store, StoreError  # noqa: E402

ENCODER = "minilm"  # its vector cache (384-d) receives the synthetic vectors
DIM = 384
TOPICS = 40
SUBTOPICS = 6
LATENT = 6
CHUNK = 50_000
VECTORS = "synthetic (clustered 384-d, written through the store's write path; nothing embedded)"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


# ---- the synthetic corpus ----------------------------------------------------------------------


def _words(rng: np.random.Generator, count: int) -> list[str]:
    syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "de", "po", "gu", "fa", "be", "zo", "ti", "ha"]
    out: set[str] = set()
    while len(out) < count:
        out.add("".join(rng.choice(syllables, size=3)))
    return sorted(out)


def synthesise(n: int, seed: int = 0):
    """(frame of note_id, text, specialty; vectors n x 384 float32), chunk by chunk."""
    rng = np.random.default_rng(seed)
    vocab = _words(rng, TOPICS * 8 + TOPICS * SUBTOPICS * 3 + 40)
    topic_words = [vocab[t * 8:(t + 1) * 8] for t in range(TOPICS)]
    base = TOPICS * 8
    sub_words = [vocab[base + s * 3: base + (s + 1) * 3] for s in range(TOPICS * SUBTOPICS)]
    filler = vocab[-40:]
    centres = rng.normal(size=(TOPICS, DIM))
    subs = centres[:, None, :] + 0.6 * rng.normal(size=(TOPICS, SUBTOPICS, DIM))
    bases = rng.normal(size=(TOPICS, LATENT, DIM)) * 0.5
    sizes = rng.dirichlet(np.full(TOPICS, 2.0))  # topics of unequal size
    names = [f"specialty-{t:02d}" for t in range(TOPICS)]
    for start in range(0, n, CHUNK):
        m = min(CHUNK, n - start)
        topic = rng.choice(TOPICS, size=m, p=sizes)
        sub = rng.integers(0, SUBTOPICS, size=m)
        latent = rng.normal(size=(m, LATENT))
        X = subs[topic, sub] + np.einsum("ml,mld->md", latent, bases[topic]) + 0.35 * rng.normal(size=(m, DIM))
        X /= np.linalg.norm(X, axis=1, keepdims=True)
        texts = []
        for i in range(m):
            k = int(rng.integers(6, 14))
            pick = rng.random(k)
            words = [topic_words[topic[i]][j] for j in rng.integers(0, 8, k)]
            words = [sub_words[topic[i] * SUBTOPICS + sub[i]][j % 3] if p < 0.25 else
                     (filler[j % 40] if p > 0.8 else w) for p, w, j in zip(pick, words, rng.integers(0, 120, k))]
            texts.append(f"Note {start + i}: " + " ".join(words) + ".")
        yield (pd.DataFrame({"note_id": [f"n{start + i:07d}" for i in range(m)], "text": texts,
                             "specialty": [names[t] for t in topic]}), X.astype(np.float32))


def build(db: Path, n: int) -> None:
    """Ingest the synthetic notes and write their vectors through the store's own paths (run once)."""
    from core.corpus import ingest_frame
    from core.embed import resolve_space
    from core.encoders import get_encoder
    from core.space import remember, write_vectors

    store = Store(db)
    frames, vectors = [], []
    for frame, X in synthesise(n):
        frames.append(frame)
        vectors.append(X)
        log(f"  synthesised {sum(len(f) for f in frames):,} notes")
    ingest_frame(store, pd.concat(frames, ignore_index=True), corpus_name(n), "text", "note_id", ["specialty"])
    del frames
    log("  ingested")
    corpus = store.corpus(corpus_name(n))
    enc = get_encoder(store, ENCODER)
    space = resolve_space(store, corpus, enc, EmbedOptions(encoder=ENCODER))  # the app's default space
    set_id = space.create_set(store)
    hashes = store.text_hashes(corpus)  # in ord order; texts are unique, so one vector each
    X = np.concatenate(vectors)
    for start in range(0, n, CHUNK):
        write_vectors(store, set_id, DIM, hashes[start:start + CHUNK], X[start:start + CHUNK])
    remember(store, corpus, space)
    log(f"  {n:,} vectors written to {db}")


def corpus_name(n: int) -> str:
    return f"synthetic-{n}"


# ---- the timed stages --------------------------------------------------------------------------


def timed(fn):
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


def run(n: int) -> dict:
    from core import neighbours
    from core.clusters import cluster_corpus
    from core.embed import load_embeddings
    from core.projection import _import_umap, trustworthiness, umap_embed

    db = OUT / f"million-{n}.duckdb"
    store = Store(db)
    name = corpus_name(n)
    with store.transaction() as con:  # time the computation, not a lookup of a map stored by an earlier run
        con.execute("DELETE FROM projections WHERE run_id IN (SELECT id FROM runs WHERE kind = 'projection')")
        con.execute("DELETE FROM cluster_members WHERE run_id IN (SELECT id FROM runs WHERE kind = 'cluster')")
        con.execute("DELETE FROM cluster_labels WHERE run_id IN (SELECT id FROM runs WHERE kind = 'cluster')")
        con.execute("DELETE FROM runs WHERE kind IN ('projection', 'cluster')")
    load_before = os.getloadavg()
    _import_umap()  # as the app's warm-up does while the user looks around: not part of any stage
    X, load_s = timed(lambda: load_embeddings(store, name, EmbedOptions(encoder=ENCODER), compute_missing=False))
    log(f"load {load_s:.1f} s")
    del X
    pca_map, first_map_s = timed(lambda: maps.project_corpus(store, name,
                                                             ProjectOptions(encoder=ENCODER, method="pca")))
    log(f"first map (PCA) {first_map_s:.1f} s (cached: {pca_map['cached']})")
    umap_map, umap_s = timed(lambda: maps.project_corpus(store, name, ProjectOptions(encoder=ENCODER),
                                                         progress=lambda f, m="": log(f"  umap {f:.0%} {m}")))
    log(f"UMAP map {umap_s:.1f} s (cached: {umap_map['cached']})")
    clustering, clusters_s = timed(lambda: cluster_corpus(store, name, ClusterOptions(encoder=ENCODER),
                                                          progress=lambda f, m="": log(f"  clusters {f:.0%} {m}")))
    log(f"clusters {clusters_s:.1f} s: {clustering['n_clusters']} clusters")

    X = load_embeddings(store, name, EmbedOptions(encoder=ENCODER), compute_missing=False)
    index, index_s = timed(partial(neighbours.CellIndex, X))  # not a lambda: pyflakes reads its X (deleted below) as undefined
    rng = np.random.default_rng(1)
    queries = X[rng.choice(n, 50, replace=False)] + 0.01 * rng.normal(size=(50, DIM)).astype(np.float32)
    times, hits = [], 0
    for q in queries:
        (idx, _), seconds = timed(partial(index.search, q, 10))
        times.append(seconds)
        hits += len(np.intersect1d(idx, neighbours.nearest(X, q, 10)[0]))
    search_ms = 1000 * float(np.median(times))
    log(f"search {search_ms:.1f} ms (recall@10 {hits / 500:.3f}; index built in {index_s:.1f} s)")
    del index

    subset = np.sort(rng.choice(n, size=min(n, 100_000), replace=False))
    Xs = X[subset]
    del X
    xy = maps.load_projection(store, umap_map["projection"])[["x", "y"]].to_numpy()[subset]
    full_xy, full_s = timed(lambda: umap_embed(Xs, 2, seed=ProjectOptions.seed))
    log(f"full UMAP of the {len(subset):,}-note subset (reference) {full_s:.0f} s")
    tw_full = trustworthiness(Xs, full_xy, n_neighbors=10, sample=5000)
    tw_ours = trustworthiness(Xs, xy, n_neighbors=10, sample=5000)
    return {
        "n": n, "load_s": round(load_s, 2), "first_map_s": round(first_map_s, 2), "umap_s": round(umap_s, 1),
        "trustworthiness_delta": round(tw_full - tw_ours, 4), "clusters_s": round(clusters_s, 1),
        "search_ms": round(search_ms, 1),
        "peak_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "trustworthiness": {"full_umap": round(tw_full, 4), "sampled_placed": round(tw_ours, 4),
                            "subset": len(subset), "full_umap_s": round(full_s, 1)},
        "map": {k: umap_map.get(k) for k in ("projection", "method", "n")},
        "clusters": clustering["n_clusters"], "search_recall_at_10": hits / 500, "index_s": round(index_s, 1),
        "vectors": VECTORS,
        "load_average": {"before": [round(v, 2) for v in load_before],
                         "after": [round(v, 2) for v in os.getloadavg()]},
        "machine": machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="notes (synthetic)")
    parser.add_argument("--build", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    db = OUT / f"million-{args.n}.duckdb"
    if args.build:
        return build(db, args.n)
    try:
        Store(db).corpus(corpus_name(args.n))
    except StoreError:
        log(f"building the synthetic store of {args.n:,} notes (once)")
        subprocess.run([sys.executable, __file__, "--build", "--n", str(args.n)], check=True)
    print(json.dumps(run(args.n)))


if __name__ == "__main__":
    main()
