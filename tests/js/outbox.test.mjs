// The labeling page's outbox (static/js/outbox.js): answers kept until delivered, retried only when worth it.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  OUTBOX_KEY, Outbox, jsonStore, makeEntry, answerBody, deliveryOutcome, newKey,
} from "../../static/js/outbox.js";

function memoryStorage() {
  const items = new Map();
  return {
    getItem: (k) => (items.has(k) ? items.get(k) : null),
    setItem: (k, v) => items.set(k, String(v)),
    items,
  };
}

const entry = (key, queryId, extra = {}) =>
  makeEntry({ key, queryId, projectId: 1, roundId: 7, value: "normal", range: null, at: 0, ...extra });

test("entries stay in order across a reload (a new Outbox on the same storage) and are removed by key", () => {
  const storage = memoryStorage();
  const box = new Outbox(jsonStore(storage));
  box.push(entry("k1", 11));
  box.push(entry("k2", 12));
  box.push(entry("k3", 13));
  assert.equal(storage.items.has(OUTBOX_KEY), true);
  const reloaded = new Outbox(jsonStore(storage));
  assert.deepEqual(reloaded.all().map((e) => e.key), ["k1", "k2", "k3"]);
  assert.equal(reloaded.first().queryId, 11);
  reloaded.remove("k2");
  assert.deepEqual(box.all().map((e) => e.key), ["k1", "k3"]);
  assert.equal(box.has("k2"), false);
  assert.equal(box.length, 2);
  reloaded.remove("absent");
  assert.equal(box.length, 2);
});

test("forProject keeps one project's answers", () => {
  const box = new Outbox(jsonStore(memoryStorage()));
  box.push(entry("a", 1));
  box.push(entry("b", 2, { projectId: 2 }));
  assert.deepEqual(box.forProject(2).map((e) => e.key), ["b"]);
});

test("a broken or full storage never throws: the outbox starts empty and keeps nothing", () => {
  const broken = { getItem: () => "{not json", setItem: () => { throw new Error("QuotaExceededError"); } };
  const box = new Outbox(jsonStore(broken));
  assert.deepEqual(box.all(), []);
  box.push(entry("k", 1));
  assert.deepEqual(box.all(), []);
  assert.deepEqual(jsonStore(memoryStorage()).load("missing", ["fallback"]), ["fallback"]);
});

test("an anomalous sub-range travels as anomaly_start / anomaly_end with the idempotency key", () => {
  const e = makeEntry({ key: "key-123456", queryId: 5, projectId: 1, roundId: 2, value: "anomaly", range: { a: 10, b: 14 }, at: 1 });
  assert.deepEqual(answerBody(e), { value: "anomaly", anomaly_start: 10, anomaly_end: 14, idempotency_key: "key-123456" });
  assert.deepEqual(answerBody(entry("k", 1)), { value: "normal", anomaly_start: null, anomaly_end: null, idempotency_key: "k" });
});

test("deliveryOutcome retries a busy or failing server and a save race, and drops a refusal", () => {
  for (const status of [500, 502, 503, 408, 429]) assert.equal(deliveryOutcome(status, ""), "retry", String(status));
  assert.equal(deliveryOutcome(409, "this answer is being saved by another request"), "retry");
  assert.equal(deliveryOutcome(409, "the round is closed"), "refused");
  assert.equal(deliveryOutcome(409, undefined), "refused");
  for (const status of [400, 403, 404, 422]) assert.equal(deliveryOutcome(status, "x"), "refused", String(status));
  assert.equal(deliveryOutcome(200, undefined), "done");
  assert.equal(deliveryOutcome(201, undefined), "done");
});

test("newKey: unique keys the API accepts (8 to 60 of [A-Za-z0-9_-]), with or without randomUUID", () => {
  const withoutUUID = { getRandomValues: (b) => globalThis.crypto.getRandomValues(b) };
  const keys = new Set();
  for (let k = 0; k < 200; k++) keys.add(newKey(k % 2 ? globalThis.crypto : withoutUUID));
  assert.equal(keys.size, 200);
  for (const key of keys) assert.match(key, /^[A-Za-z0-9_-]{8,60}$/);
});
