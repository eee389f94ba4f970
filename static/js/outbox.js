// The labeling page's outbox: answers wait in localStorage, each with its own idempotency key, until the server
// has them, so a lost connection or a reload never loses or duplicates one. Pure of the DOM: the storage is passed
// in (localStorage in the page, a Map-backed stand-in in the unit tests).

export const OUTBOX_KEY = "anomaloop.outbox.v1";
/** Wait before the next try: no answer at all (offline), or an answer worth retrying (busy, a race). */
export const RETRY_OFFLINE_MS = 3000;
export const RETRY_SERVER_MS = 2000;

/** load(key, fallback) / save(key, value) over a Storage; a broken or full storage (private mode) never throws. */
export function jsonStore(storage) {
  return {
    load(key, fallback) {
      try { return JSON.parse(storage.getItem(key)) ?? fallback; } catch (e) { return fallback; }
    },
    save(key, value) {
      try { storage.setItem(key, JSON.stringify(value)); } catch (e) { /* private mode: memory only */ }
    },
  };
}

/** The answers not yet delivered, oldest first, in `store` under `key`. */
export class Outbox {
  constructor(store, key = OUTBOX_KEY) { this.store = store; this.key = key; }
  all() { return this.store.load(this.key, []); }
  get length() { return this.all().length; }
  first() { return this.all()[0]; }
  push(entry) { const box = this.all(); box.push(entry); this.store.save(this.key, box); }
  has(key) { return this.all().some((e) => e.key === key); }
  /** Drop the entry with idempotency key `key` (delivered, refused for good, or undone before it was sent). */
  remove(key) { this.store.save(this.key, this.all().filter((e) => e.key !== key)); }
  forProject(projectId) { return this.all().filter((e) => e.projectId === projectId); }
}

/**
 * An outbox entry: one answer to one query, with a fresh idempotency key. `ranges` (js/ranges.js rangesBody: labeled
 * ranges) make `value` the answer for the rest of the window; `labelType` and `comment` go with a whole-window answer.
 */
export function makeEntry({ key, queryId, projectId, roundId, value, range, at, ranges, labelType, comment }) {
  const entry = { key, queryId, projectId, roundId, value, a: range ? range.a : null, b: range ? range.b : null, at };
  if (ranges && ranges.length) entry.ranges = ranges;
  if (labelType) entry.labelType = labelType;
  if (comment) entry.comment = comment;
  return entry;
}

/** The body of POST /api/v1/queries/{id}/answer for an entry. */
export function answerBody(entry) {
  if (entry.ranges && entry.ranges.length) return { value: entry.value, ranges: entry.ranges, idempotency_key: entry.key };
  const body = { value: entry.value, anomaly_start: entry.a, anomaly_end: entry.b, idempotency_key: entry.key };
  if (entry.labelType && entry.value === "anomaly") body.label_type = entry.labelType;
  if (entry.comment && entry.value !== "skip") body.comment = entry.comment;
  return body;
}

/**
 * What to do with the server's answer to a delivery: "retry" (keep it: the server is busy or failing, or a 409
 * says another request is saving the same answer), "done" (2xx) or "refused" (for good: the round closed, the
 * query is gone; tell the analyst and drop it).
 */
export function deliveryOutcome(status, detail = "") {
  if (status >= 500 || status === 408 || status === 429) return "retry";
  if (status === 409 && /another request/.test(detail || "")) return "retry";
  return status >= 200 && status < 300 ? "done" : "refused";
}

/** A random idempotency key (hex or a UUID). */
export function newKey(c = globalThis.crypto) {
  if (c && c.randomUUID) return c.randomUUID();
  const b = new Uint8Array(16);
  c.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}
