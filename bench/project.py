"""Map benchmark: first UMAP in a fresh process vs a warm one, map quality, and the page's draw time.

    python bench/project.py                 # HPO 5,000 and 10,000; browser at 10,000 and 50,000 points
    python bench/project.py --quick         # small sizes, to check the script itself

1. UMAP: a fresh Python process loads a corpus's vectors, then times its first UMAP fit (importing
   umap and loading numba's compiled code included) and a second, warm fit of the same vectors.
   Goal: first <= 1.5x warm (core/projection.py explains how). PCA timed in the same process.
2. Trustworthiness (k = 10, on a 2,000-note sample) of the stored UMAP and PCA maps.
3. In headless chromium against a real app server: from the rerun that asks for a map to every
   point drawn (the map component, pages/components/map.py), at 10k HPO notes (packaged MiniLM) and 50k synthetic notes (a tiny
   random encoder embeds 50k notes in seconds; the page does not care where vectors come from).

Corpora, vectors and maps are cached in bench/out/project.duckdb, so reruns skip the embedding.
Prints a Markdown table with the machine and saves bench/out/project.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT))
os.environ.setdefault("NOTESPACE_MODELS", str(OUT / "models"))

import numpy as np  # noqa: E402

from bench.serving import served_app  # noqa: E402
from core import maps  # noqa: E402
from core.clusters import cluster_corpus  # noqa: E402
from core.corpus import ingest_frame  # noqa: E402
from core.embed import embed_corpus, load_embeddings  # noqa: E402
from core.options import ClusterOptions, EmbedOptions, ProjectOptions  # noqa: E402
from core.store import Store, StoreError  # noqa: E402

DB = OUT / "project.duckdb"


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, no GPU used (maps run on the CPU)"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def corpus(store: Store, name: str, build, encoder: str) -> str:
    """Ingest (once) and embed (cached) a corpus."""
    try:
        store.corpus(name)
    except StoreError:
        frame, text, id_col, meta = build()
        ingest_frame(store, frame, name, text, id_col, meta)
    started = time.perf_counter()
    result = embed_corpus(store, name, EmbedOptions(encoder=encoder),
                          progress=lambda f, m="": log(f"  {name}: {m}") if f >= 1 or int(f * 100) % 25 == 0 else None)
    if result["computed"]:
        log(f"  {name}: embedded {result['computed']:,} notes in {time.perf_counter() - started:.0f} s")
    return name


def hpo_sample(n: int):
    from sample_data.demo import hpo

    frame = hpo()
    frame = frame.sample(n=min(n, len(frame)), random_state=0) if n < len(frame) else frame
    return frame.reset_index(drop=True), "definition", "hpo_id", ["organ_system", "term"]


def synthetic(n: int):
    from sample_data.synthetic import synthetic_notes

    return synthetic_notes(n, seed=0), "text", "note_id", ["specialty", "site", "age", "visit_date"]


def tiny_encoder() -> str:
    from tests.conftest import registered_tiny_encoder

    return registered_tiny_encoder(Path(os.environ["NOTESPACE_MODELS"]))


# ---- 1. fresh process vs warm -------------------------------------------------------------------


def child(corpus_name: str, encoder: str) -> None:
    """Run in a fresh process: time the first and a second UMAP fit, and PCA (JSON on stdout)."""
    from core.projection import _import_umap, numba_cache_dir, pca, umap_embed

    X = load_embeddings(Store(DB), corpus_name, EmbedOptions(encoder=encoder), compute_missing=False)
    started = time.perf_counter()
    _import_umap()  # timed apart: the fixed cost of importing umap (sklearn, pynndescent) in a new process
    times = [time.perf_counter() - started]
    for _ in range(2):
        started = time.perf_counter()
        umap_embed(X, seed=ProjectOptions.seed)
        times.append(time.perf_counter() - started)
    started = time.perf_counter()
    pca(X)
    print(json.dumps({"import": times[0], "first_fit": times[1], "warm": times[2], "first": times[0] + times[1],
                      "pca": time.perf_counter() - started,
                      "numba_cache": str(numba_cache_dir())}))


def fresh_vs_warm(corpus_name: str, encoder: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", corpus_name, encoder], capture_output=True, text=True,
                         env=os.environ | {"PYTHONWARNINGS": "ignore"}, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def quality(store: Store, corpus_name: str, encoder: str) -> dict:
    from core.projection import trustworthiness

    X = load_embeddings(store, corpus_name, EmbedOptions(encoder=encoder), compute_missing=False)
    scores = {}
    for method in ("umap", "pca"):
        result = maps.project_corpus(store, corpus_name, ProjectOptions(encoder=encoder, method=method))
        xy = maps.load_projection(store, result["projection"])[["x", "y"]].to_numpy()
        scores[method] = trustworthiness(X, xy, n_neighbors=10, sample=2000)
    return scores


# ---- 3. the page in a browser ---------------------------------------------------------------------


def draw_times(targets: list[tuple[str, str, int]], repeats: int) -> list[dict]:
    """Seconds from choosing a map (corpus, encoder) to all of its points drawn, in chromium."""
    from playwright.sync_api import sync_playwright

    with served_app({"NOTESPACE_DB": str(DB)}) as (url, _), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium", headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        rows = []
        for corpus_name, encoder, n in targets:
            seconds = [_draw_once(browser, url, corpus_name, encoder, n) for _ in range(repeats)]
            rows.append({"corpus": corpus_name, "encoder": encoder, "points": n, "seconds": seconds})
            log(f"  drawn {n:,} points in {min(seconds):.2f}-{max(seconds):.2f} s")
        browser.close()
    return rows


def _draw_once(browser, url: str, corpus_name: str, encoder: str, n: int) -> float:
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.set_default_timeout(300_000)

    def idle() -> None:
        page.wait_for_timeout(300)
        page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]')

    def pick(label: str, option: str) -> bool:
        box = page.get_by_test_id("stSelectbox").filter(has_text=label)
        if box.get_by_text(option, exact=False).count():
            return False
        box.click()
        page.get_by_role("option", name=option).click()
        return True

    page.goto(url)
    idle()
    page.get_by_test_id("stSidebarNav").get_by_text("Explore", exact=True).click()
    idle()
    pick("Encoder", encoder)  # the last choice below starts the timed rerun
    idle()
    before = _shown_points(page)
    started = time.perf_counter()
    if not pick("Corpus", corpus_name):
        page.get_by_text("PCA", exact=True).click()  # already shown: time a redraw from PCA back to UMAP
        idle()
        before = _shown_points(page)
        started = time.perf_counter()
        page.get_by_text("UMAP", exact=True).click()
    _wait_drawn(page, n, before)
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    seconds = time.perf_counter() - started
    page.close()
    return seconds


def _map_frame(page):
    return next((f for f in page.frames if "notespace_map" in f.url), None)


def _shown_points(page) -> str | None:
    """The URL of the points the map draws now (None before the first map)."""
    frame = _map_frame(page)
    return frame.evaluate("() => window.notespaceMap && window.notespaceMap.pointsUrl") if frame else None


# the map's frame has loaded points other than `before`, n of them, and drawn them
_DRAWN = """async ([n, before]) => { const m = window.notespaceMap;
    if (!m || !m.loading || m.loading.url === before) return false;
    await m.loading.done;
    return m.pointsUrl === m.loading.url && m.n === n; }"""


def _wait_drawn(page, n: int, before: str | None) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        frame = _map_frame(page)
        try:
            if frame and frame.evaluate(_DRAWN, [n, before]):
                return
        except Exception:  # noqa: BLE001 - a frame replaced by a rerun: look again
            pass
        page.wait_for_timeout(20)
    raise SystemExit(f"{n:,} points were not drawn within 300 s")


def map_bytes(store: Store, corpus_name: str, encoder: str) -> float:
    """Bytes per point the map's first draw fetches: its points file and one colour column's codes."""
    from pages.components.map import column_codes, point_bytes

    result = maps.project_corpus(store, corpus_name, ProjectOptions(encoder=encoder))
    frame = maps.map_frame(store, result["projection"])
    meta = [c for c in frame.columns if c not in maps.RESERVED]
    return (len(point_bytes(frame)) + len(column_codes(frame, meta[0])[0].tobytes())) / len(frame)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 10000], help="HPO notes for UMAP timings")
    parser.add_argument("--browser", type=int, nargs="+", default=[10000, 50000], help="points drawn in chromium")
    parser.add_argument("--repeats", type=int, default=3, help="browser draws per size")
    parser.add_argument("--quick", action="store_true", help="small sizes: check the script, not the machine")
    parser.add_argument("--child", nargs=2, metavar=("CORPUS", "ENCODER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)
    if args.quick:
        args.sizes, args.browser, args.repeats = [500, 1000], [1000, 2000], 1
    OUT.mkdir(parents=True, exist_ok=True)
    store = Store(DB)
    report = {"machine": machine(), "umap": [], "browser": []}

    for n in args.sizes:
        name = corpus(store, f"hpo-{n}", lambda n=n: hpo_sample(n), "minilm")
        log(f"UMAP of {n:,} HPO notes: fresh process, then warm")
        timing = fresh_vs_warm(name, "minilm")
        report["umap"].append({"n": n, **timing, "ratio": timing["first"] / timing["warm"],
                               "trustworthiness": quality(store, name, "minilm")})

    targets = []
    for n in args.browser:
        if n <= 10_700:  # HPO holds about 10.6k definitions
            name, encoder = corpus(store, f"hpo-{n}", lambda n=n: hpo_sample(n), "minilm"), "minilm"
        else:
            encoder = tiny_encoder()
            name = corpus(store, f"synthetic-{n}", lambda n=n: synthetic(n), encoder)
        log(f"UMAP map and clusters of {name} for the browser (stored once)")
        maps.project_corpus(store, name, ProjectOptions(encoder=encoder))
        cluster_corpus(store, name, ClusterOptions(encoder=encoder))  # else the page clusters while timed
        targets.append((name, encoder, n))
    for (name, encoder, n), row in zip(targets, draw_times(targets, args.repeats)):
        report["browser"].append(row | {"median": float(np.median(row["seconds"])),
                                        "bytes_per_point": map_bytes(store, name, encoder)})

    (OUT / "project.json").write_text(json.dumps(report, indent=2))
    print(f"Machine: {report['machine']}\n")
    print("| HPO notes | fresh process: import umap + first fit (s) | warm fit (s) | first / warm | PCA (s) "
          "| trustworthiness UMAP | trustworthiness PCA |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in report["umap"]:
        tw = r["trustworthiness"]
        print(f"| {r['n']:,} | {r['import']:.2f} + {r['first_fit']:.2f} = {r['first']:.2f} | {r['warm']:.2f} "
              f"| {r['ratio']:.2f}x | {r['pca']:.3f} | {tw['umap']:.3f} | {tw['pca']:.3f} |")
    print("\n| points | corpus (encoder) | choose map -> all points drawn, median (min-max) s | map bytes / point |")
    print("|---:|---|---:|---:|")
    for r in report["browser"]:
        print(f"| {r['points']:,} | {r['corpus']} ({r['encoder']}) | {r['median']:.2f} "
              f"({min(r['seconds']):.2f}-{max(r['seconds']):.2f}) | {r['bytes_per_point']:.0f} |")
    print(f"\nGoal: first UMAP in a fresh process within 1.5x of a warm one. Saved {OUT / 'project.json'}")


if __name__ == "__main__":
    main()
