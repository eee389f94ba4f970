// The labeling queue's review panel: shown once every window of the open round has the analyst's answer. Until the
// round is submitted (or its grace period is over) answers can still be undone (z) or changed (pick a window in the
// list); "Submit round" closes it for retraining now. With several answers per window, an analyst who answered all
// their windows waits here for the others. The server decides (app/projects/review.py); this only shows it.
import { postJSON } from "./api.js";

/** Milliseconds of an ISO time the server sends in UTC, with or without its "Z". Pure. */
export function utcMs(iso) {
  return Date.parse(/(Z|[+-]\d\d:?\d\d)$/i.test(iso) ? iso : `${iso}Z`);
}

/** "in 7 min" / "in 40 s" until an ISO time, from `now` (ms). Pure. */
export function untilText(iso, now = Date.now()) {
  if (!iso) return "";
  const s = Math.max(0, Math.round((utcMs(iso) - now) / 1000));
  return s >= 90 ? `in ${Math.round(s / 60)} min` : `in ${s} s`;
}

/** What the panel says, from the labeling state's round and project. Pure (tests/js can call it). */
export function reviewText(round, project, now = Date.now()) {
  const others = Math.max(0, round.open_windows || 0);
  const dealt = round.assignees || [];
  if (round.yours === 0 && dealt.length) { // an admin dealt this round's windows to named analysts, not to this one
    return {
      title: `Round ${round.number} is assigned to other analysts`,
      text: `Its windows are dealt to ${dealt.join(", ")}. Your queue fills when a round names you, or names nobody.`,
      submit: false,
    };
  }
  if (others > 0) {
    const who = dealt.length ? `dealt to ${dealt.join(", ")}` : `${project.answers_per_window} per window`;
    return {
      title: "You answered every window",
      text: `${others} window${others === 1 ? " waits" : "s wait"} for other analysts' answers (${who}). `
        + "You can still change yours: pick a window in the list, or press z to undo your last answer.",
      submit: false,
    };
  }
  const when = round.review_until
    ? ` It closes by itself at ${new Date(utcMs(round.review_until)).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })} (${untilText(round.review_until, now)}).`
    : "";
  return {
    title: `Round ${round.number}: every window answered — review before the model retrains`,
    text: "Change an answer by picking its window in the list, or press z to undo the last one. "
      + `The model retrains when the round is submitted.${when}`,
    submit: true,
  };
}

/** Draw the panel into `box` (only when what it says changed, so the button is not replaced under the pointer).
 *  `onSubmitted(round)` gets the server's round after a successful submit; `onError(message)` a refusal. */
export function drawReview(box, state, { onSubmitted, onError }) {
  const what = reviewText(state.round, state.project);
  const sig = JSON.stringify([state.round.id, what.title, what.text, what.submit, state.round.review_until]);
  if (box.dataset.review === sig && box.querySelector("#lq-review")) return;
  box.dataset.review = sig;
  box.innerHTML = "";
  const panel = document.createElement("div");
  panel.id = "lq-review";
  panel.className = "review-panel";
  const big = document.createElement("div");
  big.className = "big";
  big.textContent = "✓";
  const h = document.createElement("h2");
  h.id = "lq-review-title";
  h.textContent = what.title;
  const p = document.createElement("p");
  p.className = "muted";
  p.id = "lq-review-text";
  p.textContent = what.text;
  panel.append(big, h, p);
  if (what.submit) {
    const button = document.createElement("button");
    button.type = "button";
    button.id = "lq-submit";
    button.className = "primary";
    button.textContent = `Submit round ${state.round.number} for retraining`;
    button.addEventListener("click", async () => {
      button.disabled = true;
      button.textContent = "Submitting…";
      try {
        onSubmitted(await postJSON(`/api/v1/rounds/${state.round.id}/submit`, {}));
      } catch (e) {
        button.disabled = false;
        button.textContent = `Submit round ${state.round.number} for retraining`;
        onError(e.message);
      }
    });
    panel.append(button);
  }
  box.append(panel);
}
