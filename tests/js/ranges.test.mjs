// The labeling page's brushed ranges (static/js/ranges.js) and its time axis (static/js/timeline.js).
import { test } from "node:test";
import assert from "node:assert/strict";
import { addRange, answerPieces, brushToRange, describeAnswer, firstOverlap, fromBody, newRange, rangesBody, withValue }
  from "../../static/js/ranges.js";
import { breakGaps, formatStamp, makeTimeline, medianPeriod, plotlyDateToMs } from "../../static/js/timeline.js";

const r = (a, b, value = "anomaly", type = null, comment = "") => ({ a, b, value, type, comment });

test("a brush takes the whole points under both ends, in either direction, clamped to the series", () => {
  assert.deepEqual(brushToRange(104.6, 112.4, 1000), { a: 105, b: 113 });
  assert.deepEqual(brushToRange(112.4, 104.6, 1000), { a: 105, b: 113 });
  assert.deepEqual(brushToRange(-30.2, 3.1, 1000), { a: 0, b: 4 }); // past the start of the series
  assert.deepEqual(brushToRange(990.2, 1200, 1000), { a: 990, b: 1000 }); // past its end
  assert.equal(brushToRange(1000.6, 1200, 1000), null);
  assert.equal(brushToRange(NaN, 3, 1000), null);
});

test("a new range wins where it lies over earlier ones: they are trimmed or split, never overlapping", () => {
  let list = addRange([], r(10, 20, "anomaly", "spike"));
  list = addRange(list, r(40, 60, "normal"));
  assert.deepEqual(list.map((x) => [x.a, x.b]), [[10, 20], [40, 60]]);
  list = addRange(list, r(15, 45, "unsure"));
  assert.deepEqual(list.map((x) => [x.a, x.b, x.value]), [[10, 15, "anomaly"], [15, 45, "unsure"], [45, 60, "normal"]]);
  assert.equal(list[0].type, "spike"); // a trimmed range keeps its type
  list = addRange(list, r(20, 30, "anomaly"));
  assert.deepEqual(list.map((x) => [x.a, x.b]), [[10, 15], [15, 20], [20, 30], [30, 45], [45, 60]]);
  assert.equal(firstOverlap(list), null);
  list = addRange(list, r(0, 100));
  assert.deepEqual(list.map((x) => [x.a, x.b]), [[0, 100]]);
  assert.deepEqual(firstOverlap([r(0, 10), r(20, 30), r(5, 8)]).map((x) => x.a), [0, 5]);
  assert.equal(firstOverlap([r(0, 10), r(10, 12)]), null); // touching is fine
});

test("the answer body carries a type only on anomalies and trimmed comments, in point order", () => {
  const body = rangesBody([r(30, 40, "anomaly", "level shift"), { ...r(5, 9, "normal", "spike"), comment: "  flat  " },
                           { ...r(1, 2, "anomaly", null), comment: "x".repeat(1200) }]);
  assert.deepEqual(body[0], { start: 1, end: 2, value: "anomaly", comment: "x".repeat(1000) });
  assert.deepEqual(body[1], { start: 5, end: 9, value: "normal", comment: "flat" });
  assert.deepEqual(body[2], { start: 30, end: 40, value: "anomaly", label_type: "level shift" });
  assert.equal(withValue(r(1, 2, "anomaly", "spike"), "normal").type, null);
  assert.equal(withValue(r(1, 2, "anomaly", "spike"), "anomaly").type, "spike");
  assert.deepEqual(newRange({ a: 3, b: 9 }, "spike"), { a: 3, b: 9, value: "anomaly", type: "spike", comment: "" });
  assert.deepEqual(fromBody(rangesBody([r(3, 9, "anomaly", "spike", "c")])), [r(3, 9, "anomaly", "spike", "c")]);
});

test("the pieces shaded before the server answers are what it stores: ranges, the rest of the window normal", () => {
  const q = { start: 100, end: 150 };
  const pieces = answerPieces(q, [r(130, 140, "anomaly", "level shift"), r(85, 105, "anomaly", "spike")]);
  assert.deepEqual(pieces.map((p) => [p.start, p.end, p.value, p.label_type]), [
    [85, 105, "anomaly", "spike"], [105, 130, "normal", null], [130, 140, "anomaly", "level shift"], [140, 150, "normal", null],
  ]);
  const beyond = answerPieces(q, [r(140, 170, "anomaly")], "unsure");
  assert.deepEqual(beyond.map((p) => [p.start, p.end, p.value]), [[100, 140, "unsure"], [140, 170, "anomaly"]]);
  assert.equal(describeAnswer(pieces), "anomaly ×2 (spike, level shift)");
  assert.equal(describeAnswer([{ start: 0, end: 5, value: "anomaly", label_type: "spike" }]), "anomaly (spike)");
  assert.equal(describeAnswer([{ start: 0, end: 5, value: "normal" }]), "normal");
  assert.equal(describeAnswer(answerPieces(q, [r(110, 120, "anomaly")])), "anomaly 110–120, rest normal");
  assert.equal(describeAnswer([]), "");
});

test("the time map is exact at the returned points, linear between them and continued past both ends", () => {
  const minute = 60_000, t0 = Date.UTC(2024, 4, 1, 23, 50);
  const i = [0, 1, 2, 3, 10, 11], x = [0, 1, 2, 3, 100, 101].map((k) => t0 + k * minute); // a gap after point 3
  assert.equal(medianPeriod(i, x), minute);
  const tl = makeTimeline(i, x);
  assert.equal(tl.toX(2), t0 + 2 * minute);
  assert.equal(tl.toX(2.5), t0 + 2.5 * minute);
  assert.equal(tl.toX(-0.5), t0 - 0.5 * minute);
  assert.equal(tl.toX(13), t0 + 103 * minute);
  for (const k of [-3, 0, 1.5, 3, 6.5, 10, 11, 20]) assert.ok(Math.abs(tl.toIndex(tl.toX(k)) - k) < 1e-9, k);
  const same = makeTimeline([5, 6, 7], [5, 6, 7]); // numbers as stamps
  assert.equal(same.toX(100), 100);
});

test("a jump in the stamps much longer than the usual step breaks the line; a downsampled view is not a gap", () => {
  const i = [0, 1, 2, 3, 10, 11], x = [0, 1, 2, 3, 100, 101], y = [1, 2, 3, 4, 5, 6];
  const broken = breakGaps(i, x, y);
  assert.equal(broken.gaps, 1);
  assert.deepEqual(broken.y, [1, 2, 3, 4, null, 5, 6]);
  assert.deepEqual(broken.i, [0, 1, 2, 3, null, 10, 11]);
  assert.equal(broken.x[4], 51.5);
  // every 50th point returned: a step of 50 indices is 50 periods, not a gap
  const di = [0, 50, 100, 150], dx = [0, 50, 100, 150];
  assert.equal(breakGaps(di, dx, [1, 2, 3, 4]).gaps, 0);
  // jitter of a couple of steps is not a gap either
  assert.equal(breakGaps([0, 1, 2, 3, 4], [0, 1, 3.5, 4.5, 5.5], [1, 2, 3, 4, 5]).gaps, 0);
});

test("Plotly's date strings are UTC milliseconds; stamps print in UTC with the date", () => {
  assert.equal(plotlyDateToMs("2024-05-01 10:03:12.5"), Date.UTC(2024, 4, 1, 10, 3, 12, 500));
  assert.equal(plotlyDateToMs("2024-05-01"), Date.UTC(2024, 4, 1));
  assert.equal(plotlyDateToMs(1234), 1234);
  assert.equal(formatStamp(Date.UTC(2024, 4, 1, 10, 3)), "2024-05-01 10:03");
  assert.equal(formatStamp(Date.UTC(2024, 4, 1, 10, 3, 7)), "2024-05-01 10:03:07");
  assert.equal(formatStamp(12.5, "number"), "12.5");
});

test("an outbox entry with ranges sends them, the rest of the window as value; a whole-window one its type", async () => {
  const { makeEntry, answerBody } = await import("../../static/js/outbox.js");
  const ranges = rangesBody([r(3, 9, "anomaly", "spike")]);
  const withRanges = makeEntry({ key: "k1", queryId: 1, projectId: 1, roundId: 1, value: "normal", range: null, at: 0, ranges });
  assert.deepEqual(answerBody(withRanges), { value: "normal", ranges, idempotency_key: "k1" });
  const whole = makeEntry({ key: "k2", queryId: 1, projectId: 1, roundId: 1, value: "anomaly", range: null, at: 0,
                            labelType: "spike", comment: "clear" });
  assert.deepEqual(answerBody(whole), { value: "anomaly", anomaly_start: null, anomaly_end: null, idempotency_key: "k2",
                                        label_type: "spike", comment: "clear" });
  const skip = makeEntry({ key: "k3", queryId: 1, projectId: 1, roundId: 1, value: "skip", range: null, at: 0, comment: "x" });
  assert.deepEqual(answerBody(skip), { value: "skip", anomaly_start: null, anomaly_end: null, idempotency_key: "k3" });
});
