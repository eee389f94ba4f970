// Series explorer: any length, any number of channels.
//
// Every view asks the server for the visible range only, downsampled there (MinMaxLTTB) to about two points per
// pixel of the plot's width, so a 3,000,000-point series costs the browser what a 2,400-point one does. Missing
// values arrive as null and are drawn as gaps. Imported ground truth is shaded red and named as such.
//
// OVERLAY HOOK (model score, threshold, analyst labels): define, before or after this file loads,
//
//   window.explorerOverlays = async (start, end, width, ctx) => ({traces: [], shapes: [], panelTitle: "score"})
//
// It is awaited for every view, in parallel with the view's own request. Everything it returns is in POINT INDEX
// space; the explorer maps it onto the x axis (dates for timestamped series):
//   - traces: Plotly traces whose `x` are point indices. `yaxis: "overlay"` puts a trace in an extra panel under the
//     channels (titled `panelTitle`); any other trace is drawn over the first channel shown.
//   - shapes: Plotly shapes; with `xref: "x"` their x0/x1 are point indices (use [start, end) of a range, the
//     explorer shades it to the end of its last point). `yref: "overlay"` places a shape (a threshold line, say)
//     in the overlay panel; `yref: "paper"` spans every channel (a label range).
// ctx = {seriesId, nPoints, channels (indices shown), signal (AbortSignal of this view), redraw()}. Call
// ctx.redraw() (or window.explorer.redraw()) after a label changes to refetch the overlays of the current view, or
// window.explorer.refreshOverlays() to redraw them over the data already shown (no new view request).
//
// BRUSH HOOK (labeling ranges on the chart): window.explorer.setInteraction({mode, onBrush, onPoint}) with mode
// "zoom" (a drag zooms, as without it) or "label" (a drag brushes a range: onBrush(start, end) in points, the range
// shaded while dragging); in either mode a click without a drag calls onPoint(i), the point under the pointer.
//
// Colours follow the system's light or dark scheme (js/palette.js: theme()), colour-blind safe in both.
//
// An ES module: the view arithmetic, the stacked rows, the palette and the API's errors come from static/js/.
import { errorFromResponse } from "./js/api.js";
import { channelColor, theme } from "./js/palette.js";
import { clampRange as clampToSeries, panRange, zoomRange } from "./js/view.js";
import { axisId, plotlyReady as whenPlotly, stackDomains, stackRows } from "./js/chart.js";
import { exposeForTests } from "./js/hooks.js";
import { brushToRange } from "./js/ranges.js";

const T = theme(); // the colour scheme when the page loaded
const color = (i) => channelColor(i, T.channels);
const GRID = T.grid;
const TRUTH_FILL = T.truthFill;

(function () {
  const el = document.getElementById("chart");
  if (!el) return;
  const strip = document.getElementById("strip");
  const statusEl = document.getElementById("ex-status");
  const rangeEl = document.getElementById("range-info");
  const id = el.dataset.seriesId;
  const n = +el.dataset.nPoints;
  const nch = +el.dataset.nChannels;
  const xKind = el.dataset.xKind; // index | datetime | number
  const isIndex = xKind === "index";
  const names = JSON.parse(el.dataset.channelNames || "[]");
  const MIN_SPAN = Math.min(n, 20); // points: zooming further shows nothing new
  const MARGIN = { l: 64, r: 18 };
  const STRIP_HEIGHT = isIndex ? 74 : 86;

  // Performance record, read by the browser tests and scripts/measure_explorer.py (window.explorerStats only where
  // the page allows test hooks: js/hooks.js).
  const stats = exposeForTests("explorerStats", { firstChartMs: null, views: [] });

  const state = { start: 0, end: n, view: null, overview: null, visible: initialChannels() };
  let seq = 0; // the newest show() wins; older answers are dropped
  let controller = null;
  // This module runs before Plotly's deferred script (so the first request overlaps Plotly's download and compile);
  // every deferred script has run by DOMContentLoaded.
  const plotlyReady = whenPlotly();

  // ---------- channels ----------
  function initialChannels() {
    const boxes = document.querySelectorAll("#channels input[type=checkbox]");
    if (!boxes.length) return [...Array(nch).keys()];
    const fromHash = parseHash().ch;
    if (fromHash) boxes.forEach((b) => (b.checked = fromHash.includes(+b.value)));
    return [...boxes].filter((b) => b.checked).map((b) => +b.value);
  }
  document.querySelectorAll("[data-swatch]").forEach((s) => (s.style.background = color(+s.dataset.swatch)));
  function syncChips() {
    document.querySelectorAll("#channels .chip").forEach((chip) => {
      chip.classList.toggle("off", !chip.querySelector("input").checked);
    });
  }
  syncChips();
  const channelBar = document.getElementById("channels");
  if (channelBar) {
    channelBar.addEventListener("change", () => {
      state.visible = [...channelBar.querySelectorAll("input:checked")].map((b) => +b.value);
      syncChips();
      show(state.start, state.end);
    });
    const setAll = (on) => () => {
      channelBar.querySelectorAll("input").forEach((b) => (b.checked = on));
      channelBar.dispatchEvent(new Event("change"));
    };
    document.getElementById("channels-all").addEventListener("click", setAll(true));
    document.getElementById("channels-none").addEventListener("click", setAll(false));
  }

  // ---------- fetching ----------
  const cache = new Map(); // url -> view; a few recent views make back-and-forth panning instant
  function plotWidth(node) {
    return Math.max(100, Math.round((node.clientWidth || 1000) - MARGIN.l - MARGIN.r));
  }
  async function fetchView(start, end, width, channels, signal) {
    const url = `/api/v1/series/${id}/view?start=${start}&end=${end}&width=${width}&channels=${channels.join(",")}`;
    if (cache.has(url)) {
      const hit = cache.get(url);
      cache.delete(url);
      cache.set(url, hit);
      return { view: hit, bytes: 0, fetchMs: 0, cached: true };
    }
    const t0 = performance.now();
    const res = await fetch(url, { signal, headers: { Accept: "application/json" }, credentials: "same-origin" });
    const text = await res.text();
    if (!res.ok) {
      let body = null;
      try { body = JSON.parse(text); } catch (_) { /* not JSON */ }
      throw errorFromResponse(res.status, body, url);
    }
    const view = JSON.parse(text);
    cache.set(url, view);
    if (cache.size > 24) cache.delete(cache.keys().next().value);
    return { view, bytes: text.length, fetchMs: performance.now() - t0, cached: false, url };
  }
  async function fetchOverlays(start, end, width, signal) {
    if (typeof window.explorerOverlays !== "function") return null;
    try {
      const ctx = { seriesId: +id, nPoints: n, channels: state.visible.slice(), signal, redraw };
      return (await window.explorerOverlays(start, end, width, ctx)) || null;
    } catch (err) {
      if (err && err.name === "AbortError") throw err;
      console.error("explorerOverlays failed", err);
      return null; // an overlay failing never hides the data
    }
  }
  function setStatus(text, kind) {
    statusEl.textContent = text;
    statusEl.className = "ex-status" + (kind ? " " + kind : "");
  }

  // ---------- index <-> axis x ----------
  // Point index -> axis x: exact for index series; for timestamps, interpolated on the kept points of the view (or
  // of the whole-series overview outside it), which is exact to well under a pixel.
  function pairsFor(i) {
    const v = state.view && state.view.channels[0];
    if (v && v.i.length > 1 && i >= v.i[0] && i <= v.i[v.i.length - 1]) return v;
    const o = state.overview && state.overview.channels[0];
    return o && o.i.length > 1 ? o : v;
  }
  function search(arr, value) { // first position with arr[pos] >= value
    let lo = 0, hi = arr.length - 1;
    while (lo < hi) { const m = (lo + hi) >> 1; if (arr[m] < value) lo = m + 1; else hi = m; }
    return lo;
  }
  function toX(i) {
    if (isIndex) return i;
    const p = pairsFor(i);
    if (!p || !p.i.length) return i;
    const k = search(p.i, i);
    if (k === 0 || p.i[k] === i) return p.x[k];
    const f = (i - p.i[k - 1]) / (p.i[k] - p.i[k - 1]);
    return p.x[k - 1] + f * (p.x[k] - p.x[k - 1]);
  }
  function toIndex(x) {
    if (isIndex) return x;
    if (typeof x === "string") x = Date.parse(x.replace(" ", "T") + (x.length > 10 ? "Z" : "")); // Plotly dates are UTC
    const v = state.view && state.view.channels[0];
    const p = v && v.x.length > 1 && x >= v.x[0] && x <= v.x[v.x.length - 1] ? v
      : (state.overview && state.overview.channels[0]) || v;
    if (!p || !p.x.length) return 0;
    const k = search(p.x, x);
    if (k === 0 || p.x[k] === x || k >= p.x.length) return p.i[Math.min(k, p.i.length - 1)];
    const f = (x - p.x[k - 1]) / (p.x[k] - p.x[k - 1]);
    return p.i[k - 1] + f * (p.i[k] - p.i[k - 1]);
  }
  const xPlot = (v) => (xKind === "datetime" ? new Date(v).toISOString().replace("Z", "") : v);
  // The x extent of points [a, b): a point is drawn at its own x, so a range spans half a step past its ends.
  function spanX(a, b) {
    if (isIndex) return [a - 0.5, b - 0.5];
    return [toX(a), toX(Math.max(a, b - 1))];
  }

  // ---------- showing a range ----------
  // Whole points inside the series (the view request takes integers in [0, n] only); a NaN keeps the current range.
  const clampRange = (start, end) => clampToSeries(start, end, n, MIN_SPAN, [state.start, state.end]);
  async function show(start, end) {
    [start, end] = clampRange(start, end);
    state.start = start; state.end = end;
    writeHash();
    updateStripWindow();
    const my = ++seq;
    if (controller) controller.abort();
    controller = new AbortController();
    const signal = controller.signal;
    if (!state.visible.length) {
      await plotlyReady;
      if (my !== seq) return;
      Plotly.purge(el);
      el.innerHTML = '<div class="empty">No channel selected: tick one above.</div>';
      rangeEl.textContent = "";
      return;
    }
    const width = (state.width = plotWidth(el));
    el.classList.add("loading");
    setStatus("loading", "busy");
    try {
      const [got, extra] = await Promise.all([
        fetchView(start, end, width, state.visible, signal), fetchOverlays(start, end, width, signal), plotlyReady]);
      if (my !== seq) return;
      state.view = got.view;
      const t0 = performance.now();
      draw(got.view, extra);
      const drawMs = performance.now() - t0;
      const drawn = performance.now();
      if (stats.firstChartMs === null) {
        stats.firstChartMs = drawn; // since navigation start
        performance.mark("explorer-first-chart");
      }
      stats.views.push({ start, end, width, channels: state.visible.slice(), bytes: got.bytes, fetchMs: got.fetchMs, drawMs, cached: got.cached,
        at: drawn, points: got.view.channels.reduce((s, c) => s + c.y.length, 0) });
      el.dataset.viewStart = start; el.dataset.viewEnd = end; el.dataset.views = stats.views.length;
      const shown = got.view.channels.length ? got.view.channels[0].y.length : 0;
      setStatus(got.cached ? "cached" : `${(got.bytes / 1024).toFixed(0)} kB · ${got.fetchMs.toFixed(0)} ms`);
      rangeEl.innerHTML = `points <b>${start.toLocaleString()}</b>–<b>${end.toLocaleString()}</b> of ` +
        `${n.toLocaleString()} <span class="muted">(${fraction(end - start)} shown, ` +
        `${shown.toLocaleString()} drawn per channel)</span>`;
      if (!state.overview && start === 0 && end === n) useAsOverview(got.view);
      el.dispatchEvent(new CustomEvent("explorer:view", { detail: { start, end } }));
    } catch (err) {
      if (err.name === "AbortError" || my !== seq) return;
      // one message and a Retry button; nothing retries by itself
      stats.errors = (stats.errors || 0) + 1;
      setStatus("could not load: " + err.message + " ", "failed");
      const retry = document.createElement("button");
      retry.type = "button";
      retry.id = "ex-retry";
      retry.className = "link-btn";
      retry.textContent = "Retry";
      retry.addEventListener("click", () => show(state.start, state.end));
      statusEl.appendChild(retry);
    } finally {
      if (my === seq) el.classList.remove("loading");
    }
  }
  function fraction(span) {
    const f = (100 * span) / n;
    return f >= 10 ? f.toFixed(0) + " %" : f >= 0.1 ? f.toFixed(1) + " %" : f.toPrecision(2) + " %";
  }
  function redraw() {
    for (const key of [...cache.keys()]) if (key.includes(`start=${state.start}&end=${state.end}&`)) cache.delete(key);
    return show(state.start, state.end);
  }
  // The overlays again over the view already drawn (a label selected, edited or added): no new view request.
  async function refreshOverlays() {
    if (!state.view || !state.visible.length) return;
    const my = seq, view = state.view;
    try {
      const extra = await fetchOverlays(view.start, view.end, state.width, controller ? controller.signal : undefined);
      if (my === seq && state.view === view) draw(view, extra);
    } catch (err) { if (err.name !== "AbortError") throw err; }
  }

  // ---------- drawing ----------
  function panelHeights(k, withOverlay) {
    const per = k === 1 ? 360 : Math.max(105, Math.min(230, 560 / k));
    const rows = Array(k).fill(per);
    if (withOverlay) rows.push(120);
    return rows;
  }
  function draw(view, extra) {
    const overlayTraces = (extra && extra.traces) || [];
    const overlayShapes = (extra && extra.shapes) || [];
    const hasPanel = overlayTraces.some((t) => t.yaxis === "overlay") || overlayShapes.some((s) => s.yref === "overlay");
    const k = view.channels.length;
    const rows = panelHeights(k, hasPanel);
    const gap = 14, top = 26, bottom = 34;
    const inner = rows.reduce((a, b) => a + b, 0) + gap * (rows.length - 1);
    const height = inner + top + bottom;
    const layout = {
      height, margin: { l: MARGIN.l, r: MARGIN.r, t: top, b: bottom }, showlegend: true,
      // Legend top left: the mode bar owns the top right corner.
      legend: { orientation: "h", x: 0, xanchor: "left", y: 1, yanchor: "bottom", font: { size: 11.5 } },
      hovermode: "x unified", dragmode: "zoom", plot_bgcolor: T.plotBg, paper_bgcolor: T.paperBg,
      hoverlabel: { bgcolor: T.paperBg, bordercolor: T.spike, font: { color: T.text } },
      font: { family: "system-ui, -apple-system, Segoe UI, sans-serif", size: 11.5, color: T.text },
      xaxis: {
        type: xKind === "datetime" ? "date" : "linear", range: spanX(view.start, view.end).map(xPlot),
        showgrid: true, zeroline: false, gridcolor: GRID, tickformat: isIndex ? "," : undefined,
        showspikes: true, spikemode: "across", spikethickness: 1, spikecolor: T.spike, spikedash: "dot", linecolor: T.grid,
      },
      shapes: [],
    };
    // one row per channel (pixel heights, 14 px apart) and the overlay panel under them; the x axis under the last
    stackRows(layout, stackDomains(rows, gap), (j) => {
      const ch = view.channels[j];
      return {
        fixedrange: true, zeroline: false, gridcolor: GRID, automargin: false, tickfont: { size: 10.5 },
        title: { text: ch ? shorten(ch.name) : (extra.panelTitle || "overlay"), font: { size: 11.5, color: ch ? color(ch.index) : T.muted }, standoff: 4 },
      };
    });
    const traces = view.channels.map((c, j) => ({
      type: "scatter", mode: "lines", name: c.name, x: isIndex ? c.i : c.x.map(xPlot), y: c.y, customdata: c.i,
      yaxis: axisId(j), xaxis: "x", connectgaps: false, showlegend: false, line: { width: 1.1, color: color(c.index) },
      hovertemplate: `%{y:.6~g} <span style="color:${T.muted}">point %{customdata:,}</span><extra>${escapeHtml(c.name)}</extra>`,
    }));
    // Imported ground truth: shaded over every channel, with its own legend entry so nobody takes it for labels.
    if (view.truth.length) {
      traces.push({ type: "scatter", mode: "markers", x: [null], y: [null], name: "imported ground truth", hoverinfo: "skip",
        marker: { symbol: "square", size: 11, color: TRUTH_FILL, line: { width: 1, color: T.truthLine } } });
      const [v0, v1] = spanX(view.start, view.end);
      const minWidth = (2 * (v1 - v0)) / state.width; // at least 2 px, so a short anomaly in a long view shows
      for (const [a, b] of view.truth) {
        let [x0, x1] = spanX(a, b);
        if (x1 - x0 < minWidth) { const c = (x0 + x1) / 2; x0 = c - minWidth / 2; x1 = c + minWidth / 2; }
        layout.shapes.push({ type: "rect", xref: "x", yref: "paper", x0: xPlot(x0), x1: xPlot(x1), y0: 0, y1: 1,
          fillcolor: TRUTH_FILL, line: { width: 0 }, layer: "below", name: "imported ground truth" });
      }
    }
    // Overlays (score, threshold, labels) from window.explorerOverlays, mapped from point indices to x.
    const panelAxis = axisId(rows.length - 1);
    for (const t of overlayTraces) {
      const copy = { ...t, xaxis: "x" };
      copy.yaxis = t.yaxis === "overlay" ? panelAxis : (t.yaxis && t.yaxis !== "overlay" ? t.yaxis : "y");
      if (Array.isArray(t.x)) { copy.customdata = copy.customdata || t.x; copy.x = t.x.map((i) => xPlot(toX(i))); }
      traces.push(copy);
    }
    for (const s of overlayShapes) {
      const copy = { ...s };
      if (s.yref === "overlay") copy.yref = panelAxis;
      if ((s.xref || "x") === "x") {
        if (s.x0 !== undefined && s.x1 !== undefined && s.type !== "line") {
          const [x0, x1] = spanX(s.x0, s.x1); copy.x0 = xPlot(x0); copy.x1 = xPlot(x1);
        } else {
          if (s.x0 !== undefined) copy.x0 = xPlot(toX(s.x0));
          if (s.x1 !== undefined) copy.x1 = xPlot(toX(s.x1));
        }
      }
      layout.shapes.push(copy);
    }
    if (!el.querySelector(".plot-container")) el.innerHTML = "";
    Plotly.react(el, traces, layout, { responsive: true, displaylogo: false, scrollZoom: true, doubleClick: "autosize",
      showTips: false,
      modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d", "toImage"] });
    bindMain();
    bindBrush();
  }
  function shorten(name) { return name.length > 18 ? name.slice(0, 17) + "…" : name; }
  function escapeHtml(s) { return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`); }

  // ---------- main chart interactions ----------
  let mainBound = false, wheelTimer = null, lastWheel = -1e9;
  function bindMain() {
    if (mainBound) return;
    mainBound = true;
    el.on("plotly_relayout", (ev) => {
      if (ev["xaxis.autorange"]) { show(0, n); return; }
      let a = ev["xaxis.range[0]"], b = ev["xaxis.range[1]"];
      if (a === undefined && Array.isArray(ev["xaxis.range"])) [a, b] = ev["xaxis.range"];
      if (a === undefined) return;
      const s = Math.floor(toIndex(a) + 0.5), e = Math.ceil(toIndex(b) + 0.5);
      // Wheel zoom sends a stream of events: fetch once it settles; a drag fetches at once.
      clearTimeout(wheelTimer);
      if (performance.now() - lastWheel < 250) wheelTimer = setTimeout(() => show(s, e), 160);
      else show(s, e);
    });
    el.addEventListener("wheel", () => (lastWheel = performance.now()), { capture: true, passive: true });
  }

  // ---------- brushing ranges and picking points (the labeling hook) ----------
  const interaction = { mode: "zoom", onBrush: null, onPoint: null };
  let brushBound = false, band = null;
  function setInteraction(opts) {
    Object.assign(interaction, opts);
    el.classList.toggle("brushing", interaction.mode === "label");
  }
  // Fractional point index under clientX, and whether it is inside the plot area (not a margin, not the mode bar).
  function pointAt(ev) {
    const full = el._fullLayout;
    if (!full || !full.xaxis || !full._size) return null;
    const box = el.getBoundingClientRect(), xa = full.xaxis, size = full._size;
    const px = ev.clientX - box.left - size.l, py = ev.clientY - box.top;
    const inside = px >= 0 && px <= size.w && py >= size.t && py <= size.t + size.h;
    return { i: toIndex(xa.p2l(px)), px, inside };
  }
  function bindBrush() {
    if (brushBound) return;
    brushBound = true;
    // Capture phase: this runs before Plotly's own drag handler, so in label mode the drag never starts a zoom.
    el.addEventListener("mousedown", (ev) => {
      if (ev.button !== 0 || (!interaction.onBrush && !interaction.onPoint)) return;
      if (ev.target.closest && ev.target.closest(".modebar, .legend")) return;
      const at = pointAt(ev);
      if (!at || !at.inside) return;
      const labeling = interaction.mode === "label" && interaction.onBrush;
      if (labeling) { ev.stopPropagation(); ev.preventDefault(); }
      const x0 = ev.clientX;
      let moved = false;
      const move = (e) => {
        if (Math.abs(e.clientX - x0) > 3) moved = true;
        if (labeling && moved) showBand(at.px, pointAt(e).px);
      };
      const up = (e) => {
        window.removeEventListener("mousemove", move, true);
        window.removeEventListener("mouseup", up, true);
        hideBand();
        const end = pointAt(e);
        if (!moved) { if (interaction.onPoint) interaction.onPoint(Math.round(at.i)); return; }
        const range = labeling && end ? brushToRange(at.i, end.i, n) : null;
        if (range) interaction.onBrush(range.a, range.b);
      };
      window.addEventListener("mousemove", move, true);
      window.addEventListener("mouseup", up, true);
    }, true);
  }
  function showBand(p0, p1) {
    const size = el._fullLayout._size;
    if (!band || !band.isConnected) { band = document.createElement("div"); band.className = "ex-band"; el.appendChild(band); }
    const lo = Math.max(0, Math.min(p0, p1)), hi = Math.min(size.w, Math.max(p0, p1));
    Object.assign(band.style, { left: `${size.l + lo}px`, width: `${hi - lo}px`, top: `${size.t}px`, height: `${size.h}px`,
      display: "block" });
  }
  function hideBand() { if (band) band.style.display = "none"; }

  // ---------- overview strip ----------
  let stripBound = false, restoring = false;
  function useAsOverview(view) {
    state.overview = view;
    drawStrip();
  }
  async function loadOverview() {
    const first = state.visible.length ? state.visible[0] : 0;
    try {
      const got = await fetchView(0, n, plotWidth(strip), [first], undefined);
      state.overview = got.view;
      await plotlyReady;
      drawStrip();
    } catch (err) { /* the strip is a convenience; the main chart reports errors */ }
  }
  function drawStrip() {
    if (!state.overview || !window.Plotly) return;
    const c = state.overview.channels[0];
    if (!c) return;
    const full = spanX(0, n).map(xPlot);
    const shapes = state.overview.truth.map(([a, b]) => {
      const [x0, x1] = spanX(a, b);
      return { type: "rect", xref: "x", yref: "paper", x0: xPlot(x0), x1: xPlot(x1), y0: 0, y1: 1, fillcolor: TRUTH_FILL,
        line: { width: 0 }, layer: "below" };
    });
    shapes.push(windowShape());
    Plotly.react(strip, [{ type: "scatter", mode: "lines", x: isIndex ? c.i : c.x.map(xPlot), y: c.y, hoverinfo: "skip",
      connectgaps: false, line: { width: 1, color: T.stripLine } }], {
      height: STRIP_HEIGHT, margin: { l: MARGIN.l, r: MARGIN.r, t: 6, b: isIndex ? 20 : 32 }, showlegend: false, dragmode: "zoom",
      xaxis: { type: xKind === "datetime" ? "date" : "linear", range: full, tickfont: { size: 9.5, color: T.muted },
        tickformat: isIndex ? "~s" : undefined, showgrid: false, zeroline: false },
      yaxis: { fixedrange: true, visible: false }, shapes, plot_bgcolor: T.stripBg, paper_bgcolor: T.paperBg,
    }, { displayModeBar: false, responsive: true, doubleClick: false });
    bindStrip();
  }
  function windowShape() {
    const [x0, x1] = spanX(state.start, state.end);
    return { type: "rect", xref: "x", yref: "paper", x0: xPlot(x0), x1: xPlot(x1), y0: 0, y1: 1, name: "window",
      fillcolor: "rgba(86,180,233,0.14)", line: { color: T.accent, width: 1.2 } };
  }
  function updateStripWindow() {
    if (!state.overview || !strip.layout) return;
    const shapes = (strip.layout.shapes || []).filter((s) => s.name !== "window");
    shapes.push(windowShape());
    restoring = true;
    Plotly.relayout(strip, { shapes }).finally(() => (restoring = false));
  }
  function bindStrip() {
    if (stripBound) return;
    stripBound = true;
    strip.on("plotly_relayout", (ev) => {
      if (restoring) return;
      const a = ev["xaxis.range[0]"], b = ev["xaxis.range[1]"];
      if (a === undefined) return;
      restoring = true;
      Plotly.relayout(strip, { "xaxis.range": spanX(0, n).map(xPlot) }).finally(() => (restoring = false));
      show(Math.floor(toIndex(a) + 0.5), Math.ceil(toIndex(b) + 0.5));
    });
    strip.addEventListener("dblclick", () => show(0, n));
    // A click (no drag) centres the current window there.
    let down = null;
    strip.addEventListener("pointerdown", (ev) => (down = { x: ev.clientX, y: ev.clientY, t: performance.now() }));
    window.addEventListener("pointerup", (ev) => {
      if (!down) return;
      const moved = Math.abs(ev.clientX - down.x) + Math.abs(ev.clientY - down.y), quick = performance.now() - down.t < 400;
      down = null;
      if (moved > 3 || !quick) return;
      const box = strip.getBoundingClientRect();
      const f = (ev.clientX - box.left - MARGIN.l) / (box.width - MARGIN.l - MARGIN.r);
      if (f < 0 || f > 1) return;
      const [x0, x1] = spanX(0, n);
      const centre = toIndex(x0 + f * (x1 - x0)), half = (state.end - state.start) / 2;
      show(centre - half, centre + half);
    });
  }

  // ---------- keys and buttons ----------
  const pan = (fraction) => show(...panRange(state.start, state.end, fraction));
  const zoom = (factor) => show(...zoomRange(state.start, state.end, factor));
  // Keys work whatever control last had focus, except where one types (text and number fields); on a focused select
  // ↑ ↓ stay the select's own.
  const TYPING = /^(text|search|email|number|password|tel|url|date|datetime-local|month|time|week)$/;
  document.addEventListener("keydown", (ev) => {
    const t = ev.target;
    const typing = t && (t.isContentEditable || t.tagName === "TEXTAREA" || (t.tagName === "INPUT" && TYPING.test(t.type || "text")));
    if (ev.ctrlKey || ev.metaKey || ev.altKey || typing) return;
    const k = ev.key;
    if (k === "ArrowLeft") pan(ev.shiftKey ? -1 : -0.25);
    else if (k === "ArrowRight") pan(ev.shiftKey ? 1 : 0.25);
    else if (k === "+" || k === "=") zoom(0.5);
    else if (k === "-" || k === "_") zoom(2);
    else if (k === "0" || k === "Home") show(0, n);
    else return;
    ev.preventDefault();
  });
  const on = (elId, fn) => document.getElementById(elId).addEventListener("click", fn);
  on("pan-left", () => pan(-0.25));
  on("pan-right", () => pan(0.25));
  on("zoom-in", () => zoom(0.5));
  on("zoom-out", () => zoom(2));
  on("reset-zoom", () => show(0, n));
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    // Only a new width needs new points (a taller window, or a full-page screenshot, does not).
    resizeTimer = setTimeout(() => plotWidth(el) !== state.width && show(state.start, state.end), 200);
  });

  // ---------- the address keeps the range: reload or share a link and see the same view ----------
  function parseHash() {
    const out = {};
    for (const part of location.hash.replace(/^#/, "").split("&")) {
      const [key, value] = part.split("=");
      if (key === "range" && /^\d+-\d+$/.test(value || "")) out.range = value.split("-").map(Number);
      if (key === "ch" && value !== undefined) out.ch = value.split(",").filter((v) => v !== "").map(Number);
    }
    return out;
  }
  function writeHash() {
    const parts = [];
    if (state.start !== 0 || state.end !== n) parts.push(`range=${state.start}-${state.end}`);
    if (nch > 1) parts.push(`ch=${state.visible.join(",")}`);
    history.replaceState(null, "", parts.length ? "#" + parts.join("&") : location.pathname + location.search);
  }

  window.explorer = { show, redraw, refreshOverlays, setInteraction, state, toX, toIndex, nPoints: n, xKind };
  const initial = parseHash().range || [0, n];
  if (initial[0] !== 0 || initial[1] !== n) loadOverview();
  show(initial[0], initial[1]);
})();
