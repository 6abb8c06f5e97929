"""Map benchmark: the Explore map (regl-scatterplot component) against the plotly map it replaced,
in the same run, taking turns repeat by repeat, in headless Debian chromium (software WebGL, no GPU).

    python bench/map.py --sizes 10000,50000 [--repeats 3]  # one JSON line per size and renderer: medians

The plotly map is today's app at the commit before the component (PLOTLY_COMMIT), unpacked with
`git archive` into bench/out and served on its own port from the same store: no plotly code is
kept in the app. Per size, a synthetic corpus is embedded with a tiny random encoder (the page does
not care where vectors come from); above EMBED_UP_TO notes (embedding 1M notes here takes hours) the
corpus and its vectors are SYNTHESISED as bench/million.py makes them (384-d, written through the
store's own write path, nothing embedded; each line says which in `vectors`). Each corpus gets a PCA
map, the default UMAP map and clusters (so no page computes a map or clusters while timed), all
cached in bench/out/map.duckdb. A renderer with no map after GIVE_UP_S gets an `error` line instead.
Per renderer:
- draw_s: from clicking Explore in the sidebar (the map of the last choice) to every point drawn;
- colour_s: from choosing another colour column (`site`; `cluster` for synthesised corpora, which have
  one metadata column) to the map drawn in it (plotly: a page rerun);
- hover_s: from the pointer coming to rest on a note to its preview text shown (plotly sends every
  note's preview with the figure; the map fetches the one note's after the pointer rests 0.25 s);
- select_s: from releasing a box around the whole map to the table of selected notes shown;
- bytes_per_point: bytes the browser received (websocket frames and HTTP bodies) while drawing, / n;
- colour_bytes, hover_bytes, select_bytes: bytes it received during each of those interactions.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT))
os.environ.setdefault("NOTESPACE_MODELS", str(OUT / "models"))
PLOTLY_COMMIT = "dbfa335"  # main before the map component: its Explore map is plotly's Scattergl
EMBED_UP_TO = 200_000  # larger corpora get synthesised vectors
DB = OUT / "map.duckdb"
VIEWPORT = {"width": 1440, "height": 900}
GIVE_UP_S = {"regl": 600, "plotly": 180}  # plotly's map of 1M notes had not appeared after minutes

import numpy as np  # noqa: E402

from bench import million  # noqa: E402
from bench.serving import served_app  # noqa: E402


MAP_IFRAME = 'iframe[src*="notespace_map"]'  # the map component's
METRICS = ("draw_s", "colour_s", "hover_s", "select_s", "bytes_per_point", "colour_bytes", "hover_bytes", "select_bytes")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Corpus(NamedTuple):
    name: str
    encoder: str
    recolour: str  # the colour column chosen while timed
    vectors: str


def prepare(sizes: list[int]) -> dict[int, Corpus]:
    """Per size, a corpus with vectors, its PCA and UMAP maps and clusters in DB."""
    from core.clusters import cluster_corpus
    from core.corpus import ingest_frame
    from core.embed import embed_corpus
    from core.maps import project_corpus
    from core.options import ClusterOptions, EmbedOptions, ProjectOptions
    from core.store import Store
    from sample_data.synthetic import synthetic_notes
    from tests.conftest import registered_tiny_encoder

    OUT.mkdir(parents=True, exist_ok=True)
    tiny = registered_tiny_encoder(Path(os.environ["NOTESPACE_MODELS"]))
    store = Store(DB)
    corpora = {}
    for n in sizes:
        if n <= EMBED_UP_TO:
            corpus = Corpus(f"map_{n}", tiny, "site", "embedded (synthetic notes, tiny random encoder)")
            if corpus.name not in [c.name for c in store.corpora()]:
                log(f"  preparing {n:,} notes")
                ingest_frame(store, synthetic_notes(n, seed=0), corpus.name, "text", "note_id",
                             ["specialty", "site", "age", "visit_date"])
            embed_corpus(store, corpus.name, EmbedOptions(encoder=tiny))
        else:
            corpus = Corpus(million.corpus_name(n), million.ENCODER, "cluster", million.VECTORS)
            if corpus.name not in [c.name for c in store.corpora()]:
                log(f"  synthesising {n:,} notes and their vectors")
                million.build(DB, n)
        project_corpus(store, corpus.name, ProjectOptions(encoder=corpus.encoder, method="pca"))
        # Explore opens on the UMAP map (its default) before the run picks PCA: were it not stored,
        # the page would start computing it, and a UMAP of 1M notes would share the CPUs with every
        # figure measured after
        project_corpus(store, corpus.name, ProjectOptions(encoder=corpus.encoder, method="umap"),
                       progress=lambda f, m="": log(f"  umap {f:.0%} {m}"))
        cluster_corpus(store, corpus.name, ClusterOptions(encoder=corpus.encoder),
                       progress=lambda f, m="": log(f"  clusters {f:.0%} {m}"))
        corpora[n] = corpus
    return corpora


def plotly_app() -> Path:
    """Today's plotly Explore: the app at PLOTLY_COMMIT, unpacked once into bench/out."""
    folder = OUT / f"plotly-{PLOTLY_COMMIT}"
    if not (folder / "app.py").exists():
        archive = subprocess.run(["git", "archive", PLOTLY_COMMIT], cwd=ROOT, capture_output=True, check=True).stdout
        tarfile.open(fileobj=io.BytesIO(archive)).extractall(folder)
    return folder


class Received:
    """Bytes the page received: websocket frames and HTTP response bodies."""

    def __init__(self, page):
        self.total = 0
        page.on("websocket", lambda ws: ws.on("framereceived", self._frame))
        page.on("requestfinished", self._request)

    def _frame(self, payload) -> None:
        self.total += len(payload)

    def _request(self, request) -> None:
        sizes = request.sizes()
        self.total += sizes.get("responseBodySize", 0)


def idle(page) -> None:
    page.wait_for_timeout(300)
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]')


def pick(page, label: str, option: str) -> None:
    page.get_by_test_id("stSelectbox").filter(has_text=label).click()
    page.get_by_role("option", name=option).click()
    idle(page)


PLOTLY_POINTS = """n => { const gd = document.querySelector('.js-plotly-plot');
    if (!gd || !gd._fullData) return false;
    return gd._fullData.filter(t => t.type === 'scattergl' && t.name !== 'search results')
                       .reduce((s, t) => s + (t._length || 0), 0) === n; }"""


def measure(browser, url: str, renderer: str, n: int, corpus: Corpus) -> dict:
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(GIVE_UP_S[renderer] * 1000)
    try:  # a page left open (plotly given up on) would go on drawing beside the next figures
        return timed(page, url, renderer, n, corpus)
    finally:
        page.close()


def timed(page, url: str, renderer: str, n: int, corpus: Corpus) -> dict:
    received = Received(page)
    page.goto(url)
    idle(page)
    page.get_by_test_id("stSidebarNav").get_by_text("Explore", exact=True).click()
    idle(page)
    page.get_by_text("PCA", exact=True).click()
    idle(page)
    pick(page, "Corpus", corpus.name)
    pick(page, "Encoder", corpus.encoder)
    page.get_by_test_id("stSidebarNav").get_by_text("Home", exact=True).click()
    idle(page)
    received.total = 0
    started = time.perf_counter()
    page.get_by_test_id("stSidebarNav").get_by_text("Explore", exact=True).click()
    frame = page.frame_locator(MAP_IFRAME).first  # (no plotly map has one)
    if renderer == "plotly":
        page.wait_for_function(PLOTLY_POINTS, arg=n, polling=50)
    else:
        frame.locator("#map[data-drawn]").wait_for()
        frame.locator("#map").evaluate(f"() => new Promise(r => {{ const wait = () => "
                                       f"window.notespaceMap.n === {n} ? r() : setTimeout(wait, 20); wait(); }})")
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    draw_s = time.perf_counter() - started
    bytes_per_point = received.total / n
    idle(page)

    received.total = 0
    started = time.perf_counter()
    if renderer == "plotly":
        pick(page, "Colour by", corpus.recolour)
        if corpus.recolour == "site":  # else the page's rerun (awaited by pick) is all there is to wait for
            page.locator(".js-plotly-plot").first.locator(".legendtext", has_text="north").wait_for()
    else:
        frame.locator("#colour").select_option(corpus.recolour)
        frame.locator(f'#map[data-colour="{corpus.recolour}"]').wait_for()
        page.wait_for_timeout(0)
    colour_s = time.perf_counter() - started
    colour_bytes = received.total
    idle(page)

    hover_s, hover_bytes = hover(page, frame, renderer, received)

    if renderer == "plotly":
        chart = page.locator(".js-plotly-plot").first
        chart.hover()
        chart.locator('.modebar-btn[data-title="Box Select"]').click()
        area = chart.locator(".nsewdrag").first.bounding_box()
    else:
        frame.locator('button[data-mode="box"]').click()
        centre_map(page)
        area = frame.locator(".stage").bounding_box()
    page.mouse.move(area["x"] + 3, area["y"] + 3)
    page.mouse.down()
    page.mouse.move(area["x"] + area["width"] / 2, area["y"] + area["height"] / 2, steps=8)
    page.mouse.move(area["x"] + area["width"] - 3, area["y"] + area["height"] - 3, steps=8)
    received.total = 0
    started = time.perf_counter()
    page.mouse.up()
    page.get_by_text("notes selected").wait_for()
    page.get_by_test_id("stDataFrame").nth(1).wait_for()
    select_s = time.perf_counter() - started
    return {"n": n, "renderer": renderer, "draw_s": round(draw_s, 3), "colour_s": round(colour_s, 3),
            "hover_s": round(hover_s, 3), "select_s": round(select_s, 3), "bytes_per_point": round(bytes_per_point, 1),
            "colour_bytes": colour_bytes, "hover_bytes": hover_bytes, "select_bytes": received.total}


def centre_map(page) -> None:
    page.locator(MAP_IFRAME).first.evaluate("e => e.scrollIntoView({block: 'center'})")


# where plotly draws its first trace's first point, in the page's pixels
PLOTLY_FIRST_POINT = """gd => { const t = gd._fullData.find(t => t.type === 'scattergl' && t._length);
    const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, box = gd.getBoundingClientRect();
    return [box.left + xa._offset + xa.l2p(t.x[0]), box.top + ya._offset + ya.l2p(t.y[0])]; }"""


def hover(page, frame, renderer: str, received: Received) -> tuple[float, int]:
    """Seconds from the pointer resting on a note to its preview text shown, and the bytes received."""
    if renderer == "plotly":
        chart = page.locator(".js-plotly-plot").first
        chart.scroll_into_view_if_needed()
        x, y = chart.evaluate(PLOTLY_FIRST_POINT)
        shown = page.locator(".hoverlayer .hovertext").first
    else:
        centre_map(page)
        canvas = frame.locator("canvas.points").bounding_box()
        sx, sy = frame.locator("#map").evaluate("() => { const S = window.notespaceMap; return S.screenOf(S.ords[0]); }")
        x, y = canvas["x"] + sx, canvas["y"] + sy
        shown = frame.locator("#tooltip .text").filter(has_not_text=re.compile(r"^…$"))  # the preview, not its placeholder
    page.mouse.move(0, 0)  # off the map: no other note's preview on its way while timed
    page.wait_for_timeout(300)
    received.total = 0
    started = time.perf_counter()
    page.mouse.move(x, y, steps=2)
    shown.wait_for()
    hover_s = time.perf_counter() - started
    hover_bytes = received.total
    page.mouse.move(0, 0)  # off the map, so the note's preview does not cover the box drawn next
    idle(page)
    return hover_s, hover_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,50000", help="comma-separated corpus sizes")
    parser.add_argument("--renderers", default="regl,plotly", help="regl (the map component) and/or plotly")
    parser.add_argument("--repeats", type=int, default=3, help="runs per size and renderer; medians are printed")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    renderers = args.renderers.split(",")
    corpora = prepare(sizes)
    from playwright.sync_api import sync_playwright

    apps = {"regl": ROOT, "plotly": plotly_app()}
    with sync_playwright() as p, ExitStack() as servers:
        browser = p.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium", headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        # plotly's figure of a large map is one message: Streamlit's 200 MB default is too small for it
        urls = {renderer: servers.enter_context(served_app({"NOTESPACE_DB": str(DB)}, wait_s=90, root=apps[renderer],
                                                           flags=("--server.maxMessageSize", "2000")))[0]
                for renderer in renderers}
        for n in sizes:
            # the renderers take turns, repeat by repeat: this machine's speed drifts by a third over minutes,
            # and a ratio is only fair between figures measured side by side
            runs, errors = {r: [] for r in renderers}, {}
            for _ in range(args.repeats):
                for renderer in [r for r in renderers if r not in errors]:
                    try:
                        runs[renderer].append(measure(browser, urls[renderer], renderer, n, corpora[n]))
                    except Exception as error:  # plotly past its limits: say so and go on
                        errors[renderer] = str(error).splitlines()[0]
            for renderer in renderers:
                if renderer in errors:
                    print(json.dumps({"n": n, "renderer": renderer, "error": errors[renderer]}), flush=True)
                    continue
                print(json.dumps({"n": n, "renderer": renderer} | {
                    key: float(np.median([run[key] for run in runs[renderer]])) for key in METRICS} | {
                    "runs": [{key: run[key] for key in METRICS} for run in runs[renderer]],
                    "vectors": corpora[n].vectors, "machine": million.machine()}),
                    flush=True)
        browser.close()


if __name__ == "__main__":
    main()
