"""Soak: the app server under repeated use for a bounded time. Does its memory grow? Do pages slow down?

    python bench/soak.py                 # 5 minutes against 10,000 synthetic notes (tiny random encoder)
    python bench/soak.py --minutes 1     # a short check
    python bench/soak.py --real          # the packaged all-MiniLM-L6-v2 instead (embedding takes longer once)

Setup (cached in bench/out/soak.duckdb, so reruns skip it): 10,000 synthetic notes, embedded with
the tiny random encoder built from the packaged tokenizer (or with MiniLM under --real), and their
UMAP map stored, so the page opens on the map a user sees first.

Then the script starts the app server itself (`streamlit run app.py`) and, in headless chromium, goes
round until the time is up: a fresh session loads Explore and draws the map ("page load"), colours
it by three columns in turn ("colour change": redrawn in the browser, no rerun), box-selects notes until the
selection table shows ("selection") and clears the selection ("clear selection"), twice, then
closes the session. The server's resident memory (VmRSS in /proc/PID/status) is sampled every
half second. Reports RSS at start (server up, before the first page), after the first round (the
warm baseline: imports, caches and the first map in memory), at the end and the maximum, and the
p50 / p95 seconds per action. Prints a Markdown table with the machine and saves bench/out/soak.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT))
os.environ.setdefault("NOTESPACE_MODELS", str(OUT / "models"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402

from bench.serving import served_app  # noqa: E402

DB = OUT / "soak.duckdb"
NOTES = 10_000
COLOURS = [("site", "north"), ("age", None), ("specialty", "cardiology")]  # a category in its legend; age: a scale
SELECTIONS_PER_ROUND = 2
ACTION_TIMEOUT_MS = 180_000
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = next((int(line.split()[1]) // 1024 for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), 0)
    load = os.getloadavg()[0]
    return (f"{cpu}, {os.cpu_count()} cores, {mem / 1024:.0f} GiB RAM, Python {platform.python_version()}, "
            f"load average {load:.1f} at the start (the CPU is shared), no GPU used")


# ---- setup: corpus, vectors, map (cached) -----------------------------------------------------------


def tiny_encoder() -> str:
    from tests.conftest import registered_tiny_encoder

    return registered_tiny_encoder(Path(os.environ["NOTESPACE_MODELS"]))


def prepare(real: bool) -> tuple[str, str]:
    """The corpus and encoder the soak explores, embedded, mapped (UMAP) and clustered in the store
    (the page would otherwise cluster in the background during the first round)."""
    from core.clusters import cluster_corpus
    from core.corpus import ingest_frame
    from core.embed import embed_corpus
    from core.maps import project_corpus
    from core.options import ClusterOptions, EmbedOptions, ProjectOptions
    from core.store import Store, StoreError
    from sample_data.synthetic import synthetic_notes

    store, name = Store(DB), "soak-10k"
    encoder = "minilm" if real else tiny_encoder()
    try:
        store.corpus(name)
    except StoreError:
        log(f"setup: ingesting {NOTES:,} synthetic notes")
        ingest_frame(store, synthetic_notes(NOTES, seed=0), name, "text", "note_id",
                     ["specialty", "site", "age", "visit_date"])
    started = time.perf_counter()
    result = embed_corpus(store, name, EmbedOptions(encoder=encoder))
    if result["computed"]:
        log(f"setup: embedded {result['computed']:,} notes with {encoder} in {time.perf_counter() - started:.0f} s")
    started = time.perf_counter()
    result = project_corpus(store, name, ProjectOptions(encoder=encoder))
    if not result["cached"]:
        log(f"setup: UMAP map of {NOTES:,} notes in {time.perf_counter() - started:.0f} s")
    cluster_corpus(store, name, ClusterOptions(encoder=encoder))
    return name, encoder


# ---- the server and its memory ------------------------------------------------------------------------


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Sampler(threading.Thread):
    """VmRSS of a process every `every` seconds: [(seconds since start, MB)]."""

    def __init__(self, pid: int, every: float = 0.5):
        super().__init__(daemon=True)
        self.pid, self.every, self.samples = pid, every, []
        self.started, self.stop = time.monotonic(), threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            mb = rss_mb(self.pid)
            if mb is not None:
                self.samples.append((round(time.monotonic() - self.started, 2), round(mb, 1)))
            self.stop.wait(self.every)

    def now(self) -> float:
        return rss_mb(self.pid) or float("nan")


# ---- one user, going round ------------------------------------------------------------------------------


class User:
    def __init__(self, browser, url: str, encoder: str):
        self.browser, self.url, self.encoder = browser, url, encoder
        self.times: dict[str, list[float]] = {}
        self.errors: list[str] = []

    def timed(self, action: str, run) -> None:
        started = time.perf_counter()
        run()
        self.idle()
        self.times.setdefault(action, []).append(time.perf_counter() - started)

    def idle(self) -> None:
        self.page.wait_for_timeout(300)
        self.page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]',
                                    timeout=ACTION_TIMEOUT_MS)

    def check(self) -> None:
        """Errors on the page are counted (and the first few kept), not fatal: a soak goes on."""
        for testid in ("stException", "stAlertContentError"):
            for element in self.page.get_by_test_id(testid).all():
                self.errors.append(element.inner_text()[:300])

    def round(self, n: int) -> None:
        context = self.browser.new_context(viewport={"width": 1400, "height": 1000})
        self.page = page = context.new_page()
        page.set_default_timeout(ACTION_TIMEOUT_MS)
        chart = page.frame_locator('iframe[src*="notespace_map"]').first  # the map component
        try:
            def load() -> None:
                page.goto(self.url)
                page.get_by_test_id("stSidebarNav").get_by_text("Explore", exact=True).click()
                box = page.get_by_test_id("stSelectbox").filter(has_text="Encoder")
                box.wait_for()
                self.idle()
                if self.encoder != "minilm":  # the page opens on the packaged encoder
                    box.click()
                    page.get_by_role("option", name=f"{self.encoder} (").click()
                chart.locator("#legend .entry", has_text="cardiology").wait_for()

            self.timed("page load", load)
            for column, entry in COLOURS:
                def colour(column=column, entry=entry) -> None:  # in the browser: no rerun
                    chart.locator("#colour").select_option(column)
                    chart.locator(f'#map[data-colour="{column}"]').wait_for()
                    shown = chart.locator("#legend .entry", has_text=entry) if entry else chart.locator("#legend .ends")
                    shown.wait_for()

                self.timed("colour change", colour)
            for k in range(SELECTIONS_PER_ROUND):
                self.timed("selection", lambda k=k: self.box_select(chart, (n + k) % 3))
                self.timed("clear selection", lambda: (
                    page.get_by_role("button", name="Clear selection").click(),
                    page.get_by_text("Select notes on the map with its Box").wait_for()))
            self.check()
        except Exception as exc:  # noqa: BLE001 - one failed round is reported, the soak goes on
            self.errors.append(f"round {n}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
            OUT.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(OUT / f"soak-error-{n}.png"), full_page=True)
        finally:
            context.close()

    def box_select(self, chart, variant: int) -> None:
        page = self.page
        chart.locator('button[data-mode="box"]').click()
        page.locator('iframe[src*="notespace_map"]').first.evaluate("e => e.scrollIntoView({block: 'center'})")
        area = chart.locator(".stage").bounding_box()
        x1, y1 = (0.5, 0.6), (0.9 - 0.1 * variant, 0.95 - 0.1 * variant)
        page.mouse.move(area["x"] + 5 + 20 * variant, area["y"] + 5)
        page.mouse.down()
        page.mouse.move(area["x"] + area["width"] * x1[0], area["y"] + area["height"] * x1[1], steps=8)
        page.mouse.move(area["x"] + area["width"] * y1[0], area["y"] + area["height"] * y1[1], steps=8)
        page.mouse.up()
        page.get_by_text("notes selected").wait_for()
        page.get_by_test_id("stDataFrame").filter(visible=True).last.wait_for()  # the Clusters tab holds a hidden one


# ---- the run ----------------------------------------------------------------------------------------------


def percentiles(values: list[float]) -> dict:
    return {"n": len(values), "p50": float(np.percentile(values, 50)), "p95": float(np.percentile(values, 95)),
            "max": float(max(values))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="how long to go round (default 5)")
    parser.add_argument("--real", action="store_true", help="the packaged all-MiniLM-L6-v2, not the tiny encoder")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(chromium):
        raise SystemExit("Debian's chromium is needed (make chromium)")
    report = {"machine": machine(), "minutes": args.minutes, "notes": NOTES}
    corpus, encoder = prepare(args.real)
    report |= {"corpus": corpus, "encoder": encoder}

    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    with served_app({"NOTESPACE_DB": str(DB)}, log=OUT / "soak-server.log") as (url, server):
        sampler = Sampler(server.pid)
        sampler.start()
        rss_start = sampler.now()
        rounds, started = 0, time.monotonic()
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
                user = User(browser, url, encoder)
                rss_warm = None
                while time.monotonic() - started < args.minutes * 60 or rounds == 0:
                    user.round(rounds)
                    rounds += 1
                    if rss_warm is None:
                        rss_warm = sampler.now()
                    log(f"round {rounds}: {time.monotonic() - started:.0f} s, server RSS {sampler.now():.0f} MB, "
                        f"{len(user.errors)} errors")
                browser.close()
            time.sleep(2)  # let the server settle after the last session closed
            rss_end = sampler.now()
        finally:
            sampler.stop.set()

    samples = [mb for _, mb in sampler.samples]
    report |= {
        "rounds": rounds, "seconds": round(time.monotonic() - started, 1), "errors": user.errors[:20],
        "n_errors": len(user.errors),
        "rss_mb": {"start": round(rss_start, 1), "after_first_round": round(rss_warm, 1), "end": round(rss_end, 1),
                   "max": max(samples), "growth_after_first_round": round(rss_end - rss_warm, 1)},
        "actions": {action: percentiles(values) for action, values in user.times.items()},
        "rss_samples": sampler.samples,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "soak.json").write_text(json.dumps(report, indent=1))

    rss = report["rss_mb"]
    print(f"Soak: {report['seconds']:.0f} s ({args.minutes:g} min asked), {rounds} rounds, {NOTES:,} notes, "
          f"encoder {encoder}, {report['n_errors']} errors\n")
    print(f"Machine: {report['machine']}\n")
    print("| server RSS (MB) | start | after first round | end | max | growth after first round |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| streamlit | {rss['start']:.0f} | {rss['after_first_round']:.0f} | {rss['end']:.0f} | {rss['max']:.0f} "
          f"| {rss['growth_after_first_round']:+.0f} |\n")
    print("| action | count | p50 (s) | p95 (s) | max (s) |")
    print("|---|---:|---:|---:|---:|")
    for action, s in report["actions"].items():
        print(f"| {action} | {s['n']} | {s['p50']:.2f} | {s['p95']:.2f} | {s['max']:.2f} |")
    print(f"\nSaved {OUT / 'soak.json'}")


if __name__ == "__main__":
    main()
