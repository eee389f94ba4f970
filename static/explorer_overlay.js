// The explorer as a labeling place (templates/series.html, when a project uses the series): a project's model score
// and threshold over the chart, its analysts' labels shaded, ranges brushed on the chart and labeled with a value, an
// anomaly type and a comment, existing labels selected (on the chart or in the events list), edited and deleted
// (append-only underneath: PATCH / DELETE /api/v1/labels/{id} write a row that supersedes the old one), and the
// events list: labels and the model's anomalous segments, searchable and filterable, a click jumps the chart there.
//
// Uses the overlay and brush hooks documented at the top of explorer.js. The labels of the series are kept here (one
// request, again after each change), so a zoom or a pan asks only for the view and its scores. The score arrives
// downsampled to the chart width, so plain "scatter" (in the partial Plotly bundle) draws it.
import { ApiError, getJSON, postJSON, readJSON, request } from "./js/api.js";
import { theme } from "./js/palette.js";
import { newKey } from "./js/outbox.js";
import { eventView, filterEvents, labelAt, labelEvent, segmentEvent, segmentsFromScores } from "./js/events.js";

(function () {
  const card = document.getElementById("overlay-card");
  if (!card) return;
  const T = theme();
  const $ = (id) => document.getElementById(id);
  const seriesId = +card.dataset.seriesId;
  const nPoints = +card.dataset.nPoints;
  const projects = JSON.parse(card.dataset.projects);
  const me = card.dataset.user, isAdmin = card.dataset.admin === "true";
  const pSel = $("ov-project"), vSel = $("ov-version"), form = $("ov-label"), statusEl = $("ov-status");
  const startIn = $("ov-start"), endIn = $("ov-end"), typeSel = $("ov-type"), commentIn = $("ov-comment");
  const valueSel = $("ov-value");
  const st = {
    labels: [], // label rows in force (GET /api/v1/labels)
    segments: [], trace: null, threshold: null, // the model's anomalous segments and its whole-series score trace
    selected: null, // the label row being edited
    draft: null, // [start, end) brushed or typed, not saved yet
    mode: "zoom",
    types: ["anomaly"],
    window: 1, // the project's window, in points
    ready: null, // the project's labels and segments, loading: the first overlays wait for them
  };
  const scoreCache = new Map(); // view key -> score view: selecting or editing a label redraws without refetching
  // a refused overlay request draws nothing of it (an abort still cancels the whole view)
  const or = (promise, fallback) => promise.catch((err) => { if (err && err.name === "AbortError") throw err; return fallback; });
  const explorer = () => window.explorer;
  const refresh = () => explorer() && explorer().refreshOverlays();
  function say(text, kind) { statusEl.textContent = text; statusEl.className = "small " + (kind || "muted"); }
  const project = () => projects.find((x) => x.id === +pSel.value);
  const sendJSON = async (method, url, body) => readJSON(await request(url, { method, body }), url);

  // ---------- project and version ----------
  function fillVersions() {
    const p = project();
    vSel.innerHTML = "";
    for (const v of p.versions) {
      const o = document.createElement("option");
      o.value = v.id;
      o.textContent = `v${v.id} · round ${v.round_number} · ${v.method}` + (v.id === p.serving_version_id ? " (serving)" : "");
      if (v.id === p.serving_version_id) o.selected = true;
      vSel.appendChild(o);
    }
  }
  function loadProject() {
    fillVersions();
    st.ready = (async () => {
      try {
        const p = await getJSON(`/api/v1/projects/${pSel.value}`);
        st.types = (p.anomaly_types && p.anomaly_types.length) ? p.anomaly_types : ["anomaly"];
        st.window = p.window || 1;
      } catch (_) { st.types = ["anomaly"]; }
      typeSel.innerHTML = '<option value="">(no type)</option>' +
        st.types.map((t) => `<option value="${esc(t)}">${esc(t)}</option>`).join("");
      $("ev-type").innerHTML = '<option value="">any type</option><option value="-">no type</option>' +
        st.types.map((t) => `<option value="${esc(t)}">${esc(t)}</option>`).join("");
      await Promise.all([loadLabels(), loadSegments()]);
    })();
    deselect();
    return st.ready.then(refresh); // the score cache is per project and version: only the new ones are fetched
  }
  pSel.addEventListener("change", loadProject);
  vSel.addEventListener("change", async () => { await loadSegments(); refresh(); });

  // ---------- data: labels in force, the model's segments ----------
  async function loadLabels() {
    try {
      st.labels = await getJSON(`/api/v1/labels?project_id=${pSel.value}&series_id=${seriesId}`);
    } catch (err) { st.labels = []; say("could not load the labels: " + (err.detail || err.message), "error"); }
    if (st.selected) st.selected = st.labels.find((l) => l.id === st.selected.id) || null;
    renderEvents();
  }
  // The chosen version's anomalous segments (GET /api/v1/projects/{id}/events, every page up to MAX_SEGMENTS), and its
  // whole-series score trace (each label's peak score in the list). Runs less than a window apart are one event: one
  // window's score spans them both. Where the events endpoint refuses, the segments come from the trace instead.
  const MAX_SEGMENTS = 5000;
  async function loadSegments() {
    st.trace = null; st.segments = []; st.threshold = null;
    if (!vSel.value) { renderEvents(); return; }
    const pid = pSel.value, version = vSel.value, gap = Math.max(1, st.window);
    const trace = getJSON(`/api/v1/projects/${pid}/scores/view?series_id=${seriesId}&start=0&end=${nPoints}` +
      `&width=4000&version_id=${version}`).catch(() => null);
    let segments = null;
    try {
      segments = [];
      let cursor = null;
      do {
        const page = await getJSON(`/api/v1/projects/${pid}/events?series_id=${seriesId}&version_id=${version}` +
          `&merge_gap=${gap}&limit=1000` + (cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""));
        for (const e of page.events) segments.push({ start: e.start, end: e.end, peak: e.peak_score });
        cursor = page.next_cursor;
      } while (cursor && segments.length < MAX_SEGMENTS);
    } catch (_) { segments = null; /* no threshold, or an older server: derived from the trace below */ }
    const sv = await trace;
    if (pid !== pSel.value || version !== vSel.value) return; // another project or version was chosen meanwhile
    st.trace = sv;
    st.threshold = sv ? sv.threshold : null;
    st.segments = segments !== null ? segments
      : sv ? segmentsFromScores(sv.i, sv.y, sv.threshold, sv.end, Math.max(gap, Math.ceil(nPoints / 2000))) : [];
    renderEvents();
  }

  // ---------- overlays: score, threshold, labels, the selected label and the draft range ----------
  window.explorerOverlays = async (start, end, width, ctx) => {
    if (st.ready) await st.ready;
    const pid = +pSel.value;
    const traces = [], shapes = [];
    const key = `${pid}|${vSel.value}|${start}|${end}|${width}`;
    let scores = scoreCache.get(key);
    if (scores === undefined) {
      const q = `series_id=${seriesId}&start=${start}&end=${end}&width=${width}` + (vSel.value ? `&version_id=${vSel.value}` : "");
      scores = await or(getJSON(`/api/v1/projects/${pid}/scores/view?${q}`, { signal: ctx.signal }), null);
      scoreCache.set(key, scores);
      if (scoreCache.size > 24) scoreCache.delete(scoreCache.keys().next().value);
    }
    if (scores) {
      traces.push({ x: scores.i, y: scores.y, yaxis: "overlay", type: "scatter", mode: "lines",
        name: `score v${scores.version_id}`, line: { width: 1.1, color: T.score } });
      if (scores.threshold !== null) {
        shapes.push({ type: "line", xref: "x", yref: "overlay", x0: start, x1: end, y0: scores.threshold,
          y1: scores.threshold, line: { color: T.threshold, dash: "dash", width: 1.4 } });
      }
    }
    for (const lab of st.labels) {
      if (lab.end <= start || lab.start >= end) continue;
      shapes.push({ type: "rect", xref: "x", yref: "paper", x0: lab.start, x1: lab.end, y0: 0, y1: 1,
        fillcolor: T.labelFill[lab.value] || T.labelFill.unsure, line: { width: 0 }, layer: "below", name: `label ${lab.id}` });
    }
    const sel = st.selected;
    const outline = st.draft || (sel ? [sel.start, sel.end] : null);
    if (outline && outline[1] > start && outline[0] < end) {
      shapes.push({ type: "rect", xref: "x", yref: "paper", x0: outline[0], x1: outline[1], y0: 0, y1: 1,
        fillcolor: st.draft ? "rgba(0,0,0,0)" : "rgba(0,0,0,0)", layer: "above", name: st.draft ? "draft" : "selected",
        line: { color: st.draft ? T.draft : T.selected, width: 1.6, dash: st.draft ? "dot" : "solid" } });
    }
    return { traces, shapes, panelTitle: scores ? `score v${scores.version_id}` : "score (none yet)" };
  };

  // ---------- brushing, picking, the form ----------
  function setMode(mode) {
    st.mode = mode;
    $("mode-zoom").setAttribute("aria-pressed", String(mode === "zoom"));
    $("mode-label").setAttribute("aria-pressed", String(mode === "label"));
    if (explorer()) explorer().setInteraction({ mode });
  }
  $("mode-zoom").addEventListener("click", () => setMode("zoom"));
  $("mode-label").addEventListener("click", () => setMode("label"));
  function hookUp() {
    if (!explorer()) return false;
    explorer().setInteraction({ mode: st.mode, onBrush: brushed, onPoint: picked });
    return true;
  }
  if (!hookUp()) document.addEventListener("DOMContentLoaded", hookUp);

  function brushed(a, b) {
    st.draft = [a, b];
    startIn.value = a; endIn.value = b;
    if (st.selected) say(`new range ${fmtRange(a, b)} for label #${st.selected.id}: Save changes to keep it`);
    else say(`range ${fmtRange(a, b)} (${(b - a).toLocaleString()} points): choose a type, add a comment, then mark it`);
    refresh();
  }
  function picked(i) {
    const hit = labelAt(st.labels, i);
    if (hit) select(hit);
    else if (st.selected || st.draft) deselect();
  }
  function select(label) {
    st.selected = label; st.draft = null;
    form.dataset.mode = "edit";
    $("ov-title").textContent = `Label #${label.id}`;
    startIn.value = label.start; endIn.value = label.end;
    valueSel.value = label.value;
    typeSel.value = label.label_type || "";
    commentIn.value = label.comment || "";
    $("ov-value-field").hidden = false;
    $("ov-new-actions").hidden = true;
    $("ov-edit-actions").hidden = false;
    const mine = isAdmin || (label.author && label.author === me);
    $("ov-save").disabled = $("ov-delete").disabled = !mine;
    $("ov-owner").textContent = (label.author ? `by ${label.author}` : label.source === "oracle" ? "from the ground truth" : "") +
      (label.created_at ? ` · ${fmtWhen(label.created_at)}` : "") +
      (mine ? "" : label.author ? ` · only ${label.author} or an admin can change it` : " · only an admin can change it");
    say("");
    syncTypeField();
    markSelected();
    refresh();
  }
  function deselect() {
    st.selected = null; st.draft = null;
    form.dataset.mode = "new";
    $("ov-title").textContent = "Label a range";
    $("ov-value-field").hidden = true;
    $("ov-new-actions").hidden = false;
    $("ov-edit-actions").hidden = true;
    commentIn.value = "";
    typeSel.value = "";
    syncTypeField();
    markSelected();
    refresh();
  }
  // A type belongs to an anomaly: the field is off while an edited label is normal or unsure.
  function syncTypeField() { typeSel.disabled = form.dataset.mode === "edit" && valueSel.value !== "anomaly"; }
  valueSel.addEventListener("change", syncTypeField);
  $("ov-cancel").addEventListener("click", deselect);
  for (const input of [startIn, endIn]) {
    input.addEventListener("change", () => {
      const a = +startIn.value, b = +endIn.value;
      st.draft = Number.isFinite(a) && Number.isFinite(b) && b > a ? [a, b] : null;
      refresh();
    });
  }
  $("ov-view").addEventListener("click", () => {
    const s = explorer() && explorer().state;
    if (!s) return;
    startIn.value = s.start; endIn.value = s.end;
    st.draft = [s.start, s.end];
    refresh();
  });
  function readRange() {
    const start = +startIn.value, end = +endIn.value;
    if (!(Number.isInteger(start) && Number.isInteger(end) && end > start)) { say("give a range: from < to", "error"); return null; }
    return { start, end };
  }

  // New labels: the value buttons store the range at once.
  for (const btn of document.querySelectorAll("#ov-new-actions button[data-value]")) {
    btn.addEventListener("click", async () => {
      const range = readRange();
      if (!range) return;
      const value = btn.dataset.value;
      const body = { series_id: seriesId, ...range, value, idempotency_key: newKey().replace(/[^A-Za-z0-9_-]/g, "") };
      if (value === "anomaly" && typeSel.value) body.label_type = typeSel.value;
      if (commentIn.value.trim()) body.comment = commentIn.value.trim();
      say("saving…");
      let saved;
      try { saved = await postJSON(`/api/v1/projects/${pSel.value}/labels`, body); }
      catch (err) { say(err.detail || "not saved", "error"); return; }
      say(`saved: points ${range.start}–${range.end} ${value}${body.label_type ? " · " + body.label_type : ""}`, "ok");
      st.draft = null; commentIn.value = "";
      await loadLabels();
      flash(saved.id);
      refresh();
    });
  }
  // The selected label: save changes (PATCH) or delete (DELETE); both write a superseding row.
  $("ov-save").addEventListener("click", async () => {
    const label = st.selected, range = readRange();
    if (!label || !range) return;
    const body = { ...range, value: valueSel.value, comment: commentIn.value.trim() || null,
      label_type: valueSel.value === "anomaly" ? (typeSel.value || null) : null };
    say("saving…");
    let saved;
    try { saved = await sendJSON("PATCH", `/api/v1/labels/${label.id}`, body); }
    catch (err) { say(refusal(err), "error"); if (err.status === 409) await loadLabels(); return; }
    await loadLabels();
    const now = st.labels.find((l) => l.id === saved.id);
    if (now) select(now);
    say(saved.id === label.id ? "nothing changed" : `saved: label #${label.id} is now #${saved.id}`, "ok");
    flash(saved.id);
  });
  $("ov-delete").addEventListener("click", async () => {
    const label = st.selected;
    if (!label) return;
    say("deleting…");
    try { await sendJSON("DELETE", `/api/v1/labels/${label.id}`); }
    catch (err) { say(refusal(err), "error"); if (err.status === 409) await loadLabels(); return; }
    deselect();
    await loadLabels();
    say(`deleted label #${label.id} (points ${label.start}–${label.end}, ${label.value}); its history is kept`, "ok");
  });
  function refusal(err) {
    if (err instanceof ApiError && err.status === 409) return err.detail + " (the list is reloaded)";
    return err.detail || err.message || "not saved";
  }

  // Keys: L toggles what a drag does, Esc leaves the selection (never while typing).
  document.addEventListener("keydown", (ev) => {
    const t = ev.target;
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (t && (t.isContentEditable || t.tagName === "TEXTAREA" || (t.tagName === "INPUT" && t.type !== "checkbox"))) return;
    if (ev.key === "l" || ev.key === "L") { setMode(st.mode === "label" ? "zoom" : "label"); ev.preventDefault(); }
    else if (ev.key === "Escape" && (st.selected || st.draft)) { deselect(); say(""); }
  });

  // ---------- the events list ----------
  const list = $("ev-list"), countEl = $("ev-count"), noteEl = $("ev-note");
  const MAX_SHOWN = 300;
  const filterIds = ["ev-search", "ev-kind", "ev-value", "ev-type", "ev-author", "ev-min-score", "ev-from", "ev-to", "ev-in-view"];
  for (const id of filterIds) $(id).addEventListener("input", renderEvents);
  $("chart").addEventListener("explorer:view", () => { if ($("ev-in-view").checked || !timesKnown) renderEvents(); });
  let timesKnown = false;

  function allEvents() {
    const out = st.labels.map((l) => labelEvent(l, st.trace));
    for (const s of st.segments) out.push(segmentEvent(s, st.trace && st.trace.version_id));
    return out;
  }
  function filters() {
    const num = (id) => ($(id).value === "" ? NaN : +$(id).value);
    const f = { text: $("ev-search").value, kind: $("ev-kind").value, value: $("ev-value").value,
      type: $("ev-type").value, author: $("ev-author").value, minScore: num("ev-min-score") };
    f.from = timeToIndex($("ev-from").value);
    f.to = timeToIndex($("ev-to").value);
    if ($("ev-in-view").checked && explorer()) { f.from = explorer().state.start; f.to = explorer().state.end; }
    return f;
  }
  function renderEvents() {
    const events = allEvents();
    const authors = [...new Set(events.map((e) => e.author).filter(Boolean))].sort();
    const aSel = $("ev-author"), chosen = aSel.value;
    aSel.innerHTML = '<option value="">any analyst</option>' +
      authors.map((a) => `<option value="${esc(a)}"${a === chosen ? " selected" : ""}>${esc(a)}</option>`).join("");
    const shown = filterEvents(events, filters());
    countEl.textContent = `${shown.length} of ${events.length}`;
    timesKnown = !!(explorer() && (explorer().state.overview || explorer().state.view));
    const frag = document.createDocumentFragment();
    for (const e of shown.slice(0, MAX_SHOWN)) frag.appendChild(eventItem(e));
    list.replaceChildren(frag);
    noteEl.textContent = shown.length > MAX_SHOWN ? `the first ${MAX_SHOWN} are listed: narrow the filters to see the rest`
      : events.length === 0 ? "no labels yet, and no segment above the model's threshold" : "";
    markSelected();
  }
  function eventItem(e) {
    const li = document.createElement("li");
    li.className = `ev-item ${e.kind} ${e.value}`;
    li.dataset.kind = e.kind; li.dataset.id = e.id; li.dataset.start = e.start; li.dataset.end = e.end;
    const what = e.kind === "segment" ? "model: above threshold" : e.value + (e.type ? ` · ${e.type}` : "");
    const score = e.score !== null && e.score !== undefined ? `peak ${fmtScore(e.score)}` : "";
    li.innerHTML = `<button type="button" class="ev-jump" title="Show it on the chart">
      <span class="swatch ${e.kind === "segment" ? "seg" : "lab-" + e.value}"></span><b>${esc(what)}</b>
      <span class="ev-when">${esc(fmtRange(e.start, e.end))}</span>
      <span class="ev-meta">${esc([e.author, score, e.createdAt ? fmtWhen(e.createdAt) : ""].filter(Boolean).join(" · "))}</span>
      ${e.comment ? `<span class="ev-comment">${esc(e.comment)}</span>` : ""}</button>`;
    li.querySelector("button").addEventListener("click", () => jumpTo(e));
    return li;
  }
  function jumpTo(e) {
    if (e.kind === "label") {
      const label = st.labels.find((l) => l.id === e.id);
      if (label) select(label);
    } else {
      deselect();
      brushed(e.start, e.end); // ready to be labeled
    }
    if (explorer()) explorer().show(...eventView(e.start, e.end, nPoints));
  }
  function markSelected() {
    for (const li of list.children) {
      li.classList.toggle("selected", !!st.selected && li.dataset.kind === "label" && +li.dataset.id === st.selected.id);
    }
  }
  function flash(id) {
    const li = [...list.children].find((x) => x.dataset.kind === "label" && +x.dataset.id === id);
    if (li) li.scrollIntoView({ block: "nearest" });
  }

  // ---------- formatting ----------
  function esc(s) { return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`); }
  function fmtScore(v) { return Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(3); }
  function fmtWhen(iso) {
    const d = new Date(iso.endsWith("Z") || iso.includes("+") ? iso : iso + "Z");
    return Number.isNaN(d.getTime()) ? iso : d.toISOString().slice(0, 16).replace("T", " ");
  }
  // A range in the series' own time: dates for a timestamped series, point numbers otherwise.
  function fmtRange(a, b) {
    const ex = explorer();
    if (!ex || ex.xKind === "index" || !(ex.state.overview || ex.state.view)) return `points ${a.toLocaleString()}–${b.toLocaleString()}`;
    const x0 = ex.toX(a), x1 = ex.toX(Math.max(a, b - 1));
    if (ex.xKind === "datetime") {
      const f = (ms) => new Date(ms).toISOString().slice(0, 19).replace("T", " ");
      const s0 = f(x0), s1 = f(x1);
      return s0 === s1 ? s0 : s0.slice(0, 10) === s1.slice(0, 10) ? `${s0} – ${s1.slice(11)}` : `${s0} – ${s1}`;
    }
    return x0 === x1 ? `${x0}` : `${x0} – ${x1}`;
  }
  // The events filter's from / to (a date and time for a timestamped series, a number otherwise) as a point index.
  function timeToIndex(text) {
    if (text === "" || text === undefined) return NaN;
    const ex = explorer();
    if (!ex) return NaN;
    if (ex.xKind === "datetime") {
      const ms = Date.parse(text.length <= 16 ? text + ":00Z" : text + "Z");
      return Number.isFinite(ms) ? ex.toIndex(ms) : NaN;
    }
    return ex.xKind === "index" ? +text : ex.toIndex(+text);
  }

  loadProject();
})();
