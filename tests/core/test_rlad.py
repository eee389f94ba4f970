"""RLAD (seed 000): reward table, environment transitions, pseudo-label rewards, label accounting,
serialization, reproducibility, cancellation, and quality floors on real data slices."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from app.core.detectors.registry import load_detector, make_detector
from app.core.rlad.agent import DQNAgent, DQNConfig, QNetwork
from app.core.rlad.detector import RLADDetector
from app.core.rlad.environment import Rewards, WindowEnv
from app.core.rlad.warmup import select_warmup_windows
from app.core.runtime import Cancelled, Progress
from app.core.windows import LabeledRange, sliding_windows, window_ends
from tests.core.conftest import load_series

try:  # the project's metric when present, else scikit-learn's (same definition)
    from app.core.metrics import pr_auc
except ImportError:  # pragma: no cover
    from sklearn.metrics import average_precision_score as _ap

    def pr_auc(scores: np.ndarray, labels: np.ndarray) -> float:
        return float(_ap(labels, scores))


# Small training budgets keep each round to a few seconds on one core.
FAST = {"episodes": 2, "steps_per_episode": 100, "device": "cpu"}


def spiky_series(n: int = 600, period: int = 150, seed: int = 0) -> np.ndarray:
    """Flat noisy series with a unit spike every ``period`` points, at 100, 250, 400, ... ``(n, 1)``."""
    rng = np.random.default_rng(seed)
    x = 0.1 * rng.standard_normal(n)
    x[100::period] += 5.0
    return x[:, None].astype(np.float32)


def ranges_to_labels(ranges: list[LabeledRange], n: int) -> np.ndarray:
    labels = np.full(n, -1, dtype=np.int8)
    for r in ranges:
        labels[r.start : r.end] = r.value
    return labels


def end_ranges(det: RLADDetector, windows: list[int], y: np.ndarray) -> list[LabeledRange]:
    """The oracle's answer for each window: its end point's ground-truth label (one point per query)."""
    ends = window_ends(len(y), det.window, det.stride)
    return [LabeledRange(int(ends[i]), int(ends[i]) + 1, int(y[ends[i]])) for i in windows]


# -- environment and agent ------------------------------------------------------------------------
def test_reward_table_is_the_papers() -> None:
    r = Rewards()
    assert (r(1, 1), r(0, 0), r(1, 0), r(0, 1)) == (5.0, 1.0, -5.0, -1.0)  # TP, TN, FN, FP
    with pytest.raises(ValueError):
        r(-1, 0)


def test_next_state_is_the_next_window_in_time() -> None:
    x = np.arange(40, dtype=np.float32)[:, None]
    windows = sliding_windows(x, 25)  # 16 windows; window i holds points i..i+24
    labels = np.full(len(windows), -1)
    labels[[3, 4, 15]] = [0, 1, 1]
    env = WindowEnv(windows, labels)
    step = env.step(3, 1)
    assert (step.next_index, step.reward, step.terminated) == (4, -1.0, False)
    np.testing.assert_array_equal(env.state(step.next_index)[:, 0], np.arange(4, 29))  # starts one point later
    last = env.step(15, 1)
    assert last.terminated and last.reward == 5.0
    with pytest.raises(ValueError, match="no label"):
        env.step(5, 0)  # unlabeled windows have no reward

    agent = DQNAgent(1, DQNConfig(batch_size=4), seed=0)
    memory, _ = agent.train(env, episodes=3, steps_per_episode=10, rng=np.random.default_rng(0))
    for k in range(len(memory)):  # every stored s' is the window after s (s itself when terminal)
        i = int(memory.indices[k])
        nxt = i if i == len(windows) - 1 else i + 1
        np.testing.assert_array_equal(memory.next_states[k], windows[nxt])
        assert memory.dones[k] == float(i == len(windows) - 1)


def test_forget_gate_bias_is_one() -> None:
    net = QNetwork(3, 8)
    forget = (net.lstm.bias_ih_l0 + net.lstm.bias_hh_l0)[8:16]
    np.testing.assert_allclose(forget.detach().numpy(), 1.0)


def test_warmup_picks_high_low_and_middle() -> None:
    scores = np.array([0.9, 0.2, 0.51, 0.8, 0.3, 0.45, 0.6])
    assert select_warmup_windows(scores, 2).tolist() == [0, 1, 2, 3, 4, 5]  # high 0,3; low 1,4; middle 2,5


def test_episodes_cover_labeled_windows_across_the_series() -> None:
    labels = np.full(1000, -1)
    labels[::10] = 0  # 100 labeled windows spread over the series
    env = WindowEnv(np.zeros((1000, 5, 1), dtype=np.float32), labels)
    visits = env.episode(np.random.default_rng(0), 20)
    assert len(set(visits.tolist())) == 20 and (labels[visits] == 0).all()
    assert np.all(np.diff(visits) > 0)  # in time order
    assert visits.max() - visits.min() > 500  # not one contiguous stretch of 20 labeled windows (190 points)
    np.testing.assert_array_equal(env.episode(np.random.default_rng(0), 500), env.labeled)  # fewer than asked: all


def test_warmup_score_is_a_standardized_side_feature_of_every_state() -> None:
    x = spiky_series()
    det = RLADDetector(**FAST).fit(x)
    feats = det._features(x)
    assert feats.shape == (det.n_windows(len(x)), 1)
    np.testing.assert_allclose([feats.mean(), feats.std()], [0.0, 1.0], atol=1e-5)  # standardized on the fit data
    assert int(np.argmax(feats[:, 0])) == int(np.argmax(det.iforest_.window_scores(x)))  # it is the forest's score
    env = det.training_env(x, np.full(len(x), -1, dtype=np.int8))
    assert env.n_features == 1 and det.agent_.q_network.head.in_features == det.hidden_size + 1
    plain = RLADDetector(warmup_feature=False, **FAST).fit(x)
    assert plain._features(x) is None and plain.agent_.q_network.head.in_features == plain.hidden_size

    truth = np.zeros(len(x), dtype=int)
    truth[100::150] = 1
    ranges = end_ranges(det, det.initial_queries(x).tolist(), truth)
    memory, _ = det.agent_.train(
        det.training_env(x, ranges_to_labels(ranges, len(x))),
        episodes=1,
        steps_per_episode=50,
        rng=np.random.default_rng(0),
    )
    for k in range(len(memory)):  # each transition carries its own window's feature and the next window's
        i = int(memory.indices[k])
        np.testing.assert_allclose(memory.features[k], feats[i])
        np.testing.assert_allclose(memory.next_features[k], feats[min(i + 1, len(feats) - 1)])


def test_each_round_trains_a_fresh_agent_unless_warm_start() -> None:
    x = spiky_series()
    truth = np.zeros(len(x), dtype=int)
    truth[100::150] = 1
    steps_per_round = 2 * 100  # FAST: 2 episodes of 100 steps, fewer when fewer windows are labeled
    for warm_start in (False, True):
        det = RLADDetector(warm_start=warm_start, **FAST).fit(x)
        ranges = end_ranges(det, det.initial_queries(x).tolist() + list(range(0, 500, 3)), truth)
        det.feedback(x, ranges)
        first = det.agent_.steps_done
        det.feedback(x, ranges)
        assert 0 < first <= steps_per_round
        assert det.agent_.steps_done == (2 * first if warm_start else first)


# -- the gate: the agent against its warm-up forest ------------------------------------------------------------
def spikes_and_dips(n: int = 1500) -> tuple[np.ndarray, np.ndarray]:
    """Routine +5 spikes every 150 points (normal: the forest ranks them first) and short -1 dips between them
    (the anomalies, which the forest ranks low). ``(x (n, 1), truth (n,))``."""
    rng = np.random.default_rng(0)
    x = 0.1 * rng.standard_normal(n)
    x[100::150] += 5.0
    truth = np.zeros(n, dtype=int)
    for d in range(175, n, 150):
        x[d : d + 5] -= 1.0
        truth[d : d + 5] = 1
    return x[:, None].astype(np.float32), truth


GATE = {"episodes": 3, "steps_per_episode": 200, "device": "cpu"}


def test_the_agent_serves_when_held_out_answers_show_it_ranks_better_than_the_forest() -> None:
    x, truth = spikes_and_dips()
    det = RLADDetector(**GATE).fit(x)
    forest = det.window_scores(x)
    folds: list[np.ndarray] = []
    train_agent = det._train_agent

    def recording(x_, env, true_labeled, progress, fresh=False):  # type: ignore[no-untyped-def]
        if fresh:
            folds.append(np.flatnonzero(true_labeled))
        return train_agent(x_, env, true_labeled, progress, fresh)

    det._train_agent = recording  # type: ignore[method-assign]
    spikes = [p - 24 + k for p in range(100, 1500, 150) for k in (0, 5, 10, 20)]
    dips = [d + 4 - 24 + k for d in range(175, 1500, 150) for k in (0, 5, 10, 20)]
    asked = sorted(set(spikes + dips + det.initial_queries(x).tolist()))
    det.feedback(x, end_ranges(det, asked, truth))
    gate = det.last_round_["gate"]
    # the answers call the forest's favourite windows normal: agents that did not see an answer still rank it better
    assert not gate["forest_serves"] and gate["agent_figure"] > gate["forest_figure"] + gate["needed_gain"], gate
    assert not det.gated_ and not np.array_equal(det.window_scores(x), forest)
    # each fold's agent learned from every answer but its own fold's; the folds cover every answer once
    labeled = set(asked)
    held = [labeled - set(f.tolist()) for f in folds]
    assert len(folds) == gate["folds"] == 3
    assert all(h and set(f.tolist()) < labeled for h, f in zip(held, folds, strict=True))
    assert sorted(w for h in held for w in h) == sorted(labeled)


def test_answers_that_teach_nothing_keep_the_forest_serving() -> None:
    x, _ = spikes_and_dips()
    det = RLADDetector(**GATE).fit(x)
    forest = det.window_scores(x)
    rng = np.random.default_rng(3)
    coin = rng.integers(0, 2, len(x))  # labels unrelated to the data
    det.feedback(x, end_ranges(det, sorted(rng.choice(det.n_windows(len(x)), 60, replace=False).tolist()), coin))
    gate = det.last_round_["gate"]
    assert det.trained_ and gate["forest_serves"] and det.gated_, gate
    np.testing.assert_array_equal(det.window_scores(x), forest)  # served: exactly the warm-up forest's scores
    restored = load_detector(det.to_bytes())
    np.testing.assert_array_equal(restored.window_scores(x), forest)  # and so after a round trip
    ungated = RLADDetector(**GATE, agent_gate=False).fit(x)
    ungated.feedback(x, end_ranges(ungated, sorted(rng.choice(ungated.n_windows(len(x)), 60, replace=False)), coin))
    assert "gate" not in ungated.last_round_ and not np.array_equal(ungated.window_scores(x), forest)


# -- pseudo-labels --------------------------------------------------------------------------------
def test_pseudo_labelled_window_is_rewarded_by_its_pseudo_label_only() -> None:
    x = spiky_series()  # spikes at 100, 250, 400, 550
    truth = np.zeros(len(x), dtype=int)
    truth[[100, 250, 400]] = 1  # the ground truth calls the spike at 550 normal: it disagrees below
    det = RLADDetector(n_pseudo=40, seed=0, **FAST).fit(x)
    ends = window_ends(len(x), 25)
    spike_windows = [int(np.flatnonzero(ends == p)[0]) for p in (100, 250, 400, 550)]
    given = spike_windows[:2] + list(range(0, len(ends), 15))  # two spikes and a grid of normals
    point_labels = np.full(len(x), -1, dtype=np.int8)
    for r in end_ranges(det, given, truth):
        point_labels[r.start] = r.value
    env = det.training_env(x, point_labels)
    b = spike_windows[3]  # never given; its ground truth is 0
    assert truth[ends[b]] == 0 and env.pseudo[b] and env.labels[b] == 1
    assert env.step(b, 1).reward == 5.0 and env.step(b, 0).reward == -5.0  # pseudo-label 1, not truth 0
    assert not env.pseudo[given].any()  # true labels are never overwritten

    memory, _ = det.agent_.train(env, episodes=1, steps_per_episode=400, rng=np.random.default_rng(0))
    rows = np.flatnonzero(memory.indices[: len(memory)] == b)
    assert len(rows) > 0
    for k in rows:  # the stored reward (hence the TD target) used the pseudo-label
        assert memory.rewards[k] == Rewards()(1, int(memory.actions[k]))


def test_no_propagation_means_no_pseudo_labels() -> None:
    x = spiky_series()
    det = RLADDetector(use_propagation=False, **FAST).fit(x)
    point_labels = np.full(len(x), -1, dtype=np.int8)
    point_labels[[100, 130, 160]] = [1, 0, 0]
    env = det.training_env(x, point_labels)
    assert not env.pseudo.any() and (env.labels != -1).sum() == 3


# -- the detector contract ------------------------------------------------------------------------
def test_label_accounting_and_warmup_queries() -> None:
    x = spiky_series()
    det = make_detector("rlad", **FAST).fit(x)
    assert det.labels_seen_ == 0
    queries = det.initial_queries(x)
    assert len(set(queries.tolist())) == 15 and queries.max() < det.n_windows(len(x))
    ranges = [
        LabeledRange(10, 40, 0),  # ends 24..39 are window ends: 16 windows
        LabeledRange(30, 45, 0),  # overlaps: adds ends 40..44, 5 windows
        LabeledRange(0, 20, 0),  # before the first window's end: no window
        LabeledRange(100, 101, 1),  # one window
    ]
    det.feedback(x, ranges)
    assert det.labels_seen_ == 16 + 5 + 1
    assert det.last_round_["labels"] == det.labels_seen_


def test_scores_before_and_after_feedback() -> None:
    x = spiky_series()
    det = RLADDetector(**FAST).fit(x)
    before, before_windows = det.score(x), det.window_scores(x)
    assert before.shape == (len(x),) and np.isfinite(before).all()
    np.testing.assert_array_equal(before[:24], before[24])  # first window - 1 points take the first window's
    spike_windows = {p - 24 + k for p in (100, 250, 400, 550) for k in range(25)}  # windows holding a spike
    assert int(np.argmax(det.window_scores(x))) in spike_windows  # the iForest fallback finds a spike
    warmup = det.initial_queries(x).tolist()
    det.feedback(x, end_ranges(det, warmup, np.zeros(len(x), dtype=int)))  # only normals labeled
    assert not det.trained_ and det.labels_seen_ == len(warmup)  # counted, but nothing to learn q1 from
    np.testing.assert_array_equal(det.score(x), before)  # the forest's ranking is kept
    truth = np.zeros(len(x), dtype=int)
    truth[100::150] = 1
    det.feedback(x, end_ranges(det, warmup + [100 - 24], truth))  # the window ending on the first spike
    after = det.window_scores(x)
    agent = det._agent_window_scores(x)
    # the margin is the trained agent's uncertainty, also while the gate keeps the forest's scores serving
    np.testing.assert_allclose(det.margins(x), np.abs(agent))
    np.testing.assert_array_equal(det.margins(x, window_scores=after), det.margins(x))  # no second pass needed
    assert det.trained_ and np.isfinite(after).all()
    if det.gated_:
        np.testing.assert_array_equal(after, before_windows)
    else:
        np.testing.assert_array_equal(after, agent)


def test_serialization_round_trip_and_continued_training() -> None:
    x = spiky_series()
    truth = np.zeros(len(x), dtype=int)
    truth[100::150] = 1
    det = RLADDetector(seed=3, **FAST).fit(x)
    untrained = load_detector(det.to_bytes())
    np.testing.assert_array_equal(untrained.score(x), det.score(x))  # iForest fallback survives too
    ranges = end_ranges(det, det.initial_queries(x).tolist(), truth)
    det.feedback(x, ranges)
    copy = load_detector(det.to_bytes())
    np.testing.assert_array_equal(copy.score(x), det.score(x))
    assert copy.labels_seen_ == det.labels_seen_ and copy.get_params() == det.get_params()
    more = ranges + end_ranges(det, [75, 76, 225, 226], truth)
    det.feedback(x, more)
    copy.feedback(x, more)  # optimizer state, step counts and warm-up windows came along
    np.testing.assert_array_equal(copy.score(x), det.score(x))


def test_same_seed_same_result_other_seed_other_result() -> None:
    x = spiky_series()
    truth = np.zeros(len(x), dtype=int)
    truth[100::150] = 1

    def trained(seed: int) -> np.ndarray:
        det = RLADDetector(seed=seed, **FAST).fit(x)
        det.feedback(x, end_ranges(det, det.initial_queries(x).tolist(), truth))
        return det.window_scores(x)

    np.testing.assert_array_equal(trained(0), trained(0))
    assert not np.array_equal(trained(0), trained(1))


def test_progress_per_episode_and_cancel_restores_weights() -> None:
    x = spiky_series()
    truth = np.zeros(len(x), dtype=int)
    truth[100::150] = 1
    det = RLADDetector(episodes=3, steps_per_episode=40, device="cpu").fit(x)
    ranges = end_ranges(det, det.initial_queries(x).tolist(), truth)
    seen: list[Progress] = []
    det.feedback(x, ranges, progress=seen.append)
    episodes = [p for p in seen if p.phase == "rlad"]
    assert [p.step for p in episodes] == [1, 2, 3] and episodes[-1].fraction == 1.0
    assert all(p.reward is not None and p.loss is not None for p in episodes)

    before = det.window_scores(x)

    def cancel_at_second(p: Progress) -> None:
        if p.phase == "rlad" and p.step == 2:
            raise Cancelled

    with pytest.raises(Cancelled):
        det.feedback(x, ranges, progress=cancel_at_second)
    np.testing.assert_array_equal(det.window_scores(x), before)

    warm = RLADDetector(episodes=3, steps_per_episode=40, device="cpu", warm_start=True).fit(x)
    warm.feedback(x, ranges)
    before = warm.window_scores(x)
    with pytest.raises(Cancelled):  # trained in place, so the snapshot must put the weights back
        warm.feedback(x, ranges, progress=cancel_at_second)
    np.testing.assert_array_equal(warm.window_scores(x), before)


def test_multivariate_series() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 3)).astype(np.float32)
    x[200, 1] += 8.0
    det = RLADDetector(**FAST).fit(x)
    truth = np.zeros(300, dtype=int)
    truth[200] = 1
    det.feedback(x, end_ranges(det, det.initial_queries(x).tolist(), truth))
    assert det.score(x).shape == (300,)
    with pytest.raises(ValueError, match="channels"):
        det.score(x[:, :2])


# -- quality on real data (small slices) ----------------------------------------------------------
def active_learning(
    det: RLADDetector,
    x: np.ndarray,
    y: np.ndarray,
    budget: float,
    rounds: int,
    after_warmup: Callable[[RLADDetector], None] | None = None,
) -> tuple[RLADDetector, int]:
    """Warm-up queries, then ``rounds`` margin rounds until ``budget`` of the windows is labeled."""
    ends = window_ends(len(x), det.window)
    asked = set(det.initial_queries(x).tolist())
    det.feedback(x, end_ranges(det, sorted(asked), y))
    if after_warmup is not None:
        after_warmup(det)
    per_round = max(1, (int(budget * len(ends)) - len(asked)) // rounds)
    for _ in range(rounds):
        margin = det.margins(x)
        margin[sorted(asked)] = np.inf
        asked.update(np.argsort(margin, kind="stable")[:per_round].tolist())
        det.feedback(x, end_ranges(det, sorted(asked), y))
    return det, len(asked)


QUALITY = {"episodes": 4, "steps_per_episode": 150, "device": "cpu", "seed": 0}


def chronological_split(x: np.ndarray, y: np.ndarray, fit: float = 0.7) -> tuple[np.ndarray, ...]:
    cut = int(fit * len(x))
    return x[:cut], y[:cut], x[cut:], y[cut:]


@pytest.mark.slow
def test_nab_slice_beats_random_and_labels_do_not_hurt(shared_data) -> None:
    x, y = load_series("nab/realKnownCause__machine_temperature_system_failure.csv.gz")
    x_fit, y_fit, x_eval, y_eval = chronological_split(x, y)
    det = RLADDetector(**QUALITY).fit(x_fit)
    no_feedback = pr_auc(det.score(x_eval), y_eval)  # the warm-up iForest's scores: 0.812
    det, asked = active_learning(det, x_fit, y_fit, budget=0.02, rounds=2)
    assert det.labels_seen_ == asked  # every window the oracle answered, and nothing more
    final = pr_auc(det.score(x_eval), y_eval)
    assert final > 2 * y_eval.mean()  # random PR-AUC is the anomaly rate (0.17 here); measured 0.816
    # Before the warm-up score became a state feature, 2% labels here took the DQN from 0.58 (warm-up labels
    # only) to 0.83 while the forest alone scored 0.81; the labels must at least keep what the forest knew.
    assert final > no_feedback - 0.02


@pytest.mark.slow
def test_kpi_slice_feedback_stays_far_above_random(shared_data) -> None:
    """2% labels (warm-up included, one end point per query) are all learned and leave a detector far above random."""
    x, y = load_series("kpi/a8c06b47-cc41-3738-9110-12df0ee4c721.csv.gz")
    x_fit, y_fit, x_eval, y_eval = chronological_split(x[:8000], y[:8000])
    det = RLADDetector(device="cpu", seed=0).fit(x_fit)  # the default training budget
    det, asked = active_learning(det, x_fit, y_fit, budget=0.02, rounds=2)
    assert det.labels_seen_ == asked
    # Not "beats the forest": with 2026-12-02's packages the labels took PR-AUC from the forest's 0.794 to 0.831
    # (seed 1: 0.770 -> 0.820); with numpy 2.4.6 and torch 2.13.0+cpu to 0.782 (seed 1: 0.770 -> 0.668). The
    # agent's rounds turn on the last bits of the arithmetic (tests/worker/loop_config.py), and on this slice the
    # labels' effect is within that noise, so a seed can promise only a working detector: random is 0.04 here.
    assert pr_auc(det.score(x_eval), y_eval) > 10 * y_eval.mean()


@pytest.mark.slow
def test_smd_slice_beats_random(shared_data) -> None:
    x, y = load_series("smd/machine-1-2.test.csv.gz")
    x_fit, y_fit, x_eval, y_eval = chronological_split(x[13_000:], y[13_000:])
    # The default training budget: with QUALITY's 600 steps the 38-channel agent scored 0.044 here. This slice
    # is a weak spot of RLAD's agent and seed-sensitive (its evaluation part holds two anomalies): with 2% labels
    # the ungated agent scores 0.151 (seed 0) and 0.020 (seed 1) while the forest alone scores 0.519 / 0.598; the
    # agent gate keeps the forest serving on both seeds (BENCHMARKS.md, "RLAD's agent gate").
    det = RLADDetector(device="cpu", seed=0).fit(x_fit)
    det, _ = active_learning(det, x_fit, y_fit, budget=0.02, rounds=2)
    assert pr_auc(det.score(x_eval), y_eval) > 3 * y_eval.mean()  # random 0.029; served 0.519 (the forest, gated)
