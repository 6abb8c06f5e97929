"""In a real browser: every page and the main flows (upload, map, labelling, search, Compare, Separability,
Few-shot, Pretrain) ask no host but the app's own, while the server runs with its network beyond loopback
blocked (a sitecustomize refuses and logs any such connection or name lookup, in the server and in the
training workers it starts) and its temp folder is one of its own, which ends empty."""

import json
import re
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from core.corpus import ingest_frame
from core.maps import project_corpus
from core.options import ProjectOptions
from core.store import Store
from sample_data.synthetic import synthetic_notes
from tests.conftest import build_tiny_encoder
from tests.e2e.conftest import (HUNG_MS, TINY, box_select, only_tiny, open_map, open_page, pick, screenshot,
                                start_step, wait_idle)
from tests.test_privacy import sockets_blocked_env

pytestmark = pytest.mark.e2e
OWN_HOSTS = {"127.0.0.1", "localhost"}


@pytest.fixture(scope="module")
def app_env(app_env, tmp_path_factory):
    """The served app with outbound sockets blocked, a temp folder of its own and one torch thread per process."""
    offline = tmp_path_factory.mktemp("offline")
    temp = tmp_path_factory.mktemp("server-temp")
    return app_env | sockets_blocked_env(offline) | {"TMPDIR": str(temp), "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def clinic(app_env, tmp_path_factory):
    """A corpus drawn (PCA) with 'tiny' and 'tiny-b', so Explore computes no UMAP and Compare has two encoders."""
    models = Path(app_env["NOTESPACE_MODELS"])
    built = build_tiny_encoder(tmp_path_factory.mktemp("tiny-b") / "tiny-b", seed=1)
    shutil.copytree(built, models / "tiny-b")
    (models / "tiny-b" / "notespace_card.json").write_text(json.dumps({"objective": "test", "base": "random"}))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NOTESPACE_MODELS", str(models))
        store = Store(app_env["NOTESPACE_DB"])
        ingest_frame(store, synthetic_notes(150, seed=5), "clinic", "text", "note_id", ["specialty", "site"])
        for encoder in ("tiny", "tiny-b"):
            project_corpus(store, "clinic", ProjectOptions(encoder=encoder, method="pca"))
    return "clinic"


@pytest.fixture()
def recorded(browser, app_url):
    """A page whose context records the URL of every request and websocket it opens."""
    context = browser.new_context(viewport={"width": 1400, "height": 1400})
    urls: list[str] = []
    context.on("request", lambda request: urls.append(request.url))
    page = context.new_page()
    page.on("websocket", lambda ws: urls.append(ws.url))
    page.set_default_timeout(HUNG_MS)
    yield page, urls
    context.close()


def test_every_page_and_flow_asks_only_the_apps_own_host(clinic, recorded, app_url, app_env, tmp_path):
    page, urls = recorded
    for title in ("Home", "Data", "Pretrain", "Separability", "Few-shot"):  # Explore next, with its flows
        open_page(page, app_url, title)

    # a map, labelling a box-selected group, a search, Compare
    open_map(page, app_url, corpus=clinic, method="PCA")
    box_select(page)
    page.get_by_role("tab", name="Label from the map").click()
    page.get_by_label("Label for the selected notes").fill("chest pain")
    page.get_by_label("Label for the selected notes").press("Enter")
    wait_idle(page)
    page.get_by_role("button", name=re.compile(r"^Label \d+ notes$")).click()
    wait_idle(page)
    page.get_by_text(re.compile(r"Labelled \d+ notes as “chest pain”")).wait_for()
    page.get_by_role("tab", name="Selection and search").click()
    page.get_by_label("Find notes like…").fill("troponin chest pain")
    page.get_by_label("Find notes like…").press("Enter")
    wait_idle(page)
    page.get_by_text("Notes like “troponin chest pain”").wait_for(timeout=180_000)
    page.get_by_test_id("stRadio").filter(has_text="Compare").get_by_text("Compare", exact=True).click()
    wait_idle(page)
    pick(page, "Compare with", "tiny-b")
    page.get_by_text(re.compile(r"^PCA of tiny-b \(")).wait_for()  # then its embedding space
    screenshot(page, "privacy-explore-compare")

    open_page(page, app_url, "Separability")
    only_tiny(page)
    start_step(page, "Measure separability", page.get_by_test_id("stPlotlyChart").first)

    open_page(page, app_url, "Few-shot")
    only_tiny(page)
    start_step(page, "Run learning curve", page.get_by_text("held-out notes score every encoder"))

    open_page(page, app_url, "Pretrain")
    pick(page, "Start from encoder", TINY)
    for label, value in (("Steps", 20), ("Batch size (notes)", 8), ("Max length (tokens)", 64)):
        page.get_by_label(label, exact=True).fill(str(value))
        page.get_by_label(label, exact=True).press("Enter")
        wait_idle(page)
    page.get_by_role("button", name="Launch training").click()
    page.get_by_text("done: encoder", exact=False).wait_for(timeout=300_000)

    # an upload through the browser's file chooser, ingested
    notes = tmp_path / "ward-notes.csv"
    synthetic_notes(30, seed=9).to_csv(notes, index=False)
    open_page(page, app_url, "Data")
    page.get_by_role("tab", name="Upload a file").click()
    with page.expect_file_chooser() as chooser:
        page.get_by_test_id("stFileUploaderDropzone").locator("button").click()
    chooser.value.set_files(str(notes))
    wait_idle(page)
    page.get_by_role("button", name="Ingest").click()
    wait_idle(page)
    page.get_by_text("Ingested 'ward-notes'").wait_for()
    screenshot(page, "privacy-uploaded")

    assert any(urlsplit(url).scheme == "ws" for url in urls) and len(urls) > 20  # the recording saw the app
    foreign = sorted({url for url in urls if urlsplit(url).scheme in ("http", "https", "ws", "wss")
                      and urlsplit(url).hostname not in OWN_HOSTS})
    assert foreign == []
    assert Path(app_env["NOTESPACE_TEST_NETWORK_LOG"]).read_text() == ""  # the server and its workers stayed local
    assert [p.name for p in Path(app_env["TMPDIR"]).rglob("*") if p.is_file()] == []  # no copy of a note left there
