"""In a real browser: find notes like a typed phrase, read one, then compare two encoders side by side.

The second encoder is the tiny BERT initialised with another seed, so its map and neighbourhoods
differ from the first's. Both encoders embed and draw (PCA) the corpus before the page opens, so the
page only loads a model for the query and computes no UMAP. What the page draws is checked against
core, computed here: the ringed notes, the second map aligned onto the first, the overlap colours.
"""

import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import expect

from core.corpus import ingest_frame
from core.embed import embed_query, load_embeddings
from core.space import remembered
from core.maps import load_projection, neighbourhood_overlap, project_corpus
from core.neighbours import nearest
from core.options import EmbedOptions, ProjectOptions
from core.projection import align_to
from core.store import Store
from pages.components.compare import OVERLAP, OVERLAP_K
from sample_data.synthetic import synthetic_notes
from tests.conftest import build_tiny_encoder
from tests.e2e.conftest import HUNG_MS, map_frame, open_page, screenshot, tick_first_row, wait_idle

N = 200
QUERY = "troponin chest pain on exertion"
K = 20  # the page's default number of search results
# What each map (pages/components/map.py) draws, read from its page: ords, coordinates, the ords it
# rings (search results), its colour column and every note's colour code.
MAP_JS = """() => { const S = window.notespaceMap; if (!S || !S.ords || !S.shownCodes) return null;
  return {ords: Array.from(S.ords), x: Array.from(S.x), y: Array.from(S.y), colour: S.colour,
          ringed: S.highlight.map(i => S.ords[i]), codes: Array.from(S.shownCodes)}; }"""


@pytest.fixture(scope="module")
def clinic(app_env, tmp_path_factory) -> dict:
    """The corpus embedded and drawn with 'tiny' and 'tiny-b' in the served app's store, and what
    core says the page should show."""
    models = Path(app_env["NOTESPACE_MODELS"])
    built = build_tiny_encoder(tmp_path_factory.mktemp("tiny-b") / "tiny-b", seed=1)
    shutil.copytree(built, models / "tiny-b")
    (models / "tiny-b" / "notespace_card.json").write_text(json.dumps({"objective": "test", "base": "random"}))
    notes = synthetic_notes(N, seed=5)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NOTESPACE_MODELS", str(models))
        store = Store(app_env["NOTESPACE_DB"])
        ingest_frame(store, notes, "clinic", "text", "note_id", ["specialty", "site", "age"])
        xy = {}
        for encoder in ("tiny", "tiny-b"):
            projection = project_corpus(store, "clinic", ProjectOptions(encoder=encoder, method="pca"))["projection"]
            xy[encoder] = load_projection(store, projection)[["x", "y"]].to_numpy()
        X = load_embeddings(store, "clinic", EmbedOptions(encoder="tiny"), compute_missing=False)
        space = remembered(store, store.corpus("clinic"), "tiny")  # the space the page searches in
        found, _ = nearest(X, embed_query(store, QUERY, space), K)
        like_top, _ = nearest(X, X[found[0]], K, exclude=[found[0]])
        overlap = neighbourhood_overlap(store, "clinic", "tiny", "tiny-b", OVERLAP_K)
    ids = notes["note_id"]
    return {"found": sorted(found.tolist()), "top": ids.iloc[found[0]], "like_top": sorted(like_top.tolist()),
            "like_top_first": ids.iloc[like_top[0]], "xy_a": xy["tiny"], "xy_b": align_to(xy["tiny"], xy["tiny-b"]),
            "overlap": overlap}


def maps_when(page, ready, what: str, timeout: float = HUNG_MS / 1000) -> list[dict]:
    """The maps once `ready(maps)` holds: a map draws a moment after Streamlit's run ends, and later
    still on a loaded machine."""
    deadline = time.monotonic() + timeout
    while not ready(drawn := [m for f in page.frames if "notespace_map" in f.url if (m := f.evaluate(MAP_JS))]):
        if time.monotonic() > deadline:
            said = [f.evaluate("() => document.getElementById('status')?.textContent") for f in page.frames
                    if "notespace_map" in f.url]
            raise AssertionError(f"the page never showed {what}; its maps ring {[m['ringed'] for m in drawn]}"
                                 f" and say {said}")
        page.wait_for_timeout(200)
    return drawn


def ringed(drawn: dict) -> list[int]:
    return sorted(drawn["ringed"])


def per_ord(drawn: dict, field: str) -> dict[int, float]:
    """A value of every note drawn, by ord."""
    return dict(zip(drawn["ords"], drawn[field]))


def pick(page, label: str, option: str) -> None:
    page.get_by_test_id("stSelectbox").filter(has_text=label).click()
    page.get_by_role("option", name=option, exact=True).click()
    wait_idle(page)


def test_search_read_then_compare_two_encoders(clinic, page, app_url):
    open_page(page, app_url, "Explore")
    page.get_by_test_id("stRadio").filter(has_text="UMAP").get_by_text("PCA", exact=True).click()  # no UMAP job
    wait_idle(page)
    pick(page, "Encoder", "tiny (adapted, 32-d)")
    page.get_by_text(re.compile(rf"^{N} of {N} notes drawn · PCA of tiny \(.+\) \(from the store\)$")).wait_for()

    # a typed phrase: its nearest notes listed with their similarity, and ringed on the map
    page.get_by_label("Find notes like…").fill(QUERY)
    page.get_by_label("Find notes like…").press("Enter")
    wait_idle(page)
    # the first query loads the encoder in the server: seconds when idle, a minute or more when loaded
    page.get_by_text(f"Notes like “{QUERY}”: {K} nearest notes, ringed on the map").wait_for(timeout=180_000)
    page.get_by_text(re.compile(r"Cosine similarity in the full 32-d tiny \(.+\) embedding space")).wait_for()
    (drawn,) = maps_when(page, lambda maps: len(maps) == 1 and ringed(maps[0]), "the search rings")
    assert ringed(drawn) == clinic["found"]
    # the grid draws on a canvas; its accessible table (hidden) holds the same rows, best first
    results = page.get_by_test_id("stDataFrame").filter(visible=True).first
    results.get_by_role("columnheader", name="similarity", include_hidden=True).wait_for(state="attached")
    first_row = results.get_by_role("row", include_hidden=True).nth(1)
    expect(first_row).to_contain_text(clinic["top"])

    # the best result opens in the reader; its neighbours replace the phrase's, in a table with no row ticked
    tick_first_row(page, results)
    page.get_by_text(f"Note {clinic['top']}", exact=True).wait_for()
    page.get_by_role("button", name="Find similar notes").click()
    wait_idle(page)
    page.get_by_text(f"Notes like {clinic['top']}: {K} nearest notes, ringed on the map").wait_for()
    maps_when(page, lambda maps: len(maps) == 1 and ringed(maps[0]) == clinic["like_top"],
                          f"the neighbours of {clinic['top']} ringed")
    expect(first_row).to_contain_text(clinic["like_top_first"])
    expect(results.locator('tr[aria-selected="true"]')).to_have_count(0)
    screenshot(page, "explore-search")

    # two encoders side by side: the second map aligned onto the first, the same notes ringed in both
    page.get_by_test_id("stRadio").filter(has_text="Compare").get_by_text("Compare", exact=True).click()
    wait_idle(page)
    pick(page, "Compare with", "tiny-b")
    page.get_by_text(re.compile(r"^PCA of tiny-b \(")).wait_for()  # then its space
    a, b = maps_when(page, lambda maps: len(maps) == 2 and ringed(maps[0]) == ringed(maps[1]) == clinic["like_top"],
                     f"two maps, the neighbours of {clinic['top']} ringed in both")
    for drawn, expected in ((a, clinic["xy_a"]), (b, clinic["xy_b"])):
        x, y = per_ord(drawn, "x"), per_ord(drawn, "y")
        assert sorted(x) == list(range(N))
        drawn = np.array([[x[o], y[o]] for o in range(N)])
        np.testing.assert_allclose(drawn, expected, atol=1e-4 * np.abs(expected).max())

    # colour both maps by how far each note keeps its neighbours across the two encoders (in the browser)
    page.get_by_text(f"Jaccard overlap of each note's {OVERLAP_K} nearest neighbours under tiny and tiny-b").wait_for()
    for nth in (0, 1):
        frame = map_frame(page, nth)
        frame.locator("#colour").select_option(OVERLAP)
        expect(frame.locator("#legend .ends")).to_have_text("01")  # the scale runs from 0 to 1
    maps = maps_when(page, lambda maps: len(maps) == 2 and all(m["colour"] == OVERLAP for m in maps), "overlap colours")
    for drawn in maps:  # 255 steps from 0 to 1: each note's code within half a step of its overlap
        codes = per_ord(drawn, "codes")
        np.testing.assert_allclose([codes[o] / 254 for o in range(N)], clinic["overlap"], atol=0.5 / 254 + 1e-6)
    page.get_by_text(re.compile(r"^PCA of tiny-b \(")).scroll_into_view_if_needed()
    screenshot(page, "explore-compare-overlap")
