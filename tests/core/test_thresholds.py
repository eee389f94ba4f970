"""Threshold selectors: known answers, label handling, fallbacks, the registry."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from app.core import thresholds as th


def test_percentile_and_mean_std_known_answers() -> None:
    s = np.arange(101, dtype=float)  # 0..100
    assert th.percentile_threshold(s, 99) == 99.0
    assert th.percentile_threshold(s, 50) == 50.0
    assert th.mean_std_threshold(np.array([1.0, 2, 3, 4, 5]), k=2) == pytest.approx(3 + 2 * math.sqrt(2))
    assert th.mean_std_threshold(np.full(4, 7.0)) == 7.0  # constant scores: std 0


def test_best_f1_threshold_ignores_unlabeled() -> None:
    # labeled: anomalies 0.9, 0.7; normals 0.8, 0.2, 0.1 -> F1 2/3 at 0.9, 4/5 at 0.7
    # the unlabeled 0.75 would, counted as normal, make 0.7 tie 0.9 (2/3) and flip the answer
    s = np.array([0.9, 0.8, 0.7, 0.2, 0.1, 0.75])
    y = np.array([1, 0, 1, 0, 0, -1])
    assert th.best_f1_threshold(s, y) == 0.7
    y_as_normal = np.array([1, 0, 1, 0, 0, 0])
    assert th.best_f1_threshold(s, y_as_normal) == 0.9


def test_best_f1_threshold_only_anomalies_labeled_is_lowest_anomaly() -> None:
    s = np.array([3.0, 1.0, 2.0, 0.5])
    assert th.best_f1_threshold(s, np.array([1, -1, 1, -1])) == 2.0


def test_best_f1_threshold_falls_back_to_percentile_without_anomaly() -> None:
    s = np.arange(101, dtype=float)
    y = np.full(101, -1)
    y[:10] = 0  # a few normals, no anomaly
    assert th.best_f1_threshold(s, y) == 99.0  # 99th percentile of all scores
    assert th.best_f1_threshold(s, y, fallback_q=90) == 90.0
    train = np.arange(11, dtype=float)
    assert th.best_f1_threshold(s, y, fallback_q=50, fallback_scores=train) == 5.0


def test_anomaly_chance_follows_the_score_and_is_zero_without_labels() -> None:
    s = np.array([1.0, 3.0, 4.0, 6.0, 9.0, 10.0, 5.0, 0.0, 12.0])
    y = np.array([0, 1, 0, 0, 0, 1, -1, -1, -1])
    # pool adjacent violators: 3 (1), 4, 6, 9 (0) pool to 1/4; linear between labeled scores, flat beyond them
    np.testing.assert_allclose(th.anomaly_chance(s, y), [0, 0.25, 0.25, 0.25, 0.25, 1, 0.25, 0, 1])
    np.testing.assert_array_equal(th.anomaly_chance(s, np.full(len(s), -1)), np.zeros(len(s)))


def test_expected_f1_counts_the_unlabeled_points_between_the_labels() -> None:
    # labeled: anomalies 10 and 3, normals 9, 6, 4, 1; on the labels alone 10 is best (F1 2/3 against 4/7 at 3)
    labeled_s = np.array([10.0, 9.0, 6.0, 4.0, 3.0, 1.0])
    labeled_y = np.array([1, 0, 0, 0, 1, 0])
    assert th.best_f1_threshold(labeled_s, labeled_y) == 10.0
    # with every point labeled the chances are the labels: the same answer
    assert th.expected_f1_threshold(labeled_s, labeled_y) == 10.0
    # eight unlabeled points at 5, each anomalous with chance 1/4 (above), so P = 2 + 2: threshold 10 flags one
    # point for an expected F1 of 2·1 / (1 + 4) = 0.40, 5 eleven for 2·3 / (11 + 4) = 0.40, 3 thirteen for
    # 2·4 / (13 + 4) ≈ 0.47
    s = np.r_[labeled_s, np.full(8, 5.0)]
    y = np.r_[labeled_y, np.full(8, -1)]
    assert th.best_f1_threshold(s, y) == 10.0  # blind to them
    assert th.expected_f1_threshold(s, y) == 3.0
    assert th.choose_threshold("expected_f1", scores=s, labels=y) == 3.0


def test_expected_f1_falls_back_like_best_f1_when_the_labels_hold_one_class() -> None:
    s = np.array([3.0, 1.0, 2.0, 0.5])
    assert th.expected_f1_threshold(s, np.array([1, -1, 1, -1])) == 2.0  # anomalies only: the lowest one
    scores = np.arange(101, dtype=float)
    normals_only = np.full(101, -1)
    normals_only[:10] = 0
    assert th.expected_f1_threshold(scores, normals_only, fallback_q=90) == 90.0
    with pytest.raises(ValueError, match="labels shape"):
        th.expected_f1_threshold(s, np.array([1, 0]))
    with pytest.raises(ValueError, match="labels must be 1"):  # a 2 is not read as "normal"
        th.expected_f1_threshold(s, np.array([1, 0, 2, -1]))


def test_fpr_threshold_known_answers() -> None:
    normals = np.arange(100, dtype=float)  # 0..99
    assert th.fpr_threshold(normals, 0.05) == 95.0  # 95..99: exactly 5 false positives
    assert th.fpr_threshold(normals, 0.29) == 71.0  # 0.29 * 100 is 28.999... in floating point
    t0 = th.fpr_threshold(normals, 0.0)
    assert t0 > 99.0 and (normals >= t0).sum() == 0
    assert th.fpr_threshold(normals, 1.0) == 0.0
    # ties are never split: 2 false positives allowed, but three normals share 1.0
    assert th.fpr_threshold(np.array([0.0, 1, 1, 1, 2]), 0.5) == 2.0


@pytest.mark.parametrize("seed", range(5))
def test_fpr_threshold_is_the_lowest_meeting_the_target(seed: int) -> None:
    rng = np.random.default_rng(seed)
    normals = np.round(rng.normal(size=int(rng.integers(5, 400))), 1)
    target = float(rng.uniform(0, 0.3))
    t = th.fpr_threshold(normals, target)
    assert np.mean(normals >= t) <= target + 1e-12
    lower = normals[normals < t]
    if len(lower):  # the next lower candidate would break the target
        assert np.mean(normals >= lower.max()) > target


def test_threshold_config_is_frozen_and_validated() -> None:
    cfg = th.ThresholdConfig(method="fpr", target_fpr=0.05)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.q = 50  # type: ignore[misc]
    assert cfg.to_dict() == {"method": "fpr", "q": 99.0, "k": 3.0, "target_fpr": 0.05}
    with pytest.raises(ValueError, match="percentile, mean_std, best_f1, expected_f1, fpr"):
        th.ThresholdConfig(method="otsu")
    with pytest.raises(ValueError, match="q must be"):
        th.ThresholdConfig(q=120)
    with pytest.raises(ValueError, match="target_fpr"):
        th.ThresholdConfig(target_fpr=-0.1)


def test_choose_threshold_by_name_and_config() -> None:
    train = np.arange(101, dtype=float)
    s = np.array([0.9, 0.8, 0.7, 0.2, 0.1, 0.75])
    y = np.array([1, 0, 1, 0, 0, -1])
    assert th.available_methods() == ("percentile", "mean_std", "best_f1", "expected_f1", "fpr")
    assert th.choose_threshold("percentile", train_scores=train, q=95) == 95.0
    assert th.choose_threshold(th.ThresholdConfig(method="percentile", q=95), train_scores=train) == 95.0
    assert th.choose_threshold("mean_std", train_scores=train, k=0) == 50.0
    assert th.choose_threshold("best_f1", scores=s, labels=y) == 0.7
    assert th.choose_threshold("expected_f1", scores=s, labels=y) == 0.7
    # fpr on labeled normals 0.8, 0.2, 0.1: 0 % false positives -> just above 0.8
    t = th.choose_threshold("fpr", scores=s, labels=y, target_fpr=0.0)
    assert 0.8 < t < 0.8 + 1e-12
    # no labeled normal: training scores 0..100 stand in; 1 % of 101 allows one false positive
    assert th.choose_threshold("fpr", scores=s, labels=np.array([1, -1, 1, -1, -1, -1]), train_scores=train) == 100.0
    assert th.choose_threshold("fpr", train_scores=train, target_fpr=0.1) == 91.0
    # best-F1 fallback uses the training scores when given
    no_anomaly = np.array([0, 0, -1, -1, -1, -1])
    assert th.choose_threshold("best_f1", scores=s, labels=no_anomaly, train_scores=train, q=80) == 80.0


def test_choose_threshold_errors_name_what_to_fix() -> None:
    with pytest.raises(ValueError, match="unknown threshold method"):
        th.choose_threshold("otsu", train_scores=np.ones(3))
    with pytest.raises(ValueError, match="unknown threshold parameter"):
        th.choose_threshold("percentile", train_scores=np.ones(3), quantile=0.9)
    with pytest.raises(ValueError, match="needs train_scores"):
        th.choose_threshold("mean_std", scores=np.ones(3), labels=np.zeros(3))
    with pytest.raises(ValueError, match="needs scores and labels"):
        th.choose_threshold("best_f1", train_scores=np.ones(3))
    with pytest.raises(ValueError, match="labeled normals or train_scores"):
        th.choose_threshold("fpr", scores=np.ones(3), labels=np.array([1, -1, -1]))
    with pytest.raises(ValueError, match="not also"):
        th.choose_threshold(th.ThresholdConfig(), train_scores=np.ones(3), q=50)
    with pytest.raises(ValueError, match="NaN or inf"):
        th.percentile_threshold(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="empty"):
        th.mean_std_threshold(np.array([]))
    with pytest.raises(ValueError, match="-1 \\(unlabeled\\)"):
        th.best_f1_threshold(np.ones(3), np.array([0, 2, 1]))
