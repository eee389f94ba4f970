"""One active-learning round as pure steps, and a driver that runs a whole experiment.

The steps, each callable on its own (the web app and the worker run them one round at a time,
with a human instead of an oracle between ``pick_queries`` and ``apply_feedback``):

1. :func:`score_windows` — one score per window of the series being labeled.
2. :func:`pick_queries` — a query strategy picks ``k`` windows *inside the pool* that are not
   labeled yet (:func:`labeled_windows`), at least ``min_gap`` apart (default: one window).
3. :func:`ask` — the oracle answers each picked window with labeled point ranges.
4. :func:`apply_feedback` — the detector is refined with *all* labels gathered so far.

:func:`run_round` chains the four; :func:`run_experiment` fits, optionally warms up (RLAD's
``initial_queries``), runs rounds until the label budget is spent and evaluates after every round.

Label accounting: every window the oracle answers is one label (``GroundTruthOracle.labels_used``),
warm-up windows included; the budget caps that count. Evaluation uses only the ``evaluation`` range
of the split, which never overlaps the pool, so queried windows are never scored in evaluation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from app.core.windows import LabeledRange, n_windows, window_starts

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
        if self.answer == "end_point":
            start = end - 1
        self.labels_used += 1
        self.points_revealed += end - start
        self.asked.append((start, end))
        return runs_to_ranges(self.point_labels[start:end], offset=start)


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


# -- step 1: score ------------------------------------------------------------------------------


def score_windows(detector: Any, X: np.ndarray) -> np.ndarray:
    """Window scores ``(n_windows,)`` of ``X`` from a fitted detector (higher = more anomalous)."""
    return np.asarray(detector.window_scores(X), dtype=np.float64)


# -- step 2: pick -------------------------------------------------------------------------------


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
        known[r.start : min(r.end, n_points)] = 1
    csum = np.concatenate([[0], np.cumsum(known[:n_points])])
    starts = window_starts(n_points, window, stride)
    covered = csum[starts + window] - csum[starts]
    return (known[starts + window - 1] == 1) | (2 * covered > window)


@dataclass(frozen=True)
class Query:
    """A picked window: index, point range ``[start, end)`` and why it was picked."""

    index: int
    start: int
    end: int
    strategy: str
    rank: int
    score: float
    margin: float | None = None
    reason: str = ""


def pick_queries(
    scores: np.ndarray,
    labeled: np.ndarray,
    strategy: str,
    k: int,
    rng: np.random.Generator,
    *,
    pool_windows: tuple[int, int],
    window: int,
    stride: int = 1,
    min_gap: int | None = None,
    uncertainty: np.ndarray | None = None,
    options: dict[str, Any] | None = None,
) -> list[Query]:
    """Pick ``k`` unlabeled windows inside ``pool_windows`` with the named strategy.

    ``scores``, ``labeled`` and ``uncertainty`` are per window of the whole series ``(n_windows,)``;
    only the slice ``pool_windows`` is offered to the strategy, so the oracle is never asked outside
    the pool. ``min_gap`` (in windows) defaults to ``window // stride``: two picks in one batch never
    overlap, so one anomaly cannot fill a batch. ``options``: strategy options (``bins``, ``per_bin``,
    ``k`` ...; see :mod:`app.core.query`). Returns at most ``k`` queries, fewer when the pool
    runs out of unlabeled windows.
    """
    from app.core.query import select

    i0, i1 = pool_windows
    if k <= 0 or i1 <= i0:
        return []
    gap = max(1, window // stride) if min_gap is None else min_gap
    sub_unc = None if uncertainty is None else np.asarray(uncertainty, dtype=np.float64)[i0:i1]
    sub_lab = np.asarray(labeled, dtype=bool)[i0:i1]
    if sub_lab.all():
        return []
    sub_scores = np.asarray(scores, dtype=np.float64)[i0:i1]
    picks = select(strategy, sub_scores, sub_lab, k, rng, min_gap=gap, uncertainty=sub_unc, **(options or {}))
    out = []
    for p in picks:
        idx = int(p.index) + i0
        start = idx * stride
        out.append(
            Query(idx, start, start + window, str(p.strategy), int(p.rank), float(p.score),
                  None if p.margin is None else float(p.margin), str(p.reason))
        )
    return out


# -- step 3: ask --------------------------------------------------------------------------------


def ask(oracle: Callable[[int, int], list[LabeledRange] | int], queries: Sequence[Query]) -> list[LabeledRange]:
    """The oracle's answers to ``queries`` as labeled ranges (a bare 0/1 answer labels the whole window)."""
    answers: list[LabeledRange] = []
    for q in queries:
        ans = oracle(q.start, q.end)
        if isinstance(ans, (int, np.integer)):
            answers.append(LabeledRange(q.start, q.end, int(ans)))
        else:
            answers.extend(ans)
    return answers


# -- step 4: feedback ---------------------------------------------------------------------------


def apply_feedback(detector: Any, X: np.ndarray, ranges: Sequence[LabeledRange], progress: Any = None) -> float:
    """Refine ``detector`` with every label so far; returns the seconds it took."""
    t0 = time.perf_counter()
    if progress is None:
        detector.feedback(X, list(ranges))
    else:
        detector.feedback(X, list(ranges), progress=progress)
    return time.perf_counter() - t0


# -- one round ----------------------------------------------------------------------------------


@dataclass
class RoundResult:
    """What one round did: its queries, the new answers, all labels after it, and timings (s)."""

    queries: list[Query]
    new_ranges: list[LabeledRange]
    ranges: list[LabeledRange]
    score_seconds: float
    feedback_seconds: float


def uncertainty_for(
    detector: Any, X: np.ndarray, strategy: str, window_scores: np.ndarray | None = None
) -> np.ndarray | None:
    """``detector.margins(X)`` for uncertainty-based strategies when the detector has it, else None.

    ``window_scores``: the detector's scores of ``X`` already computed, handed on so it need not score twice."""
    if strategy in ("margin", "least_confidence", "entropy") and hasattr(detector, "margins"):
        return np.asarray(detector.margins(X, window_scores=window_scores), dtype=np.float64)
    return None


def run_round(
    detector: Any,
    X: np.ndarray,
    labeled_ranges: Sequence[LabeledRange],
    strategy: str,
    k: int,
    rng: np.random.Generator,
    *,
    oracle: Callable[[int, int], list[LabeledRange] | int],
    pool: tuple[int, int] | None = None,
    min_gap: int | None = None,
    options: dict[str, Any] | None = None,
    progress: Any = None,
    train_end: int | None = None,
) -> RoundResult:
    """Score → pick ``k`` → ask → feedback with all labels. ``pool`` defaults to the whole ``X``.

    Only the pool is scored for picking (a window's score depends on its own points only), which
    saves most of the scoring when the pool is a small part of a long series. ``train_end``: feedback
    learns from ``X[:train_end]`` only (its unlabeled windows too: the replay term, label propagation);
    an experiment passes the start of its evaluation part, so evaluation points are only ever scored.
    """
    window, stride = int(detector.window), int(getattr(detector, "stride", 1))
    p0, p1 = pool or (0, len(X))
    offset = -(-p0 // stride) * stride  # pool start on the stride grid: window i of X_pool is i + offset/stride of X
    X_pool = X[offset:p1]
    queries: list[Query] = []
    score_s = 0.0
    if len(X_pool) >= window:
        t0 = time.perf_counter()
        scores = score_windows(detector, X_pool)
        unc = uncertainty_for(detector, X_pool, strategy, window_scores=scores)
        score_s = time.perf_counter() - t0
        first = offset // stride
        labeled = labeled_windows(labeled_ranges, len(X), window, stride)[first : first + len(scores)]
        local = pick_queries(scores, labeled, strategy, k, rng, pool_windows=(0, len(scores)), window=window,
                             stride=stride, min_gap=min_gap, uncertainty=unc, options=options)
        queries = [Query(q.index + first, q.start + offset, q.end + offset, q.strategy, q.rank, q.score, q.margin,
                         q.reason) for q in local]
    new = ask(oracle, queries)
    ranges = [*labeled_ranges, *new]
    fb_s = apply_feedback(detector, X[:train_end], ranges, progress) if new else 0.0
    return RoundResult(queries, new, ranges, score_s, fb_s)


# -- the driver ---------------------------------------------------------------------------------


@dataclass
class RoundRecord:
    """State after round ``round`` (0 = after fit and warm-up, before any query round)."""

    round: int
    labels_used: int
    metrics: Metrics
    n_queries: int = 0
    n_anomalous_queries: int = 0
    feedback_seconds: float = 0.0
    score_seconds: float = 0.0


@dataclass
class ExperimentResult:
    """A whole experiment: per-round records, final point scores of ``X`` and the labels gathered."""

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

    @property
    def final(self) -> Metrics:
        return self.rounds[-1].metrics


def default_evaluate(scores: np.ndarray, labels: np.ndarray) -> Metrics:
    """PR-AUC and ROC-AUC of point scores against 0/1 point labels (the cheap per-round pair)."""
    from app.core.metrics import pr_auc, roc_auc

    return {"pr_auc": float(pr_auc(scores, labels)), "roc_auc": float(roc_auc(scores, labels))}


def evaluate_split(detector: Any, split: Split, evaluate: EvaluateFn) -> tuple[np.ndarray, Metrics, float]:
    """Point scores of ``split.X``, the metrics on the evaluation range, and the scoring seconds."""
    t0 = time.perf_counter()
    scores = np.asarray(detector.score(split.X), dtype=np.float64)
    secs = time.perf_counter() - t0
    a, b = split.evaluation
    return scores, evaluate(scores[a:b], np.asarray(split.y[a:b])), secs


def warm_up(
    detector: Any, split: Split, oracle: Callable[[int, int], list[LabeledRange] | int], limit: int
) -> tuple[list[Query], list[LabeledRange]]:
    """RLAD-style warm-up: ``detector.initial_queries`` on the pool only, at most ``limit`` answered.

    ``initial_queries(X_pool)`` returns window indices of ``X_pool`` (ints or objects with ``.index``);
    they are shifted back to ``X`` coordinates. Labels given here count like any other.
    """
    if limit <= 0 or not hasattr(detector, "initial_queries"):
        return [], []
    window, stride = int(detector.window), int(getattr(detector, "stride", 1))
    p0, p1 = split.pool
    if p1 - p0 < window:
        return [], []
    offset = -(-p0 // stride) * stride  # pool start aligned to the stride grid
    picks = detector.initial_queries(split.X[offset:p1])
    queries: list[Query] = []
    for rank, p in enumerate(picks):
        idx = int(getattr(p, "index", p))
        start = offset + idx * stride
        queries.append(Query(start // stride, start, start + window, "warmup", rank, float(getattr(p, "score", np.nan)),
                             reason=str(getattr(p, "reason", "warm-up"))))
    if len(queries) > limit:
        # The budget is smaller than the warm-up: keep the extremes, alternating the highest- and the
        # lowest-scored picks (likely one anomaly, one normal), rather than whatever comes first.
        ws = score_windows(detector, split.X[offset:p1])
        order = np.argsort([-ws[(q.start - offset) // stride] for q in queries], kind="stable")
        alternating = [int(order[i // 2]) if i % 2 == 0 else int(order[-(i // 2) - 1]) for i in range(len(order))]
        keep = list(dict.fromkeys(alternating))[:limit]
        queries = [queries[i] for i in sorted(keep)]
    return queries, ask(oracle, queries)


def resolve_budget(budget: float, n_pool_windows: int) -> int:
    """Labels allowed: a fraction of the pool's windows if ``0 < budget < 1`` (at least 1), else a count."""
    if budget < 0:
        raise ValueError(f"budget must be >= 0, not {budget}")
    if budget == 0:
        return 0
    if budget < 1:
        return max(1, int(round(budget * n_pool_windows)))
    return int(budget)


def run_experiment(
    detector: Any,
    split: Split,
    strategy: str,
    oracle: Callable[[int, int], list[LabeledRange] | int],
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
) -> ExperimentResult:
    """Fit on ``split.X_fit``, warm up, then query rounds of ``round_size`` until ``budget`` labels.

    ``budget``: fraction of the pool's windows (``0 < b < 1``) or an absolute count; 0 = unsupervised
    (fit and evaluate only). Labels are counted by the loop (one per answered window) and the count
    never exceeds the budget. ``evaluate(scores_eval, labels_eval)`` runs after fit/warm-up (round 0)
    and after every round; the evaluation range never overlaps the pool. ``n_rounds``, when given,
    overrides ``round_size`` so that the labels left after warm-up are spent in that many rounds
    (the cost of an experiment is then bounded whatever the budget).
    """
    rng = np.random.default_rng(seed)
    window, stride = int(detector.window), int(getattr(detector, "stride", 1))
    pw = pool_window_range(split.pool, window, stride)
    cap = resolve_budget(budget, pw[1] - pw[0])
    fit_s = 0.0
    if fit:
        t0 = time.perf_counter()
        detector.fit(split.X_fit)
        fit_s = time.perf_counter() - t0
    warm_q, ranges = warm_up(detector, split, oracle, cap)
    used = len(warm_q)
    train_end = split.train_end
    feedback_s = apply_feedback(detector, split.X[:train_end], ranges) if ranges else 0.0
    scores, metrics, score_s = evaluate_split(detector, split, evaluate)
    n_anom = sum(1 for q in warm_q if _window_is_anomalous(q, ranges))
    records = [RoundRecord(0, used, metrics, len(warm_q), n_anom, feedback_s, score_s)]
    if on_round:
        on_round(records[0])
    if n_rounds is not None and n_rounds > 0:
        round_size = max(1, -(-(cap - used) // n_rounds))
    all_queries = list(warm_q)
    total_score_s = score_s
    r = 0
    while used < cap and round_size > 0:
        r += 1
        k = min(round_size, cap - used)
        res = run_round(detector, split.X, ranges, strategy, k, rng, oracle=oracle, pool=split.pool, min_gap=min_gap,
                        options=options, train_end=train_end)
        if not res.queries:  # the pool has no unlabeled window left
            break
        used += len(res.queries)
        ranges = res.ranges
        feedback_s += res.feedback_seconds
        all_queries.extend(res.queries)
        scores, metrics, s_s = evaluate_split(detector, split, evaluate)
        total_score_s += s_s + res.score_seconds
        n_anom = sum(1 for q in res.queries if _window_is_anomalous(q, res.new_ranges))
        rec = RoundRecord(r, used, metrics, len(res.queries), n_anom, res.feedback_seconds, res.score_seconds + s_s)
        records.append(rec)
        if on_round:
            on_round(rec)
    return ExperimentResult(records, scores, ranges, used, cap, fit_s, feedback_s, total_score_s, len(warm_q),
                            all_queries)


def _window_is_anomalous(q: Query, ranges: Sequence[LabeledRange]) -> bool:
    """Whether any answer inside the query window marks an anomaly."""
    return any(r.value == 1 and r.start < q.end and r.end > q.start for r in ranges)


__all__ = [
    "ExperimentResult",
    "GroundTruthOracle",
    "Oracle",
    "OracleRefused",
    "Query",
    "RoundRecord",
    "RoundResult",
    "Split",
    "apply_feedback",
    "ask",
    "default_evaluate",
    "evaluate_split",
    "labeled_windows",
    "n_windows",
    "pick_queries",
    "pool_window_range",
    "resolve_budget",
    "run_experiment",
    "run_round",
    "runs_to_ranges",
    "score_windows",
    "warm_up",
]
