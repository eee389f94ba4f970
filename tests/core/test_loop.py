"""The active-learning loop: oracle accounting, pool confinement, query geometry, label accounting."""

from __future__ import annotations

import numpy as np
import pytest

from app.core.adoption import AdoptionRule
from app.core.detectors import make_detector
from app.core.loop import (
    GroundTruthOracle,
    OracleRefused,
    PoolState,
    Query,
    SeriesPool,
    Split,
    ask,
    labeled_windows,
    learn,
    plan_round,
    pool_window_range,
    resolve_budget,
    run_experiment,
    run_project,
    runs_to_ranges,
    truth_answer,
    validate_candidate,
)
from app.core.windows import LabeledRange

from .conftest import load_series


def _spiky_series(n: int = 1200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Sine + noise with 8 spikes of 5 points; labels mark the spikes."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    x = np.sin(2 * np.pi * t / 50) + 0.05 * rng.standard_normal(n)
    y = np.zeros(n, dtype=np.int8)
    for s in np.linspace(100, n - 100, 8).astype(int):
        x[s : s + 5] += 4.0
        y[s : s + 5] = 1
    return x[:, None].astype(np.float32), y


def _split(n: int = 1200) -> Split:
    x, y = _spiky_series(n)
    cut = int(0.6 * n)
    return Split(X_fit=x[:cut], X=x, y=y, pool=(0, cut), evaluation=(cut, n), name="synthetic")


# -- the oracle ---------------------------------------------------------------------------------


def test_runs_to_ranges_known_answer():
    got = runs_to_ranges(np.array([0, 0, 1, 1, 0]), offset=10)
    assert got == [LabeledRange(10, 12, 0), LabeledRange(12, 14, 1), LabeledRange(14, 15, 0)]
    assert runs_to_ranges(np.array([], dtype=int)) == []


def test_oracle_answers_inside_pool_counts_and_refuses_outside():
    y = np.array([0] * 10 + [1] * 3 + [0] * 17, dtype=np.int8)  # 30 points, anomaly at [10, 13)
    oracle = GroundTruthOracle(y, (0, 20))
    assert oracle(8, 14) == [LabeledRange(8, 10, 0), LabeledRange(10, 13, 1), LabeledRange(13, 14, 0)]
    assert oracle(0, 5) == [LabeledRange(0, 5, 0)]
    assert oracle(0, 5) == [LabeledRange(0, 5, 0)]  # asking again is another lookup
    assert oracle.labels_used == 3 and oracle.points_revealed == 16
    for start, end in [(15, 21), (20, 25), (-1, 3)]:
        with pytest.raises(OracleRefused):
            oracle(start, end)
    assert oracle.labels_used == 3  # refusals reveal and count nothing


def test_oracle_end_point_mode_reveals_one_point():
    y = np.array([0] * 10 + [1] * 3 + [0] * 7, dtype=np.int8)
    oracle = GroundTruthOracle(y, (0, 20), answer="end_point")
    assert oracle(2, 12) == [LabeledRange(11, 12, 1)]
    assert oracle(5, 15) == [LabeledRange(14, 15, 0)]
    assert oracle.labels_used == 2 and oracle.points_revealed == 2


def test_ask_accepts_a_bare_label():
    class Human:
        def __call__(self, start: int, end: int) -> int:
            return 1

    state = PoolState([SeriesPool("s", 12, 12)], window=3, budget=5)
    picks = plan_round(state, [np.arange(10.0)], "top_k", 1, 1)
    assert ask(Human(), picks) == [LabeledRange(9, 12, 1)]


def test_truth_answer_modes_known_answers():
    truth = np.array([0, 0, 1, 1, 0], dtype=np.int8)
    assert truth_answer(truth, 10, 15, "window") == [
        LabeledRange(10, 12, 0),
        LabeledRange(12, 14, 1),
        LabeledRange(14, 15, 0),
    ]
    assert truth_answer(truth, 10, 15, "end_point") == [LabeledRange(14, 15, 0)]
    with pytest.raises(ValueError):
        truth_answer(truth, 10, 15, "whole")


# -- geometry -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pool", "window", "stride", "expected"),
    [
        ((0, 100), 25, 1, (0, 76)),
        ((10, 60), 25, 1, (10, 36)),
        ((0, 100), 25, 5, (0, 16)),
        ((3, 100), 25, 5, (1, 16)),
        ((0, 20), 25, 1, (0, 0)),
    ],
)
def test_pool_window_range(pool, window, stride, expected):
    i0, i1 = pool_window_range(pool, window, stride)
    assert (i0, i1) == expected
    for i in range(i0, i1):  # every window in range lies fully in the pool
        assert pool[0] <= i * stride and i * stride + window <= pool[1]


def test_labeled_windows_end_point_or_majority():
    n, w = 40, 10
    mask = labeled_windows([LabeledRange(10, 20, 0)], n, w)
    # window i covers [i, i+10): end point i+9 labeled for i in 1..10; > 5 labeled points for i in 5..14
    assert np.flatnonzero(mask).tolist() == list(range(1, 15))
    end_only = labeled_windows([LabeledRange(29, 30, 1)], n, w)
    assert np.flatnonzero(end_only).tolist() == [20]


def test_plan_round_stays_in_pool_skips_labeled_and_keeps_gap():
    scores = np.zeros(200)
    scores[150:] = 10.0  # the best windows are outside the pool (points from 129 on)
    scores[40:50] = 5.0  # a cluster: only one pick allowed there with min_gap = window
    scores[90] = 4.0
    state = PoolState([SeriesPool("s", 209, 129)], window=10, budget=10, labels=[[LabeledRange(99, 100, 0)]])
    picks = plan_round(state, [scores], "top_k", 4, 1)
    idx = [p.index for p in picks]
    assert len(idx) == 4 and all(0 <= i < 120 for i in idx)
    assert 90 not in idx  # window 90 ends at point 99, which is labeled
    assert sum(40 <= i < 50 for i in idx) == 1
    assert all(abs(a - b) >= 10 for a in idx for b in idx if a != b)
    assert all(p.start == p.index and p.end == p.index + 10 for p in picks)
    state.answers = 8
    assert len(plan_round(state, [scores], "top_k", 4, 2)) == 2  # cut to the budget left


def test_plan_round_over_several_series_maps_back_and_is_reproducible():
    """The product's multi-series pool: picks name their series and local window; same seed + round, same picks."""
    rng = np.random.default_rng(0)
    state = PoolState([SeriesPool("a", 300, 200), SeriesPool("b", 150, 100)], window=20, budget=50, seed=7)
    scores = [rng.random(281), rng.random(131)]
    scores[1][30] = 5.0  # the best window of all is in series b
    picks = plan_round(state, scores, "hybrid", 6, 1)
    assert picks[0].series == 1 and picks[0].index == 30 and picks[0].start == 30
    for p in picks:
        assert p.end <= state.series[p.series].pool_end
    again = plan_round(state, scores, "hybrid", 6, 1)
    assert [(p.series, p.index) for p in again] == [(p.series, p.index) for p in picks]
    assert [(p.series, p.index) for p in plan_round(state, scores, "hybrid", 6, 2)] != [
        (p.series, p.index) for p in picks
    ]


def test_warm_up_respects_the_round_size_and_the_gap():
    """RLAD-style warm-up candidates are cut to the round size, alternating extremes, never adjacent windows."""
    scores = np.linspace(0, 1, 181)
    state = PoolState([SeriesPool("s", 200, 200)], window=20, budget=100)
    warm = [(0, i) for i in (0, 1, 2, 3, 4, 60, 100, 176, 177, 178, 179, 180)]
    picks = plan_round(state, [scores], "top_k", 4, 1, warmup=warm)
    idx = [p.index for p in picks]
    assert len(idx) == 4 and all(p.strategy == "warmup" for p in picks)
    assert idx[0] == 180 and idx[1] == 0  # highest, then lowest
    assert all(abs(a - b) >= 20 for a in idx for b in idx if a != b)
    state.add_answer(0, [LabeledRange(0, 20, 0)])
    assert all(p.strategy == "top_k" for p in plan_round(state, [scores], "top_k", 4, 2, warmup=warm))


def test_learn_and_pool_coordinates():
    state = PoolState([SeriesPool("a", 100, 60), SeriesPool("b", 80, 50)], window=10)
    state.add_answer(1, [LabeledRange(5, 15, 1)])
    state.add_answer(0, [LabeledRange(55, 70, 0)])  # clipped to the pool
    assert state.pool_ranges() == [LabeledRange(55, 60, 0), LabeledRange(65, 75, 1)]
    assert state.answers == 2 and state.offsets() == [0, 60]
    X = state.pool_values([np.zeros((100, 1)), np.ones((80, 1))])
    assert X.shape == (110, 1) and X[60:].min() == 1

    class Recorder:
        def feedback(self, X, ranges):
            self.seen = (len(X), list(ranges))

    det = Recorder()
    assert learn(det, X, state.pool_ranges()) >= 0
    assert det.seen == (110, state.pool_ranges())


def test_run_experiment_budget_rounds_and_determinism():
    split = _split()

    def go(seed: int):
        det = make_detector("iforest", seed=0, n_estimators=30)
        oracle = GroundTruthOracle(split.y, split.pool)
        res = run_experiment(det, split, "random", oracle, round_size=4, budget=10, seed=seed)
        return res, oracle

    res, oracle = go(1)
    assert res.labels_used == oracle.labels_used == res.budget == 10
    assert [r.labels_used for r in res.rounds] == [0, 4, 8, 10]
    assert len(res.rounds) == 4 and res.fit_seconds > 0
    assert all(0.0 <= r.metrics["pr_auc"] <= 1.0 for r in res.rounds)
    assert res.scores.shape == (len(split.X),)
    assert all(split.pool[0] <= q.start and q.end <= split.pool[1] for q in res.queries)
    res2, _ = go(1)
    assert [q.index for q in res2.queries] == [q.index for q in res.queries]
    res3, _ = go(2)
    assert [q.index for q in res3.queries] != [q.index for q in res.queries]


def test_budget_zero_is_unsupervised_and_fraction_resolves():
    split = _split()
    det = make_detector("iforest", seed=0, n_estimators=30)
    oracle = GroundTruthOracle(split.y, split.pool)
    res = run_experiment(det, split, "top_k", oracle, round_size=5, budget=0, seed=0)
    assert res.labels_used == 0 and oracle.labels_used == 0 and len(res.rounds) == 1
    assert resolve_budget(0.01, 696) == 7 and resolve_budget(0.001, 100) == 1 and resolve_budget(50, 10) == 50
    with pytest.raises(ValueError):
        resolve_budget(-1, 10)


def test_the_label_free_first_version_is_capped_like_a_projects_first_version():
    """Round 0 (no answer yet) is judged as a project's first version is: it serves, and a guard stricter than the
    label-free threshold (the pool's 99th percentile flags about 1 % of its points) raises that threshold to the
    limit, as the product stores it; the default limit (5 %) leaves it alone."""
    split = _split()
    p1 = split.pool[1]

    def go(share: float):  # type: ignore[no-untyped-def]
        det = make_detector("iforest", seed=0, n_estimators=30)
        oracle = GroundTruthOracle(split.y, split.pool)
        rule = AdoptionRule(max_flag_share=share)
        return run_experiment(det, split, "top_k", oracle, round_size=5, budget=0, seed=0, adoption=rule)

    loose, strict = go(0.05), go(0.002)
    assert loose.rounds[0].verdict["raised_from"] is None and loose.rounds[0].served
    assert np.mean(loose.scores[:p1] >= loose.threshold) > 0.002  # the label-free threshold flags more than 0.2 %
    first = strict.rounds[0].verdict
    assert strict.rounds[0].served and first["raised_from"] == pytest.approx(loose.threshold)
    assert strict.threshold > loose.threshold and "nothing serves yet" in first["reason"]
    assert np.mean(strict.scores[:p1] >= strict.threshold) <= 0.002


def test_a_project_of_several_series_spends_one_budget_across_them():
    """Two series in one project (the second with its spikes twice as high): a
    budget of 2 % of both pools' windows, rounds ranked across the series; every query inside its series' pool, each
    answer counted on its own series, each series evaluated on its own evaluation part; and a project of one series
    is exactly run_experiment."""
    a, b = _split(1200), _split(1000)
    b = Split(X_fit=2 * b.X_fit, X=2 * b.X, y=b.y, pool=b.pool, evaluation=b.evaluation, name="taller")
    oracles = [GroundTruthOracle(s.y, s.pool) for s in (a, b)]
    det = make_detector("iforest", seed=0, n_estimators=30)
    res = run_project(det, [a, b], "top_k", oracles, round_size=5, budget=0.02, seed=0, n_rounds=2)
    n_windows = sum(s.pool[1] - det.window + 1 for s in (a, b))
    assert res.budget == round(0.02 * n_windows) and res.labels_used == res.budget
    assert sum(o.labels_used for o in oracles) == res.labels_used
    assert {q.series for q in res.queries} == {0, 1}  # the taller spikes do not take every answer
    for q in res.queries:
        assert q.start >= 0 and q.end <= (a, b)[q.series].pool[1]
    assert [len(r.series_metrics) for r in res.rounds] == [2] * len(res.rounds)
    for r in res.rounds:
        assert r.metrics["pr_auc"] == pytest.approx(np.mean([m["pr_auc"] for m in r.series_metrics]))
    assert [len(x) for x in res.scores] == [1200, 1000]
    with pytest.raises(ValueError, match="one oracle per series"):
        run_project(det, [a, b], "top_k", oracles[:1], round_size=5, budget=0.05)

    single = run_experiment(
        make_detector("iforest", seed=0, n_estimators=30),
        a,
        "top_k",
        GroundTruthOracle(a.y, a.pool),
        round_size=5,
        budget=0.05,
        seed=0,
    )
    alone = run_project(
        make_detector("iforest", seed=0, n_estimators=30),
        [a],
        "top_k",
        [GroundTruthOracle(a.y, a.pool)],
        round_size=5,
        budget=0.05,
        seed=0,
    )
    assert np.array_equal(single.scores, alone.scores[0]) and single.threshold == alone.threshold
    assert [q.index for q in single.queries] == [q.index for q in alone.queries]


def test_split_rejects_overlap():
    x, y = _spiky_series(100)
    with pytest.raises(ValueError, match="overlap"):
        Split(X_fit=x, X=x, y=y, pool=(0, 60), evaluation=(50, 100))


def test_rlad_label_accounting_matches_oracle():
    """Every ground-truth label RLAD's agent sees (warm-up included) went through the counting oracle."""
    split = _split(600)
    det = make_detector(
        "rlad", seed=0, device="cpu", episodes=1, steps_per_episode=10, batch_size=8, n_pseudo=20, propagation_nodes=300
    )
    oracle = GroundTruthOracle(split.y, split.pool, answer="end_point")
    res = run_experiment(
        det, split, "margin", oracle, round_size=3, budget=21, seed=0, adoption=AdoptionRule(policy="always")
    )
    assert res.warmup_labels == 3  # the warm-up asks the round's size, not all 3 N_w windows
    assert oracle.labels_used == res.labels_used == 21
    assert res.detector.labels_seen_ == oracle.labels_used
    assert all(split.pool[0] <= s and e <= split.pool[1] for s, e in oracle.asked)


def test_warm_up_is_cut_to_the_budget_keeping_extremes():
    """A budget smaller than the warm-up keeps the highest- and lowest-scored warm-up windows, all counted."""
    from app.core.detectors.iforest import IForestDetector

    class WarmForest(IForestDetector):
        asks_warmup = True

        def initial_queries(self, X):
            return np.arange(0, 600, 50)  # 12 windows spread over the pool

    split = _split()
    det = WarmForest(seed=0, n_estimators=30)
    oracle = GroundTruthOracle(split.y, split.pool)
    res = run_experiment(det, split, "top_k", oracle, round_size=5, budget=2, seed=0)
    assert res.warmup_labels == 2 == oracle.labels_used == res.labels_used and len(res.rounds) == 2
    ws = det.window_scores(split.X)[np.arange(0, 600, 50)]
    picked = {q.index for q in res.queries}
    assert picked == {int(np.arange(0, 600, 50)[ws.argmax()]), int(np.arange(0, 600, 50)[ws.argmin()])}


def test_feedback_never_learns_from_the_evaluation_part():
    """The replay term and label propagation train on unlabeled windows: an experiment hands feedback
    the series up to its evaluation part only, every round, while scoring still covers all of it."""
    from app.core.detectors.iforest import IForestDetector

    class RecordingForest(IForestDetector):
        seen: list[int] = []

        def feedback(self, X, ranges):
            self.seen.append(len(X))
            assert all(r.end <= len(X) for r in ranges)
            return self

    split = _split()
    det = RecordingForest(seed=0, n_estimators=30)
    res = run_experiment(det, split, "top_k", GroundTruthOracle(split.y, split.pool), round_size=4, budget=8, seed=0)
    assert det.seen == [split.evaluation[0]] * 2 and len(res.rounds) == 3
    assert res.scores.shape == (len(split.X),)
    assert split.train_end == 720
    # a split whose evaluation part comes first has no clean cut: feedback sees the whole series
    x, y = _spiky_series(100)
    assert Split(X_fit=x, X=x, y=y, pool=(50, 100), evaluation=(0, 50)).train_end is None


def test_top_k_queries_hit_real_anomalies_more_than_random(shared_data):
    """On a real NAB series, iforest top-k queries find labeled anomalies more often than random ones."""
    x, y = load_series("nab/realKnownCause__machine_temperature_system_failure.csv.gz", limit=12000)
    cut = int(0.6 * len(x))
    split = Split(X_fit=x[:cut], X=x, y=y, pool=(0, cut), evaluation=(cut, len(x)))
    assert y[:cut].mean() < 0.2
    hits = {}
    for strategy in ("top_k", "random"):
        det = make_detector("iforest", seed=0, n_estimators=50)
        oracle = GroundTruthOracle(split.y, split.pool)
        res = run_experiment(det, split, strategy, oracle, round_size=10, budget=30, seed=0)
        hits[strategy] = sum(r.n_anomalous_queries for r in res.rounds)
    assert hits["top_k"] > hits["random"]


@pytest.mark.parametrize("detector", ["ensemble", "iforest"])
def test_no_evaluation_label_reaches_the_loop(detector):
    """Flipping every ground-truth label of the evaluation part changes nothing the loop does: same queries, same
    served scores (the oracle answers only inside the pool, learning sees only the pool)."""
    split = _split()
    a, b = split.evaluation
    flipped_y = split.y.copy()
    flipped_y[a:b] = 1 - flipped_y[a:b]
    flipped = Split(X_fit=split.X_fit, X=split.X, y=flipped_y, pool=split.pool, evaluation=split.evaluation)
    runs = []
    for s in (split, flipped):
        det = make_detector(detector, window=20, seed=0)
        oracle = GroundTruthOracle(s.y, s.pool)
        runs.append(run_experiment(det, s, "hybrid", oracle, round_size=6, budget=18, seed=0))
    assert [(q.start, q.end) for q in runs[0].queries] == [(q.start, q.end) for q in runs[1].queries]
    assert len(runs[0].queries) == 18 and runs[0].ranges == runs[1].ranges
    np.testing.assert_array_equal(runs[0].scores, runs[1].scores)


def test_the_threshold_guard_reads_the_anomaly_rate_off_the_scores_that_chose_the_queries():
    """One 2,000-point series, windows of 25 (stride 1), its last 100 points anomalous. The serving version's window
    scores rise with the position, so a top-k round asks about the last four windows (all anomalous) and five interval
    picks about normal windows: 100 of the 225 labeled points are anomalous, and three times that share let any
    candidate serve. Estimated on the serving scores the rate is about 12 % (tests/core/test_adoption.py works the
    same case by hand), so a candidate flagging half the pool has its threshold raised to the limit and one flagging 6 %
    keeps its own — even when the candidate scores every window alike, which would put its own estimate at the labels'
    44 %."""
    window, n = 25, 2_000
    starts = [1_975, 1_950, 1_925, 1_900, 0, 400, 800, 1_200, 1_600]
    newest = [
        (Query(s, s, s + window, "top_k", rank, float(s)), [LabeledRange(s, s + window, int(s >= 1_900))])
        for rank, s in enumerate(starts)
    ]
    state = PoolState([SeriesPool("s", n, n)], window=window, budget=20, labels=[[r for _, rs in newest for r in rs]])
    state.answers = len(newest)
    serving = np.arange(n - window + 1, dtype=np.float64)

    class InSample:  # the candidate's figure is in-sample: the guard and the agreement check still apply
        can_hold_out_labels = False

    X_pool = np.zeros((n, 1))

    def verdict(candidate_windows: np.ndarray, flag_share: float, serving_windows=serving):  # type: ignore[no-untyped-def]
        chose = None if serving_windows is None else [serving_windows]
        pool_points = np.arange(n, dtype=np.float64)  # a threshold of n - 0.5 - n * share flags that share
        return validate_candidate(
            AdoptionRule(),
            state,
            newest,
            InSample(),
            X_pool,
            [candidate_windows],
            chose,
            pool_points,
            n - 0.5 - n * flag_share,
        )

    storm = verdict(serving, 0.5)
    assert storm.serve and storm.raised_from == pytest.approx(999.5) and "the limit is" in storm.reason
    assert 0.08 < storm.anomaly_rate < 0.16 and storm.flag_limit < 0.5
    assert storm.flag_share <= storm.flag_limit and storm.threshold > storm.raised_from
    assert verdict(serving, 0.06).raised_from is None
    flat = np.ones(n - window + 1)  # every window alike: estimated on these, the rate would be the labels' 44 %
    assert verdict(flat, 0.5).anomaly_rate == pytest.approx(storm.anomaly_rate)
    first = verdict(flat, 0.5, serving_windows=None)  # nothing serves yet: served, its own scores estimate the rate
    assert first.serve and first.anomaly_rate == pytest.approx(100 / 225)
