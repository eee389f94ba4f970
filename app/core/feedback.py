"""Masked minimax feedback for reconstruction backbones (002 §3.5).

A fitted reconstruction model is refined with labeled point ranges:

1. Every window (on the detector's ``stride`` grid) that contains at least one labeled point is a
   *labeled window*. Labels are honoured per time step: ``I_normal(t)`` / ``I_abnormal(t)`` come
   from the point labels inside the window, so a window that is half anomalous only pushes the
   error up on its anomalous half. Unlabeled steps inside a labeled window take part in neither phase.
2. Each epoch, a fixed ratio of the time steps of every labeled window is masked at random (seeded);
   masked steps are set to 0, the training mean after standard scaling, and the model reconstructs
   the whole window from what is left (the pretext task). A backbone with a per-step token embedding
   can instead hide masked steps at the token level (``masked_step_error``: a learned mask token in
   place of their embeddings, as in masked autoencoders), so a masked step is never mistaken for a
   real 0 and must be inferred from its context rather than copied.
3. Per batch, *minimize phase* (Eq. 2): one backward pass on the mean squared error of masked normal
   steps; *maximize phase* (Eq. 3): a second backward pass that raises the error of masked anomalous
   steps. The maximize phase is skipped when the batch has no masked anomalous step.

Choices beyond the paper (all switchable, the benchmark ablates them):

- ``maximize='bounded'`` (default) replaces Eq. 3's raw ``-error`` with a hinge ``relu(margin - error)``
  per step: once an anomalous step's squared error passes ``margin`` (in standardized units) it
  stops pulling, so the model cannot diverge by blowing its output up. ``'unbounded'`` is the paper's
  raw negative error. Gradient-norm clipping (``grad_clip``) applies to both phases.
- ``loss='weighted_sum'`` is the paper's ablation: one backward pass on
  ``L_normal + anomaly_weight * L_anomaly`` instead of two disjoint phases.
- ``masking=False`` is the paper's "-Window Masking" ablation: raw windows in, every labeled step counts.
- ``unlabeled_weight > 0`` adds the plain (unmasked) reconstruction loss of a batch of *unlabeled*
  windows to the minimize phase, so a few labeled windows cannot make the model forget the normal
  behaviour it learned in pretraining (a replay term; 0 gives the paper's objective exactly).
- Both losses are means over the selected steps rather than sums, so the step size does not depend
  on how many steps a batch happens to select.
- The learning rate is 1e-3, not the paper's 1e-2 (``FeedbackConfig.lr`` says what was measured): with the
  larger step a round's few answers moved an LSTM-AE far enough to rank the rest of a series worse.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
from torch import nn

from app.core.runtime import Progress, ProgressCallback, report
from app.core.windows import window_starts

# (module, x_in (B, L, C), target (B, L, C)) -> squared reconstruction error per step (B, L), differentiable.
StepErrorFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
# (module, x (B, L, C) unmasked, mask (B, L) bool, True = hidden, target (B, L, C)) -> squared error per step (B, L).
MaskedStepErrorFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

LOSSES = ("minimax", "weighted_sum")
MAXIMIZE_FORMS = ("bounded", "unbounded")


@dataclass(frozen=True)
class FeedbackConfig:
    """Hyperparameters of one feedback call (one active-learning round)."""

    epochs: int = 10
    """Passes over the labeled windows (paper grid: 10, 50, 100)."""
    lr: float = 1e-3
    """Adam learning rate of the feedback optimizer, a fresh Adam per call. 002 §4.3 uses 1e-2; 1e-3 was measured
    through the product's loop (BENCHMARKS.md, "LSTM-AE's feedback step"; 1 % answers, 3 seeds, served PR-AUC): asd
    0.175 → 0.223 (its unlabeled start is 0.223: at 1e-2 the answers took it below), smap 0.352 ± 0.103 → 0.477 ±
    0.035, nab 0.126 → 0.134; skab 0.752 → 0.681 and kpi 0.322 → 0.302 (seed 0), where the larger step paid more.
    Adam moves every weight by about ``lr`` a step whatever the gradient's size, and one round's answers give
    hundreds of steps."""
    batch_size: int = 8
    """Labeled windows per step (paper: 8)."""
    mask_ratio: float = 0.25
    """Fraction of the time steps of each labeled window that is masked (``round(ratio * window)``, >= 1)."""
    masking: bool = True
    """Mask the input and score only masked steps; ``False`` reconstructs raw windows (ablation)."""
    loss: str = "minimax"
    """``'minimax'``: two backward passes (minimize normal, maximize anomalous); ``'weighted_sum'``: one."""
    maximize: str = "bounded"
    """``'bounded'``: hinge ``relu(margin - err)`` per anomalous step; ``'unbounded'``: raw ``-err`` (Eq. 3)."""
    margin: float = 4.0
    """Hinge margin for ``maximize='bounded'``, a squared error in standardized units (4.0 = 2 sigma)."""
    anomaly_weight: float = 1.0
    """Weight of the anomalous term in ``loss='weighted_sum'`` (and a scale on the maximize phase)."""
    grad_clip: float | None = 1.0
    """Clip the gradient norm of each phase to this value; ``None`` disables clipping."""
    unlabeled_weight: float = 1.0
    """Weight of the replay term (plain reconstruction of unlabeled windows) in the minimize phase; 0 gives
    002's objective exactly. With 1.0 the gain of lstm_ae over its unrefined self was positive on every seed
    we tried (KPI and SMD slices, 2 % labels); without it, one seed in three lost PR-AUC."""
    max_windows: int = 1024
    """At most this many labeled windows per epoch (a seeded random subset), to bound the cost."""

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"feedback loss must be one of {LOSSES}, not {self.loss!r}")
        if self.maximize not in MAXIMIZE_FORMS:
            raise ValueError(f"feedback maximize must be one of {MAXIMIZE_FORMS}, not {self.maximize!r}")
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), not {self.mask_ratio}")
        if self.epochs < 0 or self.batch_size < 1 or self.max_windows < 1:
            raise ValueError("feedback epochs must be >= 0, batch_size and max_windows >= 1")


@dataclass(frozen=True)
class FeedbackResult:
    """What one feedback call did (for logs and progress messages)."""

    n_windows: int
    n_normal_steps: int
    n_anomalous_steps: int
    epochs: int
    minimize_loss: float | None
    maximize_loss: float | None


def labeled_window_starts(point_labels: np.ndarray, window: int, stride: int = 1) -> np.ndarray:
    """Starts of every window on the ``stride`` grid that holds at least one labeled point.

    ``point_labels``: ``(n_points,)`` with 1 anomaly, 0 normal, -1 unlabeled. Returns ``(n_labeled_windows,)``.
    """
    labels = np.asarray(point_labels)
    starts = window_starts(len(labels), window, stride)
    counts = np.concatenate([[0], np.cumsum(labels >= 0)])
    return cast(np.ndarray, starts[counts[starts + window] - counts[starts] > 0])


def step_label_masks(point_labels: np.ndarray, starts: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-time-step indicators ``I_normal``, ``I_abnormal`` of the windows starting at ``starts``.

    Returns two bool arrays ``(n_windows, window)``; unlabeled steps are False in both.
    """
    labels = np.asarray(point_labels)[np.asarray(starts)[:, None] + np.arange(window)]
    return labels == 0, labels == 1


def random_step_mask(n_windows: int, window: int, ratio: float, generator: torch.Generator) -> torch.Tensor:
    """Mask exactly ``max(1, round(ratio * window))`` random steps of each window: bool ``(n_windows, window)``."""
    k = max(1, round(ratio * window))
    order = torch.rand(n_windows, window, generator=generator).argsort(dim=1)
    mask = torch.zeros(n_windows, window, dtype=torch.bool)
    mask.scatter_(1, order[:, :k], True)
    return mask


def zero_fill(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x`` ``(B, L, C)`` with its ``mask`` ``(B, L)`` steps (True) set to 0, the training mean after standard
    scaling: the input-level masking every backbone without a mask token of its own uses."""
    return x.masked_fill(mask[..., None], 0.0)


def masked_mean(err: torch.Tensor, select: torch.Tensor) -> torch.Tensor:
    """Mean of ``err`` ``(B, L)`` over the True steps of ``select`` ``(B, L)``; 0 when none is selected."""
    weight = select.to(err.dtype)
    return (err * weight).sum() / weight.sum().clamp_min(1.0)


def maximize_term(err: torch.Tensor, select: torch.Tensor, form: str, margin: float) -> torch.Tensor:
    """The loss whose *minimization* raises the error on the selected (anomalous) steps.

    ``'unbounded'``: ``-mean(err)`` (Eq. 3). ``'bounded'``: ``mean(relu(margin - err))``, zero once a step's
    error exceeds ``margin``.
    """
    if form == "unbounded":
        return -masked_mean(err, select)
    return masked_mean(torch.relu(margin - err), select)


def run_feedback(
    module: nn.Module,
    step_error: StepErrorFn,
    series: torch.Tensor,
    point_labels: np.ndarray,
    window: int,
    stride: int,
    config: FeedbackConfig,
    generator: torch.Generator,
    progress: ProgressCallback | None = None,
    masked_step_error: MaskedStepErrorFn | None = None,
) -> FeedbackResult:
    """Refine ``module`` in place with masked minimax feedback.

    ``series``: the scaled series ``(n_points, C)`` on the module's device; ``point_labels``: ``(n_points,)``
    with 1 anomaly, 0 normal, -1 unlabeled; ``step_error`` gives the squared error per step of a batch.
    ``masked_step_error`` (optional) computes that error with the masked steps hidden by the model itself
    (e.g. a mask token); without it masked steps of the input are set to 0 and ``step_error`` is used.
    The module is left in eval mode. ``generator`` (CPU) drives window order and masks, so a fixed seed
    gives a fixed result.
    """
    device = series.device
    starts = labeled_window_starts(point_labels, window, stride)
    normal_np, abnormal_np = step_label_masks(point_labels, starts, window)
    result_base = {
        "n_windows": len(starts),
        "n_normal_steps": int(normal_np.sum()),
        "n_anomalous_steps": int(abnormal_np.sum()),
    }
    if len(starts) == 0 or config.epochs == 0:
        module.eval()
        return FeedbackResult(**result_base, epochs=0, minimize_loss=None, maximize_loss=None)

    offsets = torch.arange(window, device=device)
    starts_t = torch.as_tensor(starts, dtype=torch.long)
    normal_all = torch.as_tensor(normal_np)
    abnormal_all = torch.as_tensor(abnormal_np)
    unlabeled_starts = torch.empty(0, dtype=torch.long)
    if config.unlabeled_weight > 0:
        all_starts = window_starts(len(point_labels), window, stride)
        counts = np.concatenate([[0], np.cumsum(np.asarray(point_labels) >= 0)])
        unlabeled_starts = torch.as_tensor(all_starts[counts[all_starts + window] - counts[all_starts] == 0])

    optimizer = torch.optim.Adam(module.parameters(), lr=config.lr)
    params = [p for p in module.parameters() if p.requires_grad]

    def gather(idx: torch.Tensor) -> torch.Tensor:
        return series[idx.to(device)[:, None] + offsets]  # (B, L, C)

    def labeled_error(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Squared error per step ``(B, L)`` of labeled windows ``x`` with the ``mask`` ``(B, L)`` steps hidden."""
        if not config.masking:
            return step_error(module, x, x)
        if masked_step_error is not None:
            return masked_step_error(module, x, mask, x)
        return step_error(module, zero_fill(x, mask), x)

    def step(loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip is not None:
            nn.utils.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()

    min_hist: list[float] = []
    max_hist: list[float] = []
    module.train()
    for epoch in range(config.epochs):
        order = torch.randperm(len(starts_t), generator=generator)[: config.max_windows]
        if config.masking:
            masks = random_step_mask(len(order), window, config.mask_ratio, generator)
        else:
            masks = torch.ones(len(order), window, dtype=torch.bool)
        for b in range(0, len(order), config.batch_size):
            sel = order[b : b + config.batch_size]
            x = gather(starts_t[sel])  # (B, L, C)
            mask = masks[b : b + config.batch_size].to(device)  # (B, L)
            normal = mask & normal_all[sel].to(device)
            abnormal = mask & abnormal_all[sel].to(device)
            has_normal, has_abnormal = bool(normal.any()), bool(abnormal.any())

            replay = None
            if len(unlabeled_starts) > 0:
                pick = unlabeled_starts[torch.randint(len(unlabeled_starts), (len(sel),), generator=generator)]
                xu = gather(pick)
                replay = config.unlabeled_weight * step_error(module, xu, xu).mean()

            if config.loss == "weighted_sum":
                err = labeled_error(x, mask)  # (B, L)
                loss = masked_mean(err, normal)
                if has_abnormal:
                    loss = loss + config.anomaly_weight * maximize_term(err, abnormal, config.maximize, config.margin)
                if replay is not None:
                    loss = loss + replay
                step(loss)
                min_hist.append(float(loss.detach()))
                continue

            # Minimize phase (Eq. 2): normal masked steps (+ the optional replay term).
            if has_normal or replay is not None:
                loss_min = masked_mean(labeled_error(x, mask), normal)
                if replay is not None:
                    loss_min = loss_min + replay
                step(loss_min)
                min_hist.append(float(loss_min.detach()))
            # Maximize phase (Eq. 3): a second backward pass, only when the batch has anomalous steps.
            if has_abnormal:
                err = labeled_error(x, mask)
                loss_max = config.anomaly_weight * maximize_term(err, abnormal, config.maximize, config.margin)
                step(loss_max)
                max_hist.append(float(loss_max.detach()))
        report(
            progress,
            Progress(
                phase="feedback",
                fraction=(epoch + 1) / config.epochs,
                step=epoch + 1,
                total_steps=config.epochs,
                loss=float(np.mean(min_hist[-len(order) :])) if min_hist else None,
            ),
        )
    module.eval()
    return FeedbackResult(
        **result_base,
        epochs=config.epochs,
        minimize_loss=float(np.mean(min_hist[-64:])) if min_hist else None,
        maximize_loss=float(np.mean(max_hist[-64:])) if max_hist else None,
    )
