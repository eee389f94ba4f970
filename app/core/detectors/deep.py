"""The shared base of every torch reconstruction detector (PyOD ``BaseDeepLearningDetector`` style).

:class:`TorchWindowDetector` is the one place that owns windowing, scaling, batching, the epoch
loop with progress reports, seeding, device placement, serialization and feedback. A subclass
supplies only ``_build_module(n_channels)`` and, where plain ``|X - X_hat|`` is not the error,
``_step_error`` (and, for adversarial training, ``_make_optimizers`` / ``_train_step``).

Windows and strides (why three numbers):

- ``window`` (default 50, 002 §4.3) is the length the model sees.
- ``stride`` (default 1) is the grid of *training* windows and of :meth:`window_scores`. Every epoch
  draws at most ``max_train_windows`` of those windows at random (seeded), so a long series costs the
  same per epoch as a short one. Feedback uses its own grid, ``feedback_stride`` (default
  ``window // 10``): every window on it that holds a labeled point is a labeled window.
- ``score_stride`` (default 0 = ``window // 2``) is the grid on which windows are *reconstructed*
  at inference. The point score ``S_t`` (002 Eq. 4: mean over channels of ``|X - X_hat|``) is
  averaged over every scored window that covers ``t`` (as ``windows.average_over_windows``), and one
  extra window ending at the last point is always added, so every point (the first and the newest
  included) is covered by a real reconstruction. Half-overlapping windows cost 2 reconstructions a
  point instead of ``window`` at stride 1; the paper itself scores non-overlapping windows.

Memory at inference is bounded: windows are gathered ``score_batch`` at a time from the scaled
series and their errors are added into two ``(n_points,)`` accumulators.
"""

from __future__ import annotations

import dataclasses
import io
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import numpy as np
import torch
from torch import nn

from app.core.detectors.base import Detector
from app.core.feedback import FeedbackConfig, FeedbackResult, run_feedback, zero_fill
from app.core.runtime import Progress, ProgressCallback, report, resolve_device, resolve_load_device, seed_everything
from app.core.windows import LabeledRange, Scaler, as_2d, ranges_to_point_labels, window_starts


@dataclass(frozen=True)
class DeepConfig:
    """Hyperparameters shared by every torch window detector (subclassed per family)."""

    window: int = 50
    """Window length in points (002: 50)."""
    stride: int = 1
    """Step between training windows and between :meth:`~TorchWindowDetector.window_scores` windows."""
    score_stride: int = 0
    """Step between windows reconstructed at inference; 0 means ``max(1, window // 2)``."""
    epochs: int = 10
    """Training epochs of the unsupervised fit."""
    batch_size: int = 32
    """Windows per optimizer step in the fit (002 uses 8; 32 gives the same quality 4x faster on CPU)."""
    lr: float = 1e-3
    """Adam learning rate of the fit."""
    max_train_windows: int = 2048
    """At most this many training windows per epoch (a fresh seeded random subset each epoch)."""
    score_batch: int = 2048
    """Windows reconstructed per forward pass at inference (bounds memory)."""
    feedback_epochs: int = 10
    """See :attr:`FeedbackConfig.epochs`."""
    feedback_lr: float = 1e-3
    """See :attr:`FeedbackConfig.lr`."""
    feedback_batch_size: int = 8
    """See :attr:`FeedbackConfig.batch_size` (002: 8)."""
    feedback_max_windows: int = 1024
    """See :attr:`FeedbackConfig.max_windows`."""
    feedback_stride: int = 0
    """Grid of the labeled windows in feedback; 0 means ``max(1, window // 10)``. Every window on this grid
    that holds a labeled point is used; a grid finer than 5 points only repeats nearly identical windows."""
    feedback_loss: str = "minimax"
    """See :attr:`FeedbackConfig.loss` (``'minimax'`` or ``'weighted_sum'``)."""
    mask_ratio: float = 0.25
    """See :attr:`FeedbackConfig.mask_ratio`."""
    masking: bool = True
    """See :attr:`FeedbackConfig.masking`."""
    maximize: str = "bounded"
    """See :attr:`FeedbackConfig.maximize` (``'bounded'`` or ``'unbounded'``)."""
    margin: float = 4.0
    """See :attr:`FeedbackConfig.margin`."""
    anomaly_weight: float = 1.0
    """See :attr:`FeedbackConfig.anomaly_weight`."""
    grad_clip: float | None = 1.0
    """See :attr:`FeedbackConfig.grad_clip`."""
    unlabeled_weight: float = 1.0
    """See :attr:`FeedbackConfig.unlabeled_weight`."""

    def __post_init__(self) -> None:
        if self.window < 2:
            raise ValueError(f"window must be >= 2, not {self.window}")
        if self.stride < 1 or self.score_stride < 0 or self.feedback_stride < 0:
            raise ValueError("stride must be >= 1; score_stride and feedback_stride >= 0")
        if self.epochs < 0 or self.batch_size < 1 or self.max_train_windows < 1 or self.score_batch < 1:
            raise ValueError("epochs must be >= 0; batch_size, max_train_windows and score_batch >= 1")

    @property
    def inference_stride(self) -> int:
        """The stride actually used to reconstruct windows at inference."""
        return self.score_stride or max(1, self.window // 2)

    def feedback_config(self) -> FeedbackConfig:
        """The :class:`FeedbackConfig` these fields describe."""
        return FeedbackConfig(
            epochs=self.feedback_epochs,
            lr=self.feedback_lr,
            batch_size=self.feedback_batch_size,
            mask_ratio=self.mask_ratio,
            masking=self.masking,
            loss=self.feedback_loss,
            maximize=self.maximize,
            margin=self.margin,
            anomaly_weight=self.anomaly_weight,
            grad_clip=self.grad_clip,
            unlabeled_weight=self.unlabeled_weight,
            max_windows=self.feedback_max_windows,
        )


class TorchWindowDetector(Detector):
    """Reconstruction detector over sliding windows; subclasses supply the torch module.

    Keyword arguments are the fields of :attr:`config_cls` plus ``seed`` and ``device``; ``__init__``
    only stores them (scikit-learn contract) and :attr:`config` validates them.
    """

    config_cls: ClassVar[type[DeepConfig]] = DeepConfig
    default_window: ClassVar[int] = 50  # seed 002's window
    default_strategy: ClassVar[str] = "hybrid"  # top-k ∪ interval random (002)
    method_label: ClassVar[str] = "{name}+minimax"
    # only what the config dataclasses do not check themselves (window, strides, epochs, batch sizes, mask_ratio)
    param_bounds: ClassVar[dict[str, str]] = {
        **dict.fromkeys(("hidden", "latent", "layers", "d_model", "heads", "ff"), "[1, inf)"),
        **dict.fromkeys(("lr", "feedback_lr", "grad_clip"), "(0, inf)"),
        **dict.fromkeys(("margin", "anomaly_weight", "unlabeled_weight", "alpha", "beta"), "[0, inf)"),
        "dropout": "[0, 1)",
    }

    def __init__(self, *, seed: int = 0, device: str = "auto", **params: Any) -> None:
        fields = {f.name: f.default for f in dataclasses.fields(self.config_cls)}
        unknown = sorted(set(params) - set(fields))
        if unknown:
            raise TypeError(f"{type(self).__name__} got unknown parameters {unknown}; known: {sorted(fields)}")
        super().__init__(
            window=params.get("window", fields["window"]),
            stride=params.get("stride", fields["stride"]),
            seed=seed,
            device=device,
        )
        for name, default in fields.items():
            if name not in ("window", "stride"):
                setattr(self, name, params.get(name, default))

    @classmethod
    def param_types(cls) -> dict[str, Any]:
        """The config dataclass's field annotations (the constructor takes them as ``**params``), seed, device."""
        return {**super().param_types(), **typing.get_type_hints(cls.config_cls)}

    def check_params(self) -> TorchWindowDetector:
        """Types and bounds (:meth:`Detector.check_params`), then the config dataclasses' own checks."""
        super().check_params()
        self.config.feedback_config()
        return self

    @property
    def config(self) -> DeepConfig:
        """The hyperparameters as a validated frozen dataclass."""
        return self.config_cls(**{f.name: getattr(self, f.name) for f in dataclasses.fields(self.config_cls)})

    # -- what a subclass supplies -----------------------------------------------------------
    def _build_module(self, n_channels: int) -> nn.Module:
        """The torch module mapping windows ``(B, L, C)`` to reconstructions ``(B, L, C)``."""
        raise NotImplementedError

    def _step_error(self, module: nn.Module, x_in: torch.Tensor, target: torch.Tensor, squared: bool) -> torch.Tensor:
        """Reconstruction error per step, mean over channels: ``(B, L, C) -> (B, L)``.

        ``squared=False`` is the score (002 Eq. 4, ``|X - X_hat|``); ``True`` is the training/feedback loss (MSE).
        """
        diff: torch.Tensor = module(x_in) - target
        return (diff.pow(2) if squared else diff.abs()).mean(dim=-1)

    def _masked_step_error(
        self, module: nn.Module, x: torch.Tensor, mask: torch.Tensor, target: torch.Tensor, squared: bool
    ) -> torch.Tensor:
        """Error per step ``(B, L)`` of windows ``x`` ``(B, L, C)`` whose ``mask`` ``(B, L)`` steps (True) are hidden.

        Used by masked feedback (002 §3.5). The default sets masked steps to 0, the training mean after standard
        scaling, which suits backbones that see the window as a whole (dense, LSTM). A backbone with a per-step
        token embedding overrides this to replace masked steps' embeddings by a learned mask token (as masked
        autoencoders do): a 0 is a legitimate value there, and a token model that cannot tell a masked step from
        a real 0 learns to copy its input instead of reconstructing the step from its context.
        """
        return self._step_error(module, zero_fill(x, mask), target, squared)

    def _make_optimizers(self, module: nn.Module, lr: float) -> list[torch.optim.Optimizer]:
        return [torch.optim.Adam(module.parameters(), lr=lr)]

    def _train_step(
        self, module: nn.Module, optimizers: list[torch.optim.Optimizer], batch: torch.Tensor, epoch: int
    ) -> float:
        """One optimizer step on ``batch`` ``(B, L, C)``; returns the loss. ``epoch`` counts from 1."""
        (optimizer,) = optimizers
        loss = self._step_error(module, batch, batch, squared=True).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    # -- fit ---------------------------------------------------------------------------------
    def fit(
        self, X: np.ndarray, y: np.ndarray | None = None, progress: ProgressCallback | None = None
    ) -> TorchWindowDetector:
        """Learn to reconstruct the windows of ``X`` ``(n_points, n_channels)``.

        ``y`` (optional, ``(n_points,)``, 1 anomaly / 0 normal / -1 unknown): training windows that hold a
        known anomaly are left out, so the model learns normal behaviour only (002 §3.3).
        """
        cfg = self.config
        x = as_2d(X)
        if len(x) < cfg.window:
            raise ValueError(f"series of {len(x)} points is shorter than one window of {cfg.window}")
        seed_everything(self.seed)
        generator = torch.Generator().manual_seed(self.seed)
        scaler = Scaler("standard").fit(x)
        device = resolve_device(self.device)
        series = torch.as_tensor(scaler.transform(x), device=device)
        module = self._build_module(x.shape[1]).to(device)

        starts = window_starts(len(x), cfg.window, cfg.stride)
        if y is not None:
            anomalous = np.concatenate([[0], np.cumsum(np.asarray(y) == 1)])
            clean = anomalous[starts + cfg.window] - anomalous[starts] == 0
            starts = starts[clean] if clean.any() else starts
        starts_t = torch.as_tensor(starts, dtype=torch.long)
        offsets = torch.arange(cfg.window, device=device)
        optimizers = self._make_optimizers(module, cfg.lr)

        loss = float("nan")
        module.train()
        for epoch in range(1, cfg.epochs + 1):
            order = torch.randperm(len(starts_t), generator=generator)[: cfg.max_train_windows]
            losses = []
            for b in range(0, len(order), cfg.batch_size):
                batch = series[starts_t[order[b : b + cfg.batch_size]].to(device)[:, None] + offsets]  # (B, L, C)
                losses.append(self._train_step(module, optimizers, batch, epoch))
            loss = float(np.mean(losses))
            report(
                progress,
                Progress(phase="fit", fraction=epoch / cfg.epochs, step=epoch, total_steps=cfg.epochs, loss=loss),
            )
        module.eval()
        # Learned state is set only now, so a cancelled fit leaves the detector unfitted.
        self.scaler_ = scaler
        self.n_channels_ = x.shape[1]
        self.module_ = module
        self.device_ = device
        self.train_loss_ = loss
        self.feedback_rounds_ = 0
        self.fitted_ = True
        return self

    # -- inference ---------------------------------------------------------------------------
    def _scaled(self, X: np.ndarray) -> torch.Tensor:
        self._check_fitted()
        x = self.scaler_.transform(X)
        if len(x) < self.window:
            raise ValueError(f"series of {len(x)} points is shorter than one window of {self.window}")
        return torch.as_tensor(x, device=self.device_)

    def score(self, X: np.ndarray) -> np.ndarray:
        """Per-point score ``S_t`` ``(n_points,)``: mean over channels of ``|X - X_hat|``, averaged over the
        reconstructed windows that cover ``t`` (002 Eq. 4). Finite for every point."""
        series = self._scaled(X)
        cfg = self.config
        n, w = len(series), cfg.window
        starts = np.unique(np.append(window_starts(n, w, cfg.inference_stride), n - w))  # last window: newest points
        offsets = torch.arange(w, device=series.device)
        total = torch.zeros(n, dtype=torch.float64, device=series.device)
        module = self.module_
        module.eval()
        with torch.inference_mode():
            for b in range(0, len(starts), cfg.score_batch):
                idx = torch.as_tensor(starts[b : b + cfg.score_batch], device=series.device)[:, None] + offsets
                err = self._step_error(module, series[idx], series[idx], squared=False)  # (B, L)
                total.index_add_(0, idx.reshape(-1), err.reshape(-1).to(torch.float64))
        # Coverage count per point from a difference array: +1 at each start, -1 after each end.
        hits = np.zeros(n + 1)
        np.add.at(hits, starts, 1.0)
        np.add.at(hits, starts + w, -1.0)
        return total.cpu().numpy() / np.cumsum(hits[:n])

    def window_scores(self, X: np.ndarray) -> np.ndarray:
        """Mean point score over each window of ``(window, stride)``: ``(n_windows,)`` (002 §3.4)."""
        return self._window_means(self.score(X))

    def point_and_window_scores(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Both from one reconstruction pass (window scores are means of point scores)."""
        points = self.score(X)
        return points, self._window_means(points)

    def _window_means(self, points: np.ndarray) -> np.ndarray:
        starts = window_starts(len(points), self.window, self.stride)
        csum = np.concatenate([[0.0], np.cumsum(points)])
        return cast(np.ndarray, (csum[starts + self.window] - csum[starts]) / self.window)

    def step_errors(self, X: np.ndarray, starts: np.ndarray, squared: bool = False) -> np.ndarray:
        """Per-step error of the windows starting at ``starts`` (unmasked, eval mode): ``(len(starts), window)``."""
        series = self._scaled(X)
        idx = torch.as_tensor(np.asarray(starts), device=series.device)[:, None] + torch.arange(
            self.window, device=series.device
        )
        with torch.inference_mode():
            return self._step_error(self.module_, series[idx], series[idx], squared=squared).cpu().numpy()

    # -- feedback ----------------------------------------------------------------------------
    def feedback(
        self, X: np.ndarray, ranges: Sequence[LabeledRange], progress: ProgressCallback | None = None
    ) -> TorchWindowDetector:
        """Refine the model with labeled point ranges on ``X`` by masked minimax feedback (002 §3.5).

        Each call uses a fresh Adam and a generator seeded by ``seed`` and the round number, so a
        sequence of calls is reproducible.
        """
        series = self._scaled(X)
        labels = ranges_to_point_labels(list(ranges), len(series))
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.feedback_rounds_ + 1)
        cfg = self.config
        self.last_feedback_: FeedbackResult = run_feedback(
            self.module_,
            lambda m, x_in, target: self._step_error(m, x_in, target, squared=True),
            series,
            labels,
            cfg.window,
            cfg.feedback_stride or max(1, cfg.window // 10),
            cfg.feedback_config(),
            generator,
            progress,
            masked_step_error=lambda m, x, mask, target: self._masked_step_error(m, x, mask, target, squared=True),
        )
        self.feedback_rounds_ += 1
        return self

    # -- serialization -----------------------------------------------------------------------
    def _get_state(self) -> dict[str, Any]:
        buf = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in self.module_.state_dict().items()}, buf)
        state = {k: v for k, v in super()._get_state().items() if k not in ("module_", "device_")}
        state["module_state_"] = buf.getvalue()
        return state

    def _set_state(self, state: dict[str, Any]) -> None:
        state = dict(state)
        blob = state.pop("module_state_")
        super()._set_state(state)
        self.device_ = resolve_load_device(self.device)
        module = self._build_module(self.n_channels_)
        # A module may list parameters added after models were stored (``optional_state``, e.g. a feedback
        # mask token); a stored model without them keeps their initial value and still scores the same.
        missing, unexpected = module.load_state_dict(
            torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True), strict=False
        )
        required = [k for k in missing if k not in getattr(module, "optional_state", ())]
        if required or unexpected:
            raise RuntimeError(
                f"stored {self.name} state does not fit the module: missing {required}, unexpected {list(unexpected)}"
            )
        self.module_ = module.to(self.device_).eval()
