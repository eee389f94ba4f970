"""The label-efficient peers (app/bench/peers.py) on a small constructed series.

Each peer needs its optional library (``pip install -e '.[peers]'``; deepsad: ``pip install --no-deps
deepod==0.4.1 tqdm``); a peer whose library is missing is skipped with that reason.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from app.bench.peers import PEER_LIBRARIES, PEERS, available_peers, labeled_window_targets
from app.bench.runner import build_detector, detector_names
from app.core.loop import GroundTruthOracle
from app.core.windows import LabeledRange

WINDOW = 25
N = 1200
FIT_END = 600
SUBTLE = (800, 815)  # a flat stretch in a sine: ranked low by every unsupervised peer
SPIKE = (1000, 1010)  # a level shift: ranked high without labels
FAST = {"deepsad": {"epochs": 3}}  # keep the deep peer to a few seconds on one core


def _series() -> tuple[np.ndarray, np.ndarray]:
    """``X (N, 2)`` sine + noise with a subtle and a strong anomaly; ``y (N,)`` their point labels."""
    rng = np.random.default_rng(0)
    t = np.arange(N)
    x = np.stack([np.sin(2 * np.pi * t / 50), np.cos(2 * np.pi * t / 70)], axis=1) + 0.1 * rng.normal(size=(N, 2))
    x[SUBTLE[0] : SUBTLE[1], 0] = 0.0
    x[SPIKE[0] : SPIKE[1]] += 2.0
    y = np.zeros(N, dtype=np.int8)
    y[SUBTLE[0] : SUBTLE[1]] = 1
    y[SPIKE[0] : SPIKE[1]] = 1
    return x, y


def _peer(name: str, seed: int = 0, **kw):
    if name not in available_peers():
        modules, hint = PEER_LIBRARIES[name]
        pytest.skip(f"peer '{name}' needs {' + '.join(modules)}, not installed: {hint}")
    return build_detector(name, seed, "cpu", {**FAST.get(name, {}), **kw})


def _rank(scores: np.ndarray, i: int) -> int:
    """How many windows score strictly above window ``i`` (0 = top)."""
    return int((scores > scores[i]).sum())


# Labels an analyst gives: the subtle anomaly's window, answered as sub-ranges, and two normal windows.
RANGES = [
    LabeledRange(SUBTLE[1] - WINDOW, SUBTLE[0], 0),
    LabeledRange(SUBTLE[0], SUBTLE[1], 1),
    LabeledRange(300, 325, 0),
    LabeledRange(500, 525, 0),
]
SUBTLE_WINDOW = SUBTLE[1] - WINDOW  # the window ending on the subtle anomaly's last point


def test_peers_are_known_to_the_bench() -> None:
    names = detector_names()
    assert {"aadforest", "xgbod", "deepsad"} <= set(names)
    assert set(PEERS) == {"aadforest", "xgbod", "deepsad"}


def test_label_rules_known_answers() -> None:
    ranges = [LabeledRange(10, 15, 0), LabeledRange(15, 20, 1)]
    idx, lab = labeled_window_targets(ranges, 40, 5, 1, "end_point")  # windows ending at points 10..19
    assert idx.tolist() == list(range(6, 16)) and lab.tolist() == [0] * 5 + [1] * 5
    idx, lab = labeled_window_targets(ranges, 40, 5, 1, "covered")  # windows inside [10, 20)
    assert idx.tolist() == list(range(10, 16)) and lab.tolist() == [0] + [1] * 5
    idx, lab = labeled_window_targets(ranges, 40, 5, 2, "end_point")  # stride 2: ends 4, 6, ..., 38
    assert idx.tolist() == [3, 4, 5, 6, 7] and lab.tolist() == [0, 0, 0, 1, 1]
    assert labeled_window_targets([], 40, 5)[0].size == 0
    with pytest.raises(ValueError, match="label_rule"):
        labeled_window_targets(ranges, 40, 5, 1, "middle")


@pytest.mark.parametrize("name", sorted(PEERS))
def test_shapes_feedback_raises_the_labeled_anomaly(name: str) -> None:
    x, _ = _series()
    det = _peer(name).fit(x[:FIT_END])
    w0 = det.window_scores(x)
    assert w0.shape == (N - WINDOW + 1,) and det.score(x).shape == (N,)
    assert np.isfinite(w0).all() and np.isfinite(det.score(x)).all()
    assert not det.supervised_ and det.labeled_windows_ == 0

    det.feedback(x, RANGES)
    w1 = det.window_scores(x)
    assert det.supervised_, "both classes were labeled: the peer must have learned from them"
    # end-point rule: the 25 windows ending in each answered 25-point window; 15 end on the anomaly
    assert det.labeled_windows_ == 3 * WINDOW and det.labeled_anomalies_ == SUBTLE[1] - SUBTLE[0]
    assert not np.allclose(w0, w1), "labels did not change the scores"
    before, after = _rank(w0, SUBTLE_WINDOW), _rank(w1, SUBTLE_WINDOW)
    assert after < before, f"labeled anomaly's rank {before} -> {after}"
    assert after <= 0.02 * len(w1), f"labeled anomaly still ranked {after} of {len(w1)}"

    # feedback depends only on the ranges given: again with none restores the unsupervised scores
    det.feedback(x, [])
    assert not det.supervised_
    np.testing.assert_allclose(det.window_scores(x), w0)


@pytest.mark.parametrize("name", sorted(PEERS))
def test_seed_reproducible_and_y_ignored(name: str) -> None:
    x, y = _series()
    a = _peer(name, seed=3).fit(x[:FIT_END]).feedback(x, RANGES)
    b = _peer(name, seed=3).fit(x[:FIT_END], y[:FIT_END]).feedback(x, RANGES)  # fit's y must not be used
    np.testing.assert_array_equal(a.window_scores(x), b.window_scores(x))
    c = _peer(name, seed=4).fit(x[:FIT_END])
    assert not np.array_equal(_peer(name, seed=3).fit(x[:FIT_END]).window_scores(x), c.window_scores(x))
    # the loop learns on a deep copy of the serving model: the copy must score identically, the original unchanged
    np.testing.assert_array_equal(copy.deepcopy(a).window_scores(x), a.window_scores(x))
    # bench-only: never stored as a model version (the envelope holds no pickles), and says so
    with pytest.raises(NotImplementedError, match="bench-only"):
        a.to_bytes()


@pytest.mark.parametrize("name", sorted(PEERS))
def test_no_evaluation_label_reaches_the_peer(name: str) -> None:
    """Top-k rounds through the oracle over the pool [0, 600): flipping every label of the evaluation
    part [600, N) — the subtle and strong anomalies included — changes nothing the peer sees or scores."""
    x, y = _series()
    y_flipped = y.copy()
    y_flipped[FIT_END:] = 1 - y_flipped[FIT_END:]
    x[300:310] += 3.0  # an obvious anomaly inside the pool, so the rounds find it and labels reach the peer
    y[300:310] = 1
    y_flipped[300:310] = 1
    runs = []
    for labels in (y, y_flipped):
        det = _peer(name).fit(x[:FIT_END])
        oracle = GroundTruthOracle(labels, (0, FIT_END), answer="window")
        ranges: list[LabeledRange] = []
        for _ in range(2):
            w = det.window_scores(x[:FIT_END])
            for i in np.argsort(-w, kind="stable")[:3]:
                ranges += oracle(int(i), int(i) + WINDOW)
            det.feedback(x[:FIT_END], ranges)
        assert det.supervised_ and det.labeled_anomalies_ > 0, "the rounds must have taught the peer something"
        runs.append((ranges, det.window_scores(x)))
        assert all(r.end <= FIT_END for r in ranges)
    assert runs[0][0] == runs[1][0]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
