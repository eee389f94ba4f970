// The stacked-channel rows both charts use (static/js/chart.js), and the test-hook flag (static/js/hooks.js).
import { test } from "node:test";
import assert from "node:assert/strict";
import { axisId, axisKey, stackDomains, stackDomainsByFraction, stackRows } from "../../static/js/chart.js";
import { exposeForTests, testHooksEnabled } from "../../static/js/hooks.js";

const close = (a, b) => assert.ok(Math.abs(a - b) < 1e-12, `${a} != ${b}`);

test("stackDomains: rows top to bottom, heights in proportion, the gaps between, [0, 1] filled", () => {
  const d = stackDomains([100, 100, 50], 25);
  close(d[0][1], 1);
  close(d[2][0], 0);
  const inner = 100 + 100 + 50 + 2 * 25;
  close(d[0][1] - d[0][0], 100 / inner);
  close(d[2][1] - d[2][0], 50 / inner);
  close(d[0][0] - d[1][1], 25 / inner);
  assert.deepEqual(stackDomains([360], 14), [[0, 1]]);
});

test("stackDomainsByFraction: the gap is that fraction of the whole height (the labeling page's layout)", () => {
  const w = [1, 1, 1.15], g = 0.035;
  const d = stackDomainsByFraction(w, g);
  close(d[0][0] - d[1][1], g);
  close(d[1][0] - d[2][1], g);
  const usable = 1 - g * 2, total = 3.15;
  close(d[2][1] - d[2][0], (usable * 1.15) / total);
  close(d[2][0], 0);
  assert.deepEqual(stackDomainsByFraction([1], g), [[0, 1]]);
});

test("stackRows writes one y axis per row and anchors the x axis under the bottom row", () => {
  const layout = { xaxis: { range: [0, 1] } };
  const axes = stackRows(layout, stackDomains([1, 1, 1], 0), (j) => ({ title: { text: `row ${j}` } }));
  assert.deepEqual(axes, ["y", "y2", "y3"]);
  assert.equal(layout.xaxis.anchor, "y3");
  assert.equal(layout.yaxis2.title.text, "row 1");
  assert.ok(Array.isArray(layout.yaxis3.domain));
  assert.equal(axisId(0), "y");
  assert.equal(axisKey(4), "yaxis5");
});

test("test hooks reach window only on a page marked data-test-hooks", () => {
  const page = (marked) => ({ documentElement: { hasAttribute: (name) => marked && name === "data-test-hooks" } });
  const win = {};
  const stats = { views: [] };
  assert.equal(exposeForTests("explorerStats", stats, win, page(false)), stats);
  assert.equal("explorerStats" in win, false);
  assert.equal(testHooksEnabled(page(true)), true);
  exposeForTests("explorerStats", stats, win, page(true));
  assert.equal(win.explorerStats, stats);
  assert.equal(testHooksEnabled(undefined), false);
});
