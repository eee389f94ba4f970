"""The statistical scorers and the label-aware ensemble: known answers, invariants, a real-data floor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import spearmanr

from app.core import persist
from app.core.detectors.ensemble import (
    EnsembleDetector,
    answer_groups,
    ap_gain_se,
    contributions,
    fit_normalizer,
    forward_check,
    learn_weights,
    mostly_anomalous,
    normalize,
)
from app.core.detectors.registry import load_detector, make_detector
from app.core.detectors.statistical import DiffScorer, RollingZScorer, rolling_z
from app.core.metrics import pr_auc
from app.core.windows import LabeledRange, end_point_scores, window_ends

from .conftest import load_series


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The test machine's cores are shared; torch's thread pool only adds spin-wait there."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def series(n: int = 1500, seed: int = 0) -> np.ndarray:
    """Two noisy sines with a one-point spike at 1100 (|Δx| sees it) and a 60-point level shift at 1300."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    x = np.stack([np.sin(t / 9), np.cos(t / 15)], axis=1) + 0.1 * rng.standard_normal((n, 2))
    x[1100, 0] += 3.0
    x[1300:1360, 1] += 1.5
    return x.astype(np.float32)


# -- statistical scorers ---------------------------------------------------------------------------


def test_diff_by_hand() -> None:
    x = np.array([[0.0, 0.0], [1.0, -3.0], [1.0, -1.0], [4.0, -1.0]])
    det = DiffScorer(window=2, standardize=False).fit(x)
    np.testing.assert_array_equal(det.score(x), [0.0, 3.0, 2.0, 3.0])
    np.testing.assert_array_equal(det.window_scores(x), [3.0, 2.0, 3.0])  # windows of 2 end at points 1..3


def test_rollingz_by_hand() -> None:
    x = np.array([1.0, 3.0, 5.0, 5.0, 5.0])
    det = RollingZScorer(window=1, history=2, standardize=False).fit(x)
    # t=1: history [1], std 0 -> floor 1e-6; t=2: [1, 3] mean 2 std 1; t=3: [3, 5] mean 4 std 1; t=4: [5, 5] std 0
    np.testing.assert_allclose(det.score(x), [0.0, 2e6, 3.0, 1.0, 0.0])


def test_standardize_makes_channel_units_irrelevant() -> None:
    x = series()
    scaled = x * np.array([1000.0, 0.001], dtype=np.float32)
    for cls in (DiffScorer, RollingZScorer):
        a = cls().fit(x[:800]).score(x)
        b = cls().fit(scaled[:800]).score(scaled)
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_rolling_z_is_precise_on_a_large_offset_with_a_far_outlier() -> None:
    rng = np.random.default_rng(1)
    x = np.cumsum(rng.standard_normal((9000, 1)), axis=0) + 1e6
    x[3000] = 0.0  # a jump of 1e6 inside a block: cumulative sums of squares lose ~1e-4 after it
    got = rolling_z(x, history=50, block=4096)[:, 0]
    h = 50
    view = np.lib.stride_tricks.sliding_window_view(x[:-1, 0], h)  # histories [t - h, t) for t = h..n-1
    direct = np.abs(x[h:, 0] - view.mean(axis=1)) / np.maximum(view.std(axis=1), 1e-6)
    np.testing.assert_allclose(got[h:], direct, rtol=1e-7, atol=1e-8)


# -- normalisation ---------------------------------------------------------------------------------


def test_tail_normalisation_is_monotone_and_keeps_growing_past_the_fit_maximum() -> None:
    rng = np.random.default_rng(0)
    fit = rng.exponential(size=5000)
    norm = fit_normalizer(fit)
    s = np.linspace(-1, 30, 500)
    for kind in ("tail", "rank", "robust"):
        assert np.all(np.diff(normalize(s, norm, kind)) >= 0)
    u = normalize(np.array([np.quantile(fit, 0.9), np.quantile(fit, 0.999), fit.max() + 1, fit.max() + 5]), norm)
    np.testing.assert_allclose(u[:2], [np.log(10), np.log(1000)], rtol=0.05)
    assert u[3] > u[2] > np.log(2 * 5000) - 1e-9  # past the maximum it does not saturate
    # exponential data: the fitted tail slope is about 1 per unit of score
    assert 0.7 < (u[3] - u[2]) / 4 < 1.3
    # ties (|Δx| of a quantised series is often exactly 0) map to one value, the right-continuous CDF
    zeros = fit_normalizer(np.r_[np.zeros(600), rng.random(400)])
    assert normalize(np.array([0.0]), zeros, "rank")[0] == pytest.approx(0.6, abs=0.011)  # grid step 0.01
    # a member that does not extrapolate (a distance grows with any drift) stops at the fit maximum's units
    capped = fit_normalizer(fit, extrapolate=False)
    v = normalize(np.array([np.quantile(fit, 0.999), fit.max(), fit.max() + 1, fit.max() + 50]), capped)
    assert v[0] == pytest.approx(u[1]) and v[1] == v[2] == v[3] == pytest.approx(np.log(2 * 5000))


# -- the ensemble ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fitted() -> tuple[EnsembleDetector, np.ndarray]:
    x = series()
    return EnsembleDetector(seed=0, device="cpu").fit(x[:1000]), x


def test_no_labels_is_the_documented_prior(fitted) -> None:
    det, x = fitted
    Z = det.member_window_scores(x)
    assert det.member_names_ == ["diff", "rollingz", "level", "iforest", "knn"]
    assert Z.shape == (det.n_windows(len(x)), 5)
    ws = det.window_scores(x)
    # the documented prior weights: iForest 4, nearest-window distance 2, rolling z 0.1, the others 1, on the simplex
    np.testing.assert_allclose(det.weights_, np.array([1, 0.1, 1, 4, 2]) / 8.1, rtol=1e-12)
    np.testing.assert_array_equal(det.weights_, det.prior_)
    # the prior: log of the weighted mean of the members' inverse tail probabilities (harmonic-mean p-value)
    np.testing.assert_allclose(ws, logsumexp(Z, axis=1, b=det.prior_), rtol=1e-12, atol=1e-12)
    equal = EnsembleDetector(prior_weights={}, seed=0, device="cpu").fit(x[:1000])  # {}: every member weighs 1
    np.testing.assert_allclose(equal.window_scores(x), logsumexp(Z, axis=1) - np.log(5), rtol=1e-12, atol=1e-12)
    mean = EnsembleDetector(pool="mean")
    mean.__dict__.update({k: v for k, v in vars(det).items() if k.endswith("_") and k != "pool_"}, pool_="mean")
    np.testing.assert_allclose(mean.window_scores(x), Z @ det.prior_, rtol=1e-12)
    # the members' own normalised window scores: the spike and the shift rank at the top
    top = window_ends(len(x), det.window)[np.argsort(-ws)[:40]]
    assert ((top >= 1100) & (top < 1100 + det.window)).any() and ((top >= 1300) & (top < 1385)).any()


def _labels_favouring(det: EnsembleDetector, x: np.ndarray, j: int, n_pos: int = 6, n_neg: int = 12):
    """Ranges marking as anomalous windows where member ``j`` stands out, and as normal windows where the
    others rank higher than ``j`` does (known answer: the combination should move towards ``j``)."""
    Z = det.member_window_scores(x)
    others = np.delete(Z, j, axis=1).mean(axis=1)
    ends = window_ends(len(x), det.window)
    lead = Z[:, j] - others
    picked_pos, picked_neg = [], []
    for i in np.argsort(-lead):  # half of them in each half of the series (the forward check needs both)
        same_half = sum((e < len(x) // 2) == (ends[i] < len(x) // 2) for e in picked_pos)
        if same_half < n_pos // 2 and all(abs(ends[i] - e) > 30 for e in picked_pos):
            picked_pos.append(ends[i])
    for i in np.argsort(lead):  # the others rank it high, j does not
        if len(picked_neg) < n_neg and all(abs(ends[i] - e) > 30 for e in picked_pos + picked_neg):
            picked_neg.append(ends[i])
    ranges = [LabeledRange(int(e) - 2, int(e) + 1, 1) for e in picked_pos]
    ranges += [LabeledRange(int(e) - 2, int(e) + 1, 0) for e in picked_neg]
    return ranges


@pytest.mark.parametrize("combine", ["logistic", "aad"])
@pytest.mark.parametrize("j", [0, 3])
def test_labels_where_one_member_ranks_high_move_the_weights_to_it(fitted, combine: str, j: int) -> None:
    base, x = fitted
    det = load_detector(base.to_bytes())
    det.combine, det.select = combine, "off"  # the weights alone (the choice of combination: the next test)
    det.feedback(x, _labels_favouring(det, x, j))  # 18 answers' end points: ~2 answers' worth, default strength
    assert det.weights_[j] > det.prior_[j]  # towards j, but few answers against the prior do not overturn it
    assert det.weights_.sum() == pytest.approx(1.0) and (det.weights_ >= 0).all()
    weak = load_detector(base.to_bytes())
    weak.combine, weak.strength, weak.select = combine, 0.01, "off"  # a weak prior: the same labels move it decisively
    weak.feedback(x, _labels_favouring(det, x, j))
    assert weak.weights_[j] > max(0.5, det.weights_[j]) and np.argmax(weak.weights_) == j
    # the same labels, held out, leave the prior; given as training labels, the learned scores
    prior = base.window_scores(x)
    ranges = _labels_favouring(det, x, j)
    np.testing.assert_allclose(det.validation_window_scores(x, ranges, ranges), prior)
    np.testing.assert_allclose(det.validation_window_scores(x, ranges, []), det.window_scores(x))


@pytest.mark.parametrize("j", [0, 3])
def test_agreeing_answers_choose_the_member_the_pooled_score_cannot_follow(fitted, j: int) -> None:
    base, x = fitted
    ranges = _labels_favouring(base, x, j, n_pos=10, n_neg=20)  # anomalous where member j leads, normal elsewhere
    # the combination is this test's subject: no false-alarm exemplars lower the windows answered normal (step 7)
    fixed = load_detector(base.to_bytes())
    fixed.select, fixed.suppress = "off", 0.0
    fixed.feedback(x, ranges)
    chosen = load_detector(base.to_bytes())
    chosen.select, chosen.suppress = "members", 0.0
    chosen.feedback(x, ranges)
    name = f"{chosen.member_names_[j]} alone"
    assert fixed.combination_ == "learned hmp" and chosen.combination_ == name and chosen.pool_ == "mean"
    np.testing.assert_array_equal(chosen.window_scores(x), chosen.member_window_scores(x)[:, j])
    # what the choice buys: the labeled windows ranked better than the hmp weights could (by more than the margin)
    idx, y = chosen._labeled_windows(len(x), ranges)
    assert pr_auc(chosen.window_scores(x)[idx], y) > pr_auc(fixed.window_scores(x)[idx], y) + chosen.select_margin
    notes, clause = chosen.training_notes()
    assert notes["ensemble_combination"]["chosen"] == name and name in clause and "learned hmp" in clause
    assert (chosen.window_drivers(x) == j).all()  # the member alone drives every window
    again = load_detector(chosen.to_bytes())
    assert again.combination_ == name
    np.testing.assert_array_equal(again.window_scores(x), chosen.window_scores(x))
    # held out, the same labels choose nothing: the validation scores are the prior's
    np.testing.assert_allclose(chosen.validation_window_scores(x, ranges, ranges), base.window_scores(x))
    # one anomalous answer is not enough to choose, however well one member ranks it, nor to learn weights from
    # (the forward check needs two of each class before and after the middle answer)
    one = [r for r in ranges if r.value == 0] + [next(r for r in ranges if r.value == 1)]
    few = load_detector(base.to_bytes())
    few.select = "members"
    few.feedback(x, one)
    assert few.combination_ == "prior" and few.selection_ == {} and few.forward_ == {}
    np.testing.assert_array_equal(few.weights_, few.prior_)
    assert "until the answers, split in series order, hold 2 of each class on each side" in few.training_notes()[1]


@pytest.mark.parametrize("later_follow", ["member 0", "member 1"])
def test_the_forward_check_refuses_weights_the_later_answers_contradict(later_follow: str) -> None:
    """Earlier answers are anomalous where member 0 scores high; the later ones agree (member 0) or show anomalies
    only member 1 sees, member 0 scoring the later normal windows high. Known answer: weights learned from the
    earlier answers rank the later ones at least as well as the prior in the first case, worse in the second."""
    rng = np.random.default_rng(0)
    Z = rng.exponential(size=(400, 2))
    idx = np.arange(0, 400, 10)  # 40 labeled windows, each one answer (window 1, stride 1)
    labels = (np.arange(len(idx)) % 4 == 0).astype(np.int8)
    later = idx >= 200
    Z[idx[~later & (labels == 1)], 0] += 4.0
    if later_follow == "member 0":
        Z[idx[later & (labels == 1)], 0] += 4.0
    else:
        Z[idx[later & (labels == 1)], 1] += 4.0
        Z[idx[later & (labels == 0)][::2], 0] += 4.0
    prior = np.array([0.5, 0.5])

    def learn(mask: np.ndarray) -> np.ndarray:
        return learn_weights(Z[idx[mask]], labels[mask], np.ones(int(mask.sum())), strength=0.3, prior=prior)[0]

    figures = forward_check(Z, idx, labels, answer_groups(idx, 1, 1), learn, prior, "hmp")
    assert figures["earlier_answers"] == figures["later_answers"] == 20
    if later_follow == "member 0":
        assert figures["learned_ap"] >= figures["prior_ap"]
    else:
        assert figures["learned_ap"] < figures["prior_ap"] - 0.1
    # anomalies only in the later half (answers 20, 24, ..., 36): the split moves to the nearest answer that leaves two
    # on each side, the 25th (a split at the middle answer would find none earlier and check nothing)
    late_only = np.where(later, labels, 0).astype(np.int8)
    moved = forward_check(Z, idx, late_only, answer_groups(idx, 1, 1), learn, prior, "hmp")
    assert moved["earlier_answers"] == 25 and moved["later_answers"] == 15
    # three anomalous answers in all: no split leaves two on each side, nothing to check, {}
    three = np.zeros_like(labels)
    three[np.flatnonzero(labels)[:3]] = 1
    assert forward_check(Z, idx, three, answer_groups(idx, 1, 1), learn, prior, "hmp") == {}


def test_the_gain_standard_error_shrinks_with_more_answers() -> None:
    rng = np.random.default_rng(0)

    def se(n_answers: int) -> float:
        groups = np.repeat(np.arange(n_answers), 10)  # 10 labeled windows per answer, one answer in 4 anomalous
        y = (groups % 4 == 0).astype(np.int8)
        better, worse = y + rng.random(len(y)), 0.5 * y + rng.random(len(y))
        assert ap_gain_se(worse, worse, y, groups, np.random.default_rng(1)) == 0.0  # no gain, no noise
        return ap_gain_se(better, worse, y, groups, np.random.default_rng(1))

    assert 0 < se(160) < se(10) / 2  # 16 times the answers: about a quarter of the noise


def test_answer_groups_count_answers_not_windows() -> None:
    # window 3, stride 1: an answered window labels 3 consecutive end points; 5 in a row are two answers
    idx = np.array([3, 4, 5, 6, 7, 20, 21, 40, 41, 42, 43, 44, 45, 46])
    np.testing.assert_array_equal(answer_groups(idx, 3, 1), [0, 0, 0, 1, 1, 2, 2, 3, 3, 3, 4, 4, 4, 5])


@pytest.mark.parametrize("combine", ["logistic", "aad"])
def test_one_contradicting_label_does_not_invert_the_ranking(fitted, combine: str) -> None:
    base, x = fitted
    prior = base.window_scores(x)
    ends = window_ends(len(x), base.window)
    det = load_detector(base.to_bytes())
    det.combine = combine
    top, low = int(np.argmax(prior)), int(np.argmin(prior))
    # One answer against the prior: its top window is normal, its lowest one anomalous (both labels of one
    # window each, the most a single answer can contradict).
    det.feedback(
        x,
        [
            LabeledRange(int(ends[top]) - det.window + 1, int(ends[top]) + 1, 0),
            LabeledRange(int(ends[low]) - det.window + 1, int(ends[low]) + 1, 1),
        ],
    )
    assert spearmanr(prior, det.window_scores(x)).statistic > 0.9
    if combine == "logistic":  # the default; AAD's hinge reacts more (iforest's weight 0.25 -> 0.55 here)
        assert np.abs(det.weights_ - det.prior_).max() < 0.15


def test_learn_weights_known_answer_and_prior_without_both_classes() -> None:
    rng = np.random.default_rng(0)
    Z = rng.random((400, 3))
    y = Z[:, 1] > 0.9  # member 1 alone separates the classes
    w, info = learn_weights(Z, y, np.full(400, 0.2), strength=0.1)
    assert np.argmax(w) == 1 and w[1] > 0.8 and info["n_pos"] == y.sum()
    # few labels (~2 answers' worth): close to the prior
    w_few, _ = learn_weights(Z[:10], y[:10] | (np.arange(10) == 0), np.full(10, 0.2), strength=3.0)
    assert np.abs(w_few - 1 / 3).max() < 0.1
    # only normal labels: the logistic model has nothing to separate and keeps the prior; AAD still learns
    w_neg, _ = learn_weights(Z[~y], np.zeros((~y).sum()), np.ones((~y).sum()))
    np.testing.assert_array_equal(w_neg, np.full(3, 1 / 3))
    w_aad, _ = learn_weights(
        Z[:50][~y[:50]], np.zeros((~y[:50]).sum()), np.ones((~y[:50]).sum()), combine="aad", Z_all=Z
    )
    assert not np.allclose(w_aad, 1 / 3)


def test_roundtrip_seed_and_drivers(fitted) -> None:
    base, x = fitted
    det = load_detector(base.to_bytes())
    det.feedback(x, _labels_favouring(det, x, 0))
    again = load_detector(det.to_bytes())
    assert type(again) is EnsembleDetector and again.get_params() == det.get_params()
    np.testing.assert_array_equal(again.weights_, det.weights_)
    np.testing.assert_array_equal(again.score(x), det.score(x))
    same = EnsembleDetector(seed=0, device="cpu").fit(x[:1000])
    np.testing.assert_array_equal(same.score(x), base.score(x))
    other = EnsembleDetector(seed=1, device="cpu").fit(x[:1000])
    assert not np.array_equal(other.score(x), base.score(x))  # the forest is seeded
    drivers = det.window_drivers(x, det.window_scores(x))
    Z = det.member_window_scores(x)
    np.testing.assert_array_equal(drivers, np.argmax(Z + np.log(det.weights_), axis=1))
    np.testing.assert_array_equal(contributions(Z, det.weights_, "mean"), Z * det.weights_)
    spike_window = 1100  # the window ending on the spike: only |Δx| (and the z-score) see a 3-sigma jump there
    assert det.member_names_[drivers[spike_window - det.window + 1]] in ("diff", "rollingz")


def test_deep_member_feedback_roundtrip_and_validation() -> None:
    x = series()[:1200]
    det = EnsembleDetector(
        seed=0,
        device="cpu",
        members=("diff", "iforest", "lstm_ae"),
        member_params={
            "lstm_ae": {"epochs": 1, "max_train_windows": 64, "feedback_epochs": 1, "feedback_max_windows": 32}
        },
    ).fit(x[:600])
    deep = det.members_[2]
    assert deep.window == det.window and deep.device == "cpu" and deep.seed == 0
    before = det.member_window_scores(x)[:, 2].copy()
    ranges = [LabeledRange(1100 - 500, 1100 - 480, 0), LabeledRange(700, 720, 1)]
    det.feedback(x[:800], ranges)
    assert deep.feedback_rounds_ == 1 and not np.array_equal(det.member_window_scores(x)[:, 2], before)
    again = load_detector(det.to_bytes())
    np.testing.assert_array_equal(again.score(x), det.score(x))
    with pytest.raises(ValueError, match="members take the ensemble's"):
        EnsembleDetector(member_params={"iforest": {"window": 10}}).fit(x)
    for bad in ({"attract": "x"}, {"suppress": None}, {"attract": -1.0}, {"tau": float("nan")}):
        with pytest.raises(ValueError, match=f"{next(iter(bad))} must be a number"):
            EnsembleDetector(**bad)  # refused when built, not in the first training job
    with pytest.raises(ValueError, match="not a member"):
        EnsembleDetector(member_params={"usad": {}}).fit(x)


def test_prior_on_a_real_slice(shared_data) -> None:
    """SMD machine-1-2 (as the detector floors): three incidents in 3,000 test points, 4.7 % anomalous."""
    train, _ = load_series("smd/machine-1-2.train.csv.gz", limit=3000)
    test, y = load_series("smd/machine-1-2.test.csv.gz", limit=6500)
    test, y = test[3500:], y[3500:]
    det = make_detector("ensemble", seed=0, device="cpu").fit(train)
    members = [pr_auc(np.r_[np.full(det.window - 1, z[0]), z], y) for z in det.member_window_scores(test).T]
    ours = pr_auc(det.score(test), y)
    assert ours > 5 * y.mean()  # measured 0.43 against a rate of 0.047
    assert ours >= 0.9 * max(members)


# -- false alarms answered normal (step 7) ------------------------------------------------------------


BUMPS = (400, 800, 1200, 1600, 2000, 2400, 2800)
"""Centres of a recurring bump on channel 0: a normal pattern of the series that the members find unusual."""
SQUARES = (1000, 1400, 2200, 2600)
"""Starts of a square dip on channel 1: the anomalies."""


def bumpy_series(n: int = 3000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    # periods of 50 and 100 points: every bump (and every dip) lies on the same background, as a recurring pattern does
    x = np.stack([np.sin(2 * np.pi * t / 50), np.cos(2 * np.pi * t / 100)], axis=1) + 0.1 * rng.standard_normal((n, 2))
    for c in BUMPS:
        x[:, 0] += 3.0 * np.exp(-(((t - c) / 4.0) ** 2))
    for s in SQUARES:
        x[s : s + 8, 1] -= 2.0
    return x.astype(np.float32)


def _answer(centre: int, value: int) -> LabeledRange:
    return LabeledRange(centre - 12, centre + 13, value)


def _peak(det: EnsembleDetector, x: np.ndarray, ws: np.ndarray, centre: int) -> float:
    """The highest window score among the windows ending on the points an answer at ``centre`` covers."""
    ends = window_ends(len(x), det.window)
    return float(ws[(ends >= centre - 12) & (ends < centre + 13)].max())


@pytest.fixture(scope="module")
def bumpy() -> tuple[EnsembleDetector, np.ndarray]:
    x = bumpy_series()
    return EnsembleDetector(seed=0, device="cpu").fit(x[:1000]), x


def test_windows_shaped_like_answered_false_alarms_score_lower(bumpy) -> None:
    """Bumps answered normal (two before the middle answer, two after) lower every other bump; the square dips,
    unlike any answered normal, keep their scores; the later answers confirmed it, so it serves."""
    base, x = bumpy
    before = base.window_scores(x)
    det = load_detector(base.to_bytes())
    ranges = [_answer(400, 0), _answer(800, 0), _answer(1004, 1), _answer(1404, 1), _answer(2000, 0), _answer(2204, 1)]
    ranges.append(_answer(2400, 0))
    det.feedback(x, ranges)
    np.testing.assert_array_equal(det.weights_, det.prior_)  # too few answers to move the weights: step 7 alone
    after = det.window_scores(x)
    assert len(det.suppression_["exemplars"]) > 0
    check = det.suppression_check_
    assert check["earlier_answers"] == 3 and check["later_answers"] == 4
    assert check["suppressed_ap"] >= check["plain_ap"]
    # on one background the level adds little (average precision 0.853 against 0.849), not two standard errors
    assert check["level_ap"] > check["shape_ap"] and det.suppression_["view"] == "shape"
    # bumps nobody answered: lowered (a recurring pattern lies about the typical nearest-window distance from its
    # answered twin, where the penalty is exp(-1) of the strength; here 2.4-3.0 of 10)
    for c in (1200, 1600, 2800):
        assert _peak(det, x, after, c) < _peak(det, x, before, c) - 0.15 * det.suppress
    assert _peak(det, x, after, 2604) == pytest.approx(_peak(det, x, before, 2604), abs=0.05)  # the unanswered dip
    # an answer does not lower itself: its own windows lose what the other answers' exemplars take from them, as a
    # recurrence does, not the whole strength their distance 0 to themselves would give (a threshold chosen on the
    # labeled points would otherwise see every false alarm far below the anomalies)
    penalty = det._suppression(x, det.suppression_)
    ends = window_ends(len(x), det.window)
    for c in (400, 800, 2000, 2400):
        own = penalty[(ends >= c - 12) & (ends < c + 13)]
        assert 0.15 * det.suppress < own.max() < 0.5 * det.suppress
    notes, clause = det.training_notes()
    assert notes["ensemble_combination"]["false_alarm_exemplars"] == len(det.suppression_["exemplars"])
    assert "highest-scoring windows inside answers 'normal' score up to 10 lower" in clause
    again = load_detector(det.to_bytes())
    np.testing.assert_array_equal(again.window_scores(x), after)
    # held out, the same answers teach nothing: the validation scores are the unanswered version's
    np.testing.assert_allclose(det.validation_window_scores(x, ranges, ranges), before)
    off = load_detector(base.to_bytes())
    off.suppress = 0.0
    off.feedback(x, ranges)
    np.testing.assert_array_equal(off.window_scores(x), before)


def test_false_alarms_the_later_answers_contradict_are_not_used(bumpy) -> None:
    """Bumps answered normal early, anomalous later (and dips answered normal): lowering bumps would rank the later
    answers worse, so nothing is lowered; when no split leaves an answer "normal" before it and two answers of each
    class after it, nothing is checked."""
    base, x = bumpy
    det = load_detector(base.to_bytes())
    ranges = [_answer(400, 0), _answer(800, 0), _answer(1200, 1), _answer(1600, 1), _answer(2000, 1)]
    det.feedback(x, [*ranges, _answer(2204, 0), _answer(2604, 0)])
    check = det.suppression_check_
    assert det.suppression_ == {} and check["suppressed_ap"] < check["plain_ap"]
    np.testing.assert_array_equal(det.window_scores(x), base.window_scores(x))
    unchecked = load_detector(base.to_bytes())
    unchecked.feedback(x, [_answer(400, 0), _answer(1004, 1), _answer(1600, 0), _answer(2204, 1)])
    assert unchecked.suppression_ == {} and unchecked.suppression_check_ == {}


def test_the_threshold_is_chosen_as_if_no_answer_had_lowered_anything(bumpy) -> None:
    """With exemplars earned, the scores a version's threshold is chosen on (``threshold_basis``) are the same
    version's without the penalty — what it would score had no answer lowered anything — so the exemplars only take
    alarms away; without exemplars they are the served scores themselves."""
    base, x = bumpy
    ranges = [_answer(400, 0), _answer(800, 0), _answer(1004, 1), _answer(1404, 1), _answer(2000, 0), _answer(2204, 1)]
    ranges.append(_answer(2400, 0))
    det = load_detector(base.to_bytes())
    det.feedback(x, ranges)
    assert det.suppression_
    points = det.score(x)
    basis = det.threshold_basis(x, points)
    off = load_detector(base.to_bytes())
    off.suppress = 0.0
    off.feedback(x, ranges)
    np.testing.assert_allclose(basis, off.score(x))
    assert (basis >= points).all()
    ends = window_ends(len(x), det.window)
    for c in (1200, 2800):  # unanswered bumps: served lower than the basis the threshold is chosen on
        assert (basis - points)[ends[(ends >= c - 12) & (ends < c + 13)]].max() > 0.15 * det.suppress
    no_exemplars = load_detector(base.to_bytes())
    assert no_exemplars.threshold_basis(x, points) is points


LEVEL_BUMPS = (400, 800, 1200, 1600, 2000, 2400, 2800, 3200, 3600)
"""Centres of the recurring normal bump of ``raised_bumps``."""
RAISED = (1300, 1700, 2100, 2500, 2900, 3300, 3700)
"""Centres of the same bump on a plateau 0.8 higher (channel 0, 60 points): the anomalies of ``raised_bumps``."""


def raised_bumps(n: int = 4000, seed: int = 0, plateau: float = 0.8) -> np.ndarray:
    """The background of ``bumpy_series`` with a bump at each of ``LEVEL_BUMPS`` and, at each of ``RAISED``, the same
    bump on a plateau ``plateau`` higher: shaped like the recurring normal bump, at another level."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    x = np.stack([np.sin(2 * np.pi * t / 50), np.cos(2 * np.pi * t / 100)], axis=1) + 0.1 * rng.standard_normal((n, 2))
    for c in LEVEL_BUMPS + RAISED:
        x[:, 0] += 3.0 * np.exp(-(((t - c) / 4.0) ** 2))
    for c in RAISED:
        x[c - 30 : c + 30, 0] += plateau
    return x.astype(np.float32)


def test_false_alarms_that_differ_from_the_anomalies_in_level_alone_are_compared_with_their_level() -> None:
    """Bumps answered normal, the same bumps on a plateau answered anomalous: compared by shape, an exemplar would
    lower the anomalies with the false alarms; the forward check sees that keeping the level ranks the later answers
    clearly better (by more than two standard errors), so the level serves: unanswered normal bumps score lower,
    unanswered raised ones keep their score (the answered anomalies' pull is off by default)."""
    x = raised_bumps()
    base = EnsembleDetector(seed=0, device="cpu").fit(x[:1000])
    before = base.window_scores(x)
    answers = [(400, 0), (800, 0), (1300, 1), (1700, 1), (2000, 0), (2100, 1), (2400, 0), (2500, 1), (2800, 0)]
    ranges = [_answer(c, v) for c, v in [*answers, (3300, 1), (3600, 0)]]
    det = load_detector(base.to_bytes())
    det.feedback(x, ranges)
    check = det.suppression_check_
    assert det.suppression_["view"] == "level"
    assert check["level_ap"] > check["shape_ap"] and check["suppressed_ap"] == check["level_ap"] >= check["plain_ap"]
    after = det.window_scores(x)
    for c in (1200, 1600, 3200):
        assert _peak(det, x, after, c) < _peak(det, x, before, c) - 0.15 * det.suppress
    for c in (2900, 3700):
        assert _peak(det, x, after, c) == pytest.approx(_peak(det, x, before, c), abs=0.05)
    assert det.suppression_["attract"] == 0.0 and "higher" not in det.training_notes()[1]
    assert "like (shape and level) the" in det.training_notes()[1]
    assert det.training_notes()[0]["ensemble_combination"]["false_alarm_view"] == "level"
    np.testing.assert_array_equal(load_detector(det.to_bytes()).window_scores(x), after)
    by_shape = load_detector(base.to_bytes())  # told to compare shapes, unprotected: the raised bumps are lowered too
    by_shape.exemplar_view, by_shape.protect_anomalies = "shape", False
    by_shape.feedback(x, ranges)
    assert by_shape.suppression_["view"] == "shape" and "level_ap" not in by_shape.suppression_check_
    shaped = by_shape.window_scores(x)
    for c in (2900, 3700):
        assert _peak(by_shape, x, shaped, c) < _peak(by_shape, x, before, c) - 0.15 * det.suppress
    assert len(det.suppression_["protectors"]) > 0  # the answered raised bumps, at their level
    assert len(by_shape.suppression_["protectors"]) == 0  # a shape of an anomaly is mostly ordinary series
    # four later answers, unprotected: level's gain is within two standard errors, shape serves (protected shapes
    # cannot lower these bumps either — the raised ones share their shape — so the level gains more)
    few = load_detector(base.to_bytes())
    few.protect_anomalies = False
    few.feedback(x, ranges[:7])
    assert few.suppression_check_["level_ap"] > few.suppression_check_["shape_ap"]
    assert few.suppression_["view"] == "shape"


def test_answered_anomalies_pull_their_likes_up_when_asked_to() -> None:
    """With ``attract`` (off by default), where the level exemplars serve, the unanswered raised bumps — like the
    answered anomalies, unlike the answered false alarms — score higher (without it they keep their score: the test
    above) and the unanswered normal bumps still lower. An answered anomaly is not pulled up by its own answer: kept
    to the protectors of one answer, that answer's windows gain nothing, while an unanswered raised bump, like them,
    gains. The threshold's basis keeps the pull and leaves out the penalty."""
    x = raised_bumps()
    base = EnsembleDetector(seed=0, device="cpu", attract=30.0).fit(x[:1000])
    before = base.window_scores(x)
    answers = [(400, 0), (800, 0), (1300, 1), (1700, 1), (2000, 0), (2100, 1), (2400, 0), (2500, 1), (2800, 0)]
    det = load_detector(base.to_bytes())
    det.feedback(x, [_answer(c, v) for c, v in [*answers, (3300, 1), (3600, 0)]])
    assert det.suppression_["view"] == "level" and det.suppression_["attract"] == det.attract == 30.0
    after = det.window_scores(x)
    for c in (2900, 3700):
        assert _peak(det, x, after, c) > _peak(det, x, before, c) + 0.15 * det.attract
    for c in (1200, 1600, 3200):
        assert _peak(det, x, after, c) < _peak(det, x, before, c) - 0.15 * det.suppress
    notes, verdict = det.training_notes()
    assert notes["ensemble_combination"]["anomaly_pull"] == det.attract
    assert f"than like them up to {det.attract:g} higher" in verdict
    ends = window_ends(len(x), det.window)
    one = dict(det.suppression_)
    mine = np.abs(ends[one["protector_positions"]] - 1300) <= 12
    own = one["protector_positions"][mine]
    one["protectors"], one["protector_positions"] = one["protectors"][mine], own
    one["protector_pulls"] = one["protector_pulls"][mine]
    one["exemplars"], one["positions"] = one["exemplars"][:0], one["positions"][:0]  # the pull alone
    assert len(own) > 5
    np.testing.assert_array_equal(det._suppression(x, one, at=own), 0.0)
    twin = np.flatnonzero(np.abs(ends - 2900) <= 12)
    assert np.max(-det._suppression(x, one, at=twin)) > 0.3 * det.attract
    full = det._suppression(x, det.suppression_)
    points = end_point_scores(det.window_scores(x), len(x), det.window)
    basis = det.threshold_basis(x, points)
    assert np.any(full < 0) and np.any(full > 0)  # some windows pulled up, some lowered
    # a version stored before the pull (no parameter, exemplars without a strength) scores as it did: no pull
    payload = persist.loads(det.to_bytes())
    del payload["params"]["attract"], payload["state"]["suppression_"]["attract"]
    old = load_detector(persist.dumps("ensemble", payload["params"], payload["state"]))
    np.testing.assert_allclose(old.window_scores(x), det.window_scores(x) + np.minimum(full, 0.0))
    np.testing.assert_allclose(basis, end_point_scores(det.window_scores(x) + np.maximum(full, 0.0), len(x), 25))


def test_the_pull_comes_only_from_answered_anomalies_at_an_unusual_level() -> None:
    """``pull_quantile``: an answered-anomalous window pulls its likes up only if its level (largest absolute window
    mean over channels, in fit standard deviations) is at or above that quantile of the series' window levels; the
    others still protect their likes from the false alarms' penalty but lift nothing (NAB marks a wide stretch
    around an anomaly, and those answers at the ordinary level lifted the ordinary series)."""
    x = raised_bumps()
    answers = [(400, 0), (800, 0), (1300, 1), (1700, 1), (2000, 0), (2100, 1), (2400, 0), (2500, 1), (2800, 0)]
    ranges = [_answer(c, v) for c, v in [*answers, (3300, 1), (3600, 0)]]
    pulling, gated = {}, {}
    for q in (0.0, 0.8, 0.99):
        det = EnsembleDetector(seed=0, device="cpu", attract=30.0, pull_quantile=q).fit(x[:1000])
        det.feedback(x, ranges)
        found = det.suppression_
        levels = det._window_levels(x)
        assert levels.shape == (det.n_windows(len(x)),)
        expected = levels[found["protector_positions"]] >= (np.quantile(levels, q) if q else -np.inf)
        np.testing.assert_array_equal(found["protector_pulls"], expected)
        pulling[q], gated[q] = int(found["protector_pulls"].sum()), det
    assert pulling[0.0] == len(gated[0.0].suppression_["protectors"]) > pulling[0.8] > pulling[0.99]
    det, found = gated[0.8], gated[0.8].suppression_  # the default gate
    ends = window_ends(len(x), det.window)
    twin = np.flatnonzero(np.abs(ends - 2900) <= 12)  # an unanswered raised bump
    quiet = dict(found, exemplars=found["exemplars"][:0], positions=found["positions"][:0])
    assert np.max(-det._suppression(x, quiet, at=twin)) > 0.3 * det.attract  # pulled by the few that pull
    quiet["protector_pulls"] = np.zeros_like(found["protector_pulls"])
    np.testing.assert_array_equal(det._suppression(x, quiet, at=twin), 0.0)  # none pulls: nothing is lifted


def test_answered_anomalies_keep_their_likes_from_being_lowered_with_the_false_alarms() -> None:
    """The raised bumps only a little higher (0.2) than the normal ones: level exemplars of the normal bumps lower
    the unanswered raised bumps too, unless the answered raised bumps protect their likes (``protect_anomalies``,
    the default): then those keep their score while the unanswered normal bumps are still lowered."""
    x = raised_bumps(plateau=0.2)
    base = EnsembleDetector(seed=0, device="cpu", exemplar_view="level").fit(x[:1000])
    before = base.window_scores(x)
    answers = [(400, 0), (800, 0), (1300, 1), (1700, 1), (2000, 0), (2100, 1), (2400, 0), (2500, 1), (2800, 0)]
    ranges = [_answer(c, v) for c, v in [*answers, (3300, 1), (3600, 0)]]
    lowered, served = {}, {}
    for protect in (True, False):
        det = load_detector(base.to_bytes())
        det.protect_anomalies = protect
        det.feedback(x, ranges)
        assert det.suppression_["view"] == "level"
        assert (len(det.suppression_["protectors"]) > 0) == protect
        notes, verdict = det.training_notes()
        protectors = notes["ensemble_combination"]["false_alarm_protectors"]
        assert protectors == len(det.suppression_["protectors"])
        assert (f"unless as like one of the {protectors} inside answers 'anomaly'" in verdict) == protect
        after = det.window_scores(x)
        lowered[protect] = {c: _peak(det, x, before, c) - _peak(det, x, after, c) for c in (1200, 1600, 2900, 3700)}
        served[protect] = det
    for c in (2900, 3700):  # the unanswered raised bumps
        assert lowered[False][c] > 0.1 * det.suppress and lowered[True][c] < 0.02 * det.suppress
    for c in (1200, 1600):  # the unanswered normal bumps
        assert lowered[True][c] > 0.2 * det.suppress
    # a version stored before answered anomalies protected (no parameter, exemplars without protectors) scores as it
    # did — as the unprotected one — and its next feedback protects
    payload = persist.loads(served[True].to_bytes())
    del payload["params"]["protect_anomalies"], payload["state"]["suppression_"]["protectors"]
    old = load_detector(persist.dumps("ensemble", payload["params"], payload["state"]))
    np.testing.assert_array_equal(old.window_scores(x), served[False].window_scores(x))
    old.feedback(x, ranges)
    np.testing.assert_array_equal(old.window_scores(x), served[True].window_scores(x))


def test_mostly_anomalous_counts_the_labeled_window_ends_inside_each_window() -> None:
    """Window 4, stride 1: windows 10-13 labeled normal, 14-17 anomalous, 20 and 23 anomalous. Window 14 holds one
    anomalous end of four (itself), 15 two — half, enough; window 20 holds 17 and 20; window 23 holds 20 and 23
    (21 and 22 unlabeled count as not anomalous); a normal window never pictures an anomaly."""
    idx = np.array([10, 11, 12, 13, 14, 15, 16, 17, 20, 23])
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1], dtype=np.int8)
    expected = [False] * 5 + [True] * 5
    np.testing.assert_array_equal(mostly_anomalous(idx, labels, window=4, stride=1), expected)
    np.testing.assert_array_equal(mostly_anomalous(idx[:8], labels[:8] * 0, window=4, stride=1), [False] * 8)


def test_a_version_stored_before_the_level_view_keeps_its_shape_exemplars_and_learns_shapes(bumpy) -> None:
    """A version stored before exemplars could keep the level (no ``exemplar_view`` parameter, no ``level_scale_``,
    exemplars without a view) scores as it did, and its next feedback compares shapes only."""
    base, x = bumpy
    ranges = [_answer(400, 0), _answer(800, 0), _answer(1004, 1), _answer(1404, 1), _answer(2000, 0), _answer(2204, 1)]
    ranges.append(_answer(2400, 0))
    det = load_detector(base.to_bytes())
    det.feedback(x, ranges)
    assert det.suppression_["view"] == "shape"
    payload = persist.loads(det.to_bytes())
    del payload["params"]["exemplar_view"], payload["state"]["level_scale_"], payload["state"]["suppression_"]["view"]
    old = load_detector(persist.dumps("ensemble", payload["params"], payload["state"]))
    np.testing.assert_array_equal(old.window_scores(x), det.window_scores(x))
    old.feedback(x, ranges)
    assert old.suppression_["view"] == "shape" and "level_ap" not in old.suppression_check_
    np.testing.assert_array_equal(old.window_scores(x), det.window_scores(x))
