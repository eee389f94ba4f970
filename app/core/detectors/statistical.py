"""Cheap per-point statistical scorers as detectors: ``diff`` (|Δx|) and ``rollingz`` (rolling z-score).

Both are defined per point and per channel, then reduced by the maximum over channels:

- ``diff``: ``|x_t − x_{t−1}|`` (0 at the first point), the benchmarks' "one-liner" (ANCHORS.md).
- ``rollingz``: ``|x_t − mean| / std`` over the previous ``history`` points ``[t − history, t)`` (fewer at
  the series start, 0 at the first point; population std, a std below ``1e-6`` counts as ``1e-6``).
- ``level``: ``|x_t − mean_fit| / std_fit``, the global z-score against the fit data (a value outside the
  range seen in the fit data, which |Δx| only sees at its edges). It earned its place in the ensemble:
  +0.014 mean PR-AUC of the unlabeled prior over six data sets, +0.01–0.1 on kpi, smd, asd and smap.

A window's score is its end point's score (RLAD's window rule, as every window detector here), so
``score(X)`` is the per-point score itself. ``fit`` learns only a per-channel standardisation (mean, std of
the fit data, ``standardize=True``), so channels of different units compete fairly in the maximum; on
data already z-scored with the fit part's statistics (the bench protocol) it changes nothing. Labels do
not change these scorers: ``feedback`` is the base no-op. Numpy only, O(n · channels) time and memory.
"""

from __future__ import annotations

from typing import Any, ClassVar, cast

import numpy as np

from app.core.detectors.base import Detector
from app.core.runtime import ProgressCallback
from app.core.windows import window_ends

STD_FLOOR = 1e-6
"""A rolling std below this counts as this (a flat history makes any change a large but finite z)."""


def _as_float64_2d(X: np.ndarray) -> np.ndarray:
    """``X`` as float64 ``(n_points, n_channels)``; ``ValueError`` on NaN/inf (as ``windows.as_2d``)."""
    x = np.asarray(X, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"a series must be (n_points, n_channels), got shape {x.shape}")
    if not np.isfinite(x).all():
        bad = np.flatnonzero(~np.isfinite(x).all(axis=1))[:5].tolist()
        raise ValueError(f"series has NaN or inf values (first rows: {bad}); fill them before fitting")
    return x


def abs_diff(x: np.ndarray) -> np.ndarray:
    """``|x_t − x_{t−1}|`` per point and channel, 0 at the first point: ``(n, C) -> (n, C)``."""
    return np.abs(np.diff(x, axis=0, prepend=x[:1]))


def rolling_z(x: np.ndarray, history: int = 50, block: int = 4096) -> np.ndarray:
    """``|x_t − mean| / max(std, 1e-6)`` over the previous ``history`` points, per channel: ``(n, C) -> (n, C)``.

    The window of point ``t`` is ``[max(0, t − history), t)``; point 0 has no history and scores 0.
    Rolling sums come from cumulative sums over blocks of ``block`` points (plus the ``history`` points
    before each block), each centred on its own mean, so the ``E[x²] − E[x]²`` cancellation is bounded by
    the spread inside one block rather than the whole series' offset (float64; matches pandas'
    ``rolling(history, min_periods=1)`` moments to ~1e-9 relative on real series).
    """
    if history < 1:
        raise ValueError(f"history must be >= 1, not {history}")
    n, _ = x.shape
    out = np.zeros_like(x, dtype=np.float64)
    for a in range(1, n, block):  # point 0 stays 0
        b = min(n, a + block)
        s0 = max(0, a - history)
        seg = x[s0:b]
        ref = seg.mean(axis=0)
        c = seg - ref  # (len(seg), C) centred on this block
        zeros = np.zeros((1, x.shape[1]))
        cs = np.concatenate([zeros, np.cumsum(c, axis=0)])
        cs2 = np.concatenate([zeros, np.cumsum(c * c, axis=0)])
        t = np.arange(a, b)
        hi = t - s0  # history [lo, hi) in segment coordinates (exclusive of t itself)
        lo = np.maximum(t - history, 0) - s0
        cnt = (hi - lo)[:, None].astype(np.float64)
        mean = (cs[hi] - cs[lo]) / cnt
        var = np.maximum((cs2[hi] - cs2[lo]) / cnt - mean * mean, 0.0)
        # Rounding error of the difference of two cumulative sums is about eps * |cs2[hi]|; where that is not
        # negligible against the variance (a far outlier earlier in the block), recompute those points directly.
        err = 64 * np.finfo(np.float64).eps * cs2[hi] / cnt
        bad_t, bad_c = np.nonzero(err > 1e-9 * np.maximum(var, STD_FLOOR**2))
        if len(bad_t):
            var[bad_t, bad_c], mean[bad_t, bad_c] = _direct_moments(c, lo[bad_t], hi[bad_t], bad_c)
        out[a:b] = np.abs(c[hi] - mean) / np.maximum(np.sqrt(var), STD_FLOOR)
    return out


def _direct_moments(c: np.ndarray, lo: np.ndarray, hi: np.ndarray, ch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two-pass ``(var, mean)`` of ``c[lo_i:hi_i, ch_i]`` for each ``i`` (windows of at most ``history``)."""
    length = int((hi - lo).max())
    idx = hi[:, None] - length + np.arange(length)  # (k, length), the last ``hi - lo`` are the window
    valid = idx >= lo[:, None]
    vals = np.where(valid, c[np.maximum(idx, 0), ch[:, None]], 0.0)
    cnt = valid.sum(axis=1)
    mean = vals.sum(axis=1) / cnt
    dev = np.where(valid, vals - mean[:, None], 0.0)
    return (dev * dev).sum(axis=1) / cnt, mean


class PointScorer(Detector):
    """A detector defined per point: ``score(X)`` is the point score, a window's score its end point's."""

    def __init__(
        self, *, window: int = 25, stride: int = 1, seed: int = 0, device: str = "auto", standardize: bool = True
    ) -> None:
        super().__init__(window=window, stride=stride, seed=seed, device=device)
        self.standardize = standardize

    def fit(self, X: np.ndarray, y: np.ndarray | None = None, progress: ProgressCallback | None = None) -> Detector:
        """Learn the per-channel mean and std of ``X`` ``(n_points, n_channels)`` (if ``standardize``).

        ``y`` is accepted for the common interface and ignored."""
        x = _as_float64_2d(X)
        if self.standardize:
            sd = x.std(axis=0)
            self.offset_, self.scale_ = x.mean(axis=0), np.where(sd > 1e-12, sd, 1.0)
        else:
            self.offset_, self.scale_ = np.zeros(x.shape[1]), np.ones(x.shape[1])
        self.n_channels_ = x.shape[1]
        self.fitted_ = True
        return self

    def _transform(self, X: np.ndarray) -> np.ndarray:
        self._check_fitted()
        x = _as_float64_2d(X)
        if x.shape[1] != self.n_channels_:
            raise ValueError(f"series has {x.shape[1]} channels, the scorer was fitted on {self.n_channels_}")
        return cast(np.ndarray, (x - self.offset_) / self.scale_)

    def channel_scores(self, X: np.ndarray) -> np.ndarray:
        """Per-point, per-channel scores ``(n_points, n_channels)`` of standardised ``X``."""
        raise NotImplementedError

    def score(self, X: np.ndarray) -> np.ndarray:
        """Max over channels of the per-channel score: ``(n_points,)`` float64."""
        return cast(np.ndarray, self.channel_scores(X).max(axis=1))

    def window_scores(self, X: np.ndarray) -> np.ndarray:
        """The end point's score of every window: ``(n_windows,)``."""
        s = self.score(X)
        return cast(np.ndarray, s[window_ends(len(s), self.window, self.stride)])


class DiffScorer(PointScorer):
    """``|x_t − x_{t−1}|``, max over channels (the "one-liner")."""

    name: ClassVar[str] = "diff"

    def channel_scores(self, X: np.ndarray) -> np.ndarray:
        return abs_diff(self._transform(X))


class RollingZScorer(PointScorer):
    """``|x_t − mean| / std`` of the previous ``history`` points, max over channels."""

    name: ClassVar[str] = "rollingz"
    param_bounds: ClassVar[dict[str, str]] = {"history": "[1, inf)"}  # as rolling_z checks it

    def __init__(self, *, history: int = 50, **kw: Any) -> None:
        super().__init__(**kw)
        self.history = history

    def channel_scores(self, X: np.ndarray) -> np.ndarray:
        return rolling_z(self._transform(X), self.history)


class LevelScorer(PointScorer):
    """``|x_t − mean_fit| / std_fit``, max over channels (always standardised: the score is the z-score)."""

    name: ClassVar[str] = "level"
    extrapolates_tail: ClassVar[bool] = False
    """A drifting series leaves the fit range for good: past the fit maximum the ensemble counts it as rare as the
    rarest fit window, no rarer (measured: BENCHMARKS.md, "Label efficiency"; skab's prior 0.573 → 0.651)."""

    def __init__(self, **kw: Any) -> None:
        kw.setdefault("standardize", True)
        super().__init__(**kw)

    def channel_scores(self, X: np.ndarray) -> np.ndarray:
        if not self.standardize:
            raise ValueError("the level scorer is a z-score: it needs standardize=True")
        return cast(np.ndarray, np.abs(self._transform(X)))


__all__ = ["STD_FLOOR", "DiffScorer", "LevelScorer", "RollingZScorer", "abs_diff", "rolling_z"]
