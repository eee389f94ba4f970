// The view arithmetic of the labeling page and the explorer (static/js/view.js): whole points inside the series.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  LABEL_MAX_SPAN, clampView, contextView, panView, zoomView, clampRange, panRange, zoomRange,
} from "../../static/js/view.js";

const whole = (v, n) => {
  assert.ok(Number.isInteger(v.start) && Number.isInteger(v.end), JSON.stringify(v));
  assert.ok(v.start >= 0 && v.end <= n && v.end > v.start, JSON.stringify(v));
};

test("clampView rounds the span and the start (a fractional end was a 422)", () => {
  assert.deepEqual(clampView(10.25, 25.75, 100), { start: 10, end: 26 }); // span 15.5 -> 16
  assert.deepEqual(clampView(100.5, 130.25, 1000), { start: 101, end: 131 });
  for (const [a, b] of [[0.3, 50.7], [-3.5, 12.5], [990.2, 1010.8], [7.5, 7.5]]) whole(clampView(a, b, 1000), 1000);
});

test("clampView keeps the view inside the series without shrinking it", () => {
  assert.deepEqual(clampView(-20, 30, 1000), { start: 0, end: 50 });
  assert.deepEqual(clampView(980, 1030, 1000), { start: 950, end: 1000 });
});

test("clampView spans at least 8 points, at most the series and LABEL_MAX_SPAN", () => {
  assert.deepEqual(clampView(40, 41, 1000), { start: 40, end: 48 });
  assert.deepEqual(clampView(0, 500, 6), { start: 0, end: 6 });
  assert.deepEqual(clampView(0, 1e6, 1e7), { start: 0, end: LABEL_MAX_SPAN });
  assert.deepEqual(clampView(3, 4, 1), { start: 0, end: 1 }); // a one-point series still has a view
});

test("contextView puts `context` windows on each side of the queried window", () => {
  assert.deepEqual(contextView({ start: 100, end: 120 }, 1000, 2), { start: 60, end: 160 });
  assert.deepEqual(contextView({ start: 100, end: 121 }, 1000, 0.5), { start: 89, end: 132 }); // ½ window: 10.5 -> 11
  assert.deepEqual(contextView({ start: 0, end: 20 }, 1000, 5), { start: 0, end: 220 }); // the span is kept at an end
});

test("panView moves a quarter of the span and stops at the ends", () => {
  assert.deepEqual(panView({ start: 100, end: 200 }, 1, 1000), { start: 125, end: 225 });
  assert.deepEqual(panView({ start: 100, end: 200 }, -1, 1000), { start: 75, end: 175 });
  assert.deepEqual(panView({ start: 10, end: 110 }, -1, 1000), { start: 0, end: 100 });
  assert.deepEqual(panView({ start: 900, end: 1000 }, 1, 1000), { start: 900, end: 1000 });
});

test("zoomView keeps the queried window on screen, even from a view clamped at the series' end", () => {
  const q = { start: 990, end: 1000 };
  let view = { start: 0, end: 1000 };
  for (let k = 0; k < 12; k++) {
    view = zoomView(view, q, 1 / 1.5, 1000);
    whole(view, 1000);
    assert.ok(view.start <= q.start && view.end >= q.end, JSON.stringify(view));
  }
  assert.equal(view.end - view.start, 14, "never narrower than the window and 2 points each side");
  const out = zoomView({ start: 400, end: 500 }, { start: 440, end: 460 }, 1.5, 1000);
  assert.deepEqual(out, { start: 375, end: 525 });
});

test("clampRange: whole points, at least minSpan, moved inside the series, NaN keeps the fallback", () => {
  assert.deepEqual(clampRange(10.4, 99.6, 1000, 20), [10, 100]);
  assert.deepEqual(clampRange(50, 52, 1000, 20), [41, 61]);
  assert.deepEqual(clampRange(-30, 70, 1000, 20), [0, 100]);
  assert.deepEqual(clampRange(950, 1050, 1000, 20), [900, 1000]);
  assert.deepEqual(clampRange(-10, 2000, 1000, 20), [0, 1000]);
  assert.deepEqual(clampRange(NaN, 10, 1000, 20, [200, 300]), [200, 300]);
  assert.deepEqual(clampRange(0, Infinity, 1000, 20, [200, 300]), [200, 300]);
  assert.deepEqual(clampRange(3, 4, 5, 5), [0, 5]);
});

test("panRange and zoomRange, then clampRange, keep the span and the centre", () => {
  assert.deepEqual(panRange(100, 200, 0.25), [125, 225]);
  assert.deepEqual(panRange(100, 101, -0.25), [99, 100]); // at least one point
  assert.deepEqual(clampRange(...panRange(0, 100, -1), 1000, 20), [0, 100]);
  assert.deepEqual(zoomRange(100, 200, 0.5), [125, 175]);
  assert.deepEqual(clampRange(...zoomRange(0, 1000, 2), 1000, 20), [0, 1000]);
  assert.deepEqual(clampRange(...zoomRange(500, 520, 0.5), 1000, 20), [500, 520]);
});
