"""``knn``: how far each window's shape lies from the nearest window of the fit data (a discord score).

A window of ``window`` points and every channel, standardised with the fit data's per-channel mean and std (as
``iforest``) and, with ``centre=True`` (default), with each channel's mean over the window taken away (its shape,
not its level: the ensemble's ``level`` member already scores the level), is a point in ``window · C``
dimensions. Its score is the mean Euclidean distance to its ``k`` nearest among ``max_reference`` windows drawn at
random (seeded) from the fit data: the matrix profile's nearest-neighbour "discord" distance (Yeh et al. 2016),
taken against a sample of the fit data rather than every window, so that scoring is linear in the series length.

**Trivial matches.** A window of the fit data would find itself, or its neighbour one point along, among the
reference windows and score about 0, so a project scoring the series it was fitted on would see no anomaly in the
part it fitted. ``fit`` therefore keeps a 64-bit fingerprint (``window_fingerprints``) of every fit window with
its position; a scored window equal to a fit window ignores the reference windows that overlap it (starts less
than ``window`` points apart: the matrix profile's exclusion zone). The fitted part of a series is then scored as
its later part is, and a series that merely continues the fit data (live appends) scores the same either way.

**Why it is a member of the ensemble** (``DEFAULT_MEMBERS``): on BENCHMARKS.md's label-efficiency subsets it ranks
the evaluation parts of the multichannel sets better than every other member alone (seed 0: smd 0.414, asd 0.195,
smap 0.286 PR-AUC against iForest's 0.361 / 0.143 / 0.162), and the prior with it ranks every set at least as well
as without it (mean 0.384 against 0.359; ``scripts/measure_ensemble_prior.py``). A distance also grows without
bound when a series drifts away from anything in the fit data, so the ensemble caps its surprisal at the fit
data's largest (``extrapolates_tail = False``): uncapped (``--extrapolate knn``), kpi's prior falls from 0.529
to 0.455.

Cost: ``O(n_windows · max_reference · window · C)`` multiply-adds (one matrix product per ``score_batch``
windows), ``O(n_fit_windows)`` fingerprints kept, ``score_batch`` windows copied at a time. Numpy only.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from app.core.detectors.base import Detector
from app.core.runtime import Progress, ProgressCallback, report
from app.core.windows import (
    Scaler,
    as_2d,
    flat_windows,
    known_window_positions,
    nearest_distance,
    overlapping_known,
    window_fingerprints,
    window_shapes,
)


class KNNDetector(Detector):
    """Distance of each window to its nearest windows of the fit data (module docstring).

    Parameters: ``window``, ``stride``, ``seed`` (which fit windows become the reference), ``device`` (ignored:
    numpy), ``k`` (neighbours averaged), ``max_reference`` (reference windows kept), ``centre`` (take each
    channel's window mean away), ``score_batch`` (windows per matrix product).
    """

    name = "knn"
    summary: ClassVar[str] = (
        "Nearest-window distance: how unlike anything in the fit data each window's shape is; seconds to fit."
    )
    extrapolates_tail: ClassVar[bool] = False
    param_bounds: ClassVar[dict[str, str]] = dict.fromkeys(("k", "max_reference", "score_batch"), "[1, inf)")

    def __init__(
        self,
        *,
        window: int = 25,
        stride: int = 1,
        seed: int = 0,
        device: str = "auto",
        k: int = 1,
        max_reference: int = 2000,
        centre: bool = True,
        score_batch: int = 4096,
    ) -> None:
        super().__init__(window=window, stride=stride, seed=seed, device=device)
        self.k = k
        self.max_reference = max_reference
        self.centre = centre
        self.score_batch = score_batch

    def _window_view(self, x: np.ndarray) -> np.ndarray:
        """Every scaled window of ``x`` as a row, a view: ``(n_points, C) -> (n_windows, window * C)``."""
        return flat_windows(self.scaler_.transform(x), self.window, self.stride)

    def _rows(self, view: np.ndarray) -> np.ndarray:
        """Some rows of :meth:`_window_view`, centred per channel when ``centre``: ``(n, window * C)`` float32, a
        copy of those rows only (scoring copies one batch at a time, so memory stays bounded)."""
        if not self.centre:
            return np.ascontiguousarray(view, dtype=np.float32)
        return window_shapes(view, self.window)

    def fit(self, X: np.ndarray, y: np.ndarray | None = None, progress: ProgressCallback | None = None) -> KNNDetector:
        """Keep ``max_reference`` windows of ``X`` ``(n_points, n_channels)`` (seeded) and every window's
        fingerprint. ``y`` is ignored: the score is unsupervised."""
        self.check_params()  # built directly (not by name), a bad k or batch is still refused before any work
        x = as_2d(X)
        self.scaler_ = Scaler("standard").fit(x)
        view = self._window_view(x)
        rng = np.random.default_rng(self.seed)
        chosen = np.sort(rng.choice(len(view), min(self.max_reference, len(view)), replace=False))
        self.reference_ = self._rows(view[chosen])
        self.reference_positions_ = chosen.astype(np.int64)
        fingerprints = np.concatenate(
            [
                window_fingerprints(self._rows(view[b : b + self.score_batch]))
                for b in range(0, len(view), self.score_batch)
            ]
        )
        order = np.argsort(fingerprints, kind="stable")
        self.fit_fingerprints_ = fingerprints[order]
        self.fit_positions_ = order.astype(np.int64)
        self.n_channels_ = x.shape[1]
        self.fitted_ = True
        report(progress, Progress(phase="fit", fraction=1.0, step=1, total_steps=1))
        return self

    def _fit_positions(self, rows: np.ndarray) -> np.ndarray:
        """Each row's window index in the fit data, or -1 when it is no fit window: ``(n,)`` int64."""
        return known_window_positions(rows, self.fit_fingerprints_, self.fit_positions_)

    def window_scores(self, X: np.ndarray) -> np.ndarray:
        """Mean distance to the ``k`` nearest reference windows, overlapping ones excluded: ``(n_windows,)``,
        in units of the fit data's per-channel std."""
        self._check_fitted()
        view = self._window_view(X)
        k = min(self.k, len(self.reference_))
        out = np.empty(len(view), dtype=np.float64)
        for b in range(0, len(view), self.score_batch):
            q = self._rows(view[b : b + self.score_batch])
            own, trivial = overlapping_known(
                self._fit_positions(q), self.reference_positions_, self.window, self.stride
            )
            exclude = None  # most windows of new data are no fit window's: no (batch, reference) mask for them
            if len(own):  # a fit window: its trivial matches (overlapping reference windows) do not count
                fine = (~trivial).sum(axis=1) >= k  # a fit too short to leave k others: keep them all
                exclude = np.zeros((len(q), len(self.reference_)), dtype=bool)
                exclude[own[fine]] = trivial[fine]
            out[b : b + len(q)] = nearest_distance(q, self.reference_, exclude, k)
        return out
