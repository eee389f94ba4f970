// The analyst's labeling queue: one queried window at a time inside its context, every channel stacked, the
// model's score and threshold below, existing labels shaded. Keys answer; each answer goes into a small outbox
// (localStorage) with its own idempotency key and is sent at once, so a lost connection or a reload never loses or
// duplicates it. The next window is shown straight away (its data was prefetched) while the answer is delivered.
// An ES module (static/js/ holds what it shares with the explorer and the admin pages).
import { getJSON, request } from "./js/api.js";
import { toast } from "./js/toast.js";
import { LABEL_BARS, theme } from "./js/palette.js";
import { LABEL_MAX_SPAN as MAX_SPAN, contextView, panView, zoomView } from "./js/view.js";
import { RANGE_VALUES, addRange, answerPieces, brushToRange, describeAnswer, firstOverlap, fromBody, newRange, rangesBody,
         withValue }
  from "./js/ranges.js";
import { breakGaps, formatStamp, makeTimeline, plotlyDateToMs } from "./js/timeline.js";
import { OUTBOX_KEY as OUTBOX, Outbox, answerBody, deliveryOutcome, jsonStore, makeEntry, newKey,
         RETRY_OFFLINE_MS, RETRY_SERVER_MS } from "./js/outbox.js";
import { axisKey, plotlyReady as whenPlotly, stackDomainsByFraction, stackRows } from "./js/chart.js";
import { exposeForTests } from "./js/hooks.js";
import { drawReview } from "./js/review.js";

(function () {
  const root = document.getElementById("lq");
  if (!root) return;
  const $ = (id) => document.getElementById(id);
  const projectId = Number(root.dataset.project);
  const isAdmin = root.dataset.admin === "1";
  const UNDO = `anomaloop.undo.${projectId}`;
  // the chart's colours follow the system's light or dark scheme when the page loads (js/palette.js), as the
  // explorer's do; a range's outline on white keeps the project page's darker yellow for "unsure"
  const T = theme();
  const COLORS = T.channels, SHADE = T.labelFill, GRID = T.grid, SCORE = T.score, SCORE_FILL = T.scoreFill;
  const THRESHOLD = T.threshold;
  const RANGE_LINE = T.name === "dark" ? T.label : LABEL_BARS;
  const QUERIED = T.accent; // the queried window's outline and caption
  const CAPTION_BG = T.name === "dark" ? "rgba(23,28,38,.85)" : "rgba(255,255,255,.85)"; // behind captions on a band

  let S = JSON.parse($("lq-state").textContent);
  let current = null; // the query on screen
  let view = null; // {start, end} points on screen
  let ranges = []; // ranges brushed on the current window, not yet saved (js/ranges.js): {a, b, value, type, comment}
  let axis = { toX: (i) => i, toIndex: (x) => x, date: false }; // the chart's x axis: point index <-> x (js/timeline.js)
  const cache = new Map(); // "series:start:end" -> Promise<{view, scores, labels}>
  const local = new Map(); // query id -> {value, a, b, key, state: "pending" | "sent"}
  // key press -> next window drawn (ms), Plotly.react times, charts drawn; read by tests and scripts/measure_labeling.py
  // (window.__lq only where the page allows test hooks: js/hooks.js)
  const timings = exposeForTests("__lq", { timings: [], plot: [], shown: 0, prefetched: 0, draws: 0, firstChartMs: null,
                                           viewErrors: 0 });
  let flushing = false, retryTimer = null, pollTimer = null;
  let chartFailed = false; // the chart on screen is the "could not load" message
  // This module runs before Plotly's deferred script (the first window's data is fetched while Plotly's bundle loads
  // and compiles); every deferred script has run by DOMContentLoaded.
  const plotlyReady = whenPlotly();

  // -- storage ------------------------------------------------------------------------------------------------
  const store = jsonStore(localStorage);
  const load = store.load, save = store.save;
  const box = new Outbox(store, OUTBOX);
  const outbox = () => box.all();
  const undoStack = () => load(UNDO, []).filter((u) => S.round && u.round === S.round.id);

  // answers still in the outbox survive a reload: show them as given (pending)
  for (const e of box.forProject(projectId)) local.set(e.queryId, { ...e, state: "pending" });

  // -- helpers --------------------------------------------------------------------------------------------------
  const fmt = (v, d) => (v == null ? "—" : Number(v).toPrecision(d || 4));
  const queries = () => S.queries;
  const byId = (id) => S.queries.find((q) => q.id === id);
  const status = (q) => {
    const l = local.get(q.id);
    if (l) return l.value === "skip" ? "skipped" : "answered";
    return q.status;
  };
  const roundOpen = () => S.round && S.round.status === "open";
  const pendingQueries = () => queries().filter((q) => status(q) === "pending");
  // one answer per window: a window another analyst was handed (q.claimed_by) is theirs for a few minutes
  const freeQueries = () => pendingQueries().filter((q) => !q.claimed_by);

  // Whole points inside the series (js/view.js: the view request takes integers in [0, n] only).
  function defaultView(q) {
    return contextView(q, S.series[q.series_id].n_points, Number($("lq-context").value), MAX_SPAN);
  }

  function chartWidth() { return Math.max(300, Math.min(4000, $("lq-chart").clientWidth || 900)); }

  function fetchData(q, v) {
    const key = `${q.series_id}:${v.start}:${v.end}`;
    if (!cache.has(key)) {
      const version = S.round && S.round.version ? `&version_id=${S.round.version.id}` : "";
      const p = Promise.all([
        getJSON(`/api/v1/series/${q.series_id}/view?start=${v.start}&end=${v.end}&width=${chartWidth()}`),
        S.round && S.round.version
          ? getJSON(`/api/v1/projects/${projectId}/scores?series_id=${q.series_id}&start=${v.start}&end=${v.end}${version}`).catch(() => null)
          : Promise.resolve(null),
        getJSON(`/api/v1/projects/${projectId}/series/${q.series_id}/labels?start=${v.start}&end=${v.end}`),
      ]).then(([vw, scores, labels]) => ({ view: vw, scores, labels }));
      p.catch(() => cache.delete(key)); // a failed fetch is tried again next time
      cache.set(key, p);
      if (cache.size > 40) cache.delete(cache.keys().next().value);
    }
    return cache.get(key);
  }

  function prefetchAfter(q) {
    // the next two windows the analyst will most likely see
    const rest = pendingQueries().filter((p) => p.id !== (q && q.id)).slice(0, 2);
    for (const p of rest) fetchData(p, defaultView(p)).then(() => { timings.prefetched += 1; }, () => {});
  }

  // -- channels -------------------------------------------------------------------------------------------------
  function hiddenChannels(seriesId) {
    const s = S.series[seriesId];
    const stored = load(`anomaloop.hidden.${seriesId}`, null);
    if (stored) return new Set(stored);
    return new Set(s.channel_names.map((_, i) => i).filter((i) => i >= 8)); // at most 8 rows at first
  }

  function drawChannelChips(seriesId) {
    const s = S.series[seriesId], hidden = hiddenChannels(seriesId), box = $("lq-channels");
    box.innerHTML = "";
    s.channel_names.forEach((name, i) => {
      const chip = document.createElement("label");
      chip.className = "chip" + (hidden.has(i) ? " off" : "");
      chip.innerHTML = `<input type="checkbox" ${hidden.has(i) ? "" : "checked"} data-channel="${i}"> <span></span>`;
      chip.querySelector("span").textContent = name;
      chip.querySelector("span").style.color = COLORS[i % COLORS.length];
      box.appendChild(chip);
    });
  }

  $("lq-channels").addEventListener("change", (ev) => {
    const i = Number(ev.target.dataset.channel);
    if (Number.isNaN(i) || !current) return;
    const hidden = hiddenChannels(current.series_id);
    if (ev.target.checked) hidden.delete(i); else hidden.add(i);
    if (hidden.size === S.series[current.series_id].n_channels) { hidden.delete(i); ev.target.checked = true; toast("keep at least one channel"); }
    save(`anomaloop.hidden.${current.series_id}`, [...hidden]);
    drawChannelChips(current.series_id);
    redraw();
  });
  $("lq-shared").addEventListener("change", () => redraw());
  $("lq-score").addEventListener("change", () => redraw());
  $("lq-context").addEventListener("change", () => {
    save("anomaloop.context", $("lq-context").value);
    if (current) { view = defaultView(current); redraw(); }
  });
  // a/n/u/s/z, + − ← → and Esc keep working while the select has focus (see the keydown handler); say so once
  $("lq-context").title += " · answer keys work here too; ↑ ↓ change the context";
  const ctxStored = load("anomaloop.context", null);
  if (ctxStored) $("lq-context").value = ctxStored;

  // -- drawing --------------------------------------------------------------------------------------------------
  async function redraw() {
    // true once the current window is drawn; a failed fetch shows one message with a Retry button (no loop)
    if (!current) return false;
    const q = current, v = view;
    let data;
    try { [data] = await Promise.all([fetchData(q, v), plotlyReady]); }
    catch (e) {
      if (q !== current || v !== view) return false;
      showChartError(e);
      return false;
    }
    if (q !== current || v !== view) return false; // the analyst moved on meanwhile
    if (chartFailed) { $("lq-chart").replaceChildren(); chartFailed = false; }
    const t = performance.now();
    await plot(q, data);
    timings.plot.push(performance.now() - t);
    timings.draws += 1;
    timings.view = { start: v.start, end: v.end, query: [q.start, q.end] };
    if (timings.firstChartMs === null) timings.firstChartMs = performance.now(); // since navigation start
    bindChart();
    root.dataset.query = String(q.id); // tests and the timing script wait on this
    return true;
  }

  function showChartError(e) {
    timings.viewErrors += 1;
    const el = $("lq-chart");
    if (window.Plotly) Plotly.purge(el);
    el._bound = false; // purge dropped the drag listeners
    const box = document.createElement("div");
    box.className = "empty-state chart-error";
    box.setAttribute("role", "alert");
    const text = document.createElement("p");
    text.textContent = navigator.onLine ? `Could not load this window's chart: ${e.message}.`
      : "Offline: this window's chart loads when the connection returns. Answers you give are kept.";
    const retry = document.createElement("button");
    retry.type = "button";
    retry.id = "lq-retry";
    retry.textContent = "Retry";
    retry.addEventListener("click", () => { retry.disabled = true; retry.textContent = "Loading…"; redraw(); });
    box.append(text, retry);
    el.replaceChildren(box);
    chartFailed = true;
  }

  function plot(q, data) {
    const s = S.series[q.series_id], hidden = hiddenChannels(q.series_id);
    const chans = data.view.channels.filter((c) => !hidden.has(c.index));
    const withScore = $("lq-score").checked && data.scores && data.scores.scores.length;
    const weights = chans.map(() => 1).concat(withScore ? [1.15] : []);
    axis = chartAxis(s, data.view);
    const X = axis.toX;
    const layout = {
      height: Math.max(340, 96 * chans.length + (withScore ? 130 : 0) + 70),
      margin: { l: 64, r: 18, t: 26, b: 36 }, showlegend: false, dragmode: "select", selectdirection: "h",
      hovermode: "x unified", font: { family: "system-ui, sans-serif", size: 11.5, color: T.text },
      paper_bgcolor: T.paperBg, plot_bgcolor: T.plotBg, selections: [],
      hoverlabel: { bgcolor: T.paperBg, bordercolor: T.spike, font: { color: T.text } },
      xaxis: { type: axis.date ? "date" : "linear", range: [X(view.start - 0.5), X(view.end - 0.5)], showgrid: true,
               gridcolor: GRID, zeroline: false, title: { text: axis.title, standoff: 4 }, fixedrange: true },
      shapes: [], annotations: [],
    };
    const traces = [];
    let shared = null;
    if ($("lq-shared").checked && chans.length > 1) {
      const all = chans.flatMap((c) => c.y.filter((y) => y != null));
      if (all.length) { const lo = Math.min(...all), hi = Math.max(...all), pad = (hi - lo) * 0.06 || 1; shared = [lo - pad, hi + pad]; }
    }
    // one row per channel (and the score's, a little taller) sharing the x axis; its tick labels under the bottom row
    const axes = stackRows(layout, stackDomainsByFraction(weights, 0.035), () => (
      { zeroline: false, gridcolor: GRID, fixedrange: true, automargin: true, tickfont: { size: 10.5 } }));
    chans.forEach((c, r) => {
      const color = COLORS[c.index % COLORS.length];
      const label = c.name.replace(/[<>&]/g, "");
      // on a time axis a jump in the stamps breaks the line (js/timeline.js); the hover names the point too
      const line = axis.stamped ? breakGaps(c.i, c.x, c.y) : { x: c.i, y: c.y, i: c.i };
      traces.push({ type: "scatter", mode: "lines", x: line.x, y: line.y, yaxis: axes[r], name: c.name,
                    line: { color, width: 1.4 }, connectgaps: false, customdata: line.i,
                    hovertemplate: r === 0 && axis.stamped ? `${label}: %{y:.4g} · point %{customdata}<extra></extra>`
                                                           : `${label}: %{y:.4g}<extra></extra>` });
      if (shared) layout[axisKey(r)].range = shared;
      layout.annotations.push({ text: label, xref: "paper", yref: `${axes[r]} domain`, x: 0, y: 1, xanchor: "left",
                                yanchor: "bottom", showarrow: false, font: { size: 11, color }, bgcolor: CAPTION_BG });
    });
    if (withScore) {
      const r = chans.length, sc = data.scores;
      const points = sc.scores.map((_, i) => sc.start + i);
      const line = axis.stamped ? breakGaps(points, points.map(X), sc.scores, undefined, axis.period) : { x: points, y: sc.scores };
      traces.push({ type: "scatter", mode: "lines", x: line.x, y: line.y, yaxis: axes[r], name: "score", connectgaps: false,
                    line: { color: SCORE, width: 1.3 }, fill: "tozeroy", fillcolor: SCORE_FILL,
                    hovertemplate: "score %{y:.4g}<extra></extra>" });
      layout.annotations.push({ text: `model score (v${S.round.version.id})`, xref: "paper", yref: `${axes[r]} domain`, x: 0, y: 1,
                                xanchor: "left", yanchor: "bottom", showarrow: false, font: { size: 11, color: SCORE } });
      if (sc.threshold != null) {
        layout.shapes.push({ type: "line", xref: "paper", x0: 0, x1: 1, yref: axes[r], y0: sc.threshold, y1: sc.threshold,
                             line: { color: THRESHOLD, width: 1.2, dash: "dash" } });
        layout.annotations.push({ text: `threshold ${fmt(sc.threshold, 3)}`, xref: "paper", x: 1, xanchor: "right", yref: axes[r],
                                  y: sc.threshold, yanchor: "bottom", showarrow: false, font: { size: 10.5, color: THRESHOLD } });
      }
    }
    // labels in force (server), overridden by this page's own answers (newer)
    const mine = new Set(local.keys());
    for (const lab of data.labels) {
      if (lab.query_id != null && mine.has(lab.query_id)) continue;
      if (!SHADE[lab.value]) continue;
      layout.shapes.push(band(lab.start, lab.end, SHADE[lab.value]));
      if (lab.label_type || lab.comment) { // its type at the foot of the band; the comment on hover
        const clean = (t) => String(t).replace(/[<>&]/g, "");
        layout.annotations.push({ text: clean(lab.label_type || lab.value) + (lab.comment ? " ✎" : ""), xref: "x", yref: "paper",
                                  x: X(lab.start - 0.5), xanchor: "left", y: 0, yanchor: "bottom", showarrow: false,
                                  font: { size: 10, color: RANGE_LINE[lab.value] || T.muted },
                                  hovertext: lab.comment ? clean(lab.comment) : undefined });
      }
    }
    for (const [qid, l] of local) {
      const lq = byId(qid);
      if (!lq || lq.series_id !== q.series_id || l.value === "skip") continue;
      if (l.ranges) {
        for (const p of answerPieces(lq, fromBody(l.ranges), l.value)) {
          if (SHADE[p.value]) layout.shapes.push(band(p.start, p.end, SHADE[p.value]));
          if (p.label_type) layout.annotations.push({ text: p.label_type.replace(/[<>&]/g, ""), xref: "x", yref: "paper", x: X(p.start - 0.5),
                                                      xanchor: "left", y: 0, yanchor: "bottom", showarrow: false,
                                                      font: { size: 10, color: RANGE_LINE.anomaly } });
        }
      } else if (l.a != null) {
        layout.shapes.push(band(lq.start, l.a, SHADE.normal), band(l.a, l.b, SHADE.anomaly), band(l.b, lq.end, SHADE.normal));
      } else layout.shapes.push(band(lq.start, lq.end, SHADE[l.value]));
    }
    // the queried window on top of everything
    layout.shapes.push({ type: "rect", xref: "x", yref: "paper", x0: X(q.start - 0.5), x1: X(q.end - 0.5), y0: 0, y1: 1,
                         fillcolor: T.name === "dark" ? "rgba(86,180,233,0.08)" : "rgba(0,114,178,0.07)", line: { color: QUERIED, width: 1.6 },
                         layer: "above" });
    layout.annotations.push({ text: "queried window", xref: "x", yref: "paper", x: X((q.start + q.end) / 2 - 0.5), y: 1, yanchor: "bottom",
                              showarrow: false, font: { size: 11, color: QUERIED } });
    // the ranges brushed on this window, numbered as in the list under the chart
    ranges.forEach((r, k) => {
      layout.shapes.push({ type: "rect", xref: "x", yref: "paper", x0: X(r.a - 0.5), x1: X(r.b - 0.5), y0: 0, y1: 1,
                           fillcolor: SHADE[r.value], line: { color: RANGE_LINE[r.value], width: 1.6, dash: "dot" }, layer: "above" });
      const tag = r.value === "anomaly" ? (r.type || "anomaly") : r.value;
      layout.annotations.push({ text: `${k + 1} · ${tag.replace(/[<>&]/g, "")}`, xref: "x", yref: "paper", x: X(r.a - 0.5),
                                xanchor: "left", y: 0, yanchor: "bottom", showarrow: false, bgcolor: CAPTION_BG,
                                font: { size: 10.5, color: RANGE_LINE[r.value] } });
    });
    const stamps = axis.stamped ? ` · ${formatStamp(X(view.start), s.x_kind)} → ${formatStamp(X(view.end - 1), s.x_kind)}` : "";
    $("lq-range").textContent = `points ${view.start.toLocaleString()}–${view.end.toLocaleString()} of ${s.n_points.toLocaleString()}${stamps}`;
    return Plotly.react("lq-chart", traces, layout, { displayModeBar: false, responsive: true, scrollZoom: false, doubleClick: false });
  }

  function band(a, b, color) {
    return { type: "rect", xref: "x", yref: "paper", x0: axis.toX(a - 0.5), x1: axis.toX(b - 0.5), y0: 0, y1: 1, fillcolor: color,
             line: { width: 0 }, layer: "below" };
  }

  // The x axis of a view: the series' timestamps where it has them (dates on a date axis, with the day shown where the
  // span crosses days; numbers on a linear one), else point indices. Shapes and brushes go through toX / toIndex.
  function chartAxis(s, vw) {
    const first = vw.channels[0];
    if (s.x_kind === "index" || !first || !first.i.length) {
      return { toX: (i) => i, toIndex: (x) => x, date: false, stamped: false, title: "point" };
    }
    const tl = makeTimeline(first.i, first.x);
    const date = s.x_kind === "datetime";
    return { toX: tl.toX, toIndex: tl.toIndex, period: tl.period, date, stamped: true, title: date ? "time (UTC)" : "timestamp" };
  }
  timings.xOf = (i) => axis.toX(i); // tests place the pointer at a point

  // -- panels ---------------------------------------------------------------------------------------------------
  function drawProgress() {
    const qs = queries(), done = qs.filter((q) => status(q) !== "pending").length;
    $("lq-count").textContent = `${done} / ${qs.length}`;
    $("lq-bar").style.width = qs.length ? `${(100 * done) / qs.length}%` : "0%";
    $("lq-round").textContent = S.round ? `round ${S.round.number}` : "";
  }

  function answerText(q) {
    const l = local.get(q.id);
    if (l) {
      if (l.value === "skip") return "skipped";
      if (l.ranges) return describeAnswer(answerPieces(q, fromBody(l.ranges), l.value));
      if (l.a != null) return `anomaly ${l.a}–${l.b}, rest normal`;
      return l.labelType && l.value === "anomaly" ? `anomaly (${l.labelType})` : l.value;
    }
    if (q.status === "skipped") return "skipped";
    return describeAnswer(q.answer); // js/ranges.js: "normal", "anomaly (spike)", "anomaly ×2 (spike, drift)", …
  }

  function drawQueue() {
    const ul = $("lq-queue");
    ul.innerHTML = "";
    for (const q of queries()) {
      const li = document.createElement("li");
      const st = status(q), l = local.get(q.id);
      li.dataset.query = q.id;
      li.className = current && q.id === current.id ? "current" : "";
      const ans = answerText(q);
      const val = st === "pending" ? "pending" : ans.split(" ")[0] || st;
      li.innerHTML = `<span class="rank">${q.rank + 1}</span><span class="where"></span><span class="val ${val}"></span>`;
      const many = Object.keys(S.series).length > 1;
      li.querySelector(".where").textContent = `${many ? S.series[q.series_id].name.slice(0, 14) + " " : ""}points ${q.start}–${q.end}`;
      li.querySelector(".val").textContent = st === "pending" ? (q.claimed_by ? `with ${q.claimed_by}` : "to do")
        : (ans.split(" ")[0] || st) + (l && l.state === "pending" ? " ⋯" : "");
      li.title = ans || "not answered yet";
      ul.appendChild(li);
    }
  }

  $("lq-queue").addEventListener("click", (ev) => {
    const li = ev.target.closest("li[data-query]");
    if (!li || !roundOpen()) return;
    show(byId(Number(li.dataset.query)), undefined, true);
  });

  function drawWhy(q) {
    const r = S.round;
    $("why-strategy").textContent = r.strategy;
    $("why-rank").textContent = `${q.rank + 1} of ${queries().length}`;
    $("why-score").textContent = fmt(q.score);
    $("why-margin").textContent = fmt(q.margin);
    $("why-model").textContent = r.version ? `v${r.version.id} · ${r.version.method} · round ${r.version.round_number}` : "—";
    $("why-series").textContent = S.series[q.series_id].name;
    $("why-window").textContent = `points ${q.start.toLocaleString()}–${q.end.toLocaleString()} (${q.end - q.start})`;
    $("why-reason").textContent = q.reason || "";
    const ans = answerText(q);
    $("why-answer").innerHTML = ans ? `Current answer: <b></b> — a new answer replaces it.` : "";
    if (ans) $("why-answer").querySelector("b").textContent = ans;
  }

  function drawSync() {
    const el = $("lq-sync"), n = outbox().length;
    el.className = "sync" + (n ? " pending" : "");
    if (!n) el.textContent = "All answers saved";
    else el.textContent = `${n} answer${n === 1 ? "" : "s"} pending${navigator.onLine ? " — sending" : " — offline, kept here"}`;
    el.dataset.pending = String(n);
  }

  function drawSelection() {
    const q = current, last = ranges[ranges.length - 1];
    const rest = $("lq-rest").value;
    $("lq-selection").textContent = !q || !last ? ""
      : ranges.length === 1
        ? `Marked points ${last.a}–${last.b}: press a, n or Enter to save (the rest of the window ${rest}), Esc to clear`
        : `Marked ${ranges.length} ranges: press a, n or Enter to save them (the rest of the window ${rest}), Esc to clear`;
  }

  // -- brushed ranges ---------------------------------------------------------------------------------------------
  // Brush on the chart (drag; it may reach past the window into the context) to add a range; each is listed under the
  // chart with its value, type and comment, editable and removable until the answer is saved (js/ranges.js).
  const anomalyTypes = () => (S.project && S.project.anomaly_types) || ["anomaly"];

  function drawTypeChoices() {
    const sel = $("lq-type"), keep = sel.value;
    sel.replaceChildren(option("", "no type"), ...anomalyTypes().map((t) => option(t, t)));
    sel.value = anomalyTypes().includes(keep) ? keep : "";
  }

  function option(value, text) {
    const o = document.createElement("option");
    o.value = value;
    o.textContent = text;
    return o;
  }

  function rangeWhere(r) {
    const s = current ? S.series[current.series_id] : null;
    let text = `points ${r.a.toLocaleString()}–${r.b.toLocaleString()} (${r.b - r.a})`;
    if (axis.stamped && s) text += ` · ${formatStamp(axis.toX(r.a), s.x_kind)} → ${formatStamp(axis.toX(r.b - 1), s.x_kind)}`;
    if (current && (r.a < current.start || r.b > current.end)) text += " · reaches into the context";
    return text;
  }

  function drawRanges() {
    const list = $("lq-range-list");
    $("lq-ranges").hidden = !ranges.length;
    list.replaceChildren();
    ranges.forEach((r, k) => {
      const li = document.createElement("li");
      li.dataset.index = String(k);
      li.className = `range ${r.value}`;
      const num = document.createElement("span");
      num.className = "num";
      num.textContent = String(k + 1);
      const where = document.createElement("span");
      where.className = "where";
      where.textContent = rangeWhere(r);
      const value = document.createElement("select");
      value.className = "r-value";
      value.title = `range ${k + 1}: anomaly, normal or unsure`;
      value.append(...RANGE_VALUES.map((v) => option(v, v)));
      value.value = r.value;
      const type = document.createElement("select");
      type.className = "r-type";
      type.title = "the anomaly's type (the project's types)";
      type.append(option("", "no type"), ...anomalyTypes().map((t) => option(t, t)));
      if (r.type && !anomalyTypes().includes(r.type)) type.append(option(r.type, r.type));
      type.value = r.type || "";
      type.disabled = r.value !== "anomaly";
      const note = document.createElement("input");
      note.type = "text";
      note.className = "r-comment";
      note.maxLength = 1000;
      note.placeholder = "comment (optional)";
      note.value = r.comment || "";
      note.setAttribute("aria-label", `comment on range ${k + 1}`);
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "secondary small r-remove";
      remove.title = "remove this range";
      remove.textContent = "Remove";
      li.append(num, where, value, type, note, remove);
      list.appendChild(li);
    });
  }

  function rangeAt(ev) {
    const li = ev.target.closest("li[data-index]");
    return li ? Number(li.dataset.index) : -1;
  }

  $("lq-range-list").addEventListener("change", (ev) => {
    const k = rangeAt(ev);
    if (k < 0 || !ranges[k]) return;
    if (ev.target.classList.contains("r-value")) {
      ranges[k] = withValue(ranges[k], ev.target.value);
      drawRanges();
      redraw();
    } else if (ev.target.classList.contains("r-type")) {
      ranges[k] = { ...ranges[k], type: ev.target.value || null };
      redraw();
    }
  });
  $("lq-range-list").addEventListener("input", (ev) => {
    const k = rangeAt(ev);
    if (k >= 0 && ranges[k] && ev.target.classList.contains("r-comment")) ranges[k] = { ...ranges[k], comment: ev.target.value };
  });
  $("lq-range-list").addEventListener("click", (ev) => {
    const k = rangeAt(ev);
    if (k < 0 || !ev.target.closest(".r-remove")) return;
    ranges.splice(k, 1);
    drawRanges();
    drawSelection();
    redraw();
  });
  $("lq-rest").addEventListener("change", () => drawSelection());
  $("lq-save-ranges").addEventListener("click", (ev) => { ev.currentTarget.blur(); answer("normal"); });
  $("lq-clear-ranges").addEventListener("click", (ev) => { ev.currentTarget.blur(); clearRanges(); });

  function clearRanges() {
    ranges = [];
    drawRanges();
    drawSelection();
    redraw();
  }

  // -- showing a query -------------------------------------------------------------------------------------------
  async function show(q, t0, chosen = false) {
    if (!q) return;
    current = q;
    if (status(q) === "pending") claimWindow(q, chosen);
    ranges = [];
    view = defaultView(q);
    drawTypeChoices();
    drawRanges();
    $("lq-work").hidden = false;
    $("lq-why").hidden = false;
    $("lq-done").hidden = true;
    drawChannelChips(q.series_id);
    drawWhy(q);
    drawQueue();
    drawProgress();
    drawSelection();
    root.dataset.query = "";
    const drawn = await redraw();
    if (current !== q) return;
    prefetchAfter(q);
    if (!drawn) return;
    timings.shown += 1;
    if (t0 != null) requestAnimationFrame(() => timings.timings.push(performance.now() - t0));
  }

  // Take the window on screen, so that analysts on the same round are handed different ones. Held by another analyst
  // (409): passed over, unless the analyst picked it in the queue (then they are told, and may still answer it: the
  // first answer stored wins). Offline or failing: answer anyway.
  async function claimWindow(q, chosen) {
    let r;
    try { r = await request(`/api/v1/queries/${q.id}/claim`, { method: "POST" }); } catch (e) { return; }
    if (r.status !== 409) return;
    const data = (await r.json().catch(() => null)) || {};
    // the message is "<name> is answering this window; …" (app/projects/review.py, claim)
    q.claimed_by = (data.detail || "").split(" is answering")[0] || "another analyst";
    drawQueue();
    if (current !== q) return;
    if (chosen) toast(`${data.detail || "Another analyst is answering this window"}`, 5000);
    else next();
  }

  function showDone() {
    current = null;
    root.dataset.query = "";
    $("lq-work").hidden = true;
    $("lq-why").hidden = true;
    const done = $("lq-done");
    done.hidden = false;
    drawProgress();
    drawQueue();
    const n = outbox().length;
    const link = isAdmin ? `<a class="button primary" href="/projects/${projectId}">Watch training on the project page</a>`
                         : `<a class="button" href="/projects">Back to projects</a>`;
    if (!S.round) {
      done.innerHTML = `<h2>No round yet</h2><p class="muted">${isAdmin ? `Start a round on the <a href="/projects/${projectId}">project page</a>.` : "An admin starts the first round; this page picks it up by itself."}</p>`;
    } else if (n) {
      done.innerHTML = navigator.onLine
        ? `<div class="big">⋯</div><h2>All windows answered</h2><p class="muted">Saving the last answer${n === 1 ? "" : "s"}…</p>`
        : `<div class="big">⋯</div><h2>All windows answered</h2><p class="muted">${n} answer${n === 1 ? " is" : "s are"} waiting for the connection; they are kept in this browser and sent when it returns.</p>`;
    } else if (S.round.status === "open" && !pendingQueries().length) {
      // every window answered: review (undo, change) until submitted or the grace period is over (js/review.js)
      drawReview(done, S, {
        onSubmitted: (round) => { S.round.status = round.status; retrain = null; showDone(); },
        onError: (message) => toast(`Round not submitted: ${message}`, 6000),
      });
    } else if (S.round.status === "open" && !freeQueries().length) {
      const names = [...new Set(pendingQueries().map((q) => q.claimed_by))].join(", ");
      done.innerHTML = `<h2>The windows left are with other analysts</h2><p class="muted"></p>`;
      done.querySelector("p").textContent = `${pendingQueries().length} window${pendingQueries().length === 1 ? " is" : "s are"} being answered by ${names}. A window not answered within a few minutes comes back here; this page checks by itself.`;
    } else if (S.round.status === "open") {
      done.innerHTML = `<h2>Nothing on screen</h2>`;
    } else {
      done.innerHTML = `<div class="big">✓</div><h2 id="lq-complete"></h2><p class="muted" id="lq-complete-detail"></p>
        <p class="muted">Thank you. The next round opens ${S.project.auto_next ? "by itself once the new model is stored" : "when an admin starts it"}; this page picks it up.</p><p>${link}</p>`;
      drawRetrain();
    }
    schedulePoll();
  }

  // The closed round's retraining, as last polled: null until known.
  let retrain = null; // {status, progress, message, error, serving} (serving: the version id now serving)
  function drawRetrain() {
    const h = $("lq-complete"), detail = $("lq-complete-detail");
    if (!h || !S.round) return;
    const from = S.round.version ? S.round.version.id : null;
    let title = `Round ${S.round.number} complete — the model is retraining`, text = "";
    if (retrain && retrain.serving != null && retrain.serving !== from && retrain.status !== "running") {
      title = `Round ${S.round.number} complete — model v${retrain.serving} now serves`;
      text = "It was trained with this round's answers.";
    } else if (retrain && retrain.status === "failed") {
      title = `Round ${S.round.number} complete — retraining failed`;
      text = (retrain.error || retrain.message || "") + (isAdmin ? " Retry it on the project page." : " An admin can retry it.");
    } else if (retrain && retrain.status === "cancelled") {
      title = `Round ${S.round.number} complete — retraining was cancelled`;
    } else if (retrain && retrain.status === "done") {
      title = `Round ${S.round.number} complete — the model is retrained`;
      text = retrain.serving != null ? `The new version is stored; v${retrain.serving} still serves (the project page says why).`
                                     : "The new version is stored.";
    } else if (retrain && retrain.status === "none") {
      title = `Round ${S.round.number} complete`;
    } else if (retrain && retrain.status === "queued") {
      text = "waiting for a worker";
    } else if (retrain && retrain.status === "running") {
      text = `${Math.round(100 * (retrain.progress || 0))} %${retrain.message ? " · " + retrain.message : ""}`;
    }
    h.textContent = title;
    h.dataset.retrain = retrain ? retrain.status : "";
    detail.textContent = text;
  }

  async function pollRetrain() {
    // the closed round's retrain job and the version serving now (an analyst may read both)
    if (!S.round || S.round.status === "open") return;
    const [jobsList, project] = await Promise.all([
      getJSON(`/api/v1/jobs?project_id=${projectId}&limit=20`), getJSON(`/api/v1/projects/${projectId}`)]);
    const job = jobsList.find((j) => j.round_id === S.round.id && j.kind === "retrain");
    retrain = { status: job ? job.status : "none", progress: job ? job.progress : 0, message: job ? job.message : "",
                error: job ? job.error : null, serving: project.serving_version_id };
    drawRetrain();
  }

  function next(t0) {
    const q = freeQueries()[0];
    if (q && roundOpen()) show(q, t0);
    else showDone();
  }

  // -- answering -------------------------------------------------------------------------------------------------
  function answer(value) {
    if (!current || !roundOpen()) { toast(S.round ? "No window to answer: this round has none left" : "No round open yet"); return; }
    const t0 = performance.now();
    const q = current;
    // with ranges brushed, a / n / Enter save them with the rest of the window as chosen under the list (normal unless
    // changed) and u with the rest unsure; without, the key answers for the whole window (with its type and comment)
    let details = {};
    if (ranges.length && value !== "skip") {
      const clash = firstOverlap(ranges);
      if (clash) { toast(`Ranges ${clash[0].a}–${clash[0].b} and ${clash[1].a}–${clash[1].b} overlap: remove one`, 5000); return; }
      details = { ranges: rangesBody(ranges) };
      value = value === "unsure" ? "unsure" : $("lq-rest").value;
    } else if (value !== "skip") {
      details = { labelType: value === "anomaly" ? $("lq-type").value || null : null,
                  comment: $("lq-comment").value.trim().slice(0, 1000) || null };
    }
    const entry = makeEntry({ key: newKey(), queryId: q.id, projectId, roundId: S.round.id, value, range: null, at: Date.now(),
                              ...details });
    $("lq-comment").value = "";
    $("lq-rest").value = "normal";
    box.push(entry);
    local.set(q.id, { ...entry, state: "pending" });
    const stack = load(UNDO, []).filter((u) => u.round === S.round.id);
    stack.push({ queryId: q.id, key: entry.key, round: S.round.id });
    save(UNDO, stack.slice(-50));
    drawSync();
    next(t0);
    flush();
  }

  async function flush() {
    if (flushing) return;
    flushing = true;
    clearTimeout(retryTimer);
    let wait = 0;
    try {
      while (box.length) {
        const e = box.first();
        let r;
        try {
          r = await request(`/api/v1/queries/${e.queryId}/answer`, { method: "POST", body: answerBody(e) });
        } catch (err) { wait = RETRY_OFFLINE_MS; break; } // offline: keep it, try again
        const data = (await r.json().catch(() => null)) || {};
        // busy, failing, or another request saving the same answer (409): keep it and try again; a closed round: not
        const outcome = deliveryOutcome(r.status, data.detail);
        if (outcome === "retry") { wait = RETRY_SERVER_MS; break; }
        box.remove(e.key);
        if (outcome === "done") {
          const l = local.get(e.queryId);
          if (l && l.key === e.key) l.state = "sent";
          const q = byId(e.queryId);
          if (q && e.projectId === projectId) {
            q.status = e.value === "skip" ? "skipped" : "answered";
            q.answer = (data.labels || []).map((x) => ({ start: x.start, end: x.end, value: x.value, label_type: x.label_type,
                                                          comment: x.comment }));
            if (S.round && S.round.id === e.roundId) {
              S.round.status = data.round_status;
              S.round.open_windows = data.round_total - data.round_answered; // windows anyone still has to answer
              S.round.review_until = data.round_review_until || null; // in review: when it closes by itself
            }
          }
        } else {
          // refused for good (the round closed, the query is gone): tell the analyst, put the window back
          if (local.get(e.queryId) && local.get(e.queryId).key === e.key) local.delete(e.queryId);
          toast(`Answer to window ${e.queryId} not saved: ${data.detail || r.status}`, 6000);
        }
        drawSync();
        drawQueue();
        drawProgress();
      }
    } finally {
      flushing = false;
      drawSync();
    }
    if (wait) retryTimer = setTimeout(flush, wait);
    else if (!current) showDone();
  }

  async function undo() {
    const stack = load(UNDO, []);
    const mine = stack.filter((u) => S.round && u.round === S.round.id);
    const last = mine[mine.length - 1];
    if (!last) { toast("Nothing to undo"); return; }
    const q = byId(last.queryId);
    if (box.has(last.key)) {
      box.remove(last.key); // never sent: just drop it
    } else {
      try {
        const r = await request(`/api/v1/queries/${last.queryId}/undo`, { method: "POST" });
        if (!r.ok) { const d = await r.json().catch(() => ({})); toast(`Cannot undo: ${d.detail || r.status}`, 5000); return; }
      } catch (e) { toast("Cannot undo while offline", 4000); return; }
      if (q) { q.status = "pending"; q.answer = []; }
    }
    save(UNDO, stack.filter((u) => u.key !== last.key));
    local.delete(last.queryId);
    for (const k of [...cache.keys()]) if (q && k.startsWith(`${q.series_id}:`)) cache.delete(k); // labels changed
    drawSync();
    toast(`Undone: window ${q ? q.rank + 1 : ""} is open again`);
    if (q) show(q);
  }

  // -- waiting for a round ---------------------------------------------------------------------------------------
  // Bounded: every 3 s for two minutes, then every 15 s, and after 30 minutes it stops with a button to look again
  // (a page left open overnight does not poll all night).
  const POLL_FAST_MS = 3000, POLL_SLOW_MS = 15000, POLL_FAST_FOR_MS = 120000, POLL_STOP_AFTER_MS = 1800000;
  let pollSince = null;
  function schedulePoll() {
    clearTimeout(pollTimer);
    if (pollSince === null) pollSince = performance.now();
    const waited = performance.now() - pollSince;
    if (waited > POLL_STOP_AFTER_MS) { showPollStopped(); return; }
    pollTimer = setTimeout(async () => {
      if (current) { pollSince = null; return; }
      try {
        if (!outbox().length) {
          S = await getJSON(`/api/v1/projects/${projectId}/labeling`);
          local.clear();
          if (roundOpen() && freeQueries().length) { pollSince = null; retrain = null; next(); return; }
          await pollRetrain().catch(() => {});
        }
        showDone();
      } catch (e) { schedulePoll(); }
    }, waited < POLL_FAST_FOR_MS ? POLL_FAST_MS : POLL_SLOW_MS);
  }

  function showPollStopped() {
    const done = $("lq-done");
    if (done.hidden || $("lq-poll-again")) return;
    const p = document.createElement("p");
    p.className = "small muted";
    p.textContent = "This page stopped checking for news after 30 minutes. ";
    const again = document.createElement("button");
    again.type = "button";
    again.id = "lq-poll-again";
    again.className = "secondary";
    again.textContent = "Check again";
    again.addEventListener("click", () => { pollSince = null; p.remove(); schedulePoll(); });
    p.appendChild(again);
    done.appendChild(p);
  }

  // -- keys and buttons ------------------------------------------------------------------------------------------
  function pan(direction) {
    if (!current) return;
    view = panView(view, direction, S.series[current.series_id].n_points, MAX_SPAN);
    redraw();
  }

  function zoom(factor) {
    if (!current) return;
    // about the view's centre, moved just enough to keep the queried window on screen (js/view.js)
    view = zoomView(view, current, factor, S.series[current.series_id].n_points, MAX_SPAN);
    redraw();
  }

  // Keys work whatever control last had focus (a select, a checkbox, a button), except where the analyst types text.
  // On a focused select ↑ ↓ (and Enter, Space) stay the select's own; letters would only type-ahead there.
  const TYPING = /^(text|search|email|number|password|tel|url|date|datetime-local|month|time|week)$/;
  function typingInto(t) {
    if (!t || !t.tagName) return false;
    if (t.isContentEditable || t.tagName === "TEXTAREA") return true;
    return t.tagName === "INPUT" && TYPING.test(t.type || "text");
  }

  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (typingInto(ev.target)) {
      // Esc or Enter in one of this page's comment fields hands the keys back to the page
      if ((ev.key === "Escape" || ev.key === "Enter") && root.contains(ev.target)) { ev.preventDefault(); ev.target.blur(); }
      return;
    }
    const k = ev.key;
    if (k === "Enter") {
      // saves the brushed ranges; on a button or a select Enter stays the control's own
      if (!ranges.length || /^(BUTTON|SELECT|A)$/.test(ev.target.tagName || "") || ev.repeat) return;
      ev.preventDefault();
      answer("normal");
      return;
    }
    const act = { a: () => answer("anomaly"), n: () => answer("normal"), u: () => answer("unsure"), s: () => answer("skip"),
                  z: () => undo(), ArrowLeft: () => pan(-1), ArrowRight: () => pan(1), "+": () => zoom(1 / 1.5),
                  "=": () => zoom(1 / 1.5), "-": () => zoom(1.5), "_": () => zoom(1.5), "−": () => zoom(1.5),
                  Escape: () => clearRanges() }[k.length === 1 ? k.toLowerCase() : k];
    if (!act) return;
    ev.preventDefault();
    if (ev.repeat && "anusz".includes(k.toLowerCase())) return; // a held key answers once
    act();
  });

  document.querySelector(".lq-answer").addEventListener("click", (ev) => {
    const b = ev.target.closest("button");
    if (!b) return;
    if (b.id === "lq-undo") undo(); else if (b.dataset.answer) answer(b.dataset.answer);
    b.blur();
  });

  // drag on the chart: an anomalous sub-range of the window
  function bindChart() {
    const el = $("lq-chart");
    if (el._bound || !el.on) return;
    el._bound = true;
    el.on("plotly_selected", (ev) => {
      if (!ev || !ev.range || !current) return;
      const key = Object.keys(ev.range).find((k) => k.startsWith("x"));
      if (!key) return;
      // back from the axis (dates or numbers) to points; point i owns [i - ½, i + ½) and both ends take the point under
      // the pointer (js/ranges.js brushToRange); a brush may reach into the context, never past the series
      const [x0, x1] = ev.range[key].map((v) => axis.toIndex(axis.date ? plotlyDateToMs(v) : Number(v)));
      const span = brushToRange(x0, x1, S.series[current.series_id].n_points);
      if (!span) return;
      ranges = addRange(ranges, newRange(span, $("lq-type").value || null));
      drawRanges();
      drawSelection();
      redraw();
    });
    // a click on the chart (Plotly's deselect) keeps the ranges: Esc or "Clear" removes them
  }

  window.addEventListener("online", () => { drawSync(); flush(); if (chartFailed) redraw(); });
  window.addEventListener("offline", drawSync);

  // -- start ------------------------------------------------------------------------------------------------------
  drawSync();
  drawProgress();
  if (outbox().length) flush();
  next();
})();
