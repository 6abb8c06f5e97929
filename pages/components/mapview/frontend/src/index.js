// The Explore map: a Streamlit (components v1) iframe drawing the notes with regl-scatterplot.
//
// Python (pages/components/mapview/__init__.py) registers the points once per map as binary files
// on the app's own media endpoint and passes their URLs; everything else in `args` is small JSON.
// Colour, legend filters, density shading, zoom/pan, hover highlight, box and lasso selection happen
// here (box and lasso on our own overlay: see "box and lasso"); only the selection (ords, or a
// bitmask when large) and the ord of a note rested on, for its preview, go back to Python.
// Note text only ever arrives for that one hovered note and is set with textContent, never parsed
// as HTML.
import createScatterplot from "regl-scatterplot";

const send = (type, data) => window.parent.postMessage({ isStreamlitMessage: true, type, ...data }, "*");
const setValue = (value) => send("streamlit:setComponentValue", { value, dataType: "json" });
const streamlitUrl = new URLSearchParams(window.location.search).get("streamlitUrl") || window.location.origin;
const absolute = (url) => new URL(url, streamlitUrl).toString();

const el = (tag, { dataset = {}, style = "", ...attrs } = {}, parent = null) => {
  const node = document.createElement(tag);
  Object.assign(node, attrs);
  Object.assign(node.dataset, dataset);
  if (style) node.style.cssText = style;
  if (parent) parent.appendChild(node);
  return node;
};

// ---- the page: toolbar, canvas, overlay (labels, rings), legend, tooltip ---------------------------
const root = el("div", { id: "map" }, document.body);
const bar = el("div", { className: "bar" }, root);
const colourPick = el("select", { title: "Colour by", id: "colour" }, el("label", { textContent: "Colour by " }, bar));
const tools = {};
for (const [mode, text, help] of [
  ["pan", "Pan", "drag to pan; the wheel zooms once the map is clicked"],
  ["lasso", "Lasso", "draw around notes to select them"],
  ["box", "Box", "drag a rectangle to select notes"],
]) {
  tools[mode] = el("button", { textContent: text, title: help, className: "tool", dataset: { mode } }, bar);
}
const resetView = el("button", { textContent: "Reset view", title: "zoom out to all notes" }, bar);
const labelToggle = el("button", { textContent: "Labels", title: "show or hide cluster names", className: "tool on", id: "labels" }, bar);
const densityToggle = el("button", {
  textContent: "Density", className: "tool", id: "density",
  title: "shade by density: points turn translucent by how many are in view, so crowded areas add up dark and sparse ones stay faint",
}, bar);
const showAll = el("button", { textContent: "Show all", title: "show the notes hidden from the legend", id: "show-all", style: "display:none" }, bar);
const stage = el("div", { className: "stage", tabIndex: 0 }, root);
const canvas = el("canvas", { className: "points" }, stage);
const overlay = el("canvas", { className: "overlay" }, stage);
const legend = el("div", { className: "legend", id: "legend" }, stage);
const tooltip = el("div", { className: "tooltip", id: "tooltip" }, stage);
// on the map, not in the bar: a status that wrapped the bar resized the map and drew it twice more
const status = el("div", { className: "status", id: "status" }, stage);

const xScale = linearScale();
const yScale = linearScale();
const plot = createScatterplot({
  canvas, xScale, yScale, pointSize: 4, opacity: 0.75, backgroundColor: [1, 1, 1, 1],
  lassoColor: [0.1, 0.1, 0.1, 0.8], lassoClearEvent: "lassoEnd", opacityInactiveScale: 0.35,
  pointColorActive: [0.07, 0.07, 0.07, 1], pointSizeSelected: 1, pointOutlineWidth: 1,
  // the spatial index built in this task, as the points are set: with a worker (above 1M points) frames
  // without points would pass meanwhile, and a view change in one of them is lost (see fitView)
  spatialIndexUseWorker: false,
});

// A d3-like linear scale (the two calls regl-scatterplot makes): positions of labels and rings.
function linearScale() {
  let d = [-1, 1];
  let r = [0, 1];
  const scale = (v) => r[0] + ((v - d[0]) / (d[1] - d[0])) * (r[1] - r[0]);
  scale.domain = (v) => (v === undefined ? d.slice() : ((d = v.slice()), scale));
  scale.range = (v) => (v === undefined ? r.slice() : ((r = v.slice()), scale));
  scale.copy = () => linearScale().domain(d).range(r);
  return scale;
}

// ---- state ------------------------------------------------------------------------------------
const S = {
  args: null, pointsUrl: null, n: 0, x: null, y: null, ords: null, indexOf: null, codes: new Map(),
  colour: undefined, selected: [], selectionRevision: null, focused: false, seq: 0, hoverTimer: null, renders: 0,
  frames: 0, set: {}, // the frames drawn; the properties last given to plot.set (see setIfChanged)
  paints: 0, // the selections painted on the overlay (see paintSelection)
  hovered: null, labels: [], showLabels: true, highlight: [], channel: null, linked: new Set(), mode: "pan",
  hidden: new Map(), // column name -> the legend labels hidden by clicking the legend (kept across reruns)
  shownMask: null, // per point 1 when shown, null when nothing is hidden
  density: false,
  lasso: null, // the box or lasso being dragged, in the map's pixels
  plotSelects: 20000, // the largest selection regl-scatterplot draws (see showSelection)
};
window.notespaceMap = S; // read by the browser tests and bench/map.py (e.g. S.drawnAt)
S.screenOf = (ord) => { // where a note is drawn, in the map's pixels (tests point at notes with it)
  const i = indexOfOrd(ord);
  return i === undefined ? null : [xScale(S.nx[i]), yScale(S.ny[i])];
};

// ---- Streamlit protocol -------------------------------------------------------------------------
window.addEventListener("message", (event) => {
  if (event.data && event.data.type === "streamlit:render") render(event.data.args).catch(showError);
});
send("streamlit:componentReady", { apiVersion: 1 });

function showError(error) {
  status.textContent = `The map could not be drawn: ${error.message || error}`;
}

function frameHeight() {
  let viewport = 900;
  try {
    viewport = window.top.innerHeight; // same origin: the app's own window
  } catch (_) { /* a cross-origin parent: keep the default */ }
  const asked = S.args.height;
  return Math.max(360, asked || Math.round(viewport - (S.args.viewport_offset || 170)));
}

async function fetchBinary(url) {
  const reply = await fetch(absolute(url));
  if (!reply.ok) throw new Error(`${reply.status} for the map's data`);
  return reply.arrayBuffer();
}

async function render(args) {
  if (!S.args) setLabelsShown(args.labels_shown !== false); // first render; then the user's toggle
  S.args = args;
  const ticket = (S.renders += 1);
  const height = frameHeight();
  root.style.height = `${height}px`;
  send("streamlit:setFrameHeight", { height });
  resize();
  if (args.link && (!S.channel || S.channel.name !== `notespace-map:${args.link}`)) {
    S.channel = new BroadcastChannel(`notespace-map:${args.link}`);
    S.channel.onmessage = (e) => linkedEvent(e.data);
  }
  setIfChanged({ pointSize: args.point_size || 4, opacity: args.opacity || 0.75 });
  labelToggle.style.display = args.labels && args.labels.length ? "" : "none";
  // renders can overlap while points load: each map's points are fetched once. A failed fetch is
  // forgotten, so the next render retries: a rerun interrupted before it re-registers the map's files
  // lets Streamlit delete them (a 404), and the run after it registers them again.
  if (args.points_url !== S.pointsUrl) {
    if (!S.loading || S.loading.url !== args.points_url) {
      const loading = { url: args.points_url };
      loading.done = loadPoints(args).catch((error) => {
        if (S.loading === loading) S.loading = null;
        throw error;
      });
      S.loading = loading;
    }
    await S.loading.done;
  }
  // a newer render arrived while this one waited for points: its arguments win (a map that changed
  // from PCA to UMAP meanwhile got the PCA labels, off the map, one run in three)
  if (ticket !== S.renders) return;
  if (args.selection && args.selection.revision !== S.selectionRevision) {
    S.selectionRevision = args.selection.revision;
    const { mask, ords } = args.selection;
    applySelection(mask !== undefined ? indicesOfMask(mask, S.n) : indicesOfOrds(ords));
  }
  S.highlight = indicesOfOrds(args.highlight || []);
  S.labels = args.labels || [];
  drawOverlay();
  if (args.preview && S.hovered !== null && args.preview.ord === S.ords[S.hovered]) showPreview(args.preview);
}

async function loadPoints(args) {
  status.textContent = `Loading ${args.n.toLocaleString()} notes…`;
  const buffer = await fetchBinary(args.points_url);
  if (S.loading?.url !== args.points_url) return; // another map arrived meanwhile
  hoverOn(null); // the note hovered was one of the old points
  const n = args.n;
  S.pointsUrl = args.points_url;
  S.n = n;
  S.x = new Float32Array(buffer, 0, n);
  S.y = new Float32Array(buffer, 4 * n, n);
  S.ords = new Int32Array(buffer, 8 * n, n);
  S.indexOf = null; // built when first asked (indexOfOrd): ~0.15 s at 1M notes
  S.codes = new Map();
  setSelected([]);
  S.shownMask = null; // the hidden values (S.hidden) apply to these points once coloured
  // the coordinates normalised to [-1, 1] (regl-scatterplot's space), each axis on its own
  S.nx = normalise(S.x);
  S.ny = normalise(S.y);
  const names = args.columns.map((c) => c.name);
  colourPick.replaceChildren(el("option", { value: "", textContent: "(one colour)" }),
    ...names.map((name) => el("option", { value: name, textContent: name })));
  const wanted = S.colour !== undefined && (S.colour === null || names.includes(S.colour)) ? S.colour : args.colour;
  await colourBy(names.includes(wanted) ? wanted : null, true);
  await applyFilter();
  showCount();
}

function normalise(values) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) { if (v < lo) lo = v; if (v > hi) hi = v; }
  const span = hi - lo || 1;
  const out = new Float32Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = ((values[i] - lo) / span) * 1.8 - 0.9;
  out.lo = lo;
  out.span = span;
  return out;
}
const toGlX = (v) => ((v - S.nx.lo) / S.nx.span) * 1.8 - 0.9;
const toGlY = (v) => ((v - S.ny.lo) / S.ny.span) * 1.8 - 0.9;

async function columnCodes(column) {
  if (!S.codes.has(column.url)) {
    const codes = fetchBinary(column.url).then((b) => new Uint8Array(b));
    S.codes.set(column.url, codes);
    codes.catch(() => { if (S.codes.get(column.url) === codes) S.codes.delete(column.url); }); // retried later
  }
  return S.codes.get(column.url);
}

// ---- colour: the codes of up to PACKED columns ride in the points' two values (valueA, valueB), each
// value the codes of its columns in mixed radix; a column already there is shown by a palette
// indexed by that value, one frame, instead of sending every point to WebGL again (at 1M in software
// WebGL a new draw costs that frame and as much again). Columns are known by their codes' url: new
// codes, a new url.
const PACKED = 4; // columns fetched with the points' first draw: 12 + 4 bytes a point
const CHANNEL_COLOURS = 65536; // a value's palette: the product of its columns' palette lengths

function packingOf(columns) {
  const channels = [{ name: "valueA", size: 1, strides: new Map() }, { name: "valueB", size: 1, strides: new Map() }];
  for (const column of columns) {
    const channel = channels.find((c) => c.size * column.palette.length <= CHANNEL_COLOURS);
    if (!channel) continue;
    channel.strides.set(column.url, { stride: channel.size, size: column.palette.length });
    channel.size *= column.palette.length;
  }
  return channels;
}

function packedValues(channel, codesOf) {
  const values = new Float32Array(S.n);
  for (const [url, { stride }] of channel.strides) {
    const codes = codesOf.get(url);
    for (let i = 0; i < S.n; i++) values[i] += codes[i] * stride;
  }
  return values;
}

// the palette of `column` over its channel's values: entry k is the colour of the column's code in k
function channelPalette(channel, column) {
  if (!column) return [S.args.single_colour || "#4E79A7"]; // colorBy off: every point the first colour
  const { stride, size } = channel.strides.get(column.url);
  return Array.from({ length: channel.size }, (_, k) => column.palette[Math.floor(k / stride) % size]);
}

// a new upload of the points, with `column` and up to PACKED columns in their values (on the first
// draw the first PACKED columns; later those already fetched)
async function drawPacked(column, first) {
  const others = S.args.columns.filter((c, i) => c !== column && (first ? i < PACKED : S.codes.has(c.url)));
  const columns = [column, ...others].filter(Boolean).slice(0, PACKED);
  const codes = await Promise.all(columns.map(columnCodes));
  const codesOf = new Map(columns.map((c, i) => [c.url, codes[i]]));
  S.packing = packingOf(columns);
  const [valueA, valueB] = S.packing.map((channel) => packedValues(channel, codesOf));
  // plot.set redraws in the animation frame after regl-scatterplot's own, so a palette set beside the
  // draw draws every point twice. Before the first map (only the point off the map drawn) that frame
  // costs nothing and is awaited first; later it would draw the old points in the new palette
  const coloured = showColour(column);
  if (!S.drawCount) await coloured;
  await S.warming;
  const spatialIndex = first ? undefined : plot.get("spatialIndex");
  const drawn = plot.draw({ x: S.nx, y: S.ny, valueA, valueB }, {
    zDataType: "categorical", wDataType: "categorical", spatialIndex,
    select: drawnByPlot(S.selected) ? S.selected : undefined,
  });
  // a new map is fitted in the task that sets its points, so both land in one frame (fitted after, a
  // second frame: ~0.1 s at 50k notes on software WebGL); see fitView for why not before
  if (first) await fitView();
  await drawn;
  if (S.shownMask) await plot.filter(shownIndices(), { preventEvent: true }); // a new draw shows every point
}

const channelOf = (column) => (column
  ? S.packing?.find((c) => c.strides.get(column.url)?.size === column.palette.length) : S.packing?.[0]);

function showColour(column) {
  const channel = channelOf(column);
  return plot.set({ pointColor: channelPalette(channel, column), colorBy: column ? channel.name : null });
}

async function colourBy(name, first = false) {
  const started = performance.now();
  const column = S.args.columns.find((c) => c.name === name) || null;
  S.colour = column ? name : null;
  colourPick.value = column ? name : "";
  if (!first && channelOf(column)) {
    const drawn = new Promise((resolve) => plot.subscribe("draw", resolve, 1));
    showColour(column);
    await drawn;
  } else {
    await drawPacked(column, first);
  }
  S.shownCodes = column ? await columnCodes(column) : new Uint8Array(S.n);
  drawLegend(column);
  drawOverlay();
  S.drawnAt = performance.now();
  S.colourSeconds = (S.drawnAt - started) / 1000;
  S.drawCount = (S.drawCount || 0) + 1;
  root.dataset.colour = S.colour || "";
  root.dataset.drawn = String(S.drawCount);
}

colourPick.addEventListener("change", () => colourBy(colourPick.value || null).catch(showError));

function drawLegend(column) {
  legend.replaceChildren();
  if (!column) { legend.style.display = "none"; return; }
  legend.style.display = "";
  el("div", { className: "title", textContent: column.name }, legend);
  const hidden = S.hidden.get(column.name) || new Set();
  if (column.kind === "scale") {
    el("div", { className: "ramp", style: `background: linear-gradient(to right, ${column.ramp.join(",")})` }, legend);
    const ends = el("div", { className: "ends" }, legend);
    el("span", { textContent: column.low }, ends);
    el("span", { textContent: column.high }, ends);
  }
  for (const entry of column.legend) {
    const row = el("div", { className: hidden.has(entry.label) ? "entry off" : "entry", dataset: { label: entry.label } }, legend);
    row.title = `${entry.label}: click to hide or show these notes`;
    el("span", { className: "swatch", style: `background:${entry.colour}` }, row);
    el("span", { className: "name", textContent: entry.label }, row);
    const only = el("button", { className: "only", textContent: "only", title: `show only ${entry.label}` }, row);
    row.addEventListener("click", () => hideLegendEntries(column, hidden.has(entry.label) ? [] : [entry.label], [entry.label]));
    only.addEventListener("click", (event) => {
      event.stopPropagation();
      const others = column.legend.map((e) => e.label).filter((label) => label !== entry.label);
      hideLegendEntries(column, others, [entry.label], true);
    });
  }
}

// ---- filters: legend entries hide their notes in the browser (no rerun) -------------------------
// Hidden values of every column apply together (hide a specialty, recolour by site: it stays
// hidden). A selection keeps only the notes shown, and Python hears of it when that drops notes.
function hideLegendEntries(column, hide, show, replace = false) {
  const hidden = replace ? new Set() : new Set(S.hidden.get(column.name) || []);
  for (const label of show) hidden.delete(label);
  for (const label of hide) hidden.add(label);
  setHidden(column.name, hidden, true).catch(showError);
}

async function setHidden(name, hidden, tellLinked) {
  if (hidden.size) S.hidden.set(name, hidden);
  else S.hidden.delete(name);
  if (tellLinked && S.channel) S.channel.postMessage({ type: "filter", column: name, hidden: [...hidden] });
  await applyFilter(tellLinked);
}

showAll.addEventListener("click", () => {
  S.hidden.clear();
  if (S.channel) S.channel.postMessage({ type: "filter", column: null, hidden: [] });
  applyFilter(true).catch(showError);
});

// `tell`: report a selection the filter shrank (the map of a comparison that heard of the filter
// from the other map leaves that to it: both hold the same selection)
async function applyFilter(tell = true) {
  const columns = S.args.columns.filter((c) => (S.hidden.get(c.name) || new Set()).size);
  if (!columns.length) {
    S.shownMask = null;
    if (plot.get("isPointsFiltered")) await plot.unfilter({ preventEvent: true });
  } else {
    const mask = new Uint8Array(S.n).fill(1);
    for (const column of columns) {
      const hidden = S.hidden.get(column.name);
      const off = column.values.map((value) => hidden.has(value));
      const codes = await columnCodes(column);
      for (let i = 0; i < S.n; i++) if (off[codes[i]]) mask[i] = 0;
    }
    S.shownMask = mask;
    await plot.filter(shownIndices(), { preventEvent: true });
  }
  const kept = S.selected.filter(isShown);
  if (kept.length !== S.selected.length) {
    showSelection(kept);
    if (tell) report({ event: "select", ...selectionValue(kept) });
  }
  drawLegend(S.args.columns.find((c) => c.name === S.colour) || null);
  drawOverlay();
  showCount();
}

function isShown(i) {
  return !S.shownMask || S.shownMask[i] === 1;
}

function shownIndices() {
  const out = [];
  for (let i = 0; i < S.n; i++) if (S.shownMask[i]) out.push(i);
  return out;
}

function showCount() {
  const shown = S.shownMask ? S.shownMask.reduce((a, b) => a + b, 0) : S.n;
  status.textContent = shown === S.n ? `${S.n.toLocaleString()} notes`
    : `${shown.toLocaleString()} of ${S.n.toLocaleString()} notes shown (${[...S.hidden.keys()].join(", ")} filtered)`;
  showAll.style.display = S.shownMask ? "" : "none";
  root.dataset.shown = String(shown);
}

// ---- tools, focus and the wheel -----------------------------------------------------------------
function setMode(mode) {
  S.mode = mode;
  for (const [name, button] of Object.entries(tools)) button.classList.toggle("on", name === mode);
  stage.style.cursor = mode === "pan" ? "" : "crosshair";
}
for (const [mode, button] of Object.entries(tools)) button.addEventListener("click", () => setMode(mode));
setMode("pan");
// all notes in view, whatever the map's shape (regl-scatterplot fits [-1, 1] to the height)
// after the map's new size is in (regl-scatterplot takes it at the next frame): a fit computed with
// the old shape zooms a few percent off, and the points drawn then miss where hover looks for them.
// Never while the plot holds no points (the point drawn at the start, below, sees to that): a frame
// without points returns early, and a view changed in it never reaches the scales (labels, lasso and
// tests would place notes where they are not drawn).
const fitView = async () => {
  await S.sized;
  return plot.zoomToArea({ x: -1, y: -1, width: 2, height: 2 });
};
resetView.addEventListener("click", fitView);
function setLabelsShown(shown) {
  S.showLabels = shown;
  labelToggle.classList.toggle("on", shown);
  drawOverlay();
}
labelToggle.addEventListener("click", () => setLabelsShown(!S.showLabels));
densityToggle.addEventListener("click", () => {
  S.density = !S.density;
  densityToggle.classList.toggle("on", S.density);
  plot.set({ opacityBy: S.density ? "density" : null });
  root.dataset.density = String(S.density);
});

// The wheel scrolls the page until the map is clicked; then it zooms, until the page is clicked.
stage.addEventListener("wheel", (event) => {
  if (!S.focused) {
    event.stopImmediatePropagation();
    try { window.top.scrollBy(0, event.deltaY); } catch (_) { /* cross-origin parent */ }
  }
}, { capture: true });
stage.addEventListener("pointerdown", () => { S.focused = true; root.classList.add("focused"); });
window.addEventListener("blur", () => { S.focused = false; root.classList.remove("focused"); });

// Every plot.set redraws all points (~0.2 s for 50k on software WebGL) and setting a canvas's size
// clears it, so the plot is touched only when its size or style really changed: a rerun of the page
// (e.g. after a selection) re-renders the component with the same values.
const pointSize = () => S.set.pointSize || 4; // as last set (4 until the first render sets it)

function setIfChanged(properties) {
  const changed = Object.entries(properties).filter(([name, value]) => S.set[name] !== value);
  if (!changed.length) return;
  Object.assign(S.set, properties);
  return plot.set(Object.fromEntries(changed));
}

function resize() {
  const { width, height } = stage.getBoundingClientRect();
  if (!width || !height || (S.set.width === width && S.set.height === height)) return;
  S.sized = setIfChanged({ width, height });
  overlay.width = Math.round(width * devicePixelRatio);
  overlay.height = Math.round(height * devicePixelRatio);
  overlay.style.width = `${width}px`;
  overlay.style.height = `${height}px`;
  if (!S.focused) fitView(); // a new shape before the user zoomed: all notes stay in view
  drawOverlay();
}
new ResizeObserver(resize).observe(stage);
// WebGL programs are compiled at their first draw (~60 ms on software WebGL): drawn now, with one point
// off the map, while the page still sends the map's arguments and its points are fetched
S.warming = plot.draw({ x: [9], y: [9], valueA: [0], valueB: [0] }, { zDataType: "categorical", wDataType: "categorical" });

// ---- selection ----------------------------------------------------------------------------------
// the point indices selected here; their count and the sum of their ords are on #map for tests
function setSelected(indices) {
  S.selected = indices;
  root.dataset.selected = String(indices.length);
  root.dataset.selectedOrdSum = String(indices.reduce((sum, i) => sum + S.ords[i], 0));
}

function report(value) {
  S.seq += 1;
  setValue({ ...value, colour: S.colour, seq: S.seq });
}

// A large selection travels to and from Python as a bitmask over the points in drawing order (n/8
// bytes, base64) rather than as ords (~6.5 bytes each): all of 50k notes is 8 KB instead of ~380 KB.
// Both sides read either form (pages/components/map.py), so each chooses on its own.
const MASK_ABOVE = 1000;
const asMask = (k, n) => k > MASK_ABOVE && k > n / 40;

function maskOf(indices, n) {
  const bytes = new Uint8Array((n + 7) >> 3);
  for (const i of indices) bytes[i >> 3] |= 1 << (i & 7);
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

function indicesOfMask(mask, n) {
  const bytes = atob(mask);
  const out = [];
  for (let i = 0; i < n; i++) if (bytes.charCodeAt(i >> 3) & (1 << (i & 7))) out.push(i);
  return out;
}

function indexOfOrd(ord) {
  if (!S.indexOf) {
    S.indexOf = new Map();
    for (let i = 0; i < S.n; i++) S.indexOf.set(S.ords[i], i);
  }
  return S.indexOf.get(ord);
}
const indicesOfOrds = (ords) => ords.map(indexOfOrd).filter((i) => i !== undefined);

const selectionValue = (indices) =>
  asMask(indices.length, S.n) ? { selected_mask: maskOf(indices, S.n) } : { selected: indices.map((i) => S.ords[i]) };

// a selection made here: shown, reported to Python and to the other map of a comparison
function selectHere(indices, drawn = false) {
  if (drawn && drawnByPlot(indices)) {
    setSelected(indices);
    drawOverlay();
  } else showSelection(indices);
  report({ event: "select", ...selectionValue(S.selected) });
  if (S.channel) S.channel.postMessage({ type: "select", ords: S.selected.map((i) => S.ords[i]) });
}
// a click on a note (regl-scatterplot has drawn it selected) and a double click (it has cleared it)
plot.subscribe("select", ({ points }) => selectHere(Array.from(points), true));
plot.subscribe("deselect", () => { if (S.selected.length) selectHere([]); });
stage.addEventListener("dblclick", () => { if (S.selected.length) selectHere([]); }); // one on the overlay

function applySelection(indices) {
  showSelection(indices.filter(isShown));
}

// A selection of up to S.plotSelects notes is drawn by regl-scatterplot: each note outlined, the rest
// dimmed, at the cost of three more WebGL passes over the selected notes and an array per note. A
// larger one is painted on the overlay instead, in one loop here (the rest veiled, the selected notes
// in their colour): at 1M notes on software WebGL regl-scatterplot spent 1.1 s setting a selection of
// every note and 5 s drawing the frame after it.
const drawnByPlot = (indices) => indices.length <= S.plotSelects;

function showSelection(indices) {
  setSelected(indices);
  if (indices.length && drawnByPlot(indices)) plot.select(indices, { preventEvent: true });
  else plot.deselect({ preventEvent: true });
  drawOverlay();
}

// ---- box and lasso: drawn on the overlay and tested here -------------------------------------------
// regl-scatterplot's own lasso redraws every point on each mouse move while dragging (~1.2 s a frame
// at 1M points on software WebGL), so in these modes the drag never reaches it or its camera.
const VEIL = 0x99ffffff; // white at 60 %, as ABGR in little-endian ImageData
const local = (event) => { // in the canvas's pixels, like the scales (the stage has a border)
  const { left, top } = canvas.getBoundingClientRect();
  return [event.clientX - left, event.clientY - top];
};

stage.addEventListener("mousedown", (event) => {
  if (S.mode === "pan" || event.button !== 0 || event.target !== canvas || !S.nx) return; // not the legend
  event.stopImmediatePropagation(); // "pointerdown" still gives the map focus
  S.lasso = [local(event)];
}, { capture: true });

window.addEventListener("mousemove", (event) => {
  if (!S.lasso) return;
  event.stopImmediatePropagation();
  const point = local(event);
  const last = S.lasso[S.lasso.length - 1];
  if (S.mode === "box") S.lasso = [S.lasso[0], point];
  else if (Math.hypot(point[0] - last[0], point[1] - last[1]) >= 2) S.lasso.push(point);
  queueOverlay();
}, { capture: true });

window.addEventListener("mouseup", (event) => {
  if (!S.lasso) return;
  event.stopImmediatePropagation();
  const outline = dragOutline();
  S.lasso = null;
  const [x0, y0, x1, y1] = bounds(outline);
  if (x1 - x0 < 3 && y1 - y0 < 3) { // a click: the note under the mouse, if any
    if (S.hovered !== null) selectHere([S.hovered]);
    else drawOverlay();
    return;
  }
  const inside = pointsIn(outline, S.mode === "box");
  if (event.shiftKey) selectHere([...new Set([...S.selected, ...inside])].sort((a, b) => a - b));
  else if (event.altKey) { const out = new Set(inside); selectHere(S.selected.filter((i) => !out.has(i))); }
  else selectHere(inside);
}, { capture: true });

// the click that ends a drag (regl-scatterplot would take it for a click on a note)
stage.addEventListener("click", (event) => {
  if (S.mode !== "pan" && event.target === canvas) event.stopImmediatePropagation();
}, { capture: true });

const corners = ([ax, ay], [bx, by]) => [[ax, ay], [bx, ay], [bx, by], [ax, by]];
// the polygon being dragged: a box's four corners, a lasso's points
const dragOutline = () => (S.mode === "box" ? corners(S.lasso[0], S.lasso[S.lasso.length - 1]) : S.lasso);

function bounds(points) {
  const xs = points.map((p) => p[0]);
  const ys = points.map((p) => p[1]);
  return [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)];
}

// a linear scale as v -> a * v + b
function coefficients(scale) {
  const [d0, d1] = scale.domain();
  const [r0, r1] = scale.range();
  const a = (r1 - r0) / (d1 - d0);
  return [a, r0 - a * d0];
}

// the shown points whose position on screen lies in the outline (even-odd rule; a box: its bounds)
function pointsIn(outline, isBox) {
  const [x0, y0, x1, y1] = bounds(outline);
  const [ax, bx] = coefficients(xScale);
  const [ay, by] = coefficients(yScale);
  const out = [];
  for (let i = 0; i < S.n; i++) {
    if (!isShown(i)) continue;
    const x = ax * S.nx[i] + bx;
    if (x < x0 || x > x1) continue;
    const y = ay * S.ny[i] + by;
    if (y < y0 || y > y1) continue;
    if (isBox || insidePolygon(outline, x, y)) out.push(i);
  }
  return out;
}

function insidePolygon(polygon, x, y) {
  let inside = false;
  for (let i = 0, j = polygon.length - 1; i < polygon.length; j = i++) {
    const [xi, yi] = polygon[i];
    const [xj, yj] = polygon[j];
    if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

// the overlay at most once a frame while a drag moves
function queueOverlay() {
  if (S.overlayQueued) return;
  S.overlayQueued = true;
  requestAnimationFrame(() => { S.overlayQueued = false; drawOverlay(); });
}

// A selection too large for regl-scatterplot: the map veiled and each selected note painted in its
// colour, pixel by pixel into one image.
function paintSelection(ctx) {
  const { width, height } = overlay;
  const colours = paletteColours();
  const size = Math.max(2, Math.round(pointSize() * devicePixelRatio));
  const [ax, bx] = coefficients(xScale);
  const [ay, by] = coefficients(yScale);
  // painted again only when something it shows changed: a page rerun or a hover redraws the overlay,
  // and painting 1M notes takes ~0.5 s on 2 cores
  const key = [S.selected, S.shownCodes, colours, width, height, size, ax, bx, ay, by];
  if (!S.paintKey || key.some((value, i) => value !== S.paintKey[i])) {
    if (!S.paint || S.paint.width !== width || S.paint.height !== height) {
      S.paint = ctx.createImageData(width, height);
      S.paintPixels = new Uint32Array(S.paint.data.buffer);
    }
    const pixels = S.paintPixels;
    pixels.fill(VEIL);
    const half = size >> 1;
    for (const i of S.selected) {
      const x = Math.round((ax * S.nx[i] + bx) * devicePixelRatio) - half;
      const y = Math.round((ay * S.ny[i] + by) * devicePixelRatio) - half;
      if (x + size <= 0 || y + size <= 0 || x >= width || y >= height) continue;
      const colour = colours[S.shownCodes[i]] ?? colours[0];
      const left = Math.max(0, x);
      const right = Math.min(width, x + size);
      for (let dy = Math.max(0, -y); dy < size && y + dy < height; dy++) {
        const row = (y + dy) * width;
        for (let p = row + left; p < row + right; p++) pixels[p] = colour; // a loop: fill() per row cost more
      }
    }
    S.paintKey = key;
    S.paints += 1; // counted for the browser tests
  }
  ctx.putImageData(S.paint, 0, 0);
}

// the colours of the current palette as opaque ABGR pixels, read back from a canvas (any CSS colour)
function paletteColours() {
  const column = S.args.columns.find((c) => c.name === S.colour);
  const palette = column ? column.palette : [S.args.single_colour || "#4E79A7"];
  const named = palette.join(); // each rerun brings new arguments: the same colours, a new array
  if (S.paletteColours?.named === named) return S.paletteColours.pixels;
  const probe = document.createElement("canvas").getContext("2d", { willReadFrequently: true });
  const pixels = new Uint32Array(palette.map((colour) => {
    probe.clearRect(0, 0, 1, 1);
    probe.fillStyle = colour;
    probe.fillRect(0, 0, 1, 1);
    const [r, g, b] = probe.getImageData(0, 0, 1, 1).data;
    return ((255 << 24) | (b << 16) | (g << 8) | r) >>> 0;
  }));
  S.paletteColours = { named, pixels };
  return pixels;
}

// ---- hover: found here, ringed on the overlay at once, the preview after a short rest on the note ----
// regl-scatterplot's own hover redraws every point on each move of the pointer over one (~1.2 s a frame
// at 1M points on software WebGL: the pointer's path across the map queued frame after frame, and a
// preview took 1.6-3.0 s). So it is told the pointer is never over its canvas (it still pans, zooms and
// selects a clicked note, which take their own events), and the nearest note is found here, once a frame.
const HOVER_REACH = 4; // pixels beyond a point's edge that still hover it
const outsidePlot = () => canvas.dispatchEvent(new MouseEvent("mouseleave"));
canvas.addEventListener("mouseenter", (event) => event.stopImmediatePropagation(), { capture: true });
outsidePlot();
window.addEventListener("blur", outsidePlot); // after its blur handler, which forgets where the pointer is

window.addEventListener("mousemove", (event) => {
  if (event.buttons) { // a pan takes the note from under the pointer (a box or lasso keeps it, for a click)
    if (S.mode === "pan") hoverOn(null);
    return;
  }
  S.pointer = event.target === canvas ? local(event) : null;
  if (S.hoverQueued) return;
  S.hoverQueued = true;
  requestAnimationFrame(() => {
    S.hoverQueued = false;
    hoverOn(S.pointer && S.nx ? nearestPoint(...S.pointer) : null);
  });
}, { capture: true });
stage.addEventListener("mouseleave", () => { S.pointer = null; hoverOn(null); });

// the shown note drawn nearest to a pixel of the map, within reach of its edge; null if none
function nearestPoint(px, py) {
  const [ax, bx] = coefficients(xScale);
  const [ay, by] = coefficients(yScale);
  const reach = pointSize() / 2 + HOVER_REACH;
  let nearest = null;
  let best = reach * reach;
  for (let i = 0; i < S.n; i++) {
    const dx = ax * S.nx[i] + bx - px;
    if (dx > reach || dx < -reach) continue;
    const dy = ay * S.ny[i] + by - py;
    const d = dx * dx + dy * dy;
    if (d < best && isShown(i)) { best = d; nearest = i; }
  }
  return nearest;
}

function hoverOn(i) {
  if (i === S.hovered) return;
  S.hovered = i;
  clearTimeout(S.hoverTimer);
  if (S.channel) S.channel.postMessage({ type: "hover", ord: i === null ? null : S.ords[i] });
  drawOverlay();
  if (i === null) {
    tooltip.style.display = "none";
    return;
  }
  showHover(i, null);
  S.hoverTimer = setTimeout(() => {
    if (S.hovered === i && S.args.preview_on_hover) report({ event: "hover", hover: S.ords[i], selected: null });
  }, 250);
}

function showHover(i, preview) {
  const column = S.args.columns.find((c) => c.name === S.colour);
  tooltip.replaceChildren();
  const head = el("div", { className: "head" }, tooltip);
  head.textContent = preview ? preview.doc_id : `note ${S.ords[i]}`;
  if (column) {
    const code = S.shownCodes[i];
    el("div", { className: "meta", textContent: `${column.name}: ${column.values[code]}` }, tooltip);
  }
  el("div", { className: "text", textContent: preview ? preview.text : "…" }, tooltip);
  for (const [name, value] of (preview && preview.meta) || []) {
    el("div", { className: "meta", textContent: `${name}: ${value}` }, tooltip);
  }
  const [sx, sy] = [xScale(S.nx[i]), yScale(S.ny[i])];
  const { width, height } = stage.getBoundingClientRect();
  tooltip.style.display = "block";
  tooltip.style.left = `${Math.min(sx + 12, width - 330)}px`;
  tooltip.style.top = `${sy + 12 > height - 160 ? Math.max(0, sy - 170) : sy + 12}px`;
}

function showPreview(preview) {
  if (S.hovered !== null) showHover(S.hovered, preview);
}

// ---- the other map of a comparison: its hover and selection shown here ----------------------------
function linkedEvent(message) {
  if (message.type === "hover") {
    const i = message.ord === null ? undefined : indexOfOrd(message.ord);
    S.linked = new Set(i === undefined ? [] : [i]);
    drawOverlay();
  } else if (message.type === "select") {
    applySelection(indicesOfOrds(message.ords));
  } else if (message.type === "filter") {
    if (message.column === null) S.hidden.clear(); // "Show all"
    setHidden(message.column, new Set(message.hidden), false).catch(showError);
  }
}

// ---- overlay: cluster labels without overlap, search results ringed, a linked hover -------------
// after every frame whose view changed: a change made with preventEvent (a fitted view, a selection
// drawn from Python) publishes no "view", and labels placed with the scales before it land off the map
plot.subscribe("draw", ({ isViewChanged }) => {
  S.frames += 1; // counted for the browser tests: a rerun that changes nothing draws no frame
  if (isViewChanged) drawOverlay();
});

function drawOverlay() {
  const ctx = overlay.getContext("2d");
  ctx.setTransform(devicePixelRatio, 0, 0, devicePixelRatio, 0, 0);
  ctx.clearRect(0, 0, overlay.width, overlay.height);
  if (!S.nx) return;
  const { width, height } = stage.getBoundingClientRect();
  if (S.selected.length && !drawnByPlot(S.selected)) paintSelection(ctx);
  root.dataset.selectionPainted = String(S.selected.length > 0 && !drawnByPlot(S.selected));
  ctx.lineWidth = 2;
  ctx.strokeStyle = "#111";
  for (const i of S.highlight.filter(isShown)) ring(ctx, xScale(S.nx[i]), yScale(S.ny[i]), 7);
  ctx.strokeStyle = "#d62728";
  for (const i of [...S.linked].filter(isShown)) ring(ctx, xScale(S.nx[i]), yScale(S.ny[i]), 9);
  if (S.hovered !== null) { // reset before new points replace the ones it indexes (loadPoints)
    ctx.strokeStyle = "#111";
    ring(ctx, xScale(S.nx[S.hovered]), yScale(S.ny[S.hovered]), pointSize() / 2 + 3);
  }
  if (S.showLabels) placeLabels(ctx, width, height);
  else root.dataset.labels = "0";
  if (S.lasso) drawLasso(ctx);
}

function drawLasso(ctx) {
  const outline = dragOutline();
  ctx.beginPath();
  outline.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
  ctx.closePath();
  ctx.fillStyle = "rgba(20,20,20,0.08)";
  ctx.fill();
  ctx.lineWidth = 1.5;
  ctx.strokeStyle = "rgba(20,20,20,0.8)";
  ctx.stroke();
}

function ring(ctx, x, y, r) {
  ctx.beginPath();
  ctx.arc(x, y, r, 0, 2 * Math.PI);
  ctx.stroke();
}

// Largest clusters first; a label is drawn only where it overlaps no label already drawn, so
// zooming in (which spreads clusters apart) shows more of them. In "outline" style (Compare) a
// label is text only, without a box, so the points under it stay visible.
function placeLabels(ctx, width, height) {
  const outline = S.args.label_style === "outline";
  ctx.font = `${outline ? 11 : 12}px sans-serif`;
  ctx.textBaseline = "middle";
  ctx.textAlign = "center";
  const placed = [];
  S.placedLabels = [];
  for (const label of S.labels) {
    const x = xScale(toGlX(label.x));
    const y = yScale(toGlY(label.y));
    const w = ctx.measureText(label.text).width + 8;
    const box = [x - w / 2, y - 9, x + w / 2, y + 9];
    if (box[0] < 0 || box[1] < 0 || box[2] > width || box[3] > height) continue;
    if (placed.some((b) => b[0] < box[2] && box[0] < b[2] && b[1] < box[3] && box[1] < b[3])) continue;
    placed.push(box);
    S.placedLabels.push(label.text);
    if (outline) {
      ctx.globalAlpha = 0.85;
      ctx.lineWidth = 3;
      ctx.strokeStyle = "rgba(255,255,255,0.9)";
      ctx.strokeText(label.text, x, y);
      ctx.fillStyle = "#1a1a1a";
      ctx.fillText(label.text, x, y);
      ctx.globalAlpha = 1;
    } else {
      ctx.fillStyle = "rgba(255,255,255,0.8)";
      ctx.fillRect(box[0], box[1], w, 18);
      ctx.strokeStyle = "rgba(0,0,0,0.25)";
      ctx.lineWidth = 1;
      ctx.strokeRect(box[0], box[1], w, 18);
      ctx.fillStyle = "#1a1a1a";
      ctx.fillText(label.text, x, y);
    }
  }
  root.dataset.labels = String(S.placedLabels.length);
}
