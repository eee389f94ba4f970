"""Isolation Forest on flattened windows: the baseline detector and RLAD's warm-up (000 §3).

Each window of ``window`` points (default 25, RLAD's omega) and every channel is one sample of
``window * channels`` features. A point takes the score of the latest window ending at or before it
(``windows.end_point_scores``), so a window's score is its end point's, as RLAD labels windows.

For long series the forest is fitted on at most ``max_fit_windows`` windows drawn at random (seeded);
each tree sees only ``max_samples`` of them anyway ('auto' = 256). Scoring runs ``score_batch``
windows at a time, so memory stays bounded whatever the series length. No torch here.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from sklearn.ensemble import IsolationForest

from app.core.detectors.base import Detector
from app.core.runtime import Progress, ProgressCallback, report
from app.core.windows import Scaler, as_2d, sliding_windows


class IForestDetector(Detector):
    """scikit-learn ``IsolationForest`` over sliding windows; higher score = more anomalous.

    Parameters: ``window`` (points per window), ``stride`` (step between windows), ``n_estimators``
    (trees), ``max_samples`` (windows per tree, sklearn's meaning), ``max_fit_windows`` (cap on the
    windows the forest is fitted on), ``score_batch`` (windows scored per call), ``seed``
    (``random_state``), ``device`` (ignored; kept for a uniform constructor).
    """

    name = "iforest"
    summary: ClassVar[str] = (
        "Isolation Forest on windows: seconds to fit, no training epochs; labels only set the threshold."
    )
    starter_params: ClassVar[dict[str, Any]] = {"n_estimators": 100}

    def __init__(
        self,
        *,
        window: int = 25,
        stride: int = 1,
        seed: int = 0,
        device: str = "auto",
        n_estimators: int = 100,
        max_samples: int | float | str = "auto",
        max_fit_windows: int = 100_000,
        score_batch: int = 65_536,
    ) -> None:
        super().__init__(window=window, stride=stride, seed=seed, device=device)
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.max_fit_windows = max_fit_windows
        self.score_batch = score_batch

    def _flat_windows(self, x: np.ndarray) -> np.ndarray:
        """``(n_points, C) -> (n_windows, window * C)`` as a zero-copy view where possible."""
        view = sliding_windows(x, self.window, self.stride)  # (n_windows, window, C)
        return view.reshape(len(view), -1)

    def fit(
        self, X: np.ndarray, y: np.ndarray | None = None, progress: ProgressCallback | None = None
    ) -> IForestDetector:
        """Fit the forest on (a seeded subsample of) the windows of ``X`` ``(n_points, n_channels)``.

        ``y`` is accepted for the common interface and ignored: the forest is unsupervised.
        """
        x = as_2d(X)
        scaler = Scaler("standard").fit(x)
        flat = self._flat_windows(scaler.transform(x))
        rng = np.random.default_rng(self.seed)
        if len(flat) > self.max_fit_windows:
            flat = flat[np.sort(rng.choice(len(flat), self.max_fit_windows, replace=False))]
        forest = IsolationForest(
            n_estimators=self.n_estimators, max_samples=self.max_samples, random_state=self.seed, n_jobs=1
        )
        forest.fit(np.ascontiguousarray(flat, dtype=np.float32))
        report(progress, Progress(phase="fit", fraction=1.0, step=1, total_steps=1))
        self.scaler_ = scaler
        self.forest_ = forest
        self.n_channels_ = x.shape[1]
        self.fitted_ = True
        return self

    def window_scores(self, X: np.ndarray) -> np.ndarray:
        """``-score_samples`` of every window: ``(n_windows,)``, in (0, 1], higher = more anomalous."""
        self._check_fitted()
        flat = self._flat_windows(self.scaler_.transform(X))
        out = np.empty(len(flat), dtype=np.float64)
        for b in range(0, len(flat), self.score_batch):
            chunk = np.ascontiguousarray(flat[b : b + self.score_batch], dtype=np.float32)
            out[b : b + len(chunk)] = -self.forest_.score_samples(chunk)
        return out
