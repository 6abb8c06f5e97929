"""Warm start: a new UMAP setting re-lays out the last layout of the same notes instead of starting over.

    python bench/warm.py [--n 10000] [--repeats 3]

On the synthetic store of bench/million.py (built once, bench/out/million-N.duckdb), the default UMAP
map is drawn first (cold: the kNN graph and a full layout); then each repeat asks for a minimum
distance not drawn yet and times maps.project_corpus, the app's own path: loading the vectors, the
layout from the last one (projection.WARM_EPOCHS epochs on the kept kNN graph) and storing the map.
A change of neighbours (15 -> 10, still within the kept graph) is timed once more. Goal: <= 1 s at 10k.
Prints one JSON line: n, cold_s, warm_s (median), warm_runs, neighbours_s, warm (every timed map
records the layout it started from), load_average, machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.million import ENCODER, OUT, corpus_name, log, machine  # noqa: E402
from core import maps  # noqa: E402
from core.options import ProjectOptions  # noqa: E402
from core.store import Store, StoreError  # noqa: E402


def timed_map(store: Store, name: str, opts: ProjectOptions) -> tuple[float, dict]:
    started = time.perf_counter()
    result = maps.project_corpus(store, name, opts)
    seconds = time.perf_counter() - started
    assert not result["cached"], "a map already in the store was timed; delete bench/out/million-N.duckdb"
    return seconds, maps._run(store, result["projection"])["params"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    db = OUT / f"million-{args.n}.duckdb"
    try:
        Store(db).corpus(corpus_name(args.n))
    except StoreError:
        log(f"building the synthetic store of {args.n:,} notes (once)")
        subprocess.run([sys.executable, str(OUT.parent / "million.py"), "--build", "--n", str(args.n)], check=True)
    store = Store(db)
    with store.transaction() as con:  # every map computed now, none found from an earlier run (layouts: in memory)
        con.execute("DELETE FROM projections WHERE run_id IN (SELECT id FROM runs WHERE kind = 'projection')")
        con.execute("DELETE FROM runs WHERE kind = 'projection'")
    name, before = corpus_name(args.n), os.getloadavg()
    base = ProjectOptions(encoder=ENCODER)
    cold_s, _ = timed_map(store, name, base)
    log(f"cold {cold_s:.2f} s")
    warm = []
    for min_dist in (0.05, 0.2, 0.3, 0.4, 0.5)[:args.repeats]:
        seconds, params = timed_map(store, name, base.replace(min_dist=min_dist))
        warm.append((seconds, "init" in params))
        log(f"min. distance {min_dist}: {seconds:.2f} s (from the last layout: {'init' in params})")
    neighbours_s, params = timed_map(store, name, base.replace(n_neighbors=10))
    log(f"neighbours 10: {neighbours_s:.2f} s (from the last layout: {'init' in params})")
    print(json.dumps({
        "n": args.n, "cold_s": round(cold_s, 2), "warm_s": round(float(np.median([s for s, _ in warm])), 3),
        "warm_runs": [round(s, 3) for s, _ in warm], "neighbours_s": round(neighbours_s, 3),
        "warm": all(w for _, w in warm) and "init" in params,
        "load_average": {"before": [round(v, 2) for v in before], "after": [round(v, 2) for v in os.getloadavg()]},
        "machine": machine(),
    }))


if __name__ == "__main__":
    main()
