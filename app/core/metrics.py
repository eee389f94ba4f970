"""Evaluation metrics for point anomaly scores against point labels.

Every metric takes ``scores`` ``(n_points,)`` (float, higher = more anomalous, finite) and ``labels``
``(n_points,)`` (0 normal, 1 anomaly; ``bool`` accepted) of equal length. Unlabeled points (-1) are
rejected: evaluate on the labeled part only.

Conventions:

- A point is predicted anomalous when ``score >= threshold``; points with equal scores are therefore
  always predicted together (ties never split).
- F1 is 0 whenever there is no true positive (scikit-learn's ``zero_division=0``), so a series with
  no anomaly has best F1 0.
- All curves are exact and O(n log n): one sort, cumulative sums and binary searches, no threshold
  subsampling. The one exception is :func:`vus_pr`, which by default samples 250 thresholds exactly
  as TSB-AD does (``n_thresholds=None`` makes it exact too).
- Point adjustment (F1-PA, PA%K) is computed by *adjusting scores* instead of predictions: under
  PA%K a true segment of length ``L`` becomes fully detected at the threshold equal to its
  ``m``-th largest score, ``m = floor(K * L / 100) + 1``; so each anomalous point's effective score
  is ``max(own score, that m-th largest score)`` and the adjusted best F1 is a plain best F1 on the
  effective scores. K = 0 is standard point adjustment, K = 100 adjusts nothing.

Degenerate labels (documented, tested, never NaN):

================  ==========  ===========  ==========  ===========  ===========
labels            best F1     F1-PA/PA%K   ROC-AUC     PR-AUC (AP)  VUS-PR
================  ==========  ===========  ==========  ===========  ===========
all normal        0.0         0.0          0.5         0.0          0.0
all anomalous     1.0         1.0          0.5         1.0          1.0
================  ==========  ===========  ==========  ===========  ===========
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "DEFAULT_VUS_BUFFER",
    "DEFAULT_VUS_THRESHOLDS",
    "best_f1",
    "f1_pa",
    "pa_k_auc",
    "pa_k_curve",
    "pa_k_f1",
    "point_adjust",
    "pr_auc",
    "precision_recall_f1",
    "roc_auc",
    "segments",
    "vus_pr",
]

DEFAULT_VUS_BUFFER = 100
"""Largest buffer length ``L`` of :func:`vus_pr` (volume over buffers 0..L). TSB-AD passes
``2 * slidingWindow`` from a per-series period heuristic; we fix L = 100 (i.e. slidingWindow 50) so
numbers are comparable across series. Pass ``buffer=2 * period`` to reproduce TSB-AD on a series."""

DEFAULT_VUS_THRESHOLDS = 250
"""Number of thresholds :func:`vus_pr` samples (TSB-AD's ``thre=250``); ``None`` means every distinct score."""


# -- validation ---------------------------------------------------------------------------------
def _as_binary(labels: np.ndarray, name: str = "labels") -> np.ndarray:
    """``labels`` as a 1-D bool array, or a ``ValueError`` naming what is wrong."""
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D (n_points,), got shape {y.shape}")
    if y.dtype == bool:
        return y
    if y.size and not np.isin(y, (0, 1)).all():
        bad = np.unique(y[~np.isin(y, (0, 1))])[:5].tolist()
        hint = " (-1 = unlabeled: evaluate on labeled points only)" if -1 in bad else ""
        raise ValueError(f"{name} must be 0/1, found values {bad}{hint}")
    return y.astype(bool)


def _check(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``(scores float64, labels bool)``, both ``(n_points,)`` with ``n_points >= 1``."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"scores must be 1-D (n_points,), got shape {s.shape}")
    y = _as_binary(labels)
    if len(s) != len(y):
        raise ValueError(f"scores and labels differ in length: {len(s)} vs {len(y)}")
    if len(s) == 0:
        raise ValueError("scores and labels are empty")
    if not np.isfinite(s).all():
        bad = np.flatnonzero(~np.isfinite(s))[:5].tolist()
        raise ValueError(f"scores must be finite; NaN/inf at indices {bad}")
    return s, y


def _segment_bounds(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Half-open bounds ``(starts, ends)`` of the maximal runs of True in bool ``y``."""
    d = np.diff(np.concatenate(([0], y.astype(np.int8), [0])))
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1)


def _range_max(s: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """``max(s[a:b])`` for sorted, disjoint (possibly touching), non-empty half-open ranges ``[a, b)``."""
    if len(starts) == 0:
        return np.empty(0)
    ext = np.append(s, -np.inf)  # a sentinel so an end index of len(s) is a valid reduceat index
    idx = np.column_stack((starts, ends)).ravel()
    return np.maximum.reduceat(ext, idx)[::2]


def segments(labels: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs of anomalous points as half-open ``(start, end)`` pairs, in order.

    ``labels`` ``(n_points,)`` 0/1. Runs touching index 0 or the end are included.
    """
    starts, ends = _segment_bounds(_as_binary(labels))
    return [(int(a), int(b)) for a, b in zip(starts, ends, strict=True)]


# -- point-wise F1 --------------------------------------------------------------------------------
def precision_recall_f1(scores: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[float, float, float]:
    """Point-wise ``(precision, recall, F1)`` of ``score >= threshold``; each is 0 when undefined."""
    s, y = _check(scores, labels)
    if math.isnan(threshold):
        raise ValueError("threshold is NaN")
    pred = s >= threshold
    tp = int(np.count_nonzero(pred & y))
    n_pred, n_pos = int(np.count_nonzero(pred)), int(np.count_nonzero(y))
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_pos if n_pos else 0.0
    f1 = 2 * tp / (n_pred + n_pos) if tp else 0.0
    return precision, recall, f1


def _best_f1_split(pos: np.ndarray, neg_sorted: np.ndarray) -> tuple[float, float]:
    """Best F1 over thresholds given the positives' scores and the negatives' scores sorted ascending.

    F1 changes only where a positive's score is crossed, so the optimum lies at one of them (raising
    the threshold to the next positive score only removes false positives). Among equal F1 the
    highest threshold wins. O((P + N) log P). Requires ``len(pos) >= 1``.
    """
    values, counts = np.unique(pos, return_counts=True)  # ascending
    tp = np.cumsum(counts[::-1])[::-1]  # positives with score >= value
    fp = len(neg_sorted) - np.searchsorted(neg_sorted, values, side="left")  # negatives with score >= value
    f1 = 2.0 * tp / (tp + fp + len(pos))
    i = len(f1) - 1 - int(np.argmax(f1[::-1]))
    return float(f1[i]), float(values[i])


def _no_positive_threshold(s: np.ndarray) -> float:
    """A threshold just above every score: predicts nothing (used when there is no anomaly)."""
    return float(np.nextafter(s.max(), np.inf))


def best_f1(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Best point-wise F1 over every distinct score threshold: ``(f1, threshold)``.

    The threshold is a score value (predict ``score >= threshold``); among equal F1 the highest
    threshold is returned. With no anomalous label the F1 is 0 at every threshold and the threshold
    returned is just above the largest score (predicts nothing).
    """
    s, y = _check(scores, labels)
    if not y.any():
        return 0.0, _no_positive_threshold(s)
    return _best_f1_split(s[y], np.sort(s[~y]))


# -- point adjustment -----------------------------------------------------------------------------
def point_adjust(pred: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Standard point adjustment: a true segment with any predicted point becomes fully predicted.

    ``pred`` and ``labels`` ``(n_points,)`` 0/1; returns the adjusted prediction as bool. Predictions
    outside true segments are unchanged.
    """
    p = _as_binary(pred, "pred")
    y = _as_binary(labels)
    if len(p) != len(y):
        raise ValueError(f"pred and labels differ in length: {len(p)} vs {len(y)}")
    starts, ends = _segment_bounds(y)
    out = p.copy()
    if len(starts) == 0:
        return out
    hit = _range_max(p.astype(np.float64), starts, ends) > 0
    for a, b in zip(starts[hit], ends[hit], strict=True):  # one slice per detected segment
        out[a:b] = True
    return out


def _segment_sorted_scores(s: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For PA%K: ``(pos_scores, lengths, offsets, desc)``.

    ``pos_scores`` are the anomalous points' scores in index order, ``lengths`` each segment's length,
    ``offsets`` where each segment starts in ``desc``, and ``desc`` the positives' scores sorted
    descending within each segment.
    """
    starts, ends = _segment_bounds(y)
    lengths = ends - starts
    pos = s[y]
    seg_of = np.repeat(np.arange(len(lengths)), lengths)
    desc = pos[np.lexsort((-pos, seg_of))]
    offsets = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    return pos, lengths, offsets, desc


def _detect_count(k: float, lengths: np.ndarray) -> np.ndarray:
    """Points that must be predicted for a segment to count under PA%K: ``floor(K*L/100) + 1``.

    "Strictly more than K %" of ``L`` points; integer arithmetic for integral K so 29 % of 100 is
    exactly 29 points, not 28.999....
    """
    if not 0 <= k <= 100:
        raise ValueError(f"K must be in [0, 100], got {k}")
    if float(k).is_integer():
        return (int(k) * lengths) // 100 + 1
    return np.floor(k * lengths / 100.0).astype(np.int64) + 1


def _pa_k_from_parts(
    k: float, pos: np.ndarray, lengths: np.ndarray, offsets: np.ndarray, desc: np.ndarray, neg_sorted: np.ndarray
) -> float:
    m = _detect_count(k, lengths)
    reachable = m <= lengths  # K = 100 makes m = L + 1: the segment is never adjusted
    at = offsets + np.minimum(m, lengths) - 1
    seg_thr = np.where(reachable, desc[at], -np.inf)
    effective = np.maximum(pos, np.repeat(seg_thr, lengths))
    return _best_f1_split(effective, neg_sorted)[0]


def pa_k_f1(scores: np.ndarray, labels: np.ndarray, k: float) -> float:
    """Best F1 over thresholds under PA%K (Kim et al. 2022), ``k`` in [0, 100].

    A true segment counts as fully detected when the fraction of its points predicted is strictly
    greater than ``k / 100``; otherwise its points count one by one. ``k = 0`` is standard point
    adjustment (:func:`f1_pa`), ``k = 100`` is plain :func:`best_f1`. 0 when there is no anomaly.
    """
    s, y = _check(scores, labels)
    if not y.any():
        _detect_count(k, np.zeros(0, dtype=np.int64))  # still validate k
        return 0.0
    return _pa_k_from_parts(k, *_segment_sorted_scores(s, y), np.sort(s[~y]))


def pa_k_curve(scores: np.ndarray, labels: np.ndarray, ks: np.ndarray | None = None) -> np.ndarray:
    """:func:`pa_k_f1` at each K of ``ks`` (default 0, 1, ..., 100), sharing one sort: ``(len(ks),)``."""
    s, y = _check(scores, labels)
    k_values = np.arange(101) if ks is None else np.asarray(ks, dtype=np.float64)
    if not y.any():
        for k in k_values:
            _detect_count(float(k), np.zeros(0, dtype=np.int64))
        return np.zeros(len(k_values))
    parts = _segment_sorted_scores(s, y)
    neg_sorted = np.sort(s[~y])
    return np.array([_pa_k_from_parts(float(k), *parts, neg_sorted) for k in k_values])


def f1_pa(scores: np.ndarray, labels: np.ndarray) -> float:
    """Best F1 over thresholds after standard point adjustment (a segment with one hit counts whole)."""
    return pa_k_f1(scores, labels, 0)


def pa_k_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the PA%K curve, K = 0, 1, ..., 100 (trapezoids), divided by 100: in [0, 1]."""
    curve = pa_k_curve(scores, labels)
    return float(np.trapezoid(curve, dx=1.0) / 100.0)


# -- threshold-free curves -----------------------------------------------------------------------
def _counts_at_distinct(s: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(tp, fp)`` at each distinct threshold, highest first: cumulative counts with ties grouped."""
    order = np.argsort(-s, kind="stable")
    s_desc, y_desc = s[order], y[order]
    last_of_value = np.flatnonzero(np.diff(s_desc) != 0)
    idx = np.append(last_of_value, len(s) - 1)
    tp = np.cumsum(y_desc)[idx]
    fp = idx + 1 - tp
    return tp, fp


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (exact, ties as one step, as scikit-learn's ``roc_auc_score``).

    Returns 0.5 (chance) when the labels are all normal or all anomalous, where ROC is undefined.
    """
    s, y = _check(scores, labels)
    n_pos = int(np.count_nonzero(y))
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return 0.5
    tp, fp = _counts_at_distinct(s, y)
    tpr = np.concatenate(([0.0], tp / n_pos))
    fpr = np.concatenate(([0.0], fp / n_neg))
    return float(np.trapezoid(tpr, fpr))


def pr_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Average precision ``sum_k (R_k - R_{k-1}) P_k`` over distinct thresholds (scikit-learn's AP).

    Returns 0.0 when every label is normal (there is nothing to find: no area) and 1.0 when every
    label is anomalous (precision is 1 at every threshold).
    """
    s, y = _check(scores, labels)
    n_pos = int(np.count_nonzero(y))
    if n_pos == 0:
        return 0.0
    tp, fp = _counts_at_distinct(s, y)
    recall = tp / n_pos
    precision = tp / (tp + fp)
    return float(np.sum(np.diff(np.concatenate(([0.0], recall))) * precision))


# -- VUS-PR ----------------------------------------------------------------------------------------
def vus_pr(
    scores: np.ndarray,
    labels: np.ndarray,
    buffer: int = DEFAULT_VUS_BUFFER,
    n_thresholds: int | None = DEFAULT_VUS_THRESHOLDS,
) -> float:
    """Volume under the range-based PR surface (Paparrizos et al. 2022), as TSB-AD computes it.

    For each buffer length ``w = 0, 1, ..., buffer`` every true segment ``[s, e]`` gets soft labels
    ``sqrt(1 - d / w)`` on the ``w // 2`` points at distance ``d = 1..w//2`` before ``s`` and after
    ``e`` (overlaps summed, capped at 1). At each threshold (``score >= t``):

    - ``TP = #predicted anomalous points + sum(soft label of predicted buffer points)``;
    - ``recall = min(TP / (P + sum(soft of predicted buffer points) / 2), 1)`` with ``P`` anomalous points;
    - ``existence`` = share of extended segments (segments widened by ``w // 2``, merged when they
      overlap) holding at least one prediction; ``TPR = recall * existence``;
    - ``precision = TP / #predicted``.

    The range AP of buffer ``w`` is ``sum_j (TPR_j - TPR_{j-1}) precision_j`` (``TPR_0 = 0``) and
    VUS-PR is its mean over the ``buffer + 1`` buffers.

    Thresholds: by default TSB-AD's sampling — the scores at ``n_thresholds`` ranks
    ``linspace(0, n-1, n_thresholds)`` of the descending sort (ties predicted together);
    ``n_thresholds=None`` uses every distinct score (exact). Cost O(n log n + buffer * (T +
    n_segments * buffer * log)) with ``T`` thresholds: one sort, then each buffer length touches
    only the points around the segments. Returns 0.0 when no label is anomalous.
    """
    s, y = _check(scores, labels)
    if buffer < 0:
        raise ValueError(f"buffer must be >= 0, got {buffer}")
    if n_thresholds is not None and n_thresholds < 1:
        raise ValueError(f"n_thresholds must be >= 1 or None, got {n_thresholds}")
    starts, ends = _segment_bounds(y)
    if len(starts) == 0:
        return 0.0
    n = len(s)
    n_pos = float(np.count_nonzero(y))
    last = ends - 1  # inclusive segment ends, as in the paper's notation

    order = np.argsort(-s, kind="stable")
    s_desc = s[order]
    # TSB-AD's sampling: scores at evenly spaced ranks of the descending sort (or every distinct score)
    ranks = None if n_thresholds is None else np.linspace(0, n - 1, n_thresholds).astype(int)
    thr = np.unique(s)[::-1] if ranks is None else s_desc[ranks]
    n_pred = n - np.searchsorted(s_desc[::-1], thr, side="left")  # >= 1: every threshold is a score
    tp_points = np.cumsum(y[order])[n_pred - 1].astype(np.float64)

    # Each buffer only touches the <= 2 * (w // 2) points around each segment, so the loop below
    # never makes a pass over all n points: buffer credit and existence come from those points only.
    ext_max = _range_max(s, starts, ends)  # max score over each segment widened by `half` on both sides
    widened = 0
    ap = np.empty(buffer + 1)
    for w in range(buffer + 1):
        half = w // 2
        while widened < half:  # widen every segment by one more point on each side
            widened += 1
            for pos in (starts - widened, last + widened):
                inside = (pos >= 0) & (pos < n)
                ext_max[inside] = np.maximum(ext_max[inside], s[pos[inside]])
        buffer_hit = np.zeros(len(thr))
        if half > 0:
            dist = np.arange(1, half + 1)
            idx = np.concatenate(((last[:, None] + dist).ravel(), (starts[:, None] - dist).ravel()))
            val = np.tile(np.sqrt(1.0 - dist / w), 2 * len(starts))
            keep = (idx >= 0) & (idx < n)
            idx, val = idx[keep], val[keep]
            keep = ~y[idx]  # anomalous points already count with label 1 through tp_points
            points, which = np.unique(idx[keep], return_inverse=True)
            if len(points):
                soft = np.minimum(np.bincount(which, weights=val[keep]), 1.0)  # overlapping buffers add up, cap 1
                by_score = np.argsort(-s[points], kind="stable")
                cum_soft = np.concatenate(([0.0], np.cumsum(soft[by_score])))
                buffer_hit = cum_soft[np.searchsorted(-s[points][by_score], -thr, side="right")]
        # extended segments, merged where they overlap (TSB-AD keeps ranges that only touch apart)
        new_group = np.concatenate(([True], last[:-1] + half < starts[1:] - half))
        group_max = np.sort(np.maximum.reduceat(ext_max, np.flatnonzero(new_group)))
        existence = (len(group_max) - np.searchsorted(group_max, thr, side="left")) / len(group_max)

        tp = tp_points + buffer_hit
        recall = np.minimum(tp / (n_pos + buffer_hit / 2.0), 1.0)
        tpr = recall * existence
        precision = tp / n_pred
        ap[w] = np.sum(np.diff(np.concatenate(([0.0], tpr))) * precision)
    return float(ap.mean())
