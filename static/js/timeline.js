// The labeling chart's x axis in the series' own timestamps: a map between point indices and x values (ms since the
// epoch for datetimes, the number for numeric stamps) built from the points a view returned, and gaps, where the
// time step is much longer than usual, broken in the line instead of bridged by it. Pure of the DOM (unit tests:
// tests/js/timeline.test.mjs).

/** A time step this many usual steps longer than expected (for the points between) is drawn as a gap. */
export const GAP_FACTOR = 5;

/**
 * The usual time per point of a view: the median over neighbouring returned points of Δx / Δi (a downsampled view
 * skips points, so the step is per index, not per returned point). NaN with fewer than two points.
 */
export function medianPeriod(i, x) {
  const per = [];
  for (let k = 1; k < i.length; k++) {
    const di = i[k] - i[k - 1];
    if (di > 0 && Number.isFinite(x[k]) && Number.isFinite(x[k - 1])) per.push((x[k] - x[k - 1]) / di);
  }
  if (!per.length) return NaN;
  per.sort((a, b) => a - b);
  const m = per.length >> 1;
  return per.length % 2 ? per[m] : (per[m - 1] + per[m]) / 2;
}

/**
 * Index <-> x maps from a view's points (i ascending, x the stamps of those points): piecewise linear between them
 * (exact at every returned point), continued at the usual period past both ends. toX takes fractional indices
 * (point i owns [i - ½, i + ½)); toIndex is its inverse (fractional; round as the caller needs).
 */
export function makeTimeline(i, x) {
  const n = Math.min(i.length, x.length);
  const I = [], X = [];
  for (let k = 0; k < n; k++) {
    if (!Number.isFinite(x[k]) || (I.length && i[k] <= I[I.length - 1])) continue;
    I.push(i[k]); X.push(x[k]);
  }
  let period = medianPeriod(I, X);
  if (!Number.isFinite(period) || period <= 0) period = 1;
  const interp = (v, from, to) => {
    const last = from.length - 1;
    if (last < 0) return v;
    const slope = from === I ? period : 1 / period;
    if (v <= from[0]) return to[0] + (v - from[0]) * slope;
    if (v >= from[last]) return to[last] + (v - from[last]) * slope;
    let lo = 0, hi = last; // from[lo] <= v < from[hi]
    while (hi - lo > 1) { const mid = (lo + hi) >> 1; if (from[mid] <= v) lo = mid; else hi = mid; }
    return to[lo] + ((v - from[lo]) * (to[hi] - to[lo])) / (from[hi] - from[lo]);
  };
  return { period, toX: (idx) => interp(idx, I, X), toIndex: (xv) => interp(xv, X, I) };
}

/**
 * A trace's points with a null inserted wherever the stamps jump by more than GAP_FACTOR usual steps beyond what
 * the skipped indices explain, so Plotly (connectgaps false) breaks the line there. Returns {x, y, i, gaps}: i the
 * point indices (null at a break) and gaps the number of breaks.
 */
export function breakGaps(i, x, y, factor = GAP_FACTOR, period = medianPeriod(i, x)) {
  const outX = [], outY = [], outI = [];
  let gaps = 0;
  for (let k = 0; k < x.length; k++) {
    if (k > 0 && Number.isFinite(period) && period > 0) {
      const expected = (i[k] - i[k - 1]) * period;
      if (x[k] - x[k - 1] - expected > factor * period) {
        outX.push((x[k] + x[k - 1]) / 2);
        outY.push(null);
        outI.push(null);
        gaps += 1;
      }
    }
    outX.push(x[k]);
    outY.push(y[k]);
    outI.push(i[k]);
  }
  return { x: outX, y: outY, i: outI, gaps };
}

/**
 * An x value Plotly reports for a date axis ("2024-05-01 10:03:12.5", a date, or ms) as ms since the epoch. Plotly's
 * dates carry no time zone and mean UTC here (the view sends UTC ms), so a string is read as UTC.
 */
export function plotlyDateToMs(v) {
  if (typeof v === "number") return v;
  if (v instanceof Date) return v.getTime();
  const s = String(v).trim().replace(" ", "T");
  const full = /^\d{4}-\d{2}-\d{2}$/.test(s) ? `${s}T00:00:00` : s;
  return Date.parse(full.endsWith("Z") ? full : `${full}Z`);
}

/** A point's stamp as text for the range list: "2024-05-01 10:03" (seconds when not whole minutes), UTC. */
export function formatStamp(ms, kind = "datetime") {
  if (kind !== "datetime") return String(Math.round(ms * 1000) / 1000);
  const iso = new Date(Math.round(ms)).toISOString();
  const secs = iso.slice(17, 23) === "00.000" ? "" : iso.slice(16, 19);
  return iso.slice(0, 10) + " " + iso.slice(11, 16) + secs;
}
