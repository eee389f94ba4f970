// Explorer overlays: a project's model score and threshold, and analysts' labels, on any range of the series;
// plus labeling a range from the explorer. Uses the hook documented at the top of explorer.js. The score arrives
// downsampled to the chart width, so plain "scatter" (in the partial Plotly bundle; "scattergl" is not) draws it.
// An ES module; the API client (CSRF header, errors) and the colours come from static/js/.
import { getJSON, postJSON } from "./js/api.js";
import { OVERLAY_LABEL_FILL as FILL, OVERLAY_SCORE, THRESHOLD } from "./js/palette.js";
import { newKey } from "./js/outbox.js";

(function () {
  const card = document.getElementById("overlay-card");
  if (!card) return;
  const seriesId = +card.dataset.seriesId;
  const projects = JSON.parse(card.dataset.projects);
  const pSel = document.getElementById("ov-project");
  const vSel = document.getElementById("ov-version");
  const statusEl = document.getElementById("ov-status");
  // a refused overlay request draws nothing of it (an abort still cancels the whole view)
  const or = (promise, fallback) => promise.catch((err) => { if (err && err.name === "AbortError") throw err; return fallback; });

  function fillVersions() {
    const p = projects.find((x) => x.id === +pSel.value);
    vSel.innerHTML = "";
    for (const v of p.versions) {
      const o = document.createElement("option");
      o.value = v.id;
      o.textContent = `v${v.id} · round ${v.round_number} · ${v.method}` + (v.id === p.serving_version_id ? " (serving)" : "");
      if (v.id === p.serving_version_id) o.selected = true;
      vSel.appendChild(o);
    }
  }
  fillVersions();
  pSel.addEventListener("change", () => { fillVersions(); redraw(); });
  vSel.addEventListener("change", redraw);
  function redraw() { if (window.explorer) window.explorer.redraw(); }

  window.explorerOverlays = async (start, end, width, ctx) => {
    const pid = +pSel.value;
    const traces = [], shapes = [];
    const q = `series_id=${seriesId}&start=${start}&end=${end}&width=${width}` + (vSel.value ? `&version_id=${vSel.value}` : "");
    const [scores, labels] = await Promise.all([
      or(getJSON(`/api/v1/projects/${pid}/scores/view?${q}`, { signal: ctx.signal }), null),
      or(getJSON(`/api/v1/projects/${pid}/series/${seriesId}/labels?start=${start}&end=${end}`, { signal: ctx.signal }), []),
    ]);
    if (scores) {
      traces.push({ x: scores.i, y: scores.y, yaxis: "overlay", type: "scatter", mode: "lines",
        name: `score v${scores.version_id}`, line: { width: 1, color: OVERLAY_SCORE } });
      if (scores.threshold !== null) {
        shapes.push({ type: "line", xref: "x", yref: "overlay", x0: start, x1: end, y0: scores.threshold,
          y1: scores.threshold, line: { color: THRESHOLD, dash: "dash", width: 1 } });
      }
    }
    for (const lab of labels) {
      shapes.push({ type: "rect", xref: "x", yref: "paper", x0: lab.start, x1: lab.end, y0: 0, y1: 1,
        fillcolor: FILL[lab.value] || FILL.unsure, line: { width: 0 }, layer: "below" });
    }
    return { traces, shapes, panelTitle: scores ? `score v${scores.version_id}` : "score (none yet)" };
  };

  document.getElementById("ov-view").addEventListener("click", () => {
    const st = window.explorer && window.explorer.state;
    if (!st) return;
    document.getElementById("ov-start").value = st.start;
    document.getElementById("ov-end").value = st.end;
  });
  for (const btn of document.querySelectorAll("#ov-label button[data-value]")) {
    btn.addEventListener("click", async () => {
      const start = +document.getElementById("ov-start").value, end = +document.getElementById("ov-end").value;
      if (!(end > start)) { statusEl.textContent = "give a range: from < to"; return; }
      statusEl.textContent = "saving…";
      try {
        await postJSON(`/api/v1/projects/${pSel.value}/labels`, { series_id: seriesId, start, end, value: btn.dataset.value,
          idempotency_key: newKey().replace(/[^A-Za-z0-9_-]/g, "") });
      } catch (err) { statusEl.textContent = err.detail || "not saved"; return; }
      statusEl.textContent = `saved: points ${start}–${end} ${btn.dataset.value}`;
      redraw();
    });
  }
})();
