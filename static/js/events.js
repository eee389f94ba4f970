// The explorer's events list, as pure functions (tests/js/events.test.mjs): the model's anomalous segments from a
// score trace, analysts' labels as events, the list's filters, and the range the chart jumps to for an event.
//
// An event is {kind: "label" | "segment", id, start, end (points, end exclusive), value, type, author, comment,
// score (the highest model score inside it, or null), createdAt (ISO text, labels only)}.

/**
 * Anomalous segments of a score trace: runs of consecutive samples at or above `threshold`. `i` are the samples'
 * point indices (ascending; a downsampled trace keeps every peak, so no run above the threshold is lost) and `y`
 * their scores (null for a gap). A run ends at the next sample below the threshold, or at `end` (the trace's
 * exclusive end). Runs closer than `mergeGap` points are joined. Returns [{start, end, peak}].
 */
export function segmentsFromScores(i, y, threshold, end, mergeGap = 0) {
  const out = [];
  if (threshold === null || threshold === undefined || !i || !i.length) return out;
  let open = null;
  for (let k = 0; k < i.length; k++) {
    const above = y[k] !== null && y[k] >= threshold;
    if (above) {
      if (!open) open = { start: i[k], end: i[k] + 1, peak: y[k] };
      open.end = i[k] + 1;
      if (y[k] > open.peak) open.peak = y[k];
    } else if (open) {
      open.end = Math.max(open.end, i[k]); // the run lasts until this sample, which is below
      out.push(open);
      open = null;
    }
  }
  if (open) { open.end = Math.max(open.end, end ?? open.end); out.push(open); }
  if (mergeGap <= 0) return out;
  const merged = [];
  for (const s of out) {
    const last = merged[merged.length - 1];
    if (last && s.start - last.end <= mergeGap) { last.end = s.end; last.peak = Math.max(last.peak, s.peak); }
    else merged.push({ ...s });
  }
  return merged;
}

/** The highest score of a trace (i, y) inside points [start, end); null when no sample falls there. */
export function peakIn(i, y, start, end) {
  if (!i || !i.length) return null;
  let lo = 0, hi = i.length;
  while (lo < hi) { const m = (lo + hi) >> 1; if (i[m] < start) lo = m + 1; else hi = m; }
  let best = null;
  for (let k = lo; k < i.length && i[k] < end; k++) if (y[k] !== null && (best === null || y[k] > best)) best = y[k];
  return best;
}

/** A label row of GET /api/v1/labels as an event (score: its peak in the trace, when one is given). */
export function labelEvent(row, trace) {
  return {
    kind: "label", id: row.id, start: row.start, end: row.end, value: row.value, type: row.label_type || "",
    author: row.author || (row.source === "oracle" ? "ground truth" : ""), comment: row.comment || "",
    createdAt: row.created_at || "", score: trace ? peakIn(trace.i, trace.y, row.start, row.end) : null,
    authorId: row.author_id ?? null, source: row.source,
  };
}

/** A model segment as an event. `id` is stable for a given segment: "s<start>-<end>". */
export function segmentEvent(seg, versionId) {
  return {
    kind: "segment", id: `s${seg.start}-${seg.end}`, start: seg.start, end: seg.end, value: "model", type: "",
    author: versionId ? `model v${versionId}` : "model", comment: "", createdAt: "", score: seg.peak,
  };
}

/**
 * The events that pass the filters, in series order (then labels before segments). Filters (all optional):
 * text (matched, case-insensitively, against value, type, author and comment), kind ("label" | "segment"), value
 * ("anomaly" | "normal" | "unsure"), type (an anomaly type; "-" = labels without one), author, from / to (points:
 * the event must overlap [from, to)), minScore (events whose score is below it, or unknown, are left out).
 */
export function filterEvents(events, f = {}) {
  const text = (f.text || "").trim().toLowerCase();
  const out = events.filter((e) => {
    if (f.kind && e.kind !== f.kind) return false;
    if (f.value && e.value !== f.value) return false;
    if (f.type && (f.type === "-" ? e.type !== "" || e.kind !== "label" : e.type !== f.type)) return false;
    if (f.author && e.author !== f.author) return false;
    if (Number.isFinite(f.from) && e.end <= f.from) return false;
    if (Number.isFinite(f.to) && e.start >= f.to) return false;
    if (Number.isFinite(f.minScore) && !(e.score !== null && e.score >= f.minScore)) return false;
    if (text && ![e.value, e.type, e.author, e.comment].some((s) => (s || "").toLowerCase().includes(text))) return false;
    return true;
  });
  return out.sort((a, b) => a.start - b.start || (a.kind === b.kind ? a.end - b.end : a.kind === "label" ? -1 : 1));
}

/**
 * The range the chart shows for an event [start, end) in a series of n points: the event in the middle third,
 * at least `minSpan` points, inside the series. Returns [start, end].
 */
export function eventView(start, end, n, minSpan = 50) {
  const span = Math.max(end - start, 1);
  let a = start - span, b = end + span;
  if (b - a < minSpan) { const c = (start + end) / 2; a = c - minSpan / 2; b = c + minSpan / 2; }
  a = Math.round(a); b = Math.round(b);
  if (b - a > n) return [0, n];
  if (a < 0) { b -= a; a = 0; }
  if (b > n) { a -= b - n; b = n; }
  return [Math.max(0, a), Math.min(n, b)];
}

/** The label in force under point i (the shortest, when several overlap); null when none. */
export function labelAt(labels, i) {
  let best = null;
  for (const l of labels) if (l.start <= i && i < l.end && (!best || l.end - l.start < best.end - best.start)) best = l;
  return best;
}
