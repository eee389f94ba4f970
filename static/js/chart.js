// The stacked-channel chart both the labeling page and the explorer draw: one row (y axis) per channel, top to
// bottom, sharing one x axis whose tick labels sit under the bottom row, with an optional extra row (the model's
// score) under the channels. Plotly comes from the vendored classic script; these helpers only build its layout.

/** Plotly's id of row j's y axis ("y", "y2", ...) and its key in the layout ("yaxis", "yaxis2", ...). */
export const axisId = (j) => (j === 0 ? "y" : `y${j + 1}`);
export const axisKey = (j) => (j === 0 ? "yaxis" : `yaxis${j + 1}`);

/**
 * Paper domains [bottom, top] of rows of the given heights, top to bottom, `gap` between rows (same unit as the
 * heights: pixels or weights). The rows and gaps fill [0, 1] exactly.
 */
export function stackDomains(heights, gap) {
  const inner = heights.reduce((a, b) => a + b, 0) + gap * Math.max(0, heights.length - 1);
  let y = inner;
  return heights.map((h) => {
    const top = y / inner, bot = (y - h) / inner;
    y -= h + gap;
    return [Math.max(0, bot), Math.min(1, top)];
  });
}

/** As stackDomains, with the gap given as a fraction of the whole height (the labeling page's 0.035). */
export function stackDomainsByFraction(weights, gapFraction) {
  const total = weights.reduce((a, b) => a + b, 0), rows = weights.length;
  const usable = 1 - gapFraction * (rows - 1);
  return stackDomains(weights, rows > 1 ? (gapFraction * total) / usable : 0);
}

/**
 * Put one y axis per row into `layout` (layout.yaxis, yaxis2, ...), each with its domain and the properties
 * `axisFor(j)` gives, and anchor layout.xaxis under the bottom row. Returns the rows' axis ids.
 */
export function stackRows(layout, domains, axisFor) {
  const axes = domains.map((domain, j) => {
    layout[axisKey(j)] = { ...axisFor(j), domain };
    return axisId(j);
  });
  if (layout.xaxis && axes.length) layout.xaxis.anchor = axes[axes.length - 1];
  return axes;
}

/**
 * Resolves once window.Plotly exists. The page's own module runs before the deferred Plotly bundle (so its first
 * request overlaps the bundle's download and compile); every deferred script has run by DOMContentLoaded.
 */
export function plotlyReady(win = globalThis.window, doc = globalThis.document) {
  return new Promise((resolve) => {
    const check = () => win.Plotly && resolve();
    if (win.Plotly) return resolve();
    doc.addEventListener("DOMContentLoaded", check);
    win.addEventListener("load", check);
  });
}
