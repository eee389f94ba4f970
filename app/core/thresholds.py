"""Threshold selectors: turn anomaly scores into a decision ``score >= threshold``.

The methods of seed 001 (§4.1.2 and §4.5.3): a percentile of the training scores, mean + kσ of the
training scores, the best-F1 threshold on the labels gathered so far, and a target false-positive
rate on the scores of labeled normals; and one of ours, ``expected_f1``: the best F1 expected over
*every* pool point, not only the labeled ones (:func:`expected_f1_threshold`). None of them sees
evaluation labels: callers pass training scores and the analysts' labels only (in an experiment the
Best-F1 threshold on the *test* labels is an upper bound and belongs to :mod:`app.core.metrics`, not
here).

Every selector returns a float threshold; predict anomalous where ``score >= threshold`` (the same
convention as :mod:`app.core.metrics`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Final

import numpy as np

from app.core.metrics import best_f1

__all__ = [
    "DEFAULT_THRESHOLD_METHOD",
    "THRESHOLD_METHODS",
    "ThresholdConfig",
    "anomaly_chance",
    "available_methods",
    "best_f1_threshold",
    "choose_threshold",
    "expected_f1_threshold",
    "fpr_threshold",
    "mean_std_threshold",
    "percentile_threshold",
]

THRESHOLD_METHODS = ("percentile", "mean_std", "best_f1", "expected_f1", "fpr")
DEFAULT_THRESHOLD_METHOD: Final = "expected_f1"
"""What new projects (and the bench) choose a version's threshold by: the best F1 expected over every pool point."""


def _scores(x: np.ndarray, name: str) -> np.ndarray:
    s = np.asarray(x, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {s.shape}")
    if s.size == 0:
        raise ValueError(f"{name} is empty: a threshold needs at least one score")
    if not np.isfinite(s).all():
        raise ValueError(f"{name} has NaN or inf at indices {np.flatnonzero(~np.isfinite(s))[:5].tolist()}")
    return s


def _labels(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """``labels`` as an array checked against ``scores`` ``(n,)``: one per score, each 1, 0 or -1 (unlabeled)."""
    y = np.asarray(labels)
    if y.shape != scores.shape:
        raise ValueError(f"labels shape {y.shape} differs from scores shape {scores.shape}")
    if not np.isin(y, (-1, 0, 1)).all():
        raise ValueError(f"labels must be 1 (anomaly), 0 (normal) or -1 (unlabeled), found {np.unique(y)[:5]}")
    return y


def percentile_threshold(train_scores: np.ndarray, q: float = 99.0) -> float:
    """The ``q``-th percentile (0..100, linear interpolation) of ``train_scores`` ``(n,)``.

    With scores of (mostly) normal training data, about ``(100 - q)`` % of normal points are flagged.
    """
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must be in [0, 100], got {q}")
    return float(np.percentile(_scores(train_scores, "train_scores"), q))


def mean_std_threshold(train_scores: np.ndarray, k: float = 3.0) -> float:
    """``mean + k * std`` (population std) of ``train_scores`` ``(n,)``: the 3σ rule for ``k = 3``."""
    if not math.isfinite(k):
        raise ValueError(f"k must be finite, got {k}")
    s = _scores(train_scores, "train_scores")
    return float(s.mean() + k * s.std())


def best_f1_threshold(
    scores: np.ndarray,
    labels: np.ndarray,
    *,
    fallback_q: float = 99.0,
    fallback_scores: np.ndarray | None = None,
) -> float:
    """The threshold maximising point F1 on the labeled entries only.

    ``scores`` ``(n,)`` and ``labels`` ``(n,)`` with 1 anomaly, 0 normal, -1 unlabeled (ignored).
    Among equal F1 the highest threshold wins; the threshold is a labeled score value. If labeled
    anomalies exist but no labeled normal, that is the lowest labeled anomaly's score.

    Fallback: with no labeled anomaly F1 is 0 everywhere and says nothing, so the result is
    :func:`percentile_threshold` at ``fallback_q`` of ``fallback_scores`` (default: all ``scores``,
    labeled or not — no label is used).
    """
    s = _scores(scores, "scores")
    y = _labels(labels, s)
    known = y >= 0
    if not (y == 1).any():
        return percentile_threshold(s if fallback_scores is None else fallback_scores, fallback_q)
    return best_f1(s[known], y[known])[1]


def anomaly_chance(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The chance that each entry is anomalous given its score: ``(n,)`` in [0, 1].

    ``scores`` ``(n,)`` and ``labels`` ``(n,)`` (1 anomaly, 0 normal, -1 unlabeled). Isotonic regression of the
    labeled entries' labels on their scores (non-decreasing in the score; linear between labeled scores, flat
    beyond the lowest and the highest), read at every entry's score. Queries go where scores are high, so the
    labeled entries' anomalous share overstates the whole pool's; read through the score, it does not, as long as
    which entries were asked about depends on their scores only. All zeros without labels."""
    from sklearn.isotonic import IsotonicRegression

    s = _scores(scores, "scores")
    y = _labels(labels, s)
    known = y >= 0
    if not known.any():
        return np.zeros(len(s))
    fit = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
    fit.fit(s[known], (y[known] == 1).astype(np.float64))
    return np.asarray(fit.predict(s), dtype=np.float64)


def expected_f1_threshold(
    scores: np.ndarray,
    labels: np.ndarray,
    *,
    fallback_q: float = 99.0,
    fallback_scores: np.ndarray | None = None,
) -> float:
    """The threshold maximising F1 expected over **every** entry, labeled or not.

    ``scores`` ``(n,)`` (a version's pool point scores) and ``labels`` ``(n,)`` with 1 anomaly, 0 normal, -1
    unlabeled. A labeled entry counts as its label; an unlabeled one as anomalous with the chance
    :func:`anomaly_chance` gives its score. For a threshold flagging the ``k`` highest entries, the expected true
    positives are the sum of their chances and F1 ≈ ``2 · TP / (k + P)``, ``P`` the sum over all entries. Why:
    :func:`best_f1_threshold` sees the labeled entries only, and they sit where scores are high (that is where the
    queries went), so it cannot see how many ordinary points a lower threshold would also flag; this does.

    Among equal expected F1 the highest threshold wins; the threshold is an entry's score. Without a labeled normal
    the chances are 1 everywhere and say nothing: :func:`best_f1_threshold` (the lowest labeled anomaly's score);
    without a labeled anomaly, its percentile fallback.
    """
    s = _scores(scores, "scores")
    y = _labels(labels, s)
    if not (y == 1).any() or not (y == 0).any():
        return best_f1_threshold(s, y, fallback_q=fallback_q, fallback_scores=fallback_scores)
    chance = np.where(y >= 0, (y == 1).astype(np.float64), anomaly_chance(s, y))
    order = np.argsort(-s, kind="stable")
    ranked, hits = s[order], np.cumsum(chance[order])
    flagged = np.arange(1, len(s) + 1)
    tie_end = np.r_[ranked[1:] != ranked[:-1], True]  # a threshold flags a whole group of equal scores
    f1 = np.where(tie_end, 2.0 * hits / (flagged + hits[-1]), -1.0)
    return float(ranked[int(np.argmax(f1))])  # argmax: the first best, i.e. the highest threshold among equals


def fpr_threshold(normal_scores: np.ndarray, target_fpr: float = 0.01) -> float:
    """The lowest threshold whose false-positive rate on ``normal_scores`` ``(n,)`` is at most ``target_fpr``.

    At most ``floor(target_fpr * n)`` of the normals have ``score >= threshold``; ties are never split,
    so the realised rate can be lower than the target. When even one false positive is too many, the
    threshold is just above the largest normal score.
    """
    if not 0.0 <= target_fpr <= 1.0:
        raise ValueError(f"target_fpr must be in [0, 1], got {target_fpr}")
    s = _scores(normal_scores, "normal_scores")
    allowed = math.floor(target_fpr * len(s) + 1e-9)  # 1e-9: 0.29 * 100 is 28.999... in floating point
    values, counts = np.unique(s, return_counts=True)  # ascending
    at_or_above = np.cumsum(counts[::-1])[::-1]  # normals with score >= value
    ok = np.flatnonzero(at_or_above <= allowed)
    if len(ok) == 0:
        return float(np.nextafter(values[-1], np.inf))
    return float(values[ok[0]])


@dataclass(frozen=True)
class ThresholdConfig:
    """Which threshold selector to use and its parameters (saved beside a model version)."""

    method: str = "percentile"
    """One of ``percentile``, ``mean_std``, ``best_f1``, ``expected_f1``, ``fpr``."""
    q: float = 99.0
    """Percentile (0..100) for ``percentile``, and the fallback percentile of ``best_f1`` and ``expected_f1``."""
    k: float = 3.0
    """Number of standard deviations above the mean for ``mean_std``."""
    target_fpr: float = 0.01
    """Largest tolerated false-positive rate (0..1) on normal scores for ``fpr``."""

    def __post_init__(self) -> None:
        if self.method not in THRESHOLD_METHODS:
            raise ValueError(f"unknown threshold method {self.method!r}; choose one of {', '.join(THRESHOLD_METHODS)}")
        if not 0.0 <= self.q <= 100.0:
            raise ValueError(f"q must be in [0, 100], got {self.q}")
        if not math.isfinite(self.k):
            raise ValueError(f"k must be finite, got {self.k}")
        if not 0.0 <= self.target_fpr <= 1.0:
            raise ValueError(f"target_fpr must be in [0, 1], got {self.target_fpr}")

    def to_dict(self) -> dict[str, float | str]:
        return asdict(self)


def available_methods() -> tuple[str, ...]:
    """Names accepted by :func:`choose_threshold`."""
    return THRESHOLD_METHODS


def choose_threshold(
    method: str | ThresholdConfig,
    *,
    train_scores: np.ndarray | None = None,
    scores: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    **params: float,
) -> float:
    """Pick a threshold by method name (``params`` are :class:`ThresholdConfig` fields) or by config.

    Inputs each method reads:

    - ``percentile``, ``mean_std``: ``train_scores`` (scores of the training data).
    - ``best_f1``: ``scores`` and ``labels`` (1 / 0 / -1 unlabeled) of the windows or points labeled so
      far; with no labeled anomaly, the ``q`` percentile of ``train_scores`` (or of ``scores`` if no
      training scores are given).
    - ``expected_f1``: as ``best_f1``, every pool entry's ``scores`` with ``labels`` (-1 where unlabeled: those
      count too, by their chance of being anomalous); the same fallback.
    - ``fpr``: the ``scores`` whose ``labels`` are 0; with no labeled normal, ``train_scores`` stand in
      for normal scores (the reconstruction setting trains on normal data).
    """
    if isinstance(method, ThresholdConfig):
        if params:
            raise ValueError(f"pass parameters in the ThresholdConfig, not also as {sorted(params)}")
        config = method
    else:
        known = {f.name for f in fields(ThresholdConfig)} - {"method"}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"unknown threshold parameter(s) {unknown}; known: {sorted(known)}")
        config = ThresholdConfig(method=method, **params)

    if config.method in ("percentile", "mean_std"):
        if train_scores is None:
            raise ValueError(f"threshold method {config.method!r} needs train_scores")
        if config.method == "percentile":
            return percentile_threshold(train_scores, config.q)
        return mean_std_threshold(train_scores, config.k)

    if scores is None or labels is None:
        if config.method == "fpr" and train_scores is not None:
            return fpr_threshold(train_scores, config.target_fpr)
        raise ValueError(f"threshold method {config.method!r} needs scores and labels")
    if config.method == "best_f1":
        return best_f1_threshold(scores, labels, fallback_q=config.q, fallback_scores=train_scores)
    if config.method == "expected_f1":
        return expected_f1_threshold(scores, labels, fallback_q=config.q, fallback_scores=train_scores)
    s = _scores(scores, "scores")
    normals = s[_labels(labels, s) == 0]
    if len(normals) == 0:
        if train_scores is None:
            raise ValueError("threshold method 'fpr' needs labeled normals or train_scores")
        normals = train_scores
    return fpr_threshold(normals, config.target_fpr)
