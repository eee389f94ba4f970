// Series explorer: fetch only the visible range, downsampled on the server to ~2 points per pixel.
(function () {
  const el = document.getElementById("chart");
  if (!el) return;
  const id = el.dataset.seriesId, n = +el.dataset.nPoints, nch = +el.dataset.nChannels;
  const isDate = el.dataset.xKind === "datetime";
  const maxShown = Math.min(nch, 8);
  let busy = null;

  async function load(start, end) {
    const width = Math.max(200, el.clientWidth | 0);
    const channels = [...Array(maxShown).keys()].join(",");
    const url = `/api/v1/series/${id}/view?start=${start}&end=${end}&width=${width}&channels=${channels}`;
    if (busy) busy.abort();
    busy = new AbortController();
    const t0 = performance.now();
    const res = await fetch(url, { signal: busy.signal, headers: { Accept: "application/json" } });
    if (!res.ok) { el.textContent = (await res.json()).detail || "could not load"; return; }
    const view = await res.json();
    draw(view, performance.now() - t0);
  }

  function draw(view, ms) {
    const k = view.channels.length;
    const traces = view.channels.map((c, j) => ({
      x: isDate ? c.x.map((v) => new Date(v)) : c.i, y: c.y, customdata: c.i, name: c.name, mode: "lines",
      type: "scattergl", line: { width: 1 }, connectgaps: false, yaxis: j === 0 ? "y" : "y" + (j + 1),
      hovertemplate: "%{y}<br>point %{customdata}<extra>" + c.name + "</extra>",
    }));
    const xOf = (i) => {
      if (!isDate) return i;
      const c = view.channels[0]; // nearest kept point's time for the shading edge
      let lo = 0, hi = c.i.length - 1;
      while (lo < hi) { const m = (lo + hi) >> 1; if (c.i[m] < i) lo = m + 1; else hi = m; }
      return new Date(c.x[lo]);
    };
    const shapes = view.truth.map(([a, b]) => ({
      type: "rect", xref: "x", yref: "paper", x0: xOf(a), x1: xOf(b - 1), y0: 0, y1: 1,
      fillcolor: "rgba(217,54,62,0.13)", line: { width: 0 }, layer: "below",
    }));
    const layout = { margin: { l: 60, r: 20, t: 10, b: 40 }, height: Math.max(420, 150 * k), showlegend: k > 1,
      shapes, xaxis: { type: isDate ? "date" : "linear" }, hovermode: "x unified", dragmode: "zoom" };
    for (let j = 0; j < k; j++) {
      const key = j === 0 ? "yaxis" : "yaxis" + (j + 1);
      layout[key] = { domain: [1 - (j + 1) / k + 0.02, 1 - j / k], title: { text: view.channels[j].name, font: { size: 11 } } };
    }
    Plotly.react(el, traces, layout, { responsive: true, displaylogo: false });
    const shown = view.channels.reduce((s, c) => s + c.y.length, 0);
    document.getElementById("range-info").textContent =
      `points ${view.start.toLocaleString()}–${view.end.toLocaleString()} of ${view.n_points.toLocaleString()} · ` +
      `${shown.toLocaleString()} drawn · ${ms.toFixed(0)} ms`;
    el.dataset.viewStart = view.start; el.dataset.viewEnd = view.end;
    el.dataset.lastMs = ms.toFixed(1);
    bindZoom(view);
  }

  let bound = false;
  function bindZoom(view) {
    if (bound) return; bound = true;
    el.on("plotly_relayout", (ev) => {
      if (ev["xaxis.autorange"]) { load(0, n); return; }
      const a = ev["xaxis.range[0]"], b = ev["xaxis.range[1]"];
      if (a === undefined) return;
      const toIndex = (v) => isDate ? indexAt(new Date(v).getTime()) : Math.round(v);
      const s = Math.max(0, toIndex(a)), e = Math.min(n, toIndex(b) + 2);
      if (e - s > 2) load(s, e);
    });
  }
  // Map a time to a point index with the current view's kept points (monotonic time).
  function indexAt(t) {
    const c = el.data && el.data[0]; if (!c) return 0;
    const xs = c.x, is = c.customdata;
    let lo = 0, hi = xs.length - 1;
    while (lo < hi) { const m = (lo + hi) >> 1; if (xs[m].getTime() < t) lo = m + 1; else hi = m; }
    return is[lo];
  }
  document.getElementById("reset-zoom").addEventListener("click", () => load(0, n));
  load(0, n);
})();
