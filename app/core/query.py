"""Query strategies: which unlabeled windows to show the analyst next.

Every strategy is a plain function with one signature (modAL style)::

    strategy(scores, labeled, n, rng, *, min_gap=0, uncertainty=None, **kw) -> list[QueryPick]

- ``scores`` ``(n_windows,)``: window anomaly scores, higher = more anomalous.
- ``labeled`` ``(n_windows,)`` bool: windows already labeled; they are never picked.
- ``n``: batch size. Fewer picks come back when fewer eligible windows remain; never duplicates.
- ``rng``: a ``numpy.random.Generator`` (an ``int`` seed is accepted); only ``interval``, ``hybrid``
  and ``random`` draw from it, so a seed reproduces a batch exactly.
- ``min_gap`` (window indices): no two picks of a batch are closer than ``min_gap``
  (``|i - j| >= min_gap``), so one long anomaly cannot fill a batch with overlapping windows. The
  default 0 only forbids duplicates, because a strategy does not know the window geometry: callers
  should pass ``window // stride`` (the number of window indices whose windows overlap). With
  ``gap_to_labeled=True`` picks also keep ``min_gap`` from already-labeled windows; that is off by
  default because once labels are dense it can starve a batch.
- ``uncertainty`` ``(n_windows,)`` optional: a per-window margin, smaller = less sure (RLAD: the DQN's
  ``|q0 - q1|``). Strategies that do not rank by it still copy it into :attr:`QueryPick.margin`.
- ``**kw``: strategy options (``bins``, ``per_bin``, ``k``, ``proba``, ``threshold``, ...); a
  strategy ignores options meant for another, so one call site can pass a superset. :func:`select`
  rejects names no strategy knows.

Strategies (seed 002 §3.4 / Alg. 1 and seed 000 §3.3):

- ``top_k``: highest scores first.
- ``interval``: sort the eligible windows by score, split that order into ``bins`` (G) equal-count
  bins, draw ``per_bin`` (g) windows at random from each (round-robin over bins, highest bin first).
- ``hybrid``: ``k`` windows by ``top_k``, the rest by ``interval`` over the windows left (so the union
  S1 ∪ S2 has no overlap and the batch is full). Alg. 1's budget is ``n = k + G * g``.
- ``margin``: smallest margin first: ``uncertainty`` if given, else ``|P(anomaly) - P(normal)|``.
- ``least_confidence``: largest ``1 - max(P(anomaly), P(normal))`` first.
- ``entropy``: largest binary entropy (bits) of ``P(anomaly)`` first.
- ``random``: uniform without replacement.

Anomaly probability for the last three (in this order of preference): ``proba=`` if given; else the
softmax of the Q-values, whose larger probability is ``sigmoid(uncertainty)`` (only the confidence
``max(p, 1-p)`` is needed); else a logistic calibration of the scores
``p = sigmoid((score - threshold) / temperature)``, ``threshold`` default the 99th percentile of the
scores (the default of :mod:`app.core.thresholds`), ``temperature`` default a robust spread of the
scores (IQR / 1.349). In the binary case margin, least confidence and entropy are all monotone in
the confidence, so they rank alike; they differ in the number they report. Ties are broken by
higher score, then lower index.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import numpy as np

from app.core.thresholds import percentile_threshold

__all__ = [
    "DEFAULT_MIN_GAP",
    "QueryPick",
    "QueryStrategy",
    "available_strategies",
    "entropy",
    "hybrid",
    "interval",
    "least_confidence",
    "margin",
    "random",
    "select",
    "top_k",
]

DEFAULT_MIN_GAP = 0
"""Default ``min_gap``: only distinct windows. Pass ``window // stride`` to avoid overlapping picks."""


@dataclass(frozen=True)
class QueryPick:
    """One window chosen for labeling."""

    index: int
    """Window index into ``scores``."""
    strategy: str
    """Name of the strategy that chose it."""
    rank: int
    """0-based position in this batch (the order to show it in)."""
    score: float
    """The window's anomaly score."""
    margin: float | None
    """The window's margin (smaller = less sure) when known, else ``None``."""
    reason: str
    """Short human explanation, e.g. ``"top-k #3, score 4.21"``."""


QueryStrategy = Callable[..., list[QueryPick]]


# -- validation and the shared greedy picker ------------------------------------------------------
def _validate(
    scores: np.ndarray, labeled: np.ndarray | None, n: int, min_gap: int, uncertainty: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"scores must be 1-D (n_windows,), got shape {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError(f"scores must be finite; NaN/inf at windows {np.flatnonzero(~np.isfinite(s))[:5].tolist()}")
    if labeled is None:
        lab = np.zeros(len(s), dtype=bool)
    else:
        lab = np.asarray(labeled)
        if lab.shape != s.shape:
            raise ValueError(f"labeled must be a bool mask shaped like scores {s.shape}, got shape {lab.shape}")
        if lab.dtype != bool:
            if not np.isin(lab, (0, 1)).all():
                raise ValueError("labeled must be a bool mask (or 0/1), not window indices or labels")
            lab = lab.astype(bool)
    if isinstance(n, bool) or int(n) != n or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    if isinstance(min_gap, bool) or int(min_gap) != min_gap or min_gap < 0:
        raise ValueError(f"min_gap must be a non-negative integer (window indices), got {min_gap!r}")
    unc = None
    if uncertainty is not None:
        unc = np.asarray(uncertainty, dtype=np.float64)
        if unc.shape != s.shape:
            raise ValueError(f"uncertainty must be shaped like scores {s.shape}, got {unc.shape}")
        if not np.isfinite(unc).all():
            raise ValueError("uncertainty must be finite")
    return s, lab, unc


def _as_rng(rng: np.random.Generator | int) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, int | np.integer) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be a numpy.random.Generator or an int seed, got {type(rng).__name__}")


class _Picker:
    """Greedy selection that keeps picks distinct, unlabeled and ``min_gap`` apart."""

    def __init__(self, labeled: np.ndarray, min_gap: int, gap_to_labeled: bool) -> None:
        self.min_gap = int(min_gap)
        self.taken = labeled.copy()  # labeled or already picked
        self.blocked = np.zeros(len(labeled), dtype=bool)  # too close to a pick (or a labeled window)
        self.picks: list[int] = []
        reach = self.min_gap - 1  # |i - j| <= reach is too close
        if gap_to_labeled and reach > 0 and labeled.any():
            c = np.concatenate(([0], np.cumsum(labeled)))
            j = np.arange(len(labeled))
            near = c[np.minimum(j + reach + 1, len(labeled))] - c[np.maximum(j - reach, 0)]
            self.blocked |= near > 0

    def eligible(self) -> np.ndarray:
        return ~(self.taken | self.blocked)

    def take(self, i: int) -> bool:
        if self.taken[i] or self.blocked[i]:
            return False
        self.taken[i] = True
        if self.min_gap > 1:
            self.blocked[max(0, i - self.min_gap + 1) : i + self.min_gap] = True
        self.picks.append(i)
        return True

    def take_in_order(self, order: np.ndarray, limit: int) -> list[int]:
        """Take up to ``limit`` windows following ``order`` (best first); returns those taken."""
        got: list[int] = []
        if limit <= 0:
            return got
        for i in order[self.eligible()[order]]:  # pre-filter so labeled windows cost nothing
            if self.take(int(i)):
                got.append(int(i))
                if len(got) == limit:
                    break
        return got


def _margin_of(unc: np.ndarray | None, i: int) -> float | None:
    return None if unc is None else float(unc[i])


def _desc_order(key: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Indices by ``key`` descending, ties by higher score, then lower index."""
    return np.lexsort((np.arange(len(key)), -scores, -key))


# -- strategies -----------------------------------------------------------------------------------
def top_k(
    scores: np.ndarray,
    labeled: np.ndarray,
    n: int,
    rng: np.random.Generator,
    *,
    min_gap: int = DEFAULT_MIN_GAP,
    uncertainty: np.ndarray | None = None,
    gap_to_labeled: bool = False,
    **kw: object,
) -> list[QueryPick]:
    """The ``n`` highest-scored unlabeled windows (seed 002, top-k sampling S1)."""
    s, lab, unc = _validate(scores, labeled, n, min_gap, uncertainty)
    picker = _Picker(lab, min_gap, gap_to_labeled)
    chosen = picker.take_in_order(_desc_order(s, s), n)
    return [
        QueryPick(i, "top_k", r, float(s[i]), _margin_of(unc, i), f"top-k #{r + 1}, score {s[i]:.4g}")
        for r, i in enumerate(chosen)
    ]


def _bin_layout(n: int, bins: int | None, per_bin: int | None) -> tuple[int, int]:
    """``(G, g)``: defaults to ``n`` bins of 1, or fills ``n`` from whichever of the two is given."""
    if bins is not None and (int(bins) != bins or bins < 1):
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    if per_bin is not None and (int(per_bin) != per_bin or per_bin < 1):
        raise ValueError(f"per_bin must be a positive integer, got {per_bin!r}")
    if bins is None:
        if per_bin is None:
            return max(n, 1), 1
        return max(math.ceil(n / per_bin), 1), int(per_bin)
    if per_bin is None:
        return int(bins), max(math.ceil(n / bins), 1)
    return int(bins), int(per_bin)


def _interval_take(
    s: np.ndarray, picker: _Picker, n: int, rng: np.random.Generator, bins: int | None, per_bin: int | None
) -> tuple[list[tuple[int, int]], int]:
    """Interval random sampling over the currently eligible windows: ``([(index, bin), ...], G)``."""
    n_bins, g = _bin_layout(n, bins, per_bin)
    order = _desc_order(s, s)
    order = order[picker.eligible()[order]]
    members = [rng.permutation(b) for b in np.array_split(order, n_bins)]  # bin 0 = highest scores
    cursor = [0] * n_bins
    got: list[tuple[int, int]] = []
    for _ in range(g):  # round-robin, so a short batch still spans the score range
        for b in range(n_bins):
            if len(got) == n:
                return got, n_bins
            while cursor[b] < len(members[b]):
                i = int(members[b][cursor[b]])
                cursor[b] += 1
                if picker.take(i):
                    got.append((i, b))
                    break
    return got, n_bins


def interval(
    scores: np.ndarray,
    labeled: np.ndarray,
    n: int,
    rng: np.random.Generator,
    *,
    min_gap: int = DEFAULT_MIN_GAP,
    uncertainty: np.ndarray | None = None,
    bins: int | None = None,
    per_bin: int | None = None,
    gap_to_labeled: bool = False,
    **kw: object,
) -> list[QueryPick]:
    """Interval random sampling (seed 002 S2): ``bins`` G equal-count bins over the score order, ``per_bin`` g each.

    Defaults: ``n`` bins of one window; if only one of ``bins`` / ``per_bin`` is given the other is
    ``ceil(n / given)``. At most ``n`` picks, drawn round-robin over bins (highest-score bin first),
    so truncation to ``n`` keeps the whole score range. A bin that runs out (few windows, or all too
    close to earlier picks) yields fewer.
    """
    s, lab, unc = _validate(scores, labeled, n, min_gap, uncertainty)
    picker = _Picker(lab, min_gap, gap_to_labeled)
    got, n_bins = _interval_take(s, picker, n, _as_rng(rng), bins, per_bin)
    return [
        QueryPick(i, "interval", r, float(s[i]), _margin_of(unc, i), f"interval bin {b + 1}/{n_bins}, score {s[i]:.4g}")
        for r, (i, b) in enumerate(got)
    ]


def hybrid(
    scores: np.ndarray,
    labeled: np.ndarray,
    n: int,
    rng: np.random.Generator,
    *,
    min_gap: int = DEFAULT_MIN_GAP,
    uncertainty: np.ndarray | None = None,
    k: int | None = None,
    bins: int | None = None,
    per_bin: int | None = None,
    gap_to_labeled: bool = False,
    **kw: object,
) -> list[QueryPick]:
    """Top-k ∪ interval random sampling (seed 002 Alg. 1).

    ``k`` (default ``ceil(n / 2)``) windows by score, then up to ``n - k`` by :func:`interval` over the
    windows not yet taken (``bins`` / ``per_bin`` as there, defaulting to ``n - k`` bins of one).
    """
    s, lab, unc = _validate(scores, labeled, n, min_gap, uncertainty)
    if k is None:
        n_top = (n + 1) // 2
    elif isinstance(k, bool) or int(k) != k or k < 0:
        raise ValueError(f"k must be a non-negative integer, got {k!r}")
    else:
        n_top = min(int(k), n)
    picker = _Picker(lab, min_gap, gap_to_labeled)
    top = picker.take_in_order(_desc_order(s, s), n_top)
    picks = [
        QueryPick(i, "hybrid", r, float(s[i]), _margin_of(unc, i), f"top-k #{r + 1}, score {s[i]:.4g}")
        for r, i in enumerate(top)
    ]
    rest = n - len(top)
    if rest > 0:
        got, n_bins = _interval_take(s, picker, rest, _as_rng(rng), bins, per_bin)
        picks += [
            QueryPick(
                i,
                "hybrid",
                len(top) + r,
                float(s[i]),
                _margin_of(unc, i),
                f"interval bin {b + 1}/{n_bins}, score {s[i]:.4g}",
            )
            for r, (i, b) in enumerate(got)
        ]
    return picks


def _confidence(
    s: np.ndarray,
    unc: np.ndarray | None,
    proba: np.ndarray | None,
    threshold: float | None,
    temperature: float | None,
) -> np.ndarray:
    """``max(P(anomaly), P(normal))`` per window, in [0.5, 1] (see the module docstring for the source)."""
    if proba is not None:
        p = np.asarray(proba, dtype=np.float64)
        if p.shape != s.shape or not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
            raise ValueError(f"proba must be probabilities in [0, 1] shaped like scores {s.shape}")
        return np.maximum(p, 1.0 - p)
    if unc is not None:
        return cast(np.ndarray, 1.0 / (1.0 + np.exp(-np.abs(unc))))  # softmax over (q0, q1): larger probability
    tau = percentile_threshold(s, 99.0) if threshold is None else float(threshold)
    if temperature is None:
        q25, q75 = np.percentile(s, [25.0, 75.0])
        temperature = (q75 - q25) / 1.349 or float(s.std()) or 1.0  # robust std; constant scores -> 1
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    z = np.abs(s - tau) / temperature
    return 1.0 / (1.0 + np.exp(-z))


def _uncertainty_picks(
    name: str,
    s: np.ndarray,
    lab: np.ndarray,
    n: int,
    min_gap: int,
    gap_to_labeled: bool,
    key: np.ndarray,
    margin_values: np.ndarray,
    describe: Callable[[int, int], str],
) -> list[QueryPick]:
    """Pick by ``key`` descending (most uncertain first)."""
    picker = _Picker(lab, min_gap, gap_to_labeled)
    chosen = picker.take_in_order(_desc_order(key, s), n)
    return [QueryPick(i, name, r, float(s[i]), float(margin_values[i]), describe(r, i)) for r, i in enumerate(chosen)]


def margin(
    scores: np.ndarray,
    labeled: np.ndarray,
    n: int,
    rng: np.random.Generator,
    *,
    min_gap: int = DEFAULT_MIN_GAP,
    uncertainty: np.ndarray | None = None,
    proba: np.ndarray | None = None,
    threshold: float | None = None,
    temperature: float | None = None,
    gap_to_labeled: bool = False,
    **kw: object,
) -> list[QueryPick]:
    """Margin sampling (seed 000 Eq. 2 / 5): the ``n`` smallest margins.

    The margin is ``uncertainty`` (RLAD's ``|q0 - q1|``) when given, else ``|P(anomaly) - P(normal)|
    = 2 * confidence - 1`` from ``proba`` or the calibrated scores.
    """
    s, lab, unc = _validate(scores, labeled, n, min_gap, uncertainty)
    m = unc if unc is not None else 2.0 * _confidence(s, None, proba, threshold, temperature) - 1.0
    return _uncertainty_picks(
        "margin", s, lab, n, min_gap, gap_to_labeled, -m, m, lambda r, i: f"margin #{r + 1}, margin {m[i]:.3g}"
    )


def least_confidence(
    scores: np.ndarray,
    labeled: np.ndarray,
    n: int,
    rng: np.random.Generator,
    *,
    min_gap: int = DEFAULT_MIN_GAP,
    uncertainty: np.ndarray | None = None,
    proba: np.ndarray | None = None,
    threshold: float | None = None,
    temperature: float | None = None,
    gap_to_labeled: bool = False,
    **kw: object,
) -> list[QueryPick]:
    """Least confidence (seed 000 Eq. 1): the ``n`` largest ``1 - max_y P(y | x)``."""
    s, lab, unc = _validate(scores, labeled, n, min_gap, uncertainty)
    c = _confidence(s, unc, proba, threshold, temperature)
    m = unc if unc is not None else 2.0 * c - 1.0
    return _uncertainty_picks(
        "least_confidence",
        s,
        lab,
        n,
        min_gap,
        gap_to_labeled,
        1.0 - c,
        m,
        lambda r, i: f"least confidence #{r + 1}, confidence {c[i]:.3f}",
    )


def entropy(
    scores: np.ndarray,
    labeled: np.ndarray,
    n: int,
    rng: np.random.Generator,
    *,
    min_gap: int = DEFAULT_MIN_GAP,
    uncertainty: np.ndarray | None = None,
    proba: np.ndarray | None = None,
    threshold: float | None = None,
    temperature: float | None = None,
    gap_to_labeled: bool = False,
    **kw: object,
) -> list[QueryPick]:
    """Entropy sampling (seed 000 Eq. 3): the ``n`` largest binary entropies (bits, max 1)."""
    s, lab, unc = _validate(scores, labeled, n, min_gap, uncertainty)
    c = _confidence(s, unc, proba, threshold, temperature)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(c * np.log2(c) + np.where(c < 1.0, (1.0 - c) * np.log2(1.0 - c), 0.0))
    h = np.nan_to_num(h, nan=0.0)
    m = unc if unc is not None else 2.0 * c - 1.0
    return _uncertainty_picks(
        "entropy", s, lab, n, min_gap, gap_to_labeled, h, m, lambda r, i: f"entropy #{r + 1}, entropy {h[i]:.3f} bits"
    )


def random(
    scores: np.ndarray,
    labeled: np.ndarray,
    n: int,
    rng: np.random.Generator,
    *,
    min_gap: int = DEFAULT_MIN_GAP,
    uncertainty: np.ndarray | None = None,
    gap_to_labeled: bool = False,
    **kw: object,
) -> list[QueryPick]:
    """``n`` unlabeled windows uniformly at random, without replacement (the ablation baseline)."""
    s, lab, unc = _validate(scores, labeled, n, min_gap, uncertainty)
    picker = _Picker(lab, min_gap, gap_to_labeled)
    chosen = picker.take_in_order(_as_rng(rng).permutation(len(s)), n)
    return [
        QueryPick(i, "random", r, float(s[i]), _margin_of(unc, i), f"random #{r + 1}, score {s[i]:.4g}")
        for r, i in enumerate(chosen)
    ]


_STRATEGIES: dict[str, QueryStrategy] = {
    "top_k": top_k,
    "interval": interval,
    "hybrid": hybrid,
    "margin": margin,
    "least_confidence": least_confidence,
    "entropy": entropy,
    "random": random,
}
_OPTIONS = frozenset({"bins", "per_bin", "k", "proba", "threshold", "temperature", "gap_to_labeled"})


def available_strategies() -> tuple[str, ...]:
    """Names accepted by :func:`select`."""
    return tuple(_STRATEGIES)


def select(
    name: str,
    scores: np.ndarray,
    labeled: np.ndarray,
    n: int,
    rng: np.random.Generator,
    **kw: object,
) -> list[QueryPick]:
    """Run the strategy called ``name``; ``kw`` are ``min_gap``, ``uncertainty`` and strategy options."""
    try:
        strategy = _STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown query strategy {name!r}; choose one of {', '.join(_STRATEGIES)}") from None
    unknown = sorted(set(kw) - _OPTIONS - {"min_gap", "uncertainty"})
    if unknown:
        raise ValueError(f"unknown query option(s) {unknown}; known: {sorted(_OPTIONS | {'min_gap', 'uncertainty'})}")
    return strategy(scores, labeled, n, rng, **kw)
