// The labeling queue's review panel text (static/js/review.js): waiting for other analysts, or in review with the
// time the round closes by itself; server times are UTC with or without their "Z".
import { test } from "node:test";
import assert from "node:assert/strict";
import { reviewText, untilText, utcMs } from "../../static/js/review.js";

const NOW = Date.parse("2026-12-03T12:00:00Z");

test("utcMs reads the server's naive ISO times as UTC", () => {
  assert.equal(utcMs("2026-12-03T12:00:00"), NOW);
  assert.equal(utcMs("2026-12-03T12:00:00Z"), NOW);
  assert.equal(utcMs("2026-12-03T13:00:00+01:00"), NOW);
});

test("untilText counts minutes, then seconds, never below zero", () => {
  assert.equal(untilText("2026-12-03T12:10:00", NOW), "in 10 min");
  assert.equal(untilText("2026-12-03T12:00:40Z", NOW), "in 40 s");
  assert.equal(untilText("2026-12-03T11:59:00Z", NOW), "in 0 s");
  assert.equal(untilText(null, NOW), "");
});

test("reviewText: waiting for the others without a submit button, else review with one", () => {
  const project = { answers_per_window: 2 };
  const waiting = reviewText({ number: 3, open_windows: 1 }, project, NOW);
  assert.equal(waiting.submit, false);
  assert.match(waiting.text, /^1 window waits for other analysts' answers \(2 per window\)/);
  const review = reviewText({ number: 3, open_windows: 0, review_until: "2026-12-03T12:10:00" }, project, NOW);
  assert.equal(review.submit, true);
  assert.equal(review.title, "Round 3: every window answered — review before the model retrains");
  assert.match(review.text, /closes by itself at .* \(in 10 min\)\.$/);
  assert.doesNotMatch(reviewText({ number: 1, open_windows: 0 }, project, NOW).text, /closes by itself/);
});

test("reviewText: a round dealt to other analysts says so, and whom the open windows wait for", () => {
  const project = { answers_per_window: 1 };
  const notMine = reviewText({ number: 2, open_windows: 6, yours: 0, assignees: ["alice", "bob"] }, project, NOW);
  assert.equal(notMine.title, "Round 2 is assigned to other analysts");
  assert.match(notMine.text, /dealt to alice, bob/);
  assert.equal(notMine.submit, false);
  const waiting = reviewText({ number: 2, open_windows: 3, yours: 3, assignees: ["alice", "bob"] }, project, NOW);
  assert.match(waiting.text, /^3 windows wait for other analysts' answers \(dealt to alice, bob\)/);
  // everyone answered: the review panel, dealt or not
  assert.equal(reviewText({ number: 2, open_windows: 0, yours: 3, assignees: ["alice"] }, project, NOW).submit, true);
});
