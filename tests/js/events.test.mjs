// The explorer's events list (static/js/events.js): the model's segments from a score trace, labels as events,
// the filters, the range a click on an event shows, and brushing to whole points.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  eventView, filterEvents, labelAt, labelEvent, peakIn, segmentEvent, segmentsFromScores,
} from "../../static/js/events.js";

test("segmentsFromScores: runs at or above the threshold, ended by the next sample below it", () => {
  const i = [0, 10, 20, 30, 40, 50, 60, 70];
  const y = [0.1, 0.9, 0.95, 0.2, 0.5, 0.1, 0.7, 0.8];
  assert.deepEqual(segmentsFromScores(i, y, 0.5, 80), [
    { start: 10, end: 30, peak: 0.95 },
    { start: 40, end: 50, peak: 0.5 }, // at the threshold counts
    { start: 60, end: 80, peak: 0.8 }, // open at the end: lasts to the trace's end
  ]);
  assert.deepEqual(segmentsFromScores(i, y, 0.5, 80, 10), [{ start: 10, end: 80, peak: 0.95 }], "gaps of 10 merged");
  assert.equal(segmentsFromScores(i, y, 0.5, 80, 9).length, 3, "gaps of 10 kept apart");
  assert.deepEqual(segmentsFromScores(i, y, null, 80), [], "no threshold, no segments");
  assert.deepEqual(segmentsFromScores([0, 1, 2], [null, 0.9, null], 0.5, 3), [{ start: 1, end: 2, peak: 0.9 }]);
});

test("peakIn reads the highest score inside a range, null outside the trace", () => {
  const i = [0, 10, 20, 30], y = [1, 5, 3, 9];
  assert.equal(peakIn(i, y, 5, 25), 5);
  assert.equal(peakIn(i, y, 0, 40), 9);
  assert.equal(peakIn(i, y, 31, 40), null);
});

const rows = [
  { id: 1, start: 100, end: 120, value: "anomaly", label_type: "spike", comment: "Fan failure", author: "ana", source: "analyst", created_at: "2026-01-01T10:00:00" },
  { id: 2, start: 300, end: 310, value: "normal", label_type: null, comment: null, author: "bob", source: "analyst" },
  { id: 3, start: 500, end: 540, value: "anomaly", label_type: null, comment: "", author: "", source: "oracle" },
];
const trace = { i: [0, 110, 305, 520, 700], y: [0.1, 0.9, 0.2, 0.6, 0.95] };
const events = [...rows.map((r) => labelEvent(r, trace)), segmentEvent({ start: 690, end: 720, peak: 0.95 }, 4)];

test("labels and segments become events with a score, an author and a stable id", () => {
  assert.deepEqual(
    events.map((e) => [e.kind, e.id, e.type, e.author, e.score]),
    [["label", 1, "spike", "ana", 0.9], ["label", 2, "", "bob", 0.2], ["label", 3, "", "ground truth", 0.6],
     ["segment", "s690-720", "", "model v4", 0.95]]);
});

test("filterEvents: text, kind, value, type, analyst, time and score", () => {
  const ids = (f) => filterEvents(events, f).map((e) => e.id);
  assert.deepEqual(ids({}), [1, 2, 3, "s690-720"], "series order");
  assert.deepEqual(ids({ text: "FAN" }), [1], "search is case-insensitive, comments included");
  assert.deepEqual(ids({ text: "spike" }), [1]);
  assert.deepEqual(ids({ kind: "segment" }), ["s690-720"]);
  assert.deepEqual(ids({ value: "anomaly" }), [1, 3]);
  assert.deepEqual(ids({ type: "spike" }), [1]);
  assert.deepEqual(ids({ type: "-" }), [2, 3], "labels without a type");
  assert.deepEqual(ids({ author: "bob" }), [2]);
  assert.deepEqual(ids({ from: 115, to: 305 }), [1, 2], "overlapping the time range");
  assert.deepEqual(ids({ from: 120 }), [2, 3, "s690-720"], "a label ending where the range starts is out");
  assert.deepEqual(ids({ minScore: 0.6 }), [1, 3, "s690-720"]);
  assert.deepEqual(ids({ minScore: NaN, from: NaN }), [1, 2, 3, "s690-720"], "an empty field filters nothing");
});

test("eventView puts the event in the middle third, inside the series, at least minSpan wide", () => {
  assert.deepEqual(eventView(100, 120, 1000), [80, 140]);
  assert.deepEqual(eventView(100, 101, 1000, 50), [76, 126]);
  assert.deepEqual(eventView(0, 30, 1000), [0, 90]);
  assert.deepEqual(eventView(980, 1000, 1000), [940, 1000]);
  assert.deepEqual(eventView(0, 900, 1000), [0, 1000]);
});

test("labelAt picks the shortest label under a point", () => {
  const ls = [{ id: 1, start: 0, end: 100 }, { id: 2, start: 40, end: 50 }];
  assert.equal(labelAt(ls, 45).id, 2);
  assert.equal(labelAt(ls, 60).id, 1);
  assert.equal(labelAt(ls, 100), null);
});
