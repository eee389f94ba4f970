"""Metrics: hand-computed cases, brute-force cross-checks, scikit-learn agreement, a real series."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from app.core import metrics as m
from tests.core.conftest import SHARED_DATA, load_series

# A hand case with segments touching both ends, a tie (0.3, 0.3) and PA that matters.
#   index   0    1    2    3    4    5    6    7    8    9
S = np.array([0.2, 0.9, 0.1, 0.5, 0.3, 0.3, 0.8, 0.1, 0.4, 0.6])
Y = np.array([1, 1, 0, 0, 1, 1, 1, 1, 0, 1])


# -- brute-force references (O(n^2), written independently of the module) --------------------------
def _runs(y: np.ndarray) -> list[tuple[int, int]]:
    out, start = [], None
    for i, v in enumerate(list(y) + [0]):
        if v and start is None:
            start = i
        elif not v and start is not None:
            out.append((start, i))
            start = None
    return out


def _f1(pred: np.ndarray, y: np.ndarray) -> float:
    tp = int(np.sum(pred & y))
    return 0.0 if tp == 0 else 2 * tp / (int(pred.sum()) + int(y.sum()))


def brute_pa_k(s: np.ndarray, y: np.ndarray, k: float | None) -> float:
    """Best F1 over every threshold; ``k=None``: no adjustment, else PA%K (strictly more than K %)."""
    y = y.astype(bool)
    best = 0.0
    for t in np.unique(s):
        pred = s >= t
        if k is not None:
            for a, b in _runs(y):
                if 100 * pred[a:b].sum() > k * (b - a):
                    pred[a:b] = True
        best = max(best, _f1(pred, y))
    return best


# -- segments -------------------------------------------------------------------------------------
def test_segments_half_open_including_both_ends() -> None:
    assert m.segments(Y) == [(0, 2), (4, 8), (9, 10)]
    assert m.segments(np.zeros(5, int)) == []
    assert m.segments(np.ones(3, int)) == [(0, 3)]
    assert m.segments(np.array([True])) == [(0, 1)]


# -- point-wise -----------------------------------------------------------------------------------
def test_precision_recall_f1_hand_case() -> None:
    # score >= 0.4 predicts {1, 3, 6, 8, 9}: TP {1, 6, 9}, FP {3, 8}; 7 anomalies
    assert m.precision_recall_f1(S, Y, 0.4) == pytest.approx((3 / 5, 3 / 7, 6 / 12))
    # score >= 0.3 adds the tie {4, 5}: TP 5 of 7 predicted
    assert m.precision_recall_f1(S, Y, 0.3) == pytest.approx((5 / 7, 5 / 7, 10 / 14))
    assert m.precision_recall_f1(S, Y, 10.0) == (0.0, 0.0, 0.0)  # nothing predicted: 0, not NaN


def test_best_f1_hand_case_with_ties() -> None:
    # thresholds 0.9 .. 0.1 give F1 2/8, 4/9, 6/10, 6/11, 6/12, 10/14 (tie 0.3 both in), 12/15, 14/17
    f1, thr = m.best_f1(S, Y)
    assert f1 == pytest.approx(14 / 17)
    assert thr == 0.1
    # a tie is never split: two points scored 1.0, one anomalous, can only be predicted together
    assert m.best_f1(np.array([1.0, 1.0, 0.0]), np.array([1, 0, 0])) == (pytest.approx(2 / 3), 1.0)


def test_best_f1_threshold_reproduces_its_f1() -> None:
    rng = np.random.default_rng(3)
    s, y = rng.normal(size=300), (rng.random(300) < 0.1).astype(int)
    f1, thr = m.best_f1(s, y)
    assert m.precision_recall_f1(s, y, thr)[2] == pytest.approx(f1)


# -- point adjustment -----------------------------------------------------------------------------
def test_point_adjust_fills_hit_segments_only() -> None:
    pred = np.array([0, 1, 0, 1, 0, 0, 1, 0, 0, 0])  # hits segments 1 and 2, FP at 3
    out = m.point_adjust(pred, Y)
    assert out.tolist() == [True, True, False, True, True, True, True, True, False, False]
    assert m.point_adjust(np.zeros(10, int), Y).sum() == 0


def test_f1_pa_hand_case() -> None:
    # segment maxima 0.9, 0.8, 0.6 all beat every normal (0.5, 0.4, 0.1): at 0.6 all 7 TP, 0 FP
    assert m.f1_pa(S, Y) == 1.0


def test_pa_k_hand_cases() -> None:
    # K = 0 is point adjust, K = 100 is no adjustment
    assert m.pa_k_f1(S, Y, 0) == m.f1_pa(S, Y) == 1.0
    assert m.pa_k_f1(S, Y, 100) == pytest.approx(14 / 17)
    # K = 50: segment [0,2) needs 2 points (2nd largest 0.2), [4,8) needs 3 (3rd largest 0.3), [9] needs 1 (0.6)
    # effective positive scores {0.2, 0.9, 0.3, 0.3, 0.8, 0.3, 0.6}; best at 0.2: TP 7, FP 2 -> 14/16
    assert m.pa_k_f1(S, Y, 50) == pytest.approx(14 / 16)


def test_pa_k_strictly_greater_than_k_percent() -> None:
    s, y = np.array([0.9, 0.1, 0.5, 0.0]), np.array([1, 1, 0, 0])
    assert m.pa_k_f1(s, y, 49) == 1.0  # 1 of 2 = 50 % > 49 %: the segment counts at 0.9
    assert m.pa_k_f1(s, y, 50) == pytest.approx(0.8)  # 50 % is not > 50 %: best is 0.1 with TP 2, FP 1
    # curve: 1.0 for K = 0..49, 0.8 for K = 50..100 -> (49 + 0.9 + 40) / 100
    assert m.pa_k_auc(s, y) == pytest.approx(0.899)
    assert np.allclose(m.pa_k_curve(s, y, [0, 49, 50, 100]), [1.0, 1.0, 0.8, 0.8])


def test_pa_k_integer_k_is_exact() -> None:
    # 29 % of 100 points is exactly 29: 29 hits must NOT count, 30 must (float 0.29*100 = 28.999...)
    y = np.concatenate((np.ones(100, int), np.zeros(300, int)))
    s = np.concatenate((np.r_[np.full(29, 2.0), np.zeros(71)], np.full(300, 1.0)))
    assert m.pa_k_f1(s, y, 29) == pytest.approx(2 * 29 / 129)
    s[29] = 2.0
    assert m.pa_k_f1(s, y, 29) == 1.0


@pytest.mark.parametrize("seed", range(4))
def test_best_f1_and_pa_k_match_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(30):
        n = int(rng.integers(1, 40))
        y = (rng.random(n) < rng.uniform(0.1, 0.9)).astype(int)
        s = rng.integers(0, 6, n).astype(float) if rng.random() < 0.5 else rng.normal(size=n)  # ties half the time
        assert m.best_f1(s, y)[0] == pytest.approx(brute_pa_k(s, y, None))
        for k in (0, 1, 33, 50, 99, 100, float(rng.uniform(0, 100))):
            assert m.pa_k_f1(s, y, k) == pytest.approx(brute_pa_k(s, y, k)), (s, y, k)
        curve = m.pa_k_curve(s, y)
        assert np.all(np.diff(curve) <= 1e-12)  # PA%K F1 never increases with K


# -- ROC / PR ---------------------------------------------------------------------------------------
def test_roc_and_pr_hand_case() -> None:
    s, y = np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])
    assert m.roc_auc(s, y) == pytest.approx(0.75)
    assert m.pr_auc(s, y) == pytest.approx((1 + 2 / 3) / 2)  # recall steps 1/2 at P=1, 1/2 at P=2/3
    assert m.roc_auc(np.array([0.5, 0.5]), np.array([0, 1])) == 0.5  # a tie is one diagonal step


@pytest.mark.parametrize("seed", range(5))
def test_roc_and_pr_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 500
    y = (rng.random(n) < 0.15).astype(int)
    s = rng.normal(size=n) + y * rng.uniform(0, 2)
    for scores in (s, np.round(s, 1)):  # continuous and heavily tied
        assert m.roc_auc(scores, y) == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
        assert m.pr_auc(scores, y) == pytest.approx(average_precision_score(y, scores), abs=1e-12)


# -- degenerate labels --------------------------------------------------------------------------------
def test_degenerate_labels_give_documented_values() -> None:
    s = np.array([0.3, 0.1, 0.7, 0.2])
    normal, anomalous = np.zeros(4, int), np.ones(4, int)
    f1, thr = m.best_f1(s, normal)
    assert f1 == 0.0 and thr > s.max()
    assert m.f1_pa(s, normal) == m.pa_k_f1(s, normal, 40) == m.pa_k_auc(s, normal) == 0.0
    assert m.roc_auc(s, normal) == 0.5 and m.pr_auc(s, normal) == 0.0 and m.vus_pr(s, normal) == 0.0
    assert m.best_f1(s, anomalous) == (1.0, 0.1)
    assert m.f1_pa(s, anomalous) == m.pa_k_f1(s, anomalous, 100) == m.pa_k_auc(s, anomalous) == 1.0
    assert m.roc_auc(s, anomalous) == 0.5 and m.pr_auc(s, anomalous) == 1.0
    assert m.vus_pr(s, anomalous, buffer=4) == 1.0
    for value in (m.roc_auc(s, normal), m.pr_auc(s, normal), m.vus_pr(s, normal)):
        assert not math.isnan(value)


# -- validation ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("scores", "labels", "message"),
    [
        ([0.1, 0.2], [0, 1, 0], "differ in length"),
        ([[0.1, 0.2]], [[0, 1]], "1-D"),
        ([0.1, float("nan")], [0, 1], "finite"),
        ([0.1, float("inf")], [0, 1], "finite"),
        ([0.1, 0.2], [0, 2], "0/1"),
        ([0.1, 0.2], [0, -1], "unlabeled"),
        ([], [], "empty"),
    ],
)
def test_invalid_inputs_raise_clear_errors(scores: list, labels: list, message: str) -> None:
    for fn in (m.best_f1, m.f1_pa, m.roc_auc, m.pr_auc, m.vus_pr, m.pa_k_auc):
        with pytest.raises(ValueError, match=message):
            fn(np.array(scores), np.array(labels))


def test_invalid_k_and_threshold() -> None:
    with pytest.raises(ValueError, match="K must be"):
        m.pa_k_f1(S, Y, 101)
    with pytest.raises(ValueError, match="K must be"):
        m.pa_k_f1(S, np.zeros(10, int), -1)
    with pytest.raises(ValueError, match="NaN"):
        m.precision_recall_f1(S, Y, float("nan"))
    with pytest.raises(ValueError, match="buffer"):
        m.vus_pr(S, Y, buffer=-1)


# -- VUS-PR ---------------------------------------------------------------------------------------------
def vus_pr_reference(s: np.ndarray, y: np.ndarray, buffer: int, n_thresholds: int | None) -> float:
    """A direct, loop-per-threshold rendition of the range-PR volume (TSB-AD semantics)."""
    n, y = len(s), y.astype(int)
    segs = [(a, b - 1) for a, b in _runs(y)]  # inclusive
    n_pos = y.sum()
    ranks = None if n_thresholds is None else np.linspace(0, n - 1, n_thresholds).astype(int)
    thresholds = np.unique(s)[::-1] if ranks is None else np.sort(s)[::-1][ranks]
    aps = []
    for w in range(buffer + 1):
        h = w // 2
        soft = np.zeros(n)
        for a, e in segs:
            for d in range(1, h + 1):
                if e + d < n:
                    soft[e + d] += math.sqrt(1 - d / w)
                if a - d >= 0:
                    soft[a - d] += math.sqrt(1 - d / w)
        soft = np.minimum(soft, 1.0)
        ranges: list[list[int]] = []
        for a, e in segs:
            lo, hi = max(a - h, 0), min(e + h, n - 1)
            if ranges and ranges[-1][1] >= a - h:  # extended ranges overlap: merge
                ranges[-1][1] = hi
            else:
                ranges.append([lo, hi])
        ap, prev_tpr = 0.0, 0.0
        for t in thresholds:
            pred = (s >= t).astype(float)
            lab = soft * pred
            lab[y == 1] = 1.0
            tp = float(np.dot(lab, pred))
            recall = min(tp / ((n_pos + lab.sum()) / 2), 1.0)
            existence = sum(pred[lo : hi + 1].any() for lo, hi in ranges) / len(ranges)
            tpr = recall * existence
            ap += (tpr - prev_tpr) * tp / pred.sum()
            prev_tpr = tpr
        aps.append(ap)
    return float(np.mean(aps))


def test_vus_pr_hand_cases() -> None:
    y = np.zeros(10, int)
    y[5] = 1
    # constant scores: every threshold predicts all 10 points; TPR = 1, precision = (1 + buffer credit) / 10
    # w = 0, 1: no buffer -> 0.1; w = 2: points 4 and 6 get sqrt(1 - 1/2) each
    expected = (0.1 + 0.1 + (1 + 2 * math.sqrt(0.5)) / 10) / 3
    assert m.vus_pr(np.ones(10), y, buffer=2) == pytest.approx(expected)
    assert m.vus_pr(np.ones(10), y, buffer=2, n_thresholds=None) == pytest.approx(expected)
    # a perfect detector has volume 1 whatever the buffer
    assert m.vus_pr(y.astype(float), y, buffer=6) == pytest.approx(1.0)
    assert m.vus_pr(y.astype(float), y, buffer=0, n_thresholds=None) == pytest.approx(1.0)


def test_vus_pr_without_buffer_on_one_segment_is_average_precision() -> None:
    # one segment: existence is 1 as soon as a positive is predicted, so TPR = recall and range AP = AP
    rng = np.random.default_rng(7)
    y = np.zeros(200, int)
    y[80:95] = 1
    s = rng.normal(size=200) + y
    for buffer in (0, 1):
        assert m.vus_pr(s, y, buffer=buffer, n_thresholds=None) == pytest.approx(m.pr_auc(s, y), abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_vus_pr_matches_loop_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 70
    y = np.zeros(n, int)
    for a in rng.choice(n, size=4, replace=False):  # short segments, some near each other / the ends
        y[a : a + int(rng.integers(1, 6))] = 1
    y[0] = seed % 2  # sometimes touch index 0
    s = rng.normal(size=n) + 1.5 * np.convolve(y, np.ones(3), mode="same")  # lagged, smeared detections
    if seed == 3:
        s = np.round(s, 0)  # ties
    for thresholds in (None, 25, 250):
        got = m.vus_pr(s, y, buffer=8, n_thresholds=thresholds)
        assert got == pytest.approx(vus_pr_reference(s, y, 8, thresholds), abs=1e-12)


def test_vus_pr_rewards_near_misses_more_than_pr_auc() -> None:
    # detections one point after each anomaly: point PR sees only noise; the buffer gives credit
    rng = np.random.default_rng(1)
    y = np.zeros(400, int)
    for a in (50, 150, 250, 350):
        y[a : a + 3] = 1
    s = rng.random(400) * 0.5
    s[np.flatnonzero(y) + 3] += 1.0
    assert m.vus_pr(s, y, buffer=20) > m.pr_auc(s, y) + 0.2


# -- a real series: fast metrics = brute force, and ordering invariants ----------------------------
def test_real_series_metrics_match_brute_force(shared_data: object) -> None:
    x_train, _ = load_series("asd/omi-6.train.csv.gz", limit=3000)
    x, y = load_series("asd/omi-6.test.csv.gz", limit=2500)
    if y.sum() == 0:
        pytest.fail(f"expected anomalies in the first 2500 rows of {SHARED_DATA / 'asd/omi-6.test.csv.gz'}")
    mu, sd = x_train.mean(axis=0), x_train.std(axis=0) + 1e-6
    s = np.abs((x - mu) / sd).max(axis=1).astype(np.float64)  # a plain z-score detector
    best = m.best_f1(s, y)[0]
    assert best == pytest.approx(brute_pa_k(s, y, None))
    assert m.f1_pa(s, y) == pytest.approx(brute_pa_k(s, y, 0))
    assert m.pa_k_f1(s, y, 20) == pytest.approx(brute_pa_k(s, y, 20))
    assert best <= m.pa_k_auc(s, y) <= m.f1_pa(s, y)
    assert m.roc_auc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert m.pr_auc(s, y) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert 0.0 < m.vus_pr(s, y) <= 1.0
