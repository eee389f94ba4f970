// The analyst's labeling queue: one queried window at a time inside its context, every channel stacked, the
// model's score and threshold below, existing labels shaded. Keys answer; each answer goes into a small outbox
// (localStorage) with its own idempotency key and is sent at once, so a lost connection or a reload never loses or
// duplicates it. The next window is shown straight away (its data was prefetched) while the answer is delivered.
// An ES module (static/js/ holds what it shares with the explorer and the admin pages).
import { getJSON, request } from "./js/api.js";
import { toast } from "./js/toast.js";
import { CHANNEL_COLORS as COLORS, LABEL_SHADE as SHADE, GRID, SCORE, SCORE_FILL, THRESHOLD } from "./js/palette.js";
import { LABEL_MAX_SPAN as MAX_SPAN, contextView, dragToRange, panView, zoomView } from "./js/view.js";
import { OUTBOX_KEY as OUTBOX, Outbox, answerBody, deliveryOutcome, jsonStore, makeEntry, newKey,
         RETRY_OFFLINE_MS, RETRY_SERVER_MS } from "./js/outbox.js";
import { axisKey, plotlyReady as whenPlotly, stackDomainsByFraction, stackRows } from "./js/chart.js";
import { exposeForTests } from "./js/hooks.js";

(function () {
  const root = document.getElementById("lq");
  if (!root) return;
  const $ = (id) => document.getElementById(id);
  const projectId = Number(root.dataset.project);
  const isAdmin = root.dataset.admin === "1";
  const UNDO = `anomaloop.undo.${projectId}`;

  let S = JSON.parse($("lq-state").textContent);
  let current = null; // the query on screen
  let view = null; // {start, end} points on screen
  let selection = null; // {a, b} dragged anomalous range, points
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
    const layout = {
      height: Math.max(340, 96 * chans.length + (withScore ? 130 : 0) + 70),
      margin: { l: 64, r: 18, t: 26, b: 36 }, showlegend: false, dragmode: "select", selectdirection: "h",
      hovermode: "x unified", font: { family: "system-ui, sans-serif", size: 11.5 },
      paper_bgcolor: "#fff", plot_bgcolor: "#fff", selections: [],
      xaxis: { range: [view.start - 0.5, view.end - 0.5], showgrid: true, gridcolor: GRID, zeroline: false,
               title: { text: "point", standoff: 4 }, fixedrange: true },
      shapes: [], annotations: [],
    };
    const traces = [];
    let shared = null;
    if ($("lq-shared").checked && chans.length > 1) {
      const all = chans.flatMap((c) => c.y.filter((y) => y != null));
      if (all.length) { const lo = Math.min(...all), hi = Math.max(...all), pad = (hi - lo) * 0.06 || 1; shared = [lo - pad, hi + pad]; }
    }
    const stamp = (x) => (s.x_kind === "datetime" ? new Date(x).toISOString().replace("T", " ").replace(".000Z", "") : x);
    // one row per channel (and the score's, a little taller) sharing the x axis; its tick labels under the bottom row
    const axes = stackRows(layout, stackDomainsByFraction(weights, 0.035), () => (
      { zeroline: false, gridcolor: GRID, fixedrange: true, automargin: true, tickfont: { size: 10.5 } }));
    chans.forEach((c, r) => {
      const color = COLORS[c.index % COLORS.length];
      const label = c.name.replace(/[<>&]/g, "");
      traces.push({ type: "scatter", mode: "lines", x: c.i, y: c.y, yaxis: axes[r], name: c.name,
                    line: { color, width: 1.4 }, connectgaps: false, text: c.x.map(stamp),
                    hovertemplate: r === 0 && s.x_kind === "datetime" ? `${label}: %{y:.4g} · %{text}<extra></extra>`
                                                                      : `${label}: %{y:.4g}<extra></extra>` });
      if (shared) layout[axisKey(r)].range = shared;
      layout.annotations.push({ text: label, xref: "paper", yref: `${axes[r]} domain`, x: 0, y: 1, xanchor: "left",
                                yanchor: "bottom", showarrow: false, font: { size: 11, color }, bgcolor: "rgba(255,255,255,.8)" });
    });
    if (withScore) {
      const r = chans.length, sc = data.scores;
      const xs = sc.scores.map((_, i) => sc.start + i);
      traces.push({ type: "scatter", mode: "lines", x: xs, y: sc.scores, yaxis: axes[r], name: "score",
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
    }
    for (const [qid, l] of local) {
      const lq = byId(qid);
      if (!lq || lq.series_id !== q.series_id || l.value === "skip") continue;
      if (l.a != null) {
        layout.shapes.push(band(lq.start, l.a, SHADE.normal), band(l.a, l.b, SHADE.anomaly), band(l.b, lq.end, SHADE.normal));
      } else layout.shapes.push(band(lq.start, lq.end, SHADE[l.value]));
    }
    // the queried window on top of everything
    layout.shapes.push({ type: "rect", xref: "x", yref: "paper", x0: q.start - 0.5, x1: q.end - 0.5, y0: 0, y1: 1,
                         fillcolor: "rgba(47,111,222,0.07)", line: { color: "#2f6fde", width: 1.6 }, layer: "above" });
    layout.annotations.push({ text: "queried window", xref: "x", yref: "paper", x: (q.start + q.end) / 2, y: 1, yanchor: "bottom",
                              showarrow: false, font: { size: 11, color: "#2f6fde" } });
    if (selection) {
      layout.shapes.push({ type: "rect", xref: "x", yref: "paper", x0: selection.a - 0.5, x1: selection.b - 0.5, y0: 0, y1: 1,
                           fillcolor: "rgba(217,54,62,0.22)", line: { color: "#d9363e", width: 1.5, dash: "dot" }, layer: "above" });
    }
    $("lq-range").textContent = `points ${view.start.toLocaleString()}–${view.end.toLocaleString()} of ${s.n_points.toLocaleString()}`;
    return Plotly.react("lq-chart", traces, layout, { displayModeBar: false, responsive: true, scrollZoom: false, doubleClick: false });
  }

  function band(a, b, color) {
    return { type: "rect", xref: "x", yref: "paper", x0: a - 0.5, x1: b - 0.5, y0: 0, y1: 1, fillcolor: color, line: { width: 0 }, layer: "below" };
  }

  // -- panels ---------------------------------------------------------------------------------------------------
  function drawProgress() {
    const qs = queries(), done = qs.filter((q) => status(q) !== "pending").length;
    $("lq-count").textContent = `${done} / ${qs.length}`;
    $("lq-bar").style.width = qs.length ? `${(100 * done) / qs.length}%` : "0%";
    $("lq-round").textContent = S.round ? `round ${S.round.number}` : "";
  }

  function answerText(q) {
    const l = local.get(q.id);
    if (l) return l.value === "skip" ? "skipped" : l.a != null ? `anomaly ${l.a}–${l.b}, rest normal` : l.value;
    if (q.status === "skipped") return "skipped";
    if (!q.answer || !q.answer.length) return "";
    const anomalous = q.answer.filter((a) => a.value === "anomaly");
    if (q.answer.length > 1 && anomalous.length) return `anomaly ${anomalous[0].start}–${anomalous[0].end}, rest normal`;
    return q.answer[0].value;
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
      li.querySelector(".val").textContent = st === "pending" ? "to do" : (ans.split(" ")[0] || st) + (l && l.state === "pending" ? " ⋯" : "");
      li.title = ans || "not answered yet";
      ul.appendChild(li);
    }
  }

  $("lq-queue").addEventListener("click", (ev) => {
    const li = ev.target.closest("li[data-query]");
    if (!li || !roundOpen()) return;
    show(byId(Number(li.dataset.query)));
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
    const q = current;
    $("lq-selection").textContent = selection && q
      ? `Marked points ${selection.a}–${selection.b}: press a to save as anomaly (the rest of the window normal), Esc to clear`
      : "";
  }

  // -- showing a query -------------------------------------------------------------------------------------------
  async function show(q, t0) {
    if (!q) return;
    current = q;
    selection = null;
    view = defaultView(q);
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
      done.innerHTML = `<div class="big">✓</div><h2>All windows answered</h2><p class="muted">Saving…</p>`;
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
    const q = pendingQueries()[0];
    if (q && roundOpen()) show(q, t0);
    else showDone();
  }

  // -- answering -------------------------------------------------------------------------------------------------
  function answer(value) {
    if (!current || !roundOpen()) { toast(S.round ? "No window to answer: this round has none left" : "No round open yet"); return; }
    const t0 = performance.now();
    const q = current;
    const range = value === "anomaly" && selection ? selection : null;
    const entry = makeEntry({ key: newKey(), queryId: q.id, projectId, roundId: S.round.id, value, range, at: Date.now() });
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
            q.answer = (data.labels || []).map((x) => ({ start: x.start, end: x.end, value: x.value }));
            if (S.round && S.round.id === e.roundId) S.round.status = data.round_status;
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
          if (roundOpen() && pendingQueries().length) { pollSince = null; retrain = null; next(); return; }
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
    if (ev.ctrlKey || ev.metaKey || ev.altKey || typingInto(ev.target)) return;
    const k = ev.key;
    const act = { a: () => answer("anomaly"), n: () => answer("normal"), u: () => answer("unsure"), s: () => answer("skip"),
                  z: () => undo(), ArrowLeft: () => pan(-1), ArrowRight: () => pan(1), "+": () => zoom(1 / 1.5),
                  "=": () => zoom(1 / 1.5), "-": () => zoom(1.5), "_": () => zoom(1.5), "−": () => zoom(1.5),
                  Escape: () => { selection = null; drawSelection(); redraw(); } }[k.length === 1 ? k.toLowerCase() : k];
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
      const [x0, x1] = ev.range[key];
      // point i is drawn at x = i and owns [i - ½, i + ½): both ends take the point under the pointer (js/view.js)
      selection = dragToRange(x0, x1, current);
      if (!selection) toast("Drag inside the queried window");
      drawSelection();
      redraw();
    });
    el.on("plotly_deselect", () => { selection = null; drawSelection(); redraw(); });
  }

  window.addEventListener("online", () => { drawSync(); flush(); if (chartFailed) redraw(); });
  window.addEventListener("offline", drawSync);

  // -- start ------------------------------------------------------------------------------------------------------
  drawSync();
  drawProgress();
  if (outbox().length) flush();
  next();
})();
