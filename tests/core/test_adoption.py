"""Safe adoption: the figures on hand-computed cases, and the decisions a project would notice."""

from __future__ import annotations

import numpy as np
import pytest

from app.core.adoption import (
    AdoptionRule,
    agreement,
    capped_threshold,
    estimated_anomaly_rate,
    flag_limit,
    judge,
    percentile_ranks,
)


def test_percentile_ranks_known_answers():
    ref = np.array([1.0, 2.0, 3.0, 4.0])
    # 0 is below all, 5 above all, 2.5 between the 2nd and 3rd, 2 ties one value (counts half)
    assert percentile_ranks(np.array([0.0, 5.0, 2.5, 2.0]), ref).tolist() == [0.0, 1.0, 0.5, 0.375]


def test_agreement_balances_classes():
    values, weights = agreement(np.array([0.9, 0.1, 0.2, 0.3]), np.array([1, 0, 0, 0]))
    assert values.tolist() == pytest.approx([0.9, 0.9, 0.8, 0.7])
    assert weights.tolist() == pytest.approx([0.5, 1 / 6, 1 / 6, 1 / 6])
    assert float(np.sum(values * weights)) == pytest.approx(0.45 + 0.4)


POOL = np.arange(1_000, dtype=np.float64)
"""A pool of 1,000 point scores 0..999: a threshold of ``999.5 - 1000 * share`` flags ``share`` of it."""


def _judge(cand, serv, labels, **kw):
    rule = kw.pop("rule", AdoptionRule())
    return judge(
        rule,
        np.array(labels),
        np.array(cand),
        None if serv is None else np.array(serv),
        held_out=kw.pop("held_out", True),
        pool_points=POOL,
        threshold=999.5 - 1_000 * kw.pop("flag_share", 0.01),
        anomaly_rate=kw.pop("rate", 0.0),
    )


def test_a_candidate_that_ranks_the_new_answers_worse_is_refused():
    labels = [1, 1, 0, 0, 0, 0]
    serving = [0.99, 0.95, 0.2, 0.3, 0.1, 0.4]
    worse = [0.5, 0.4, 0.9, 0.8, 0.95, 0.7]  # anomalies sink, normals rise
    v = _judge(worse, serving, labels)
    assert not v.serve and "worse" in v.reason and v.candidate_figure < v.serving_figure
    better = [0.999, 0.99, 0.05, 0.1, 0.02, 0.2]
    assert _judge(better, serving, labels).serve


def test_noise_sized_losses_do_not_refuse():
    labels = [1, 0, 0, 0]
    serving = [0.95, 0.2, 0.3, 0.1]
    slightly = [0.94, 0.21, 0.3, 0.1]  # 0.005 worse: inside the tolerance
    assert _judge(slightly, serving, labels).serve


def test_capped_threshold_known_answers():
    """A point is flagged at or above the threshold; the raised one lies halfway to the next higher score."""
    points = np.array([5.0, 1.0, 4.0, 2.0, 3.0, 3.0, 6.0, 0.0, 8.0, 7.0])
    assert capped_threshold(2.5, points, 0.3) == 5.5  # 6, 7 and 8 at or above it: 30 %
    assert capped_threshold(6.0, points, 0.3) == 6.0  # flags 30 % already: never lowered
    assert capped_threshold(0.5, points, 0.25) == 6.5  # 2.5 points allowed: two are flagged
    assert capped_threshold(-1.0, points, 1.0) == -1.0  # every point may be flagged
    ties = np.array([1.0, 2.0, 2.0, 2.0, 2.0])
    top = capped_threshold(0.0, ties, 0.4)  # the ties are not split: none is flagged, rather than four of five
    assert top > 2.0 and not np.any(ties >= top)
    for limit in (0.0, 0.05, 0.3, 0.55):  # never more than the limit, whatever it is
        assert np.mean(points >= capped_threshold(-np.inf, points, limit)) <= limit


def test_the_threshold_guard_caps_an_alarm_storm_unless_labels_show_that_many_anomalies():
    """A candidate whose threshold flags 60 % of the pool serves with its threshold raised to the guard's 5 %; its
    ranking is judged as any other's (a worse one is still refused, its threshold raised all the same)."""
    labels, same = [1, 0], [0.9, 0.1]
    v = _judge(same, same, labels, flag_share=0.6)
    assert v.serve and v.raised_from == pytest.approx(399.5) and v.threshold == 949.5
    assert v.flag_share == pytest.approx(0.05) and "flagging 60.0%" in v.reason and "the limit is 5.0%" in v.reason
    roomy = _judge(same, same, labels, flag_share=0.6, rate=0.25)  # 3 x 25 % anomalies allows 75 %
    assert roomy.serve and roomy.raised_from is None and roomy.threshold == pytest.approx(399.5)
    assert roomy.flag_share == pytest.approx(0.6)
    worse = _judge([0.1, 0.9], same, labels, flag_share=0.6)
    assert not worse.serve and "worse" in worse.reason and worse.threshold == 949.5
    assert flag_limit(AdoptionRule(), 0.001) == 0.05


def test_the_anomaly_rate_is_estimated_without_the_queries_bias():
    """2,000 points scored 0..1 in order, the top 5 % anomalous. The four top-k windows answered (points 1,900-1,999,
    all anomalous) and five interval picks (windows of 25 at 0, 400, ..., 1,600, normal): the labeled points are 44 %
    anomalous, and three times that let a version flagging half the points serve. The isotonic fit is 0 up to point
    1,624, 1 from 1,900, linear between: (137.5 + 100) / 2,000 = 0.11875, so the limit is 35.6 %."""
    scores = np.linspace(0.0, 1.0, 2_000)
    labels = np.full(2_000, -1)
    labels[1_900:] = 1
    for start in range(0, 1_601, 400):
        labels[start : start + 25] = 0
    assert labels[labels >= 0].mean() == pytest.approx(100 / 225)
    rate = estimated_anomaly_rate(scores, labels)
    assert rate == pytest.approx(0.11875)
    storm = _judge([0.9, 0.1], [0.9, 0.1], [1, 0], flag_share=0.5, rate=rate)
    assert "flagging 50.0%" in storm.reason and "about 11.9% of them anomalous" in storm.reason
    assert storm.anomaly_rate == pytest.approx(0.11875) and storm.flag_limit == pytest.approx(0.35625)
    assert storm.flag_share == pytest.approx(0.356)  # 356 of the 1,000 points: the most within the limit
    assert _judge([0.9, 0.1], [0.9, 0.1], [1, 0], flag_share=0.06, rate=rate).raised_from is None
    # no label: nothing known (the guard's own share holds); one class only: that class everywhere
    assert estimated_anomaly_rate(scores, np.full(2_000, -1)) == 0.0
    assert estimated_anomaly_rate(scores, np.where(labels == 1, 1, -1)) == 1.0


def test_nothing_serving_or_no_answers_serves_and_always_policy_serves():
    assert _judge([0.1], None, [1]).serve
    assert _judge([], [], []).serve
    always = AdoptionRule(policy="always")
    v = _judge([0.1, 0.9], [0.9, 0.1], [1, 0], rule=always, flag_share=0.9)
    assert v.serve and v.candidate_figure < v.serving_figure  # figures still recorded
    assert v.raised_from is None and v.flag_share == pytest.approx(0.9) and "flags 90.0%" in v.reason
    with pytest.raises(ValueError):
        AdoptionRule(policy="sometimes")


def test_in_sample_figures_can_only_refuse():
    labels, serving = [1, 0], [0.6, 0.4]
    v = _judge([0.9, 0.1], serving, labels, held_out=False)
    assert v.serve and "in-sample" in v.reason and not v.held_out
    assert not _judge([0.1, 0.9], serving, labels, held_out=False).serve
