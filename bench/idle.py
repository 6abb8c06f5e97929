"""Idle benchmark: what the served app costs while a browser tab sits open on Explore and nobody acts.

    python bench/idle.py                    # tiny random encoder, drug-reviews demo corpus (979 notes)
    python bench/idle.py --encoder minilm   # the packaged MiniLM instead (embeds the corpus once)

Serves the app with `notespace app`'s own command (bench/serving.py: file watching and run-on-save off) on
a store of its own, with the corpus embedded, mapped (UMAP) and clustered beforehand so that Explore
has no background work to do. A headless chromium tab opens Explore and waits until the map is drawn;
then the CPU time of the server's whole process tree (user + system, /proc via psutil) is read over
--seconds. Goal: under 2 % of one core. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from bench.serving import served_app  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def prepare(home: Path, encoder: str) -> tuple[dict, str]:
    """A store with the demo corpus embedded, mapped and clustered; the server's environment; the encoder's label."""
    env = {"NOTESPACE_DB": str(home / "store.duckdb"), "NOTESPACE_MODELS": str(home / "models")}
    os.environ.update(env)
    from core.clusters import cluster_corpus
    from core.corpus import ingest_frame
    from core.encoders import list_encoders
    from core.maps import project_corpus
    from core.options import ClusterOptions, ProjectOptions
    from core.store import Store
    from sample_data.demo import DEMOS

    if encoder == "tiny":
        from tests.conftest import build_tiny_encoder

        build_tiny_encoder(home / "tiny-build")
        shutil.copytree(home / "tiny-build", home / "models" / "tiny")
        (home / "models" / "tiny" / "notespace_card.json").write_text(json.dumps({"objective": "bench"}))
    store = Store(env["NOTESPACE_DB"])
    loader, text, id_col, meta = DEMOS["drug-reviews"]
    ingest_frame(store, loader(), "drug-reviews", text, id_col, meta)
    project_corpus(store, "drug-reviews", ProjectOptions(encoder=encoder))
    cluster_corpus(store, "drug-reviews", ClusterOptions(encoder=encoder))
    label = next(f"{e.id} ({e.kind}, {e.dim}-d)" for e in list_encoders(store) if e.id == encoder)
    return env, label


def tree_cpu_seconds(root: psutil.Process) -> float:
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="tiny", help="'tiny' (a tiny random BERT) or an encoder id, e.g. minilm")
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="notespace-bench-idle-"))
    try:
        env, label = prepare(home, args.encoder)
        with served_app(env) as (url, server):
            result = measure(url, label, psutil.Process(server.pid), args.seconds)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    print(json.dumps({"encoder": args.encoder, "corpus": "drug-reviews", **result}))


def measure(url: str, label: str, server: psutil.Process, seconds: float) -> dict:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(300_000)
        idle = '[data-testid="stApp"][data-test-script-state="notRunning"]'
        page.goto(url)
        page.wait_for_selector(idle)
        page.get_by_test_id("stSidebarNav").get_by_text("Explore", exact=True).click()
        page.wait_for_timeout(300)
        page.wait_for_selector(idle)
        page.get_by_test_id("stSelectbox").filter(has_text="Encoder").click()
        page.get_by_role("option", name=label).click()
        page.wait_for_timeout(300)
        page.wait_for_selector(idle)
        page.frame_locator('iframe[src*="notespace_map"]').first.locator("#map[data-drawn]").wait_for()  # drawn
        page.wait_for_timeout(5_000)  # the UMAP warm-up thread and the first draw settle
        before, load_before, t = tree_cpu_seconds(server), os.getloadavg()[0], time.monotonic()
        time.sleep(seconds)
        used, wall = tree_cpu_seconds(server) - before, time.monotonic() - t
        open_tab = page.get_by_test_id("stSidebarNav").is_visible()
        browser.close()
    return {"seconds": round(wall, 1), "server_cpu_s": round(used, 3), "percent_of_one_core": round(100 * used / wall, 2),
            "tab_still_open": open_tab, "processes": 1 + len(server.children(recursive=True)),
            "machine": {"cores": os.cpu_count(), "loadavg_1min_before": round(load_before, 2),
                        "loadavg_1min_after": round(os.getloadavg()[0], 2)}}


if __name__ == "__main__":
    main()
