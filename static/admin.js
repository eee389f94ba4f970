// Admin pages: the new-project form's helpers, live job progress (cancel / retry), promote / roll back,
// start a round, and the project page's charts. Every write goes to /api/v1 with the session's CSRF header;
// the server checks the admin role whatever this page shows. An ES module: the API client and the toast are
// static/js/'s.
import { getJSON, postJSON } from "./js/api.js";
import { toast as showToast } from "./js/toast.js";
import { LABEL_BARS, theme } from "./js/palette.js";

(function () {
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));

  const toast = (text, ms) => showToast(text, ms || 3500);
  const post = postJSON; // throws an ApiError whose message is the server's detail

  function esc(s) {
    return String(s == null ? "" : s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  }

  // -- new project form ---------------------------------------------------------------------------------------
  const detector = $("#detector");
  if (detector) {
    const params = $("#detector_params");
    detector.addEventListener("change", () => {
      const opt = detector.selectedOptions[0];
      $("#detector-help").textContent = opt.dataset.help || "";
      params.value = JSON.stringify(JSON.parse(opt.dataset.params || "{}"), null, 1);
    });
    const strategy = $("#strategy");
    strategy.addEventListener("change", () => { $("#strategy-help").textContent = strategy.selectedOptions[0].dataset.help || ""; });
    const dataset = $("#dataset_id"), series = $("#series_ids");
    const filter = () => {
      for (const o of series.options) {
        const mine = o.dataset.dataset === dataset.value;
        o.hidden = !mine;
        if (!mine) o.selected = false;
      }
    };
    dataset.addEventListener("change", filter);
    filter();
  }

  // -- jobs: live progress --------------------------------------------------------------------------------------
  const table = $("#jobs");
  if (!table) return;
  const projectId = table.dataset.project || null;
  const names = JSON.parse(($("#project-names") || {}).textContent || "{}");
  let jobs = JSON.parse(($("#jobs-data") || {}).textContent || "[]");
  let signature = sig(jobs);
  const active = (j) => j.status === "queued" || j.status === "running";

  function sig(list) { return list.map((j) => `${j.id}:${j.status}`).join(","); }

  function when(iso) {
    if (!iso) return "";
    const d = new Date(iso.endsWith("Z") || iso.includes("+") ? iso : iso + "Z");
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  function duration(j) {
    if (!j.started_at) return "";
    const a = new Date(j.started_at.includes("+") || j.started_at.endsWith("Z") ? j.started_at : j.started_at + "Z");
    const b = j.finished_at ? new Date(j.finished_at.includes("+") || j.finished_at.endsWith("Z") ? j.finished_at : j.finished_at + "Z") : new Date();
    const s = Math.max(0, (b - a) / 1000);
    return s < 90 ? `${s.toFixed(0)} s` : `${(s / 60).toFixed(1)} min`;
  }

  function detailLine(j) {
    const d = j.detail || {};
    const bits = [];
    if (d.epoch != null) bits.push(`epoch ${d.epoch}${d.epochs ? "/" + d.epochs : ""}`);
    if (d.episode != null) bits.push(`episode ${d.episode}${d.episodes ? "/" + d.episodes : ""}`);
    if (d.loss != null) bits.push(`loss ${Number(d.loss).toPrecision(4)}`);
    if (d.reward != null) bits.push(`reward ${Number(d.reward).toPrecision(4)}`);
    return bits.join(" · ");
  }

  function row(j) {
    const pct = Math.round(j.progress || 0);
    const msg = j.status === "failed" ? "failed" : (j.message || j.phase || j.status);
    const extra = j.status === "running" ? detailLine(j) : "";
    let act = "";
    if (active(j)) act = j.cancel_requested ? '<span class="small muted">cancelling…</span>'
      : `<button class="secondary small job-cancel" data-job="${j.id}">Cancel</button>`;
    else if (j.status === "failed" || j.status === "cancelled") act = `<button class="secondary small job-retry" data-job="${j.id}">Retry</button>`;
    const project = projectId ? "" : `<td>${j.project_id ? `<a href="/projects/${j.project_id}">${esc(names[j.project_id] || "project " + j.project_id)}</a>` : "—"}</td>`;
    return `<tr data-job="${j.id}" data-status="${j.status}">
      <td class="nowrap">#${j.id}</td>${project}<td>${esc(j.kind)}</td>
      <td><span class="pill ${esc(j.status)}">${esc(j.status)}</span></td>
      <td><div class="job-progress ${esc(j.status)}"><div class="progress" role="progressbar" aria-valuenow="${pct}" aria-valuemin="0" aria-valuemax="100"><div style="width:${pct}%"></div></div>
        <div class="line"><span class="job-msg">${esc(msg)}${extra && !msg.includes("loss") && !msg.includes("reward") ? " · " + esc(extra) : ""}</span><span class="job-pct">${pct}%</span></div>
        ${j.error ? `<div class="job-error">${esc(j.error)}</div>` : ""}</div></td>
      <td class="small nowrap">${when(j.started_at || j.created_at)}${j.started_at ? " · " + duration(j) : ""}</td>
      <td>${act}</td></tr>`;
  }

  function draw() {
    const body = $("tbody", table);
    body.innerHTML = jobs.length ? jobs.map(row).join("") : `<tr><td colspan="7" class="muted">No job yet.</td></tr>`;
    const dot = $("#live-state .live-dot");
    if (dot) dot.classList.toggle("on", jobs.some(active));
  }

  let timer = null;
  async function poll() {
    clearTimeout(timer);
    try {
      const webhooks = table.dataset.webhooks === "true"; // deliveries only when the page asked for them
      const url = projectId ? `/api/v1/jobs?project_id=${projectId}&limit=50` : `/api/v1/jobs?limit=200&webhooks=${webhooks}`;
      const fresh = await getJSON(url); // a refusal throws: the next poll tries again
      const changed = sig(fresh) !== signature;
      jobs = fresh;
      signature = sig(fresh);
      draw();
      if (changed && projectId) await refreshSections();
    } catch (e) { /* offline for a moment: the next poll catches up */ }
    // every second while something runs; slower otherwise, still catching jobs started elsewhere (a completed round)
    timer = setTimeout(poll, jobs.some(active) ? 1000 : 2000);
  }

  table.addEventListener("click", async (ev) => {
    const b = ev.target.closest("button[data-job]");
    if (!b) return;
    b.disabled = true;
    const id = b.dataset.job;
    try {
      if (b.classList.contains("job-cancel")) { await post(`/api/v1/jobs/${id}/cancel`); toast(`Job #${id}: cancel requested`); }
      else { await post(`/api/v1/jobs/${id}/retry`); toast(`Job #${id} queued again`); }
    } catch (e) { toast(`Job #${id}: ${e.message}`, 6000); }
    poll();
  });

  // -- project page: sections refreshed in place, charts, promote, start round -------------------------------------
  const LIVE = ["live-header", "live-versions", "live-rounds", "start-round"];
  let refreshSeq = 0, appliedSeq = 0;
  async function refreshSections() {
    const mine = ++refreshSeq;
    try {
      const r = await fetch(location.pathname, { credentials: "same-origin" });
      if (!r.ok) return;
      const html = await r.text();
      if (mine < appliedSeq) return; // an older page arrived after a newer one: never go back in time
      appliedSeq = mine;
      const doc = new DOMParser().parseFromString(html, "text/html");
      for (const id of LIVE) {
        const fresh = doc.getElementById(id), old = document.getElementById(id);
        if (fresh && old) {
          // keep the rounds the admin opened open
          const opened = $$("details.round", old).map((d) => d.open);
          old.innerHTML = fresh.innerHTML;
          $$("details.round", old).forEach((d, i) => { if (i < opened.length) d.open = opened[i]; });
        }
      }
      charts();
    } catch (e) { /* keep what is shown */ }
  }

  function charts() {
    const data = $("#charts-data");
    if (!data || !window.Plotly) return;
    const c = JSON.parse(data.textContent);
    // colours follow the system's light or dark scheme (js/palette.js), as the explorer's and the labeling page's do
    const T = theme(), dark = T.name === "dark";
    const axis = { gridcolor: T.grid, zerolinecolor: T.spike, linecolor: T.spike };
    const base = { margin: { l: 48, r: 12, t: 8, b: 40 }, font: { family: "system-ui, sans-serif", size: 12, color: T.text },
                   legend: { orientation: "h", y: 1.12 }, paper_bgcolor: T.paperBg, plot_bgcolor: T.plotBg,
                   hoverlabel: { bgcolor: T.paperBg, bordercolor: T.spike, font: { color: T.text } } };
    const bars = dark ? T.label : LABEL_BARS; // on the dark plot the brighter yellow of "unsure"
    const cfg = { displayModeBar: false, responsive: true };
    const curve = c.curve.filter((p) => p.pr_auc != null || p.labels_pr_auc != null);
    if ($("#curve")) {
      if (!c.curve.length) $("#curve").innerHTML = '<div class="empty-state">No model version yet.</div>';
      else Plotly.react("curve", [
        { x: c.curve.map((p) => p.labels_used), y: c.curve.map((p) => p.pr_auc), name: "PR-AUC, ground truth", mode: "lines+markers",
          text: c.curve.map((p) => `v${p.version} (round ${p.round})`), line: { color: T.accent } },
        { x: c.curve.map((p) => p.labels_used), y: c.curve.map((p) => p.labels_pr_auc), name: "PR-AUC, labels gathered", mode: "lines+markers",
          text: c.curve.map((p) => `v${p.version} (round ${p.round})`), line: { color: dark ? "#E69F00" : "#c77700", dash: "dot" } },
      ], { ...base, xaxis: { ...axis, title: { text: "labels used (windows)" }, range: [0, Math.max(c.budget || 1, ...c.curve.map((p) => p.labels_used)) * 1.03] },
           yaxis: { ...axis, title: { text: "PR-AUC" }, range: [0, 1.02] },
           annotations: curve.length ? [] : [{ text: "no metric yet: needs ground truth or both label kinds", showarrow: false, xref: "paper", yref: "paper", x: 0.5, y: 0.5 }] }, cfg);
    }
    if ($("#per-round")) {
      if (!c.per_round.length) $("#per-round").innerHTML = '<div class="empty-state">No round yet.</div>';
      else Plotly.react("per-round", [
        { x: c.per_round.map((r) => `round ${r.round}`), y: c.per_round.map((r) => r.anomaly), name: "anomaly", type: "bar", marker: { color: bars.anomaly } },
        { x: c.per_round.map((r) => `round ${r.round}`), y: c.per_round.map((r) => r.normal), name: "normal", type: "bar", marker: { color: bars.normal } },
        { x: c.per_round.map((r) => `round ${r.round}`), y: c.per_round.map((r) => r.unsure), name: "unsure", type: "bar", marker: { color: bars.unsure } },
      ], { ...base, barmode: "stack", xaxis: axis, yaxis: { ...axis, title: { text: "labeled ranges" }, rangemode: "tozero" } }, cfg);
    }
  }

  document.addEventListener("click", async (ev) => {
    const b = ev.target.closest("button.follow-toggle");
    if (!b) return;
    b.disabled = true;
    const follow = b.dataset.follow === "1";
    try {
      const r = await post(`/api/v1/projects/${$("#follow-versions").dataset.project}/follow-versions`, { follow });
      toast(follow ? `Following new versions: v${r.serving_version_id} serves` : "Pinned: new versions will not serve");
    } catch (e) { toast(e.message, 6000); }
    refreshSections();
  });

  document.addEventListener("click", async (ev) => {
    const b = ev.target.closest("button.promote");
    if (!b) return;
    b.disabled = true;
    try { await post(`/api/v1/versions/${b.dataset.version}/promote`); toast(`v${b.dataset.version} now serves`); }
    catch (e) { toast(e.message, 6000); }
    refreshSections();
  });

  document.addEventListener("submit", async (ev) => {
    const form = ev.target.closest("#start-round");
    if (!form) return;
    ev.preventDefault();
    const btn = $("button", form);
    btn.disabled = true;
    try {
      // ticked analysts get the round's windows dealt to them (app/projects/assignment.py); none: anyone answers
      const assignees = $$("input[name=assignees]:checked", form).map((i) => i.value);
      const r = await post(`/api/v1/projects/${form.dataset.project}/rounds`,
        { strategy: form.strategy.value, k: Number(form.k.value) || null, ...(assignees.length ? { assignees } : {}) });
      toast(`Round ${r.number} started: ${r.k} windows to label${assignees.length ? `, dealt to ${assignees.join(", ")}` : ""}`);
    } catch (e) { toast(e.message, 6000); btn.disabled = false; }
    refreshSections();
    poll();
  });

  draw();
  charts();
  poll();
})();
