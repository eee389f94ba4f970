"""The one active-learning loop: pure steps the product's services, the worker and the bench all run.

A project (or a bench experiment) is a :class:`PoolState`: its series, the part of each that analysts may be asked
about (the pool), the labels in force, the answer budget and the seed. A round is:

1. :func:`plan_round` — the serving model's window scores (and margins, warm-up candidates, drivers) → at most ``k``
   unlabeled pool windows, at least a window apart (RLAD's warm-up first, cut to the round size).
2. Answers — an analyst in the browser, or the ground-truth oracle (:func:`truth_answer` with the detector's
   ``answer_mode``; :class:`GroundTruthOracle` in the bench); one answer is one label of the budget.
3. :func:`learn` — a candidate refined with every label in force, on the pool only.
4. :func:`validate_candidate` — the candidate serves only if the newest answers say it is not worse
   (:mod:`app.core.adoption`).

``projects.service`` loads stored scores and labels, calls :func:`plan_round` and persists the queries;
``versions.service`` calls :func:`learn` and :func:`validate_candidate`; :func:`run_project` chains the same
functions for the bench over a project of one or several series (:func:`run_experiment`: one), so every benchmark
figure measures the loop users run. Evaluation uses only the
``evaluation`` range of a :class:`Split`, which never overlaps the pool.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast, runtime_checkable

import numpy as np

from app.core.thresholds import DEFAULT_THRESHOLD_METHOD, choose_threshold
from app.core.windows import LabeledRange, end_point_scores, n_windows, ranges_to_point_labels, window_starts

Metrics = dict[str, float]
EvaluateFn = Callable[[np.ndarray, np.ndarray], Metrics]


# -- the oracle -------------------------------------------------------------------------------


@runtime_checkable
class Oracle(Protocol):
    """Answers a query window ``[start, end)`` (point indices) with labeled ranges, or one 0/1 label."""

    def __call__(self, start: int, end: int) -> list[LabeledRange] | int: ...


class OracleRefused(ValueError):
    """The oracle was asked about points it must not reveal (outside the pool)."""


class GroundTruthOracle:
    """An oracle that answers from ground-truth point labels, only inside the pool, and counts.

    ``point_labels``: ``(n_points,)`` 0/1 labels of the series being labeled (same indexing as the
    queries). ``pool_range``: ``(start, end)`` half-open; a query reaching outside it raises
    :class:`OracleRefused`. ``answer``: ``"window"`` returns the runs of equal labels covering the
    whole window (what an analyst marking sub-ranges gives); ``"end_point"`` returns only the window's
    last point (RLAD's window label), so it reveals one point per query.

    Every answer counts one label in ``labels_used`` (a window asked twice counts twice);
    ``points_revealed`` counts ground-truth points handed out.
    """

    def __init__(self, point_labels: np.ndarray, pool_range: tuple[int, int], *, answer: str = "window") -> None:
        if answer not in ("window", "end_point"):
            raise ValueError(f"answer must be 'window' or 'end_point', not {answer!r}")
        self.point_labels = np.asarray(point_labels).astype(np.int8)
        start, end = int(pool_range[0]), int(pool_range[1])
        if not 0 <= start < end <= len(self.point_labels):
            raise ValueError(f"pool range {pool_range} is not inside the {len(self.point_labels)} labeled points")
        if not np.isin(self.point_labels[start:end], (0, 1)).all():
            raise ValueError("ground-truth labels in the pool must be 0 or 1")
        self.pool_range = (start, end)
        self.answer = answer
        self.labels_used = 0
        self.points_revealed = 0
        self.asked: list[tuple[int, int]] = []

    def __call__(self, start: int, end: int) -> list[LabeledRange]:
        lo, hi = self.pool_range
        if not (lo <= start < end <= hi):
            raise OracleRefused(
                f"window [{start}, {end}) is outside the pool [{lo}, {hi}); the oracle only labels the pool"
            )
        answer = truth_answer(self.point_labels[start:end], start, end, self.answer)
        self.labels_used += 1
        self.points_revealed += sum(r.end - r.start for r in answer)
        self.asked.append((answer[0].start, end))
        return answer


def runs_to_ranges(labels: np.ndarray, offset: int = 0) -> list[LabeledRange]:
    """Maximal runs of equal 0/1 labels as ranges: ``[0,0,1,1,0] -> [0,2):0, [2,4):1, [4,5):0``."""
    lab = np.asarray(labels)
    if len(lab) == 0:
        return []
    cuts = np.flatnonzero(np.diff(lab)) + 1
    bounds = np.concatenate([[0], cuts, [len(lab)]])
    pairs = zip(bounds[:-1], bounds[1:], strict=True)
    return [LabeledRange(offset + int(a), offset + int(b), int(lab[a])) for a, b in pairs]


# -- the split an experiment runs on ---------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """What one experiment sees.

    ``X_fit``: ``(m, C)`` what ``fit`` learns from (unsupervised). ``X``: ``(n, C)`` the series that is
    scored, queried and evaluated (for a single-file series ``X_fit`` is its first part; for a
    train/test pair it is the train file and ``X`` the test file). ``y``: ``(n,)`` ground truth of
    ``X``, read only by the oracle (through its own copy) and by evaluation. ``pool`` and
    ``evaluation``: disjoint half-open point ranges of ``X``.
    """

    X_fit: np.ndarray
    X: np.ndarray
    y: np.ndarray
    pool: tuple[int, int]
    evaluation: tuple[int, int]
    name: str = ""

    def __post_init__(self) -> None:
        n = len(self.X)
        if len(self.y) != n:
            raise ValueError(f"{len(self.y)} labels for {n} points")
        for label, (a, b) in (("pool", self.pool), ("evaluation", self.evaluation)):
            if not 0 <= a <= b <= n:
                raise ValueError(f"{label} range [{a}, {b}) is not inside the {n} points")
        if max(self.pool[0], self.evaluation[0]) < min(self.pool[1], self.evaluation[1]):
            raise ValueError(f"pool {self.pool} and evaluation {self.evaluation} overlap")

    @property
    def train_end(self) -> int | None:
        """Where what feedback may learn from ends: ``X[:train_end]`` holds the pool and no evaluation point
        when the evaluation part follows the pool (the chronological protocol); ``None`` (all of ``X``) else.

        Feedback trains on unlabeled windows too (the replay term, RLAD's label propagation); letting it
        see evaluation points would fit the model to the very anomalies it is then scored on."""
        if self.evaluation[0] >= self.pool[1] and self.evaluation[1] > self.evaluation[0]:
            return self.evaluation[0]
        return None


# -- the pool: what may be asked about, what is known ---------------------------------------------


def pool_window_range(pool: tuple[int, int], window: int, stride: int = 1) -> tuple[int, int]:
    """Window indices ``[i0, i1)`` whose whole extent lies in the point range ``pool``."""
    start, end = pool
    i0 = -(-start // stride)  # ceil: first window starting at or after the pool start
    i1 = (end - window) // stride + 1 if end >= window else 0
    return i0, max(i0, i1)


def labeled_windows(ranges: Sequence[LabeledRange], n_points: int, window: int, stride: int = 1) -> np.ndarray:
    """Which windows are already labeled: ``(n_windows,)`` bool.

    A window counts as labeled when its end point is labeled (its label is then known, RLAD's rule)
    or when more than half of its points are (asking again would mostly repeat an answer).
    """
    known = np.zeros(n_points + 1, dtype=np.int64)
    for r in ranges:
        known[max(0, r.start) : min(r.end, n_points)] = 1
    csum = np.concatenate([[0], np.cumsum(known[:n_points])])
    starts = window_starts(n_points, window, stride)
    covered = csum[starts + window] - csum[starts]
    return cast(np.ndarray, (known[starts + window - 1] == 1) | (2 * covered > window))


@dataclass(frozen=True)
class SeriesPool:
    """One series of a pool. Windows lying wholly inside points ``[0, pool_end)`` may be asked about; the rest,
    ``[pool_end, n_points)``, is held back: scored, never asked about, never learned from."""

    key: Hashable
    n_points: int
    pool_end: int

    def __post_init__(self) -> None:
        if not 0 < self.pool_end <= self.n_points:
            raise ValueError(f"series {self.key!r}: pool end {self.pool_end} is not in (0, {self.n_points}]")


@dataclass(frozen=True)
class Query:
    """A picked window of series ``series`` (an index into the pool's series): window ``index``, points
    ``[start, end)`` of that series, and why it was picked."""

    index: int
    start: int
    end: int
    strategy: str
    rank: int
    score: float
    margin: float | None = None
    reason: str = ""
    series: int = 0


@dataclass
class PoolState:
    """Everything a round planner needs to know, in the product and in the bench alike.

    ``series``: the pool's series, in a fixed order (models fit and learn on their pools concatenated in that order).
    ``labels``: per series, the labeled ranges in force in that series' point coordinates (anomaly 1 / normal 0).
    ``budget``: analyst answers allowed in all (windows answered, warm-up included); ``answers``: given so far.
    ``seed``: with the round number, fixes every random choice of a round (:func:`round_rng`).
    """

    series: list[SeriesPool]
    window: int
    stride: int = 1
    budget: int = 0
    answers: int = 0
    seed: int = 0
    labels: list[list[LabeledRange]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.labels:
            self.labels = [[] for _ in self.series]
        if len(self.labels) != len(self.series):
            raise ValueError(f"{len(self.labels)} label lists for {len(self.series)} series")

    @property
    def remaining(self) -> int:
        """Answers left in the budget."""
        return max(0, self.budget - self.answers)

    @property
    def has_labels(self) -> bool:
        return any(self.labels)

    def offsets(self) -> list[int]:
        """Where each series' pool starts in the concatenated pool (points)."""
        return [int(x) for x in np.cumsum([0] + [s.pool_end for s in self.series[:-1]])]

    def pool_windows(self, i: int) -> tuple[int, int]:
        """Window indices ``[i0, i1)`` of series ``i`` that lie in its pool."""
        return pool_window_range((0, self.series[i].pool_end), self.window, self.stride)

    def n_pool_windows(self) -> int:
        return sum(b - a for a, b in (self.pool_windows(i) for i in range(len(self.series))))

    def add_answer(self, i: int, ranges: Sequence[LabeledRange]) -> None:
        """One analyst answer on series ``i`` (counted once, whatever its number of ranges)."""
        self.labels[i].extend(ranges)
        self.answers += 1

    def pool_values(self, values: Sequence[np.ndarray]) -> np.ndarray:
        """The series' pools concatenated: ``(sum of pool_end, C)`` — what models fit on and learn from."""
        return np.concatenate([np.asarray(v)[: s.pool_end] for v, s in zip(values, self.series, strict=True)])

    def pool_ranges(self, labels: Sequence[Sequence[LabeledRange]] | None = None) -> list[LabeledRange]:
        """``labels`` (default: all in force) in concatenated-pool coordinates, clipped to each pool, in point order
        (the order labels were stored in does not change what a model learns)."""
        out = []
        for off, s, ranges in zip(
            self.offsets(), self.series, labels if labels is not None else self.labels, strict=True
        ):
            for r in ranges:
                end = min(r.end, s.pool_end)
                if end > r.start:
                    out.append(LabeledRange(off + r.start, off + end, r.value))
        return sorted(out, key=lambda r: (r.start, r.end, r.value))

    def labeled_mask(self, i: int) -> np.ndarray:
        """``(n_windows,)`` of series ``i``: which windows are labeled (:func:`labeled_windows`)."""
        s = self.series[i]
        return labeled_windows(self.labels[i], s.n_points, self.window, self.stride)


def as_stored(scores: np.ndarray) -> np.ndarray:
    """Scores as the product stores them (float32), widened back to float64: the planner and the validation read
    scores through this, so a plan does not depend on whether its scores came from memory or from the database."""
    return np.asarray(scores, dtype=np.float32).astype(np.float64)


def round_rng(seed: int, round_number: int) -> np.random.Generator:
    """The random stream of one round: the same (seed, round) gives the same picks wherever the round is planned."""
    return np.random.default_rng([int(seed), int(round_number)])


def warmup_candidates(detector: Any, pools: Sequence[np.ndarray]) -> list[tuple[int, int]]:
    """``(series, window index)`` pairs a detector wants asked before any label (``asks_warmup``), per series' pool
    ``(pool_end, C)``; empty for detectors without a warm-up. Windows never straddle two series."""
    if not detector.asks_warmup:
        return []
    out: list[tuple[int, int]] = []
    for i, pool in enumerate(pools):
        if len(pool) >= detector.window:
            out.extend((i, int(idx)) for idx in np.asarray(detector.initial_queries(pool)).tolist())
    return out


def plan_round(
    state: PoolState,
    window_scores: Sequence[np.ndarray],
    strategy: str,
    k: int,
    round_number: int,
    *,
    margins: Sequence[np.ndarray] | None = None,
    warmup: Sequence[tuple[int, int]] = (),
    drivers: Sequence[np.ndarray] | None = None,
    member_names: Sequence[str] = (),
    options: dict[str, Any] | None = None,
    min_gap: int | None = None,
) -> list[Query]:
    """The queries of one round: at most ``min(k, state.remaining)`` unlabeled pool windows, best first.

    ``window_scores``: per series, the serving model's scores of *all* its windows ``(n_windows,)`` (only pool
    windows are offered). ``margins``: the same shape, for uncertainty strategies (``provides_margins``).
    ``warmup``: :func:`warmup_candidates`; asked instead of the strategy's picks while nothing is labeled, cut to
    the round size by alternating the highest- and lowest-scored (likely one anomaly, one normal). ``drivers``:
    per series and window, the index into ``member_names`` of what drove the score (named in each reason).
    ``min_gap`` (windows) defaults to ``window // stride``: picks of one round never overlap.
    """
    from app.core.query import select

    k = min(int(k), state.remaining)
    if k <= 0:
        return []
    gap = max(1, state.window // state.stride) if min_gap is None else int(min_gap)
    owners, scores, labeled, unc = [], [], [], []
    for i, s in enumerate(state.series):
        i0, i1 = state.pool_windows(i)
        ws = as_stored(window_scores[i])
        expected = n_windows(s.n_points, state.window, state.stride)
        if len(ws) != expected:
            raise ValueError(f"series {s.key!r}: {len(ws)} window scores for {expected} windows")
        owners.append(np.stack([np.full(i1 - i0, i), np.arange(i0, i1)], axis=1))
        scores.append(ws[i0:i1])
        labeled.append(state.labeled_mask(i)[i0:i1])
        if margins is not None:
            unc.append(as_stored(margins[i])[i0:i1])
    owner = np.concatenate(owners).astype(np.int64)
    all_scores = np.concatenate(scores)
    all_labeled = np.concatenate(labeled)
    if all_labeled.all():
        return []
    if warmup and not state.has_labels:
        picks = _warmup_picks(warmup, owner, all_scores, all_labeled, k, gap)
    else:
        uncertainty = np.concatenate(unc) if margins is not None else None
        picks = [
            (int(p.index), p.strategy, float(p.score), p.margin, p.reason)
            for p in select(
                strategy,
                all_scores,
                all_labeled,
                k,
                round_rng(state.seed, round_number),
                min_gap=gap,
                uncertainty=uncertainty,
                **(options or {}),
            )
        ]
    out = []
    for rank, (j, how, score, margin, reason) in enumerate(picks):
        i, idx = int(owner[j, 0]), int(owner[j, 1])
        if drivers is not None and member_names:
            reason = f"{reason}; driven by {member_names[int(np.asarray(drivers[i])[idx])]}"
        start = idx * state.stride
        out.append(
            Query(
                idx, start, start + state.window, how, rank, score, None if margin is None else float(margin), reason, i
            )
        )
    return out


def _warmup_picks(
    warmup: Sequence[tuple[int, int]], owner: np.ndarray, scores: np.ndarray, labeled: np.ndarray, k: int, gap: int
) -> list[tuple[int, str, float, float | None, str]]:
    """Warm-up windows as ``(row of owner, strategy, score, margin, reason)``: unlabeled, in the pool, at least
    ``gap`` windows apart within a series, at most ``k``, alternating the highest- and the lowest-scored."""
    row = {(int(s), int(w)): j for j, (s, w) in enumerate(owner)}
    rows = [row[c] for c in dict.fromkeys((int(s), int(w)) for s, w in warmup) if c in row and not labeled[row[c]]]
    order = sorted(rows, key=lambda j: -scores[j])
    alternating = [order[i // 2] if i % 2 == 0 else order[-(i // 2) - 1] for i in range(len(order))]
    chosen: list[int] = []
    for j in dict.fromkeys(alternating):
        if all(owner[j, 0] != owner[c, 0] or abs(int(owner[j, 1]) - int(owner[c, 1])) >= gap for c in chosen):
            chosen.append(j)
        if len(chosen) == k:
            break
    middle = float(np.median(scores[rows])) if rows else 0.0
    return [
        (j, "warmup", float(scores[j]), None, f"warm-up: {'high' if scores[j] >= middle else 'low'} score")
        for j in chosen
    ]


# -- the oracle answers, learning --------------------------------------------------------------------


def ask(oracle: Callable[[int, int], list[LabeledRange] | int], queries: Sequence[Query]) -> list[LabeledRange]:
    """The oracle's answers to ``queries`` as labeled ranges (a bare 0/1 answer labels the whole window)."""
    answers: list[LabeledRange] = []
    for q in queries:
        answers.extend(answer_ranges(oracle(q.start, q.end), q.start, q.end))
    return answers


def answer_ranges(answer: list[LabeledRange] | int, start: int, end: int) -> list[LabeledRange]:
    """One answer as labeled ranges (a bare 0/1 labels the whole window ``[start, end)``)."""
    if isinstance(answer, (int, np.integer)):
        return [LabeledRange(start, end, int(answer))]
    return list(answer)


def truth_answer(truth: np.ndarray, start: int, end: int, mode: str) -> list[LabeledRange]:
    """What the ground-truth oracle answers for window ``[start, end)`` given the truth ``truth[start:end]``.

    ``mode`` is the detector's ``answer_mode``: ``"window"`` gives the runs of equal labels over the window,
    ``"end_point"`` the last point only. The product's ground-truth projects and the bench answer with this."""
    if mode not in ("window", "end_point"):
        raise ValueError(f"answer mode must be 'window' or 'end_point', not {mode!r}")
    lab = np.asarray(truth).astype(np.int8)
    if len(lab) != end - start:
        raise ValueError(f"{len(lab)} truth labels for the window [{start}, {end})")
    if mode == "end_point":
        return [LabeledRange(end - 1, end, int(lab[-1]))]
    return runs_to_ranges(lab, offset=start)


def learn(detector: Any, X_pool: np.ndarray, ranges: Sequence[LabeledRange], progress: Any = None) -> float:
    """Refine ``detector`` with every label in force (pool coordinates) on the pool ``(N, C)``; returns seconds.

    The product's retraining job and the bench's rounds both learn through here."""
    t0 = time.perf_counter()
    if progress is None:
        detector.feedback(X_pool, list(ranges))
    else:
        detector.feedback(X_pool, list(ranges), progress=progress)
    return time.perf_counter() - t0


def window_label(ranges: Sequence[LabeledRange], start: int, end: int) -> int | None:
    """A query window's label from the answers given for it: 1 if any anomalous point, 0 if only normal ones,
    None if none of its points is labeled (an "unsure" or skipped answer)."""
    inside = [r for r in ranges if r.start < end and r.end > start]
    if not inside:
        return None
    return int(any(r.value == 1 for r in inside))


def validate_candidate(
    rule: Any,
    state: PoolState,
    newest: Sequence[tuple[Query, Sequence[LabeledRange]]],
    candidate: Any,
    X_pool: np.ndarray,
    candidate_window_scores: Sequence[np.ndarray],
    serving_window_scores: Sequence[np.ndarray] | None,
    pool_points: np.ndarray,
    threshold: float,
) -> Any:
    """Judge a candidate trained with every label, on the newest round's answers (:mod:`app.core.adoption`).

    ``newest``: the round's queries with the ranges answered for each (series coordinates; already in
    ``state.labels``). ``candidate_window_scores`` / ``serving_window_scores``: per series, each version's scores of
    all its windows (``serving_window_scores`` None: nothing serves yet); the serving version never learned from the
    newest answers, so its figure is honest. When the candidate can hold labels out (``can_hold_out_labels``), its
    figure is cross-fitted (:func:`_cross_fitted_ranks`); else it is in-sample and can only refuse. ``pool_points``:
    ``(n,)`` the candidate's point scores of the pool (every series' pool part, in order); ``threshold``: the one its
    labels chose. The threshold guard's allowance comes from the pool's anomaly rate as the labels estimate it on the
    scores that chose the queries: the serving version's (the candidate's when nothing serves), so a candidate that
    scores every window high cannot raise its own allowance. Returns an :class:`~app.core.adoption.Verdict`, whose
    ``threshold`` is the one the candidate serves with (raised to the guard's limit when its own flags more)."""
    from app.core.adoption import estimated_anomaly_rate, judge, percentile_ranks

    kept = [(q, y) for q, y in ((q, window_label(r, q.start, q.end)) for q, r in newest) if y is not None]
    labels = np.array([y for _, y in kept], dtype=np.int64)

    def in_pool(per_series: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Each series' scores of its pool windows, as stored."""
        return [as_stored(w)[slice(*state.pool_windows(i))] for i, w in enumerate(per_series)]

    def ranks(per_series: Sequence[np.ndarray]) -> np.ndarray:
        values = [float(as_stored(per_series[q.series][q.index])) for q, _ in kept]
        return percentile_ranks(np.array(values), np.concatenate(in_pool(per_series)))

    held_out = bool(candidate.can_hold_out_labels) and len(kept) > 0
    if held_out:
        cand_ranks = _cross_fitted_ranks(state, newest, kept, candidate, X_pool)
    else:
        cand_ranks = ranks(candidate_window_scores)
    serving_ranks = ranks(serving_window_scores) if serving_window_scores is not None else None
    known = ranges_to_point_labels(state.pool_ranges(), len(X_pool))
    chose = serving_window_scores if serving_window_scores is not None else candidate_window_scores
    chose_points = [
        end_point_scores(w, s.pool_end, state.window, state.stride)
        for w, s in zip(in_pool(chose), state.series, strict=True)
    ]
    rate = estimated_anomaly_rate(np.concatenate(chose_points), known)
    return judge(
        rule,
        labels,
        cand_ranks,
        serving_ranks,
        held_out=held_out,
        pool_points=pool_points,
        threshold=threshold,
        anomaly_rate=rate,
    )


VALIDATION_FOLDS = 5
"""Folds of the newest answers for a cross-fitted candidate figure (fewer when there are fewer answers)."""


def _cross_fitted_ranks(
    state: PoolState,
    newest: Sequence[tuple[Query, Sequence[LabeledRange]]],
    kept: Sequence[tuple[Query, int]],
    candidate: Any,
    X_pool: np.ndarray,
) -> np.ndarray:
    """The candidate's percentile rank of each newest answer's window, each from a model that learned from every
    label *but* the answers of its fold (``validation_window_scores``).

    Holding out the whole round would give back the serving version (it learned from exactly the older labels), so
    the newest answers are split in folds: each fold's windows are scored by a model that learned from the older
    labels and the round's other folds, which is what the candidate adds — measured on answers it did not see."""
    from app.core.adoption import percentile_ranks

    n_folds = min(VALIDATION_FOLDS, len(kept))
    fold_of = {id(q): j % n_folds for j, (q, _) in enumerate(kept)}
    offsets = state.offsets()
    out = np.zeros(len(kept))
    for f in range(n_folds):
        held = [
            [r for q, rs in newest if q.series == i and fold_of.get(id(q)) == f for r in rs]
            for i in range(len(state.series))
        ]
        train = [[r for r in ls if r not in held[i]] for i, ls in enumerate(state.labels)]
        pooled = as_stored(
            candidate.validation_window_scores(X_pool, state.pool_ranges(train), state.pool_ranges(held))
        )
        # the pool's windows of each series, mapped back (series i's windows start at its offset in the pool)
        per_series = [
            pooled[offsets[i] // state.stride : offsets[i] // state.stride + state.pool_windows(i)[1]]
            for i in range(len(state.series))
        ]
        ref = np.concatenate([per_series[i][slice(*state.pool_windows(i))] for i in range(len(state.series))])
        rows = [j for j, (q, _) in enumerate(kept) if fold_of[id(q)] == f]
        out[rows] = percentile_ranks(np.array([per_series[kept[j][0].series][kept[j][0].index] for j in rows]), ref)
    return out


def resolve_budget(budget: float, n_pool_windows: int) -> int:
    """Labels allowed: a fraction of the pool's windows if ``0 < budget < 1`` (at least 1), else a count."""
    if budget < 0:
        raise ValueError(f"budget must be >= 0, not {budget}")
    if budget == 0:
        return 0
    if budget < 1:
        return max(1, int(round(budget * n_pool_windows)))
    return int(budget)


def pool_threshold(method: str, pool_scores: np.ndarray, pool_labels: np.ndarray) -> float:
    """A version's threshold from the pool's point scores ``(N,)`` and the labels gathered there (``(N,)`` 1 / 0 /
    -1 unlabeled) — never from ground truth. The product's versions and the bench's served model use this, with
    the detector's :meth:`~app.core.detectors.base.Detector.threshold_basis` as ``pool_scores``."""
    s = np.asarray(pool_scores, dtype=np.float64)
    return float(choose_threshold(method, train_scores=s, scores=s, labels=np.asarray(pool_labels, dtype=np.int64)))


# -- the driver: a whole experiment through the same planner and learner ---------------------------


@dataclass
class RoundRecord:
    """State after round ``round`` (0 = after fit, before any query): the *served* model's metrics.

    ``served``: whether this round's candidate was adopted; ``verdict``: the adoption decision and its figures;
    ``candidate_metrics``: the candidate's metrics whether or not it serves (what "always serve" would have given).
    """

    round: int
    labels_used: int
    metrics: Metrics
    n_queries: int = 0
    n_anomalous_queries: int = 0
    feedback_seconds: float = 0.0
    score_seconds: float = 0.0
    served: bool = True
    verdict: dict[str, Any] = field(default_factory=dict)
    candidate_metrics: Metrics = field(default_factory=dict)
    points_revealed: int = 0
    series_metrics: list[Metrics] = field(default_factory=list)
    """Per series of a project (:func:`run_project`): the served model's metrics on its evaluation part; ``metrics``
    is their mean."""


@dataclass
class ExperimentResult:
    """A whole experiment: per-round records, the served model's final point scores of ``X``, the labels gathered
    (point coordinates of ``X``), and the served detector."""

    rounds: list[RoundRecord]
    scores: np.ndarray
    ranges: list[LabeledRange]
    labels_used: int
    budget: int
    fit_seconds: float
    feedback_seconds: float
    score_seconds: float
    warmup_labels: int = 0
    queries: list[Query] = field(default_factory=list)
    detector: Any = None
    threshold: float = float("nan")

    @property
    def final(self) -> Metrics:
        return self.rounds[-1].metrics


def default_evaluate(scores: np.ndarray, labels: np.ndarray) -> Metrics:
    """PR-AUC and ROC-AUC of point scores against 0/1 point labels (the cheap per-round pair)."""
    from app.core.metrics import pr_auc, roc_auc

    return {"pr_auc": float(pr_auc(scores, labels)), "roc_auc": float(roc_auc(scores, labels))}


def run_experiment(
    detector: Any,
    split: Split,
    strategy: str,
    oracle: Callable[[int, int], list[LabeledRange] | int],
    round_size: int,
    budget: float,
    seed: int = 0,
    **loop_options: Any,
) -> ExperimentResult:
    """Fit on ``split.X_fit``, then rounds of the product's loop until ``budget`` answers are spent: a project of
    one series. ``loop_options``: :func:`run_project`'s keyword arguments (which says what a round does)."""
    res = run_project(detector, [split], strategy, [oracle], round_size, budget, seed, **loop_options)
    return ExperimentResult(
        res.rounds,
        res.scores[0],
        res.state.pool_ranges(),
        res.labels_used,
        res.budget,
        res.fit_seconds,
        res.feedback_seconds,
        res.score_seconds,
        res.warmup_labels,
        res.queries,
        res.detector,
        res.threshold,
    )


@dataclass
class ProjectResult:
    """A whole experiment on a project of several series: per-round records (``metrics`` the mean over series,
    ``series_metrics`` each series'), the served model's final point scores of each series' ``X``, the pool state
    (labels per series, in series coordinates; answers spent), and the served detector and threshold."""

    rounds: list[RoundRecord]
    scores: list[np.ndarray]
    state: PoolState
    labels_used: int
    budget: int
    fit_seconds: float
    feedback_seconds: float
    score_seconds: float
    warmup_labels: int
    queries: list[Query]
    detector: Any
    threshold: float


def _mean_metrics(per_series: Sequence[Metrics]) -> Metrics:
    """The mean over series of each metric (a one-series project: its own metrics, unchanged)."""
    return {k: float(np.mean([m[k] for m in per_series])) for k in per_series[0]}


def run_project(
    detector: Any,
    splits: Sequence[Split],
    strategy: str,
    oracles: Sequence[Callable[[int, int], list[LabeledRange] | int]],
    round_size: int,
    budget: float,
    seed: int = 0,
    *,
    min_gap: int | None = None,
    options: dict[str, Any] | None = None,
    evaluate: EvaluateFn = default_evaluate,
    fit: bool = True,
    n_rounds: int | None = None,
    on_round: Callable[[RoundRecord], None] | None = None,
    adoption: Any = None,
    threshold_method: str = DEFAULT_THRESHOLD_METHOD,
) -> ProjectResult:
    """A project's loop over the series ``splits`` (one oracle each): fit on their ``X_fit`` concatenated, then rounds
    until ``budget`` answers are spent.

    Each round is what a project does: :func:`plan_round` on the *serving* model's scores of every series (RLAD's
    warm-up first), the oracles answer, a candidate learns from every label (:func:`learn`, on the pools
    concatenated: evaluation points are never learned from), :func:`validate_candidate` decides whether it serves
    (``adoption``: an :class:`~app.core.adoption.AdoptionRule`; default the product's default) with the threshold
    chosen over every series' pool, and the served model is evaluated on each ``split.evaluation``. ``budget``:
    fraction of all the pools' windows (``0 < b < 1``) or a count of answers; 0 = unsupervised. ``n_rounds``, when
    given, sets the round size so the budget is spent in that many rounds. Each pool must start at its series'
    start (both bench protocols and the product hold back a tail).
    """
    import copy

    from app.core.adoption import AdoptionRule

    if not splits or len(splits) != len(oracles):
        raise ValueError(f"{len(splits)} series and {len(oracles)} oracles: a project needs one oracle per series")
    rule = adoption if adoption is not None else AdoptionRule()
    window, stride = int(detector.window), int(detector.stride)
    for sp in splits:
        if sp.pool[0] != 0:
            raise ValueError(f"the pool must start at the series start, not at point {sp.pool[0]}")
    pools = [SeriesPool(sp.name or f"series {i}", len(sp.X), sp.pool[1]) for i, sp in enumerate(splits)]
    state = PoolState(pools, window, stride, seed=seed)
    state.budget = resolve_budget(budget, state.n_pool_windows())
    Xs = [sp.X for sp in splits]
    X_pool = state.pool_values(Xs)
    pool_ends = [sp.pool[1] for sp in splits]
    n_pool = sum(pool_ends)
    y_evals = [np.asarray(sp.y[slice(*sp.evaluation)]) for sp in splits]

    def score_all(model: Any) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray, np.ndarray]:
        """Each series' point and window scores, and the pool's point scores and threshold basis, concatenated."""
        scored = [model.point_and_window_scores(x) for x in Xs]
        points = [p for p, _ in scored]
        basis = [model.threshold_basis(x, p)[:e] for x, p, e in zip(Xs, points, pool_ends, strict=True)]
        pool_points = np.concatenate([p[:e] for p, e in zip(points, pool_ends, strict=True)])
        return points, [w for _, w in scored], pool_points, np.concatenate(basis)

    def evaluated(points: list[np.ndarray]) -> list[Metrics]:
        return [evaluate(p[slice(*sp.evaluation)], y) for p, sp, y in zip(points, splits, y_evals, strict=True)]

    fit_s = 0.0
    if fit:
        t0 = time.perf_counter()
        detector.fit(np.concatenate([sp.X_fit for sp in splits]))
        fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    served = detector
    points, windows, pool_points, basis = score_all(served)
    score_s = time.perf_counter() - t0
    threshold = pool_threshold(threshold_method, basis, np.full(n_pool, -1, dtype=np.int64))
    # judged like a project's first version: it serves whatever, with its threshold capped by the guard
    first = validate_candidate(rule, state, [], served, X_pool, windows, None, pool_points, threshold)
    threshold = first.threshold
    per_series = evaluated(points)
    records = [
        RoundRecord(
            0, 0, _mean_metrics(per_series), score_seconds=score_s, verdict=first.as_dict(), series_metrics=per_series
        )
    ]
    if on_round:
        on_round(records[0])
    if n_rounds is not None and n_rounds > 0:
        round_size = max(1, -(-state.budget // n_rounds))
    all_queries: list[Query] = []
    feedback_s = 0.0
    warmup_labels = 0
    r = 0
    while state.remaining > 0 and round_size > 0:
        r += 1
        t0 = time.perf_counter()
        margins = None
        if strategy in UNCERTAINTY_STRATEGIES and served.provides_margins:
            margins = [served.margins(x, window_scores=w) for x, w in zip(Xs, windows, strict=True)]
        warm = (
            warmup_candidates(served, [x[:e] for x, e in zip(Xs, pool_ends, strict=True)])
            if not state.has_labels
            else []
        )
        drivers, names = None, ()
        if served.explains_windows:
            drivers = [served.window_drivers(x, window_scores=w) for x, w in zip(Xs, windows, strict=True)]
            names = tuple(served.member_names_)
        queries = plan_round(
            state,
            windows,
            strategy,
            round_size,
            r,
            margins=margins,
            warmup=warm,
            drivers=drivers,
            member_names=names,
            options=options,
            min_gap=min_gap,
        )
        plan_s = time.perf_counter() - t0
        if not queries:  # the pool has no unlabeled window left
            break
        newest = []
        for q in queries:
            ranges = answer_ranges(oracles[q.series](q.start, q.end), q.start, q.end)
            state.add_answer(q.series, ranges)
            newest.append((q, ranges))
        warmup_labels += sum(q.strategy == "warmup" for q in queries)
        candidate = copy.deepcopy(served) if rule.policy != "always" else served
        fb_s = learn(candidate, X_pool, state.pool_ranges())
        feedback_s += fb_s
        t0 = time.perf_counter()
        c_points, c_windows, c_pool_points, c_basis = score_all(candidate)
        pool_labels = ranges_to_point_labels(state.pool_ranges(), n_pool)
        c_threshold = pool_threshold(threshold_method, c_basis, pool_labels)
        verdict = validate_candidate(
            rule, state, newest, candidate, X_pool, c_windows, windows, c_pool_points, c_threshold
        )
        cand_metrics = _mean_metrics(evaluated(c_points))
        if verdict.serve:  # with the guard's threshold (its labels' own unless that flags too much)
            served, points, windows, threshold = candidate, c_points, c_windows, verdict.threshold
            per_series = evaluated(points)
        score_s += time.perf_counter() - t0 + plan_s
        all_queries.extend(queries)
        n_anom = sum(1 for q, rs in newest if window_label(rs, q.start, q.end) == 1)
        revealed = sum(rr.end - rr.start for _, rs in newest for rr in rs)
        rec = RoundRecord(
            r,
            state.answers,
            _mean_metrics(per_series),
            len(queries),
            n_anom,
            fb_s,
            time.perf_counter() - t0 + plan_s,
            verdict.serve,
            verdict.as_dict(),
            cand_metrics,
            revealed,
            per_series,
        )
        records.append(rec)
        if on_round:
            on_round(rec)
    return ProjectResult(
        records,
        [np.asarray(p, dtype=np.float64) for p in points],
        state,
        state.answers,
        state.budget,
        fit_s,
        feedback_s,
        score_s,
        warmup_labels,
        all_queries,
        served,
        threshold,
    )


UNCERTAINTY_STRATEGIES = ("margin", "least_confidence", "entropy")
"""Strategies that rank by a margin; they get ``margins`` when the serving detector ``provides_margins``."""


__all__ = [
    "ExperimentResult",
    "GroundTruthOracle",
    "Oracle",
    "OracleRefused",
    "PoolState",
    "ProjectResult",
    "Query",
    "RoundRecord",
    "SeriesPool",
    "Split",
    "UNCERTAINTY_STRATEGIES",
    "answer_ranges",
    "ask",
    "default_evaluate",
    "labeled_windows",
    "learn",
    "n_windows",
    "plan_round",
    "pool_threshold",
    "pool_window_range",
    "resolve_budget",
    "round_rng",
    "run_experiment",
    "run_project",
    "runs_to_ranges",
    "truth_answer",
    "validate_candidate",
    "warmup_candidates",
    "window_label",
]
