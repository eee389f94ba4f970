"""Query strategies: constructed selections, exclusion, min_gap, distinctness, seeds, a real series."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from app.core import query as q
from tests.core.conftest import load_series

# window:           0    1    2    3    4    5    6    7    8    9
TEN = np.array([0.1, 5.0, 0.3, 4.0, 0.2, 3.0, 0.5, 2.0, 0.4, 1.0])
# a cluster of high scores at 1..3 (one anomaly, overlapping windows), then 6 and 9
CLUSTER = np.array([0.0, 9.0, 8.5, 8.0, 0.0, 0.0, 7.0, 0.0, 0.0, 6.0])


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def idx(picks: list[q.QueryPick]) -> list[int]:
    return [p.index for p in picks]


def test_query_pick_is_frozen_with_reason() -> None:
    (pick,) = q.top_k(TEN, np.zeros(10, bool), 1, rng())
    assert pick == q.QueryPick(1, "top_k", 0, 5.0, None, "top-k #1, score 5")
    with pytest.raises(dataclasses.FrozenInstanceError):
        pick.index = 2  # type: ignore[misc]


def test_top_k_order_and_labeled_exclusion() -> None:
    none = np.zeros(10, bool)
    picks = q.top_k(TEN, none, 3, rng())
    assert idx(picks) == [1, 3, 5] and [p.rank for p in picks] == [0, 1, 2]
    assert picks[2].reason == "top-k #3, score 3"
    labeled = none.copy()
    labeled[3] = True
    assert idx(q.top_k(TEN, labeled, 3, rng())) == [1, 5, 7]
    unc = np.linspace(0, 1, 10)
    assert q.top_k(TEN, none, 1, rng(), uncertainty=unc)[0].margin == pytest.approx(unc[1])


def test_min_gap_between_picks_and_optionally_labeled() -> None:
    none = np.zeros(10, bool)
    assert idx(q.top_k(CLUSTER, none, 3, rng())) == [1, 2, 3]  # default 0: only distinct
    assert idx(q.top_k(CLUSTER, none, 3, rng(), min_gap=3)) == [1, 6, 9]  # |9 - 6| = 3 is allowed
    labeled = none.copy()
    labeled[5] = True
    assert idx(q.top_k(CLUSTER, labeled, 3, rng(), min_gap=3)) == [1, 6, 9]  # labeled neighbours allowed
    # gap_to_labeled blocks 6 (next to labeled 5); every other window is within 2 of a pick or of 5
    assert idx(q.top_k(CLUSTER, labeled, 3, rng(), min_gap=3, gap_to_labeled=True)) == [1, 9]


def test_interval_bins_and_per_bin() -> None:
    s = np.arange(20, dtype=float)  # descending order 19..0: bin b holds windows with (19 - i) // 5 == b
    picks = q.interval(s, np.zeros(20, bool), 8, rng(), bins=4, per_bin=2)
    bins = [(19 - p.index) // 5 for p in picks]
    assert bins == [0, 1, 2, 3, 0, 1, 2, 3]  # round-robin, highest-score bin first
    assert picks[1].reason.startswith("interval bin 2/4, score")
    assert len(set(idx(picks))) == 8
    # truncated to n: one from each of the three top bins
    assert [(19 - p.index) // 5 for p in q.interval(s, np.zeros(20, bool), 3, rng(), bins=4, per_bin=2)] == [0, 1, 2]
    # defaults: n bins of one window each
    assert sorted((19 - p.index) // 4 for p in q.interval(s, np.zeros(20, bool), 5, rng())) == [0, 1, 2, 3, 4]


def test_interval_bins_cover_only_unlabeled_windows() -> None:
    s = np.arange(20, dtype=float)
    labeled = np.zeros(20, bool)
    labeled[10:] = True  # the 10 highest are labeled: two bins over 9..0 are {9..5} and {4..0}
    picks = q.interval(s, labeled, 4, rng(1), bins=2, per_bin=2)
    assert [p.index >= 5 for p in picks] == [True, False, True, False]
    assert not labeled[idx(picks)].any()


def test_hybrid_is_top_k_then_interval_without_overlap() -> None:
    s = np.arange(20, dtype=float)
    picks = q.hybrid(s, np.zeros(20, bool), 6, rng(), k=2, bins=2, per_bin=2)
    assert idx(picks)[:2] == [19, 18]
    assert [p.reason.split(" ")[0] for p in picks] == ["top-k", "top-k"] + ["interval"] * 4
    rest = idx(picks)[2:]  # bins over the 18 windows left: {17..9} and {8..0}
    assert [i >= 9 for i in rest] == [True, False, True, False]
    assert all(p.strategy == "hybrid" for p in picks) and [p.rank for p in picks] == list(range(6))
    assert [p.reason for p in q.hybrid(s, np.zeros(20, bool), 5, rng())][:3] == [
        "top-k #1, score 19",
        "top-k #2, score 18",
        "top-k #3, score 17",
    ]  # default k = ceil(5 / 2)


def test_margin_uses_uncertainty_smallest_first() -> None:
    unc = np.array([0.5, 0.1, 0.9, 0.1, 0.05, 2.0, 3.0, 1.0, 0.7, 0.2])
    picks = q.margin(TEN, np.zeros(10, bool), 4, rng(), uncertainty=unc)
    assert idx(picks) == [4, 1, 3, 9]  # tie 0.1 at 1 and 3: higher score (5.0 at 1) first
    assert [p.margin for p in picks] == [0.05, 0.1, 0.1, 0.2]
    assert picks[0].reason == "margin #1, margin 0.05"


def test_uncertainty_from_scores_is_closest_to_threshold() -> None:
    s = np.arange(10, dtype=float)
    none = np.zeros(10, bool)
    for strategy in (q.margin, q.least_confidence, q.entropy):
        picks = strategy(s, none, 4, rng(), threshold=2.5, temperature=1.0)
        assert idx(picks) == [3, 2, 4, 1], strategy.__name__  # |s - 2.5|: 0.5, 0.5, 1.5, 1.5; ties to higher score
    # margin = |p1 - p0| = tanh(|s - tau| / (2 T)) for p = sigmoid((s - tau) / T)
    assert q.margin(s, none, 1, rng(), threshold=2.5, temperature=1.0)[0].margin == pytest.approx(math.tanh(0.25))
    # default threshold is the 99th percentile of the scores: the top window is the least sure
    assert idx(q.margin(s, none, 1, rng())) == [9]


def test_entropy_and_least_confidence_from_proba() -> None:
    s = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    proba = np.array([0.5, 0.9, 0.1, 0.6, 0.99])
    none = np.zeros(5, bool)
    ent = q.entropy(s, none, 5, rng(), proba=proba)
    assert idx(ent) == [0, 3, 2, 1, 4]  # 0.9 and 0.1 tie: higher score (index 2) first
    assert ent[0].reason == "entropy #1, entropy 1.000 bits"
    assert idx(q.least_confidence(s, none, 5, rng(), proba=proba)) == [0, 3, 2, 1, 4]
    with pytest.raises(ValueError, match="proba"):
        q.entropy(s, none, 2, rng(), proba=np.array([0.1, 2.0, 0.3, 0.4, 0.5]))


def test_random_is_reproducible_and_never_duplicates() -> None:
    s = np.zeros(50)
    labeled = np.zeros(50, bool)
    labeled[::2] = True
    a, b = q.random(s, labeled, 10, rng(5)), q.random(s, labeled, 10, rng(5))
    assert a == b
    assert any(idx(q.random(s, labeled, 10, rng(seed))) != idx(a) for seed in range(6, 9))
    everything = q.random(s, labeled, 100, rng(0))  # asks for more than the 25 eligible
    assert sorted(idx(everything)) == list(range(1, 50, 2))


@pytest.mark.parametrize("name", q.available_strategies())
def test_every_strategy_obeys_the_contract(name: str) -> None:
    gen = rng(11)
    s = gen.normal(size=300)
    labeled = gen.random(300) < 0.3
    unc = np.abs(gen.normal(size=300))
    picks = q.select(name, s, labeled, 15, rng(3), min_gap=5, uncertainty=unc)
    chosen = idx(picks)
    assert len(picks) == 15 and len(set(chosen)) == 15
    assert not labeled[chosen].any()
    assert min(abs(i - j) for i in chosen for j in chosen if i != j) >= 5
    assert [p.rank for p in picks] == list(range(15)) and all(p.strategy == name for p in picks)
    assert all(p.score == s[p.index] and p.reason for p in picks)
    assert picks == q.select(name, s, labeled, 15, rng(3), min_gap=5, uncertainty=unc)  # same seed, same batch
    # fewer eligible than asked: all of them, once each
    few = np.ones(300, bool)
    few[[4, 40, 41, 200]] = False
    assert sorted(idx(q.select(name, s, few, 10, rng(0)))) == [4, 40, 41, 200]
    assert q.select(name, s, labeled, 0, rng(0)) == []
    assert q.select(name, s, np.ones(300, bool), 5, rng(0)) == []


def test_select_registry_and_validation() -> None:
    assert q.available_strategies() == (
        "top_k",
        "interval",
        "hybrid",
        "margin",
        "least_confidence",
        "entropy",
        "random",
    )
    none = np.zeros(10, bool)
    assert q.select("top_k", TEN, none, 2, rng()) == q.top_k(TEN, none, 2, rng())
    with pytest.raises(ValueError, match="top_k, interval, hybrid, margin, least_confidence, entropy, random"):
        q.select("coreset", TEN, none, 2, rng())
    with pytest.raises(ValueError, match="unknown query option"):
        q.select("top_k", TEN, none, 2, rng(), n_bins=3)
    with pytest.raises(ValueError, match="bool mask"):
        q.top_k(TEN, np.zeros(9, bool), 2, rng())
    with pytest.raises(ValueError, match="bool mask"):
        q.top_k(TEN, np.array([0, 3, 0, 0, 0, 0, 0, 0, 0, 0]), 2, rng())
    with pytest.raises(ValueError, match="finite"):
        q.top_k(np.array([1.0, np.nan]), np.zeros(2, bool), 1, rng())
    with pytest.raises(ValueError, match="n must be"):
        q.top_k(TEN, none, -1, rng())
    with pytest.raises(ValueError, match="min_gap"):
        q.top_k(TEN, none, 1, rng(), min_gap=-2)
    with pytest.raises(ValueError, match="bins"):
        q.interval(TEN, none, 2, rng(), bins=0)
    with pytest.raises(TypeError, match="Generator"):
        q.random(TEN, none, 2, "seed")  # type: ignore[arg-type]
    assert q.random(TEN, none, 3, 4) == q.random(TEN, none, 3, rng(4))  # an int seed is accepted


def test_real_series_queries_find_anomalies(shared_data: object) -> None:
    from app.core.windows import sliding_windows, window_labels

    x_train, _ = load_series("asd/omi-6.train.csv.gz", limit=3000)
    x, y = load_series("asd/omi-6.test.csv.gz", limit=2500)
    z = np.abs((x - x_train.mean(axis=0)) / (x_train.std(axis=0) + 1e-6)).max(axis=1)
    window = 25
    scores = sliding_windows(z, window).mean(axis=(1, 2))  # a plain z-score window detector
    labels = window_labels(y, window)
    base_rate = labels.mean()  # about 4.7 % of windows are anomalous
    none = np.zeros(len(scores), bool)
    top = q.top_k(scores, none, 20, rng(), min_gap=window)
    assert np.mean(labels[idx(top)]) >= 3 * base_rate  # measured 0.20
    hyb = [np.mean(labels[idx(q.hybrid(scores, none, 20, rng(seed), min_gap=window))]) for seed in range(5)]
    assert np.mean(hyb) >= 2 * base_rate  # measured 0.14
