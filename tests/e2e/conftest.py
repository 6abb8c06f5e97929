"""A real app server on a free port and Debian's chromium driven by Playwright."""

from __future__ import annotations

import json
import re
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import expect

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Waits give up after this long: only a hang should reach it. On 2 cores at a load of 30 (other
# test suites, a training job) a Streamlit rerun took over 2 minutes.
HUNG_MS = 180_000
TINY = "tiny (adapted, 32-d)"  # the tiny random encoder as the pickers name it
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def pytest_configure(config):
    """Playwright's `expect` retries for 5 s by default; a loaded machine needs as long as every other wait."""
    expect.set_options(timeout=HUNG_MS)


def pytest_collection_modifyitems(items):
    """Everything under tests/e2e/ is a browser test (`make test-fast` skips them)."""
    for item in items:
        if "/tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_env(tmp_path_factory, tiny_encoder_path) -> dict:
    """Environment of a served app: its own store and a models/ folder with the tiny encoder."""
    home = tmp_path_factory.mktemp("app")
    models = home / "models"
    shutil.copytree(tiny_encoder_path, models / "tiny")
    (models / "tiny" / "notespace_card.json").write_text(json.dumps({"objective": "test"}))
    return {"NOTESPACE_DB": str(home / "store.duckdb"), "NOTESPACE_MODELS": str(models)}


@contextmanager
def served(script: Path, env: dict, name: str) -> Iterator[str]:
    """Serve a Streamlit script on a free local port; yields its URL once healthy."""
    port = _free_port()
    ARTIFACTS.mkdir(exist_ok=True)
    with open(ARTIFACTS / f"{name}-{port}.log", "w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(script), "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT)} | env, stdout=log, stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.3)
        else:
            server.kill()
            pytest.fail(f"{script.name} did not become healthy within 60 s")
        try:
            yield url
        finally:
            server.terminate()
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:  # a loaded machine: the test is over, stop it hard
                server.kill()
                server.wait(60)


@pytest.fixture(scope="module")
def embedded_clinic(app_env) -> str:
    """120 synthetic notes (four specialties), embedded with 'tiny', in the served app's store."""
    from core.corpus import ingest_frame
    from core.embed import embed_corpus
    from core.options import EmbedOptions
    from core.store import Store
    from sample_data.synthetic import synthetic_notes

    with pytest.MonkeyPatch.context() as env:
        env.setenv("NOTESPACE_MODELS", app_env["NOTESPACE_MODELS"])  # where this process finds 'tiny'
        store = Store(app_env["NOTESPACE_DB"])
        ingest_frame(store, synthetic_notes(120, seed=1), "clinic", "text", "note_id", ["specialty", "site"])
        embed_corpus(store, "clinic", EmbedOptions(encoder="tiny"))
    return "clinic"


@pytest.fixture(scope="module")
def app_url(app_env):
    with served(ROOT / "app.py", app_env, "server") as url:
        yield url


def chromium_missing() -> str | None:
    """Why the browser tests cannot run here, or None. In CI (CI set) that fails the run: a green
    CI must have driven a real browser."""
    if os.path.exists(CHROMIUM):
        return None
    return f"Debian's chromium is not installed at {CHROMIUM} (make test installs it when run as root)"


@pytest.fixture(scope="module")
def browser():
    if missing := chromium_missing():
        if os.environ.get("CI"):
            pytest.fail(f"{missing}; CI is set, so the browser tests must run: install chromium", pytrace=False)
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture()
def page(browser, app_url):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(HUNG_MS)
    yield pg
    context.close()


def wait_idle(page) -> None:
    """Wait until the Streamlit script has finished its run."""
    page.wait_for_timeout(300)
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=2 * HUNG_MS)


def open_page(page, app_url: str, title: str) -> None:
    """Load the app at its root (so st.navigation owns the sidebar), then click a page in the sidebar."""
    page.goto(app_url)
    wait_idle(page)
    page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
    wait_idle(page)


def pick(page, label: str, option: str) -> None:
    """Choose an option of a selectbox once the page has finished its run (a rerun would close the list)."""
    wait_idle(page)
    box = page.get_by_test_id("stSelectbox").filter(has_text=label).first
    box.scroll_into_view_if_needed()
    box.click()
    page.keyboard.type(option)  # opens the list filtered to the option, wherever the box sits on screen
    page.get_by_role("option", name=option, exact=True).click()
    wait_idle(page)


def only_tiny(page) -> None:
    """Encoder pickers start with the packaged MiniLM too: loading it is not what these tests are about."""
    page.get_by_role("button", name="Remove minilm (packaged, 384-d)").click()
    wait_idle(page)
    tags = page.get_by_test_id("stMultiSelect").filter(has_text="Encoders").locator("[data-tag]")
    expect(tags).to_have_text([TINY])


# ---- the Explore map (pages/components/map.py): a component iframe drawing with regl-scatterplot ----
MAP_IFRAME = 'iframe[src*="notespace_map"]'


def map_frame(page, nth: int = 0):
    """The nth map on the page (Compare shows two), once its points are drawn."""
    frame = page.frame_locator(MAP_IFRAME).nth(nth)
    frame.locator("#map[data-drawn]").wait_for()
    return frame


def map_select(page, tool: str = "box", nth: int = 0, start=(0.005, 0.005), end=(0.995, 0.995)) -> None:
    """Select notes on the nth map with its Box or Lasso tool, dragging as a person would from `start`
    to `end` (fractions of the map's drawing area); the lasso goes round the rectangle they span.

    The fractions are of the area inside the stage's border and rounded corners: a drag that starts
    on the border starts on no canvas, so the map selects nothing (0.0 was such a start)."""
    frame = map_frame(page, nth)
    frame.locator(f'button[data-mode="{tool}"]').click()
    page.locator(MAP_IFRAME).nth(nth).evaluate("e => e.scrollIntoView({block: 'center'})")  # all of it on screen
    box, inset = frame.locator(".stage").bounding_box(), 4
    (x0, y0), (x1, y1) = [(box["x"] + inset + fx * (box["width"] - 2 * inset),
                           box["y"] + inset + fy * (box["height"] - 2 * inset)) for fx, fy in (start, end)]
    corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)] if tool == "lasso" else [(x0, y0), (x1, y1)]
    page.mouse.move(*corners[0])
    page.mouse.down()
    for corner in corners[1:]:
        page.mouse.move(*corner, steps=12)
    page.mouse.up()
    wait_idle(page)


def map_point(page, ord_: int, nth: int = 0) -> tuple[float, float]:
    """Where note `ord_` is drawn on the nth map, in page coordinates."""
    frame = map_frame(page, nth)
    page.locator(MAP_IFRAME).nth(nth).evaluate("e => e.scrollIntoView({block: 'center'})")
    x, y = frame.locator("#map").evaluate(f"() => window.notespaceMap.screenOf({int(ord_)})")
    area = frame.locator(".stage").bounding_box()
    return area["x"] + x, area["y"] + y


def open_map(page, app_url: str, *, corpus: str | None = None, method: str = "UMAP"):
    """Explore on the stored `method` map of `corpus` (else the page's first corpus) with 'tiny';
    returns the map (its component's frame, see `map_frame`) once the work it started in the background
    (the default clusters) has landed and the map is drawn."""
    open_page(page, app_url, "Explore")
    if corpus is not None:
        pick(page, "Corpus", corpus)
    if method != "UMAP":
        page.get_by_test_id("stRadio").filter(has_text="UMAP").get_by_text(method, exact=True).click()
        wait_idle(page)
    pick(page, "Encoder", TINY)
    page.get_by_text(re.compile(rf"{method} of tiny \(.+\) \(from the store\)")).wait_for()  # tiny (its space)
    settled(page)
    return map_frame(page)


def settled(page) -> None:
    """Wait until the page computes nothing in the background (on Explore: clusters, a UMAP map; elsewhere a
    long step such as Measure separability) and has drawn what it computed. On Explore the map is redrawn
    as a new chart then, and a selection dragged across that redraw is lost."""
    expect(page.get_by_test_id("stProgress")).to_have_count(0, timeout=2 * HUNG_MS)
    wait_idle(page)


def box_select(page, nth: int = 0, start=(0.005, 0.005), end=(0.995, 0.995)) -> None:
    """Drag a box over (by default nearly all of) the nth map with its Box tool, once the page computes
    nothing in the background, and wait for the selected notes."""
    settled(page)
    map_select(page, "box", nth, start, end)
    page.get_by_text("notes selected").wait_for()


def tick_first_row(page, table) -> None:
    """Tick the first row of a data grid (it draws on a canvas) once its rows exist and the page is idle,
    and wait until the grid says the row is selected. A click that lands while the grid is being
    redrawn is lost, so it is repeated once the page is idle again and the row is still unticked."""
    first_row = table.get_by_role("row", include_hidden=True).nth(1)
    first_row.wait_for(state="attached", timeout=HUNG_MS)
    for _ in range(3):
        wait_idle(page)
        if first_row.get_attribute("aria-selected") != "true":
            table.click(position={"x": 16, "y": 35 + 17})  # the row marker of the first row, under the header
            wait_idle(page)
        try:
            expect(first_row).to_have_attribute("aria-selected", "true", timeout=10_000)
            return
        except AssertionError:
            continue
    expect(first_row).to_have_attribute("aria-selected", "true")


def start_step(page, button: str, shown) -> None:
    """Click the button that starts a background step, then wait until the step runs (its progress bar)
    or has shown `shown`. A click that lands while the page is being redrawn is lost (seen at a load of
    4 on 2 cores), so it is repeated while neither has appeared."""
    for _ in range(3):
        wait_idle(page)
        page.get_by_role("button", name=button).click()
        wait_idle(page)
        if page.get_by_test_id("stProgress").count() or shown.count():
            break
    settled(page)
    expect(shown).to_be_visible()


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
