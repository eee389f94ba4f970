// Pure view arithmetic of the labeling page and the explorer: which whole points [start, end) a chart shows.
// The view API takes integers in [0, n] only, so every result here is whole and inside the series.

/** Points on the labeling page's screen at most; the explorer is for the long view. */
export const LABEL_MAX_SPAN = 20000;
/** The labeling page's narrowest view, in points. */
export const LABEL_MIN_SPAN = 8;

/**
 * The labeling page's view of [a, b) in a series of n points: the span is rounded and kept within
 * [LABEL_MIN_SPAN, maxSpan] and n (zoom and context multiply it by fractions such as 1.5 or ½ window, and a
 * fractional end was a 422), then the start is rounded and moved inside the series. Returns {start, end}.
 */
export function clampView(a, b, n, maxSpan = LABEL_MAX_SPAN) {
  const span = Math.max(1, Math.min(Math.round(Math.max(b - a, LABEL_MIN_SPAN)), maxSpan, n));
  const start = Math.max(0, Math.min(Math.round(a), n - span));
  return { start, end: start + span };
}

/** A queried window [q.start, q.end) with `context` windows of points on each side. */
export function contextView(q, n, context, maxSpan = LABEL_MAX_SPAN) {
  const ctx = Math.round((q.end - q.start) * context);
  return clampView(q.start - ctx, q.end + ctx, n, maxSpan);
}

/** The labeling page's pan: a quarter of the span (at least a point) left (-1) or right (+1). */
export function panView(view, direction, n, maxSpan = LABEL_MAX_SPAN) {
  const step = direction * Math.max(1, Math.round((view.end - view.start) / 4));
  return clampView(view.start + step, view.end + step, n, maxSpan);
}

/**
 * The labeling page's zoom by `factor` (< 1 in, > 1 out) about the view's centre, moved just enough to keep the
 * queried window q (with 2 points each side) on screen: the centre of a view clamped at an end of the series is far
 * from the window, and zooming in there lost the window. Never narrower than the window plus 4 points.
 */
export function zoomView(view, q, factor, n, maxSpan = LABEL_MAX_SPAN) {
  const span = Math.max(q.end - q.start + 4, (view.end - view.start) * factor);
  let mid = (view.start + view.end) / 2;
  const lo = q.end + 2 - span / 2, hi = q.start - 2 + span / 2;
  if (lo <= hi) mid = Math.min(Math.max(mid, lo), hi);
  return clampView(mid - span / 2, mid + span / 2, n, maxSpan);
}

/**
 * The explorer's range [start, end) as whole points inside [0, n]: at least minSpan points (about the centre),
 * at most the series; a non-finite input keeps `fallback` (never a NaN request). Returns [start, end].
 */
export function clampRange(start, end, n, minSpan, fallback = [0, n]) {
  if (!Number.isFinite(start) || !Number.isFinite(end)) [start, end] = fallback;
  let s = Math.round(start), e = Math.round(end);
  if (e - s < minSpan) { const c = (s + e) / 2; s = Math.round(c - minSpan / 2); e = s + minSpan; }
  if (e - s > n) { s = 0; e = n; }
  if (s < 0) { e -= s; s = 0; }
  if (e > n) { s -= e - n; e = n; }
  return [Math.max(0, s), Math.min(n, e)];
}

/** The explorer's pan by a fraction of the span (at least one point); clamp the result with clampRange. */
export function panRange(start, end, fraction) {
  const shift = Math.round((end - start) * fraction) || Math.sign(fraction);
  return [start + shift, end + shift];
}

/** The explorer's zoom by `factor` about the centre; clamp the result with clampRange. */
export function zoomRange(start, end, factor) {
  const c = (start + end) / 2, half = ((end - start) * factor) / 2;
  return [c - half, c + half];
}
