"""Several users at once on one store: three browser sessions explore and select on the Explore page
while a background training job writes its progress and a command-line embed writes vectors.

Nobody holds the DuckDB file (docs/architecture.md): every process opens short connections that
retry while another holds the lock. This test puts four processes on one file at the same time
(the app server with three sessions, the training worker, the CLI, and this test polling the job)
and checks that nobody sees a lock error, no write is lost, and the pages stay responsive.

Timings are recorded, never asserted (times belong to bench/): they are written to
test-artifacts/concurrency.json and shown with `pytest -s`. The only limits are timeouts that
stop a hung wait (5 minutes per interaction, 10 for the whole concurrent phase).
"""

from __future__ import annotations

import asyncio
import json
import re
import os
import subprocess
import sys
import threading
import time

import pytest

from core import jobs
from core.clusters import cluster_corpus
from core.corpus import ingest_frame
from core.encoders import list_encoders
from core.maps import embedded, project_corpus
from core.options import ClusterOptions, PretrainOptions, ProjectOptions
from core.store import Store
from sample_data.synthetic import synthetic_notes
from tests.conftest import wait_for
from tests.e2e.conftest import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, MAP_IFRAME, ROOT

pytestmark = pytest.mark.robustness  # make test-robustness (docs/testing.md)

SESSIONS = 3
HUNG_INTERACTION_S = 300.0  # timeouts for a hung wait, not speed limits
HUNG_TOTAL_S = 600.0
CLI_NOTES = 5000  # three chunks of 2,048: three separate write transactions while the pages read
TRAIN = dict(objective="mlm", name="concurrent-mlm", base="tiny", steps=400, batch_size=8, max_length=64, lr=3e-3)
LOCK_WORDS = ("Could not set lock", "IO Error", "database is locked", "Conflicting lock")


@pytest.fixture(scope="module")
def app_env(app_env):
    """The served app, the worker and the CLI with one torch thread each: the cores are shared."""
    return app_env | {"OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def corpora(app_env):
    """'clinic' embedded with the tiny encoder, its PCA map and default clusters stored (what the browsers
    explore: no background clustering reruns their pages mid-drag); 'intake' ingested only (what the
    command line embeds meanwhile)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NOTESPACE_MODELS", app_env["NOTESPACE_MODELS"])
        store = Store(app_env["NOTESPACE_DB"])
        ingest_frame(store, synthetic_notes(300, seed=3), "clinic", "text", "note_id", ["specialty", "site", "age"])
        project_corpus(store, "clinic", ProjectOptions(encoder="tiny", method="pca"))
        cluster_corpus(store, "clinic", ClusterOptions(encoder="tiny"))
        ingest_frame(store, synthetic_notes(CLI_NOTES, seed=11), "intake", "text", "note_id", ["specialty", "site"])
    return store


# ---- one browser session ---------------------------------------------------------------------------


async def _idle(page) -> None:
    await page.wait_for_timeout(300)
    await page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]',
                                 timeout=HUNG_INTERACTION_S * 1000)


async def _problems(page) -> list[str]:
    """Exceptions and st.error boxes on the page, and any lock message anywhere in it."""
    found = [await e.inner_text() for e in await page.get_by_test_id("stException").all()]
    found += [await e.inner_text() for e in await page.get_by_test_id("stAlertContentError").all()]
    body = await page.locator("body").inner_text()
    return found + [w for w in LOCK_WORDS if w in body]


async def _session(browser, url: str, n: int, timings: list[dict]) -> dict:
    """Open Explore, pick the tiny encoder's PCA map, colour by site, box-select: each step timed."""
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    page.set_default_timeout(HUNG_INTERACTION_S * 1000)
    seen: dict = {"session": n, "problems": []}

    async def step(name: str, action, done) -> None:
        started = time.monotonic()
        await action()
        await done()
        await _idle(page)
        timings.append({"session": n, "action": name, "seconds": round(time.monotonic() - started, 2)})
        seen["problems"] += [f"{name}: {p[:600]}" for p in await _problems(page) if not _known(p, seen)]

    try:
        nav = page.get_by_test_id("stSidebarNav")
        await step("load the app", lambda: page.goto(url), lambda: nav.wait_for())
        method = page.get_by_test_id("stRadio").filter(has_text="UMAP")  # the "Map" radio: UMAP or PCA
        await step("open Explore", lambda: nav.get_by_text("Explore", exact=True).click(), lambda: method.wait_for())
        await step("choose PCA", lambda: method.get_by_text("PCA", exact=True).click(), _noop)

        async def pick_encoder() -> None:
            await page.get_by_test_id("stSelectbox").filter(has_text="Encoder").click()
            await page.get_by_role("option", name="tiny (adapted, 32-d)").click()

        chart = page.frame_locator(MAP_IFRAME).first  # the map component (pages/components/map.py)

        async def drawn() -> None:  # the PCA map stored beforehand, drawn with its legend
            await page.get_by_text(re.compile(r"PCA of tiny \(.+\) \(from the store\)")).wait_for()
            await chart.locator("#legend .entry", has_text="cardiology").wait_for()

        await step("draw the map", pick_encoder, drawn)

        async def colour_by_site() -> None:  # in the browser: no rerun
            await chart.locator("#colour").select_option("site")

        north = chart.locator("#legend .entry", has_text="north")
        await step("colour by site", colour_by_site, lambda: north.wait_for())

        async def box_select() -> None:
            await chart.locator('button[data-mode="box"]').click()
            await page.locator(MAP_IFRAME).first.evaluate("e => e.scrollIntoView({block: 'center'})")
            area = await chart.locator(".stage").bounding_box()
            # each session drags a different box, so the three selections differ
            x0, y0 = area["x"] + 5 + n * 10, area["y"] + 5
            await page.mouse.move(x0, y0)
            await page.mouse.down()
            await page.mouse.move(area["x"] + area["width"] * 0.5, area["y"] + area["height"] * 0.6, steps=8)
            await page.mouse.move(area["x"] + area["width"] * (0.9 - 0.05 * n), area["y"] + area["height"] * 0.95,
                                  steps=8)
            await page.mouse.up()

        await step("box-select notes", box_select, lambda: page.get_by_text("notes selected").wait_for())
        # the comparison and the selected notes (other tabs hold hidden tables): wait for both
        await page.get_by_test_id("stDataFrame").filter(visible=True).nth(1).wait_for()
        seen["selected"] = await page.get_by_text("notes selected").inner_text()
        seen["tables"] = await page.get_by_test_id("stDataFrame").filter(visible=True).count()
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / f"concurrency-session-{n}.png"), full_page=True)
        seen["problems"] += [f"at the end: {p[:600]}" for p in await _problems(page) if not _known(p, seen)]
        await context.close()
    return seen


def _known(problem: str, seen: dict) -> bool:
    return any(problem[:600] in p for p in seen["problems"])


async def _noop() -> None:
    pass


async def _browse(url: str, start_background, timings: list[dict]) -> list:
    """Warm the server with one plain load of Home (its one-time imports are not what is measured),
    start the background writers, then run the three sessions at the same time."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            warm = await browser.new_page()
            await warm.goto(url)
            await warm.get_by_test_id("stSidebarNav").wait_for(timeout=120_000)
            await _idle(warm)
            await warm.close()
            await asyncio.to_thread(start_background)
            # each session in its own context (its own cookies and websocket: its own Streamlit session)
            return await asyncio.gather(*(_session(browser, url, n, timings) for n in range(SESSIONS)),
                                        return_exceptions=True)
        finally:
            await browser.close()


# ---- the test ------------------------------------------------------------------------------------------


class Background:
    """The training job and the CLI embed, and when each of them ended (seconds from the start)."""

    def __init__(self, store: Store, env: dict):
        self.store, self.env = store, env
        self.started = self.job_id = self.cli = None
        self.ended: dict[str, float] = {}
        self.states: list[str] = []
        self._stop = threading.Event()

    def start(self) -> None:
        self.started = time.monotonic()
        self.job_id = jobs.submit_pretrain(self.store, "clinic", PretrainOptions(**TRAIN))  # a detached worker
        self.cli = subprocess.Popen([sys.executable, "-m", "core.cli", "embed", "--corpus", "intake", "--encoder",
                                     "tiny"], cwd=ROOT, env=os.environ | self.env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
        # the browsers start once the worker trains (it writes its progress into the store every ~2 s)
        wait_for(lambda: jobs.job(self.store, self.job_id)["state"] != "queued", timeout=90, every=0.2)
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:  # this test process is one more reader of the store while all that runs
        while not self._stop.is_set() and len(self.ended) < 2:
            if "cli" not in self.ended and self.cli.poll() is not None:
                self.ended["cli"] = self.elapsed()
            state = jobs.job(self.store, self.job_id)["state"]
            if not self.states or self.states[-1] != state:
                self.states.append(state)
            if "job" not in self.ended and state in ("done", "failed", "cancelled"):
                self.ended["job"] = self.elapsed()
            time.sleep(0.5)

    def elapsed(self) -> float:
        return round(time.monotonic() - self.started, 1)

    def finish(self, timeout: float) -> tuple[str, str, dict]:
        out, err = self.cli.communicate(timeout=timeout)
        final = wait_for(lambda: (j := jobs.job(self.store, self.job_id))["state"] in ("done", "failed", "cancelled")
                         and j, timeout=timeout, every=0.2)
        self._stop.set()
        return out, err, final


@pytest.mark.filterwarnings("ignore:precomputed_knn")
def test_three_users_a_training_job_and_the_cli_share_one_store(corpora, app_env, app_url, monkeypatch):
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (make test installs it when run as root)")
    for key, value in app_env.items():  # the worker started by submit_pretrain inherits these
        monkeypatch.setenv(key, value)
    store = corpora
    background = Background(store, app_env)

    timings: list[dict] = []
    sessions = asyncio.run(_browse(app_url, background.start, timings))
    browsing_s = background.elapsed()
    out, err, final = background.finish(timeout=max(10.0, HUNG_TOTAL_S - browsing_s))
    total_s = background.elapsed()

    report = {"sessions": SESSIONS, "total_s": total_s, "browsers_done_s": browsing_s,
              "cli_done_s": background.ended.get("cli"), "job_done_s": background.ended.get("job"),
              "job_states_seen": background.states,
              "max_interaction_s": max((t["seconds"] for t in timings), default=None), "timings": timings}
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "concurrency.json").write_text(json.dumps(report, indent=1))
    print(json.dumps({k: v for k, v in report.items() if k != "timings"}))

    failed = [f"browser session failed: {s!r}" for s in sessions if isinstance(s, BaseException)]
    sessions = [s for s in sessions if not isinstance(s, BaseException)]
    # no lock (or any other) errors: not on the pages, not from the CLI, not in the job
    failed += [f"session {s['session']} showed: {p}" for s in sessions for p in s["problems"]]
    if background.cli.returncode != 0 or any(w.lower() in err.lower() for w in LOCK_WORDS):
        failed.append(f"CLI embed exited {background.cli.returncode}: {err[-2000:]}")
    if final["state"] != "done":
        log = store.path.with_name(store.path.name + ".worker.log")
        failed.append(f"job {final['state']}: {final['error']}\n{log.read_text()[-2000:] if log.exists() else ''}")
    # no lost writes: every vector the CLI computed is stored, the new encoder is registered, each user
    # saw their selection
    if background.cli.returncode == 0 and not (json.loads(out)["computed"] == CLI_NOTES
                                                and embedded(store, "intake", "tiny")):
        failed.append(f"the CLI's vectors are not all stored: {out}")
    if final["state"] == "done" and not ("concurrent-mlm" in {e.id for e in list_encoders(store)}
                                          and final["result"]["steps"] == TRAIN["steps"]):
        failed.append(f"the trained encoder is not registered: {final['result']}")
    for s in sessions:
        if "notes selected" not in s.get("selected", "") or s.get("tables", 0) < 2:
            failed.append(f"session {s['session']} did not see its selection table: {s}")
    if len(timings) != 6 * SESSIONS:
        failed.append(f"missing interactions: {timings}")
    assert not failed, "\n".join(failed)
