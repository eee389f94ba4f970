"""Masked minimax feedback (002 §3.5): labeled windows, per-step masks, direction of both phases, real-data gain."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score
from torch import nn

from app.core.detectors.registry import load_detector, make_detector
from app.core.feedback import (
    FeedbackConfig,
    labeled_window_starts,
    random_step_mask,
    run_feedback,
    step_label_masks,
)
from app.core.windows import LabeledRange, ranges_to_point_labels

from .conftest import load_series


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- labeled windows and masks (known answers) ------------------------------------------------


def test_labeled_windows_are_every_grid_window_holding_a_label() -> None:
    labels = ranges_to_point_labels([LabeledRange(30, 35, 1)], 100)
    starts = labeled_window_starts(labels, window=10, stride=5)
    np.testing.assert_array_equal(starts, [25, 30])  # [20,30) misses 30; [35,45) starts after 34
    assert len(labeled_window_starts(np.full(100, -1), 10, 1)) == 0


def test_half_anomalous_window_is_labeled_per_step() -> None:
    ranges = [LabeledRange(0, 5, 0), LabeledRange(5, 10, 1)]
    labels = ranges_to_point_labels(ranges, 20)
    normal, abnormal = step_label_masks(labels, np.array([0, 3]), window=10)
    np.testing.assert_array_equal(normal[0], [1] * 5 + [0] * 5)
    np.testing.assert_array_equal(abnormal[0], [0] * 5 + [1] * 5)
    # Window 3..12: steps 0-1 normal, 2-6 anomalous, 7-9 unlabeled (in neither phase).
    np.testing.assert_array_equal(normal[1], [1, 1] + [0] * 8)
    np.testing.assert_array_equal(abnormal[1], [0, 0] + [1] * 5 + [0] * 3)


def test_random_step_mask_has_a_fixed_ratio_and_follows_the_seed() -> None:
    m1 = random_step_mask(6, 50, 0.25, torch.Generator().manual_seed(4))
    m2 = random_step_mask(6, 50, 0.25, torch.Generator().manual_seed(4))
    m3 = random_step_mask(6, 50, 0.25, torch.Generator().manual_seed(5))
    assert (m1.sum(dim=1) == 12).all()  # round(0.25 * 50)
    assert torch.equal(m1, m2) and not torch.equal(m1, m3)


def test_config_rejects_unknown_forms() -> None:
    with pytest.raises(ValueError, match="loss"):
        FeedbackConfig(loss="sum")
    with pytest.raises(ValueError, match="maximize"):
        FeedbackConfig(maximize="forever")
    with pytest.raises(ValueError, match="mask_ratio"):
        FeedbackConfig(mask_ratio=1.0)


# -- direction of the two phases, per time step ----------------------------------------------


class PerStep(nn.Module):
    """Output ``b_t`` for step ``t`` whatever the input: each step's error depends on its own parameter only."""

    def __init__(self, window: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(window, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bias.expand_as(x)


def per_step_error(module: nn.Module, x_in: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (module(x_in) - target).pow(2).mean(dim=-1)


def _per_step_run(config: FeedbackConfig) -> tuple[np.ndarray, np.ndarray]:
    window = 10
    series = torch.full((window, 1), 0.5)  # one window; the model starts at 0, so every error is 0.25
    labels = ranges_to_point_labels([LabeledRange(0, 5, 0), LabeledRange(5, 10, 1)], window)
    module = PerStep(window)
    before = per_step_error(module, series[None], series[None])[0].detach().numpy()
    run_feedback(module, per_step_error, series, labels, window, 1, config, torch.Generator().manual_seed(0))
    after = per_step_error(module, series[None], series[None])[0].detach().numpy()
    return before, after


@pytest.mark.parametrize("loss", ["minimax", "weighted_sum"])
@pytest.mark.parametrize("maximize", ["bounded", "unbounded"])
def test_half_anomalous_window_pushes_only_its_anomalous_steps_up(loss: str, maximize: str) -> None:
    config = FeedbackConfig(epochs=1, lr=0.05, masking=False, loss=loss, maximize=maximize, unlabeled_weight=0.0)
    before, after = _per_step_run(config)
    assert (after[:5] < before[:5]).all()  # normal half: error falls
    assert (after[5:] > before[5:]).all()  # anomalous half: error rises


def test_masking_restricts_the_update_to_masked_steps() -> None:
    """One epoch, one window, mask ratio 0.3: exactly the 3 masked steps move, the other 7 keep their error."""
    config = FeedbackConfig(epochs=1, lr=0.05, mask_ratio=0.3, unlabeled_weight=0.0)
    before, after = _per_step_run(config)
    moved = ~np.isclose(after, before)
    assert moved.sum() == 3
    assert (after[:5][moved[:5]] < before[:5][moved[:5]]).all()
    assert (after[5:][moved[5:]] > before[5:][moved[5:]]).all()


def test_a_masked_step_error_hook_gets_the_raw_window_and_the_mask() -> None:
    """A backbone that hides masked steps itself (e.g. a mask token) sees the unmasked window and the mask; with
    the hook the update is the same as 0-fill here, since ``PerStep`` ignores its input."""
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def hook(module: nn.Module, x: torch.Tensor, mask: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        seen.append((x.detach().clone(), mask.clone()))
        return per_step_error(module, x, target)

    config = FeedbackConfig(epochs=1, lr=0.05, mask_ratio=0.3, unlabeled_weight=0.0)
    window = 10
    series = torch.full((window, 1), 0.5)
    labels = ranges_to_point_labels([LabeledRange(0, 5, 0), LabeledRange(5, 10, 1)], window)
    module = PerStep(window)
    run_feedback(
        module,
        per_step_error,
        series,
        labels,
        window,
        1,
        config,
        torch.Generator().manual_seed(0),
        masked_step_error=hook,
    )
    assert 1 <= len(seen) <= 2  # one call per phase that has masked steps of its label
    for x, mask in seen:
        assert torch.equal(x, series[None]) and mask.shape == (1, window) and int(mask.sum()) == 3
    _, after_zero_fill = _per_step_run(config)
    after_hook = per_step_error(module, series[None], series[None])[0].detach().numpy()
    np.testing.assert_allclose(after_hook, after_zero_fill)


def test_bounded_maximize_plateaus_past_the_margin() -> None:
    """Hinge form: past the margin an anomalous step gets no gradient, so its error plateaus (Adam's momentum
    carries it a little past 0.5); the raw ``-err`` form keeps growing without limit."""

    def run(epochs: int, maximize: str) -> float:
        config = FeedbackConfig(
            epochs=epochs, lr=0.05, masking=False, margin=0.5, maximize=maximize, unlabeled_weight=0.0, grad_clip=None
        )
        return float(_per_step_run(config)[1][5:].max())

    b60, b120 = run(60, "bounded"), run(120, "bounded")
    u60, u120 = run(60, "unbounded"), run(120, "unbounded")
    assert 0.5 < b60 < 2.0 and abs(b120 - b60) < 0.01
    assert u60 > 10 * b60 and u120 > 2 * u60


def test_no_anomalous_step_skips_the_maximize_phase() -> None:
    x = np.sin(np.arange(400) / 6)[:, None]
    det = make_detector("ae", seed=0, window=20, epochs=2, max_train_windows=64, feedback_epochs=1).fit(x)
    det.feedback(x, [LabeledRange(100, 140, 0)])
    assert det.last_feedback_.n_anomalous_steps == 0 and det.last_feedback_.maximize_loss is None
    assert det.last_feedback_.minimize_loss is not None and det.feedback_rounds_ == 1


# -- a real backbone ---------------------------------------------------------------------------


def _sine_with_shift(n: int = 800) -> np.ndarray:
    """A slow noisy sine with a fast square oscillation at [600, 620): an anomaly of a different shape."""
    rng = np.random.default_rng(0)
    x = np.sin(np.arange(n) / 7) + 0.05 * rng.standard_normal(n)
    x[600:620] = 0.8 * np.sign(np.sin(np.arange(20) * 2.5))
    return x[:, None].astype(np.float32)


# The transformer is left out on purpose. Its unmasked error is near a copy's (~0.02, the anomaly included), and
# the anomaly differs from the sine in shape, not in value, so a near-pointwise model that raises the anomaly's
# error raises the normal error with it. Measured on seeds 0-4 with masking=False (so not a masking effect): at
# lr 1e-3, minimize only, normal error falls on 5 of 5; add the maximize phase and it rises on 5 of 5; at the
# paper's lr 1e-2 it rises even without an anomaly. A learned mask token (mask_token=True) or masked pretraining
# shrink the rise (seed 0: normal 0.03 -> 12.9 with 0-fill, -> 5.3 with the token) but do not reverse it.
@pytest.mark.parametrize("name", ["ae", "vae", "lstm_ae", "lstm_vae", "usad"])
def test_one_feedback_epoch_moves_anomalous_error_up_and_normal_error_down(name: str) -> None:
    x = _sine_with_shift()
    det = make_detector(name, seed=0, window=20, epochs=3, max_train_windows=256, feedback_epochs=1).fit(x[:500])
    ranges = [LabeledRange(600, 620, 1), LabeledRange(300, 320, 0), LabeledRange(440, 460, 0)]
    anomalous, normal = np.array([600]), np.array([300, 440])
    err_a, err_n = det.step_errors(x, anomalous, squared=True).mean(), det.step_errors(x, normal, squared=True).mean()
    det.feedback(x, ranges)
    assert det.step_errors(x, anomalous, squared=True).mean() > err_a
    assert det.step_errors(x, normal, squared=True).mean() < err_n


def test_feedback_is_reproducible_and_survives_serialization() -> None:
    x = _sine_with_shift()
    ranges = [LabeledRange(600, 620, 1), LabeledRange(300, 320, 0)]
    params = {"seed": 0, "window": 20, "epochs": 2, "max_train_windows": 128, "feedback_epochs": 2}
    a = make_detector("lstm_ae", **params).fit(x).feedback(x, ranges)
    b = make_detector("lstm_ae", **params).fit(x).feedback(x, ranges)
    np.testing.assert_array_equal(a.score(x), b.score(x))
    c = load_detector(a.to_bytes())
    np.testing.assert_array_equal(c.score(x), a.score(x))
    assert c.feedback_rounds_ == 1


def _ground_truth_ranges(y: np.ndarray, starts: list[int], window: int) -> list[LabeledRange]:
    """The oracle's answer for each queried window: one range per run of equal labels (per-step labels)."""
    out = []
    for s in starts:
        seg, j0 = y[s : s + window], 0
        for j in range(1, window + 1):
            if j == window or seg[j] != seg[j0]:
                out.append(LabeledRange(s + j0, s + j, int(seg[j0])))
                j0 = j
    return out


@pytest.mark.slow
def test_minimax_feedback_beats_the_unrefined_lstm_ae_with_2_percent_labels(shared_data) -> None:
    """KPI series, fit on the first 3,000 points; the pool is points [0, 5,000), evaluation [5,000, end).

    2 % of the pool (2 windows of 50) is labeled from ground truth: the top-scored window plus one
    random window (002's hybrid query, shrunk to the budget). PR-AUC on the evaluation part must rise, on average
    over seeds 0, 1, 2: with the default feedback learning rate (1e-3) they gave 0.277 -> 0.310, 0.280 -> 0.565 and
    0.275 -> 0.325 (002's 1e-2: -> 0.52, 0.60, 0.61; why the default is smaller: ``FeedbackConfig.lr``).
    """
    x, y = load_series("kpi/a8c06b47-cc41-3738-9110-12df0ee4c721.csv.gz")
    pool_end, window = 5000, 50
    n_windows = pool_end // window
    budget = int(0.02 * pool_end) // window
    ev = slice(pool_end, None)
    gains = []
    for seed in (0, 1, 2):
        det = make_detector("lstm_ae", seed=seed, window=window, epochs=5, max_train_windows=512).fit(x[:3000])
        before = det.score(x)
        window_means = before[: n_windows * window].reshape(n_windows, window).mean(axis=1)
        top = int(np.argmax(window_means))
        rng = np.random.default_rng(0)
        rest = [int(i) for i in rng.permutation(n_windows) if i != top][: budget - 1]
        ranges = _ground_truth_ranges(y, [i * window for i in [top, *rest]], window)
        assert sum(r.end - r.start for r in ranges) == budget * window == 0.02 * pool_end

        det.feedback(x[:pool_end], ranges)
        pr_before = average_precision_score(y[ev], before[ev])
        gains.append(average_precision_score(y[ev], det.score(x)[ev]) - pr_before)
    assert np.mean(gains) > 0.05 and min(gains) > 0, gains
