"""In a real browser: the Explore map component (regl-scatterplot on software WebGL) colours, selects
with box and lasso, shows a hovered note's preview as text, hides categories from its legend (the
selection keeps only the notes shown), shades by density, and links the two maps of Compare."""

import io
import re

import pytest
from PIL import Image
from playwright.sync_api import expect

from core.corpus import ingest_frame
from core.embed import embed_corpus
from core.maps import project_corpus
from core.options import EmbedOptions, ProjectOptions
from core.store import Store
from sample_data.synthetic import synthetic_notes
from tests.conftest import wait_for
from tests.e2e.conftest import MAP_IFRAME, map_frame, map_point, map_select, open_page, screenshot, settled, wait_idle

NASTY = "<img src=x onerror=alert(1)> & <b>chest</b> pain"
NOTES = synthetic_notes(200, seed=5)  # the wards corpus's notes
pytestmark = pytest.mark.filterwarnings("ignore:precomputed_knn")


@pytest.fixture(scope="module")
def wards(app_env, tiny_encoder_path, second_encoder_path):
    """A corpus with PCA maps of two encoders in the store the app serves; note 3 is hostile HTML."""
    import shutil

    shutil.copytree(second_encoder_path, f"{app_env['NOTESPACE_MODELS']}/tiny2")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NOTESPACE_MODELS", app_env["NOTESPACE_MODELS"])
        store = Store(app_env["NOTESPACE_DB"])
        notes = NOTES.copy()
        notes.loc[3, "text"] = NASTY
        ingest_frame(store, notes, "wards", "text", "note_id", ["specialty", "site", "age"])
        for encoder in ("tiny", "tiny2"):
            embed_corpus(store, "wards", EmbedOptions(encoder=encoder))
            project_corpus(store, "wards", ProjectOptions(encoder=encoder, method="pca"))
    return "wards"


def open_explore(page, app_url) -> None:
    open_page(page, app_url, "Explore")
    page.get_by_test_id("stRadio").filter(has_text="Map").first.get_by_text("PCA", exact=True).click()
    wait_idle(page)
    page.get_by_test_id("stSelectbox").filter(has_text="Encoder").click()
    page.get_by_role("option", name=re.compile(r"^tiny \(adapted")).click()
    wait_idle(page)
    page.get_by_text("PCA of tiny").first.wait_for()


def selected_count(page) -> int:
    text = page.get_by_text(re.compile(r"[\d,]+ notes selected")).inner_text()
    return int(re.match(r"([\d,]+)", text).group(1).replace(",", ""))


def test_colour_box_lasso_and_hover_preview(wards, page, app_url):
    open_explore(page, app_url)
    frame = map_frame(page)
    expect(frame.locator("#legend .entry", has_text="cardiology")).to_be_visible()
    drawn = frame.locator("#map").get_attribute("data-drawn")
    frame.locator("#colour").select_option("site")  # in the browser: no rerun
    expect(frame.locator("#map")).to_have_attribute("data-colour", "site")
    expect(frame.locator("#legend .entry", has_text="north")).to_be_visible()
    assert frame.locator("#map").get_attribute("data-drawn") != drawn
    frame.locator("#colour").select_option("age")
    expect(frame.locator("#legend .ends")).to_be_visible()  # a scale: lowest and highest age

    map_select(page, "box")  # (nearly) the whole map
    page.get_by_text("notes selected").wait_for()
    boxed = selected_count(page)
    map_select(page, "lasso", start=(0.0, 0.0), end=(0.5, 1.0))  # the left half: fewer notes
    wait_for(lambda: 0 < selected_count(page) < boxed)
    expect(page.get_by_test_id("stDataFrame").nth(1)).to_be_visible()

    frame.locator('button[data-mode="pan"]').click()
    x, y = map_point(page, 3)
    page.wait_for_timeout(300)  # the selection's frames drawn
    frames = frame.locator("#map").evaluate("() => window.notespaceMap.frames")
    page.mouse.move(x - 3, y)
    page.mouse.move(x, y, steps=3)
    tooltip = frame.locator("#tooltip")
    expect(tooltip.locator(".head")).to_have_text("n00003")  # the preview, fetched for this one note
    expect(tooltip.locator(".text")).to_contain_text(NASTY)  # shown as typed: text, never HTML
    assert tooltip.locator("img, b").count() == 0
    # the note is found and ringed on the overlay: no frame of every point (~1.2 s at 1M in software WebGL)
    page.wait_for_timeout(300)
    assert frame.locator("#map").evaluate("() => window.notespaceMap.frames") == frames
    screenshot(page, "map-component-hover")

    # regl-scatterplot no longer sees the pointer's moves over its canvas, but a drag still pans it
    where = "() => window.notespaceMap.screenOf(3)"
    before = frame.locator("#map").evaluate(where)
    page.mouse.down()
    page.mouse.move(x + 40, y + 20, steps=5)
    page.mouse.up()
    expect(tooltip).to_be_hidden()  # the note left the pointer
    wait_for(lambda: frame.locator("#map").evaluate(where)[0] > before[0] + 30)
    after = frame.locator("#map").evaluate(where)
    assert after[0] - before[0] == pytest.approx(40, abs=3) and after[1] - before[1] == pytest.approx(20, abs=3)


def shown(frame) -> int:
    """How many notes the map shows (not hidden from its legend)."""
    return int(frame.locator("#map").get_attribute("data-shown"))


def test_legend_filters_and_density_shading_in_the_browser(wards, page, app_url):
    open_explore(page, app_url)
    frame = map_frame(page)
    expect(frame.locator("#map")).to_have_attribute("data-colour", "specialty")
    reports = "() => window.notespaceMap.seq"  # values sent to Python (each one a rerun)
    sent = frame.locator("#map").evaluate(reports)
    cardiology = frame.locator("#legend .entry", has_text="cardiology")
    cardiology.locator(".name").click()  # hide cardiology
    not_cardiology = int((NOTES["specialty"] != "cardiology").sum())
    expect(frame.locator("#map")).to_have_attribute("data-shown", str(not_cardiology))
    expect(cardiology).to_have_class(re.compile(r"\boff\b"))
    expect(frame.locator("#status")).to_contain_text(f"{not_cardiology} of 200 notes shown")
    assert frame.locator("#map").evaluate(reports) == sent  # nothing went to Python: no rerun

    frame.locator("#colour").select_option("site")  # the filter stays while the map is recoloured
    expect(frame.locator("#legend .entry", has_text="north")).to_be_visible()
    assert shown(frame) == not_cardiology
    map_select(page, "box")  # (nearly) the whole map: only the notes shown are selected
    wait_for(lambda: page.get_by_text(re.compile(r"[\d,]+ notes selected")).count() == 1
             and selected_count(page) == not_cardiology)

    north = frame.locator("#legend .entry", has_text="north")
    north.hover()
    north.locator(".only").click()  # only north (and still no cardiology): the selection shrinks with it
    north_only = int(((NOTES["specialty"] != "cardiology") & (NOTES["site"] == "north")).sum())
    expect(frame.locator("#map")).to_have_attribute("data-shown", str(north_only))
    wait_for(lambda: selected_count(page) == north_only)

    frame.locator("#show-all").click()
    expect(frame.locator("#map")).to_have_attribute("data-shown", "200")
    expect(frame.locator("#show-all")).to_be_hidden()
    screenshot(page, "map-component-legend-filter")

    # density shading, a toggle in the browser too
    page.mouse.move(0, 0)  # no hover ring in the pictures
    stage = frame.locator(".stage")
    plain = stage.screenshot()
    density = frame.locator("#density")
    density.click()
    expect(frame.locator("#map")).to_have_attribute("data-density", "true")
    expect(density).to_have_class(re.compile(r"\bon\b"))
    wait_for(lambda: stage.screenshot() != plain)  # drawn translucent by density
    density.click()
    expect(frame.locator("#map")).to_have_attribute("data-density", "false")
    wait_for(lambda: stage.screenshot() == plain)  # and back to what it was


def test_compare_maps_are_linked_and_their_labels_start_hidden(wards, page, app_url):
    open_explore(page, app_url)
    page.get_by_test_id("stRadio").filter(has_text="Compare").get_by_text("Compare", exact=True).click()
    wait_idle(page)
    settled(page)  # the default clusters are named: their labels are in both maps
    left, right = map_frame(page, 0), map_frame(page, 1)
    for side in (left, right):  # cluster names never cover the points being compared, unless asked for
        expect(side.locator("#labels")).to_be_visible()
        expect(side.locator("#labels")).not_to_have_class(re.compile(r"\bon\b"))
        expect(side.locator("#map")).to_have_attribute("data-labels", "0")
    left.locator("#labels").click()
    left.locator('#map:not([data-labels="0"])[data-labels]').wait_for()
    expect(right.locator("#map")).to_have_attribute("data-labels", "0")
    left.locator("#labels").click()
    expect(left.locator("#map")).to_have_attribute("data-labels", "0")

    for here, there in ((0, right), (1, left)):  # hovering a note on one map rings it on the other
        x, y = map_point(page, 7, here)
        page.mouse.move(x - 3, y)
        page.mouse.move(x, y, steps=3)
        wait_for(lambda: there.locator("#map").evaluate("() => [...window.notespaceMap.linked]")
                 == [there.locator("#map").evaluate("() => window.notespaceMap.indexOf.get(7)")])
        page.mouse.move(0, 0)

    left.locator("#legend .entry", has_text="cardiology").locator(".name").click()  # hidden on both maps
    not_cardiology = str(int((NOTES["specialty"] != "cardiology").sum()))
    expect(right.locator("#map")).to_have_attribute("data-shown", not_cardiology)
    expect(right.locator("#legend .entry", has_text="cardiology")).to_have_class(re.compile(r"\boff\b"))
    right.locator("#show-all").click()
    expect(left.locator("#map")).to_have_attribute("data-shown", "200")
    map_select(page, "box", nth=0, start=(0.0, 0.0), end=(0.5, 1.0))
    page.get_by_text("notes selected").wait_for()
    count = selected_count(page)
    assert 0 < count < 200
    ords = "() => window.notespaceMap.selected.map(i => window.notespaceMap.ords[i]).sort((a, b) => a - b)"
    wait_for(lambda: right.locator("#map").evaluate(ords) == left.locator("#map").evaluate(ords)
             and len(left.locator("#map").evaluate(ords)) == count)
    screenshot(page, "map-component-compare")


def test_points_that_failed_to_load_are_fetched_again_on_the_next_run(wards, page, app_url):
    """A rerun interrupted before it registers the map's files again lets Streamlit delete them, so the
    browser's fetch gets a 404; the run after registers them again, and the map must then draw."""
    open_explore(page, app_url)
    map_frame(page)
    page.route(re.compile(r"/media/"), lambda route: route.fulfill(status=404))
    page.get_by_test_id("stSelectbox").filter(has_text="Encoder").click()
    page.get_by_role("option", name=re.compile(r"^tiny2 \(adapted")).click()
    wait_idle(page)
    frame = page.frame_locator(MAP_IFRAME).first
    expect(frame.locator("#status")).to_contain_text("The map could not be drawn: 404")

    page.unroute(re.compile(r"/media/"))
    page.locator("body").press("r")  # Streamlit's key for a rerun: the same map, its files registered again
    wait_idle(page)
    expect(frame.locator("#status")).to_have_text("200 notes")
    assert frame.locator("#map").evaluate("() => window.notespaceMap.shownCodes.length") == 200



def test_a_rerun_that_changes_nothing_on_the_map_draws_no_frame(wards, page, app_url):
    """A selection reruns the page, and every redraw of the points costs ~0.2 s per 50k notes on
    software WebGL: the component touches the plot only when its size or style changed."""
    open_explore(page, app_url)
    state = map_frame(page).locator("#map")
    frames, renders = state.evaluate("() => [window.notespaceMap.frames, window.notespaceMap.renders]")
    page.get_by_label("Find notes like…").fill("chest pain")  # new arguments (results ringed), same points
    page.get_by_label("Find notes like…").press("Enter")
    wait_idle(page)
    wait_for(lambda: state.evaluate("() => window.notespaceMap.highlight.length") > 0)
    assert state.evaluate("() => window.notespaceMap.renders") > renders
    state.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    assert state.evaluate("() => window.notespaceMap.frames") == frames

    page.get_by_role("button", name="Display").click()  # a real change still draws
    page.get_by_test_id("stSlider").filter(has_text="Point size").get_by_role("slider").press("ArrowRight")
    wait_idle(page)
    wait_for(lambda: state.evaluate("() => window.notespaceMap.frames") > frames)


def note_places(found) -> dict[int, list[float]]:
    """Where each note is drawn, in the map's pixels (its own screenOf), by ord."""
    return dict(found.evaluate("() => [...window.notespaceMap.ords].map(o => [o, window.notespaceMap.screenOf(o)])"))


def lonely_notes(places: dict[int, list[float]]) -> list[int]:
    """The notes with no other within 12 px (Manhattan): the pixels around each are its own."""
    return [o for o, (x, y) in places.items()
            if all(abs(x - q[0]) + abs(y - q[1]) > 12 for other, q in places.items() if other != o)]


def test_a_large_selection_is_painted_without_redrawing_the_points(wards, page, app_url):
    """Above `plotSelects` notes the box and its selection are drawn on the overlay, not by WebGL: the
    drag and the selection draw no frame of points; the notes selected are exactly those whose place
    on screen lies in the box, each painted in its colour on a veiled map."""
    open_explore(page, app_url)
    frame = map_frame(page)
    found = frame.locator("#map")
    found.evaluate("() => { window.notespaceMap.plotSelects = 10; }")  # the 200 notes count as large
    frame.locator('button[data-mode="box"]').click()
    page.locator(MAP_IFRAME).first.evaluate("e => e.scrollIntoView({block: 'center'})")
    area = frame.locator("canvas.points").bounding_box()  # where the scales of screenOf start
    (x0, y0), (x1, y1) = (area["x"] + 10, area["y"] + 10), (area["x"] + area["width"] * 0.6, area["y"] + area["height"] * 0.7)
    page.mouse.move(x0, y0)
    page.wait_for_timeout(300)  # a hover's frame, if any, is drawn before counting
    frames, renders = found.evaluate("() => [window.notespaceMap.frames, window.notespaceMap.renders]")
    page.mouse.down()
    page.mouse.move(x1, y1, steps=12)
    page.mouse.up()
    page.get_by_text("notes selected").wait_for()
    expect(found).to_have_attribute("data-selection-painted", "true")
    assert found.evaluate("() => window.notespaceMap.frames") == frames
    # the page's rerun brings the map new arguments, the same selection and colours: not painted again
    wait_for(lambda: found.evaluate("() => window.notespaceMap.renders") > renders)
    wait_idle(page)
    assert found.evaluate("() => window.notespaceMap.paints") == 1

    # the oracle: each note's place on screen (the map's own screenOf) against the box, in page pixels
    places = note_places(found)
    inside = sorted(o for o, (x, y) in places.items()
                    if x0 <= area["x"] + x <= x1 and y0 <= area["y"] + y <= y1)
    selected = found.evaluate("() => window.notespaceMap.selected.map(i => window.notespaceMap.ords[i]).sort((a, b) => a - b)")
    assert selected == inside and 10 < len(inside) < 200
    assert selected_count(page) == len(inside)

    # a selected note alone in its spot shows its colour, opaque; outside the box the map is veiled
    if frame.locator("#labels").is_visible():  # no cluster name over the pixels read
        frame.locator("#labels").click()
        expect(found).to_have_attribute("data-labels", "0")
    codes = found.evaluate("() => window.notespaceMap.selected.map(i => [window.notespaceMap.ords[i], window.notespaceMap.shownCodes[i]])")
    alone = set(lonely_notes(places))
    lonely = [(o, code) for o, code in codes if o in alone]
    assert lonely, "no selected note stands alone"
    colours = found.evaluate("() => [...window.notespaceMap.paletteColours.pixels].map(p => [p & 255, (p >> 8) & 255, (p >> 16) & 255, p >>> 24])")
    pixel = """(canvas, [x, y]) => [...canvas.getContext('2d')
        .getImageData(Math.round(x * devicePixelRatio), Math.round(y * devicePixelRatio), 1, 1).data]"""
    overlay = frame.locator("canvas.overlay")
    ord_, code = lonely[0]
    assert overlay.evaluate(pixel, places[ord_]) == colours[code]
    assert overlay.evaluate(pixel, [area["width"] - 3, area["height"] - 3]) == [255, 255, 255, 153]


def painted_categories(page, frame, column: str) -> dict[int, str]:
    """The category whose legend colour each lonely note (no other within 12 px) is painted in on the
    points' canvas (overlay and legend hidden): the legend colour nearest its darkest pixel within
    3 px of its place (a point's body; the edge of its disc is blended), each colour laid at the
    map's opacity over the white background; white is "(no point)"."""
    found = frame.locator("#map")
    expect(found).to_have_attribute("data-colour", column)
    page.locator(MAP_IFRAME).first.evaluate("e => e.scrollIntoView({block: 'center'})")
    found.evaluate("() => document.querySelectorAll('canvas.overlay, #legend').forEach(e => e.style.visibility = 'hidden')")
    legend = frame.locator("#legend .entry").evaluate_all(
        "es => es.map(e => [e.dataset.label, getComputedStyle(e.querySelector('.swatch')).backgroundColor])")
    alpha = found.evaluate("() => window.notespaceMap.set.opacity")
    laid = {label: [alpha * int(v) + (1 - alpha) * 255 for v in re.findall(r"\d+", rgb)[:3]] for label, rgb in legend}
    laid["(no point)"] = [255, 255, 255]

    def view():  # where each note is, and the canvas the scales of screenOf start from
        found.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
        return note_places(found), frame.locator("canvas.points").bounding_box()

    seen = [view()]
    wait_for(lambda: seen.append(view()) or seen[-1] == seen[-2], every=0.25)  # the view has settled
    places, area = seen[-1]
    lonely = lonely_notes(places)
    shot = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
    painted = {}
    for o in lonely:
        x, y = round(area["x"] + places[o][0]), round(area["y"] + places[o][1])
        if 3 <= x < shot.width - 3 and 3 <= y < shot.height - 3:
            body = min((shot.getpixel((x + dx, y + dy)) for dx in range(-3, 4) for dy in range(-3, 4)), key=sum)
            painted[o] = min(laid, key=lambda label: sum((a - b) ** 2 for a, b in zip(laid[label], body)))
    found.evaluate("() => document.querySelectorAll('canvas.overlay, #legend').forEach(e => e.style.visibility = '')")
    return painted


def test_each_note_is_painted_in_its_categorys_colour_whichever_column_colours_the_map(wards, page, app_url):
    """A change of colour column draws the points in the new column's colours: by a new palette over
    the codes packed into the points at the first draw, or, for a column not packed, by a new upload.
    The oracle: each lonely note's pixel against its own value in the corpus and the legend's colours."""
    open_explore(page, app_url)
    settled(page)
    frame = map_frame(page)
    page.mouse.move(0, 0)  # no hover ring
    for column, packed in (("specialty", True), ("site", True), ("specialty", True), ("site", False)):
        if not packed:  # forget what the points carry: the column goes up again, as one that did not fit would
            frame.locator("#map").evaluate("() => { window.notespaceMap.packing = null; }")
            frame.locator("#colour").select_option("specialty")
        drawn = frame.locator("#map").get_attribute("data-drawn")
        if frame.locator("#map").get_attribute("data-colour") != column:
            frame.locator("#colour").select_option(column)
            expect(frame.locator("#map")).not_to_have_attribute("data-drawn", drawn)
        painted = painted_categories(page, frame, column)
        assert len(painted) >= 20, "too few lonely notes to check"
        assert painted == {o: NOTES.iloc[o][column] for o in painted}, column
