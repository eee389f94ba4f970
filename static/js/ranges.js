// The labeling page's brushed ranges: several per window, each anomaly / normal / unsure with an optional anomaly type
// and comment, reaching into the context if the analyst drags past the window. Pure of the DOM (unit tests:
// tests/js/ranges.test.mjs). A range is {a, b, value, type, comment}: points [a, b), type null or one of the
// project's anomaly types (anomaly ranges only), comment "" or text. The server checks the same rules
// (app/projects/service.py _answer_pieces) and answers 422 where they are broken.

export const RANGE_VALUES = ["anomaly", "normal", "unsure"];
export const COMMENT_MAX = 1000;

/**
 * A brush from x0 to x1 in point units (point i is drawn at x = i and owns [i - ½, i + ½)) as the whole points
 * {a, b} it covers inside the series [0, n); null when nothing is under it. Both ends take the point under the
 * pointer.
 */
export function brushToRange(x0, x1, n) {
  if (!Number.isFinite(x0) || !Number.isFinite(x1)) return null;
  const lo = Math.min(x0, x1), hi = Math.max(x0, x1);
  const a = Math.max(0, Math.round(lo)), b = Math.min(n, Math.round(hi) + 1);
  return b - a < 1 ? null : { a, b };
}

/**
 * `ranges` with `added` in it, in point order: where it lies over earlier ranges it wins (they are trimmed, or split
 * in two when it falls inside one), so the list never overlaps. Returns a new list; `added` keeps its fields.
 */
export function addRange(ranges, added) {
  const out = [];
  for (const r of ranges) {
    if (r.b <= added.a || r.a >= added.b) { out.push(r); continue; }
    if (r.a < added.a) out.push({ ...r, b: added.a });
    if (r.b > added.b) out.push({ ...r, a: added.b });
  }
  out.push(added);
  return out.sort((p, q) => p.a - q.a || p.b - q.b);
}

/** The first two ranges that overlap, [r, s], or null (a list edited by hand can break the rule; the server too). */
export function firstOverlap(ranges) {
  const sorted = [...ranges].sort((p, q) => p.a - q.a || p.b - q.b);
  for (let k = 1; k < sorted.length; k++) if (sorted[k].a < sorted[k - 1].b) return [sorted[k - 1], sorted[k]];
  return null;
}

/** A range with its value changed: a type only stays on an anomaly. */
export function withValue(range, value) {
  return { ...range, value, type: value === "anomaly" ? range.type : null };
}

/** The `ranges` of POST /api/v1/queries/{id}/answer: {start, end, value, label_type?, comment?} per range. */
export function rangesBody(ranges) {
  return [...ranges].sort((p, q) => p.a - q.a).map((r) => {
    const item = { start: r.a, end: r.b, value: r.value };
    if (r.value === "anomaly" && r.type) item.label_type = r.type;
    const note = (r.comment || "").trim().slice(0, COMMENT_MAX);
    if (note) item.comment = note;
    return item;
  });
}

/**
 * The labeled pieces an answer with `ranges` stores for window q (what the server stores, for shading the chart
 * before it answers): each range, then the window's points no range covers, labeled `rest`. In point order;
 * items {start, end, value, label_type, comment}.
 */
export function answerPieces(q, ranges, rest = "normal") {
  const marked = rangesBody(ranges).map((r) => ({ label_type: null, comment: null, ...r }));
  const pieces = [...marked];
  let at = q.start;
  for (const r of [...marked, { start: q.end, end: q.end }]) {
    if (r.start > at && at < q.end) pieces.push({ start: at, end: Math.min(r.start, q.end), value: rest, label_type: null, comment: null });
    at = Math.max(at, r.end);
  }
  return pieces.sort((p, r) => p.start - r.start);
}

/** One line about an answer for the queue and the "Current answer" note: "anomaly", "2 ranges: spike, normal", … */
export function describeAnswer(pieces) {
  if (!pieces || !pieces.length) return "";
  if (pieces.length === 1) {
    const p = pieces[0];
    return p.label_type && p.value === "anomaly" ? `anomaly (${p.label_type})` : p.value;
  }
  const anomalies = pieces.filter((p) => p.value === "anomaly");
  if (!anomalies.length) return pieces.some((p) => p.value === "unsure") ? "unsure in part" : "normal";
  if (anomalies.length === 1) {
    const p = anomalies[0];
    return `anomaly ${p.start}–${p.end}${p.label_type ? ` (${p.label_type})` : ""}, rest ${pieces.some((x) => x.value === "unsure") ? "mixed" : "normal"}`;
  }
  const kinds = anomalies.map((p) => p.label_type || "anomaly");
  return `anomaly ×${anomalies.length}${kinds.some((k) => k !== "anomaly") ? ` (${[...new Set(kinds)].join(", ")})` : ""}`;
}

/** Ranges as the answer body has them ({start, end, value, label_type, comment}) back in the page's form. */
export function fromBody(items) {
  return (items || []).map((x) => ({ a: x.start, b: x.end, value: x.value, type: x.label_type || null, comment: x.comment || "" }));
}

/** A new range from a brush, with the defaults the page offers: anomaly, of the chosen type (or none). */
export function newRange(span, type = null) {
  return { a: span.a, b: span.b, value: "anomaly", type: type || null, comment: "" };
}
