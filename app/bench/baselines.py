"""Sanity baselines under the same protocol as every detector (some benchmarks are trivially solvable).

- ``random``: i.i.d. uniform scores from the seed — the PR-AUC floor (≈ the anomaly rate).
- ``oneliner``: max over channels of ``|x_t − x_{t−1}|`` (first point 0).
- ``rollingz``: max over channels of ``|x_t − mean| / std`` over the previous ``history`` points
  (50; fewer at the series start, 0 at the first point; a std below ``1e-6`` counts as ``1e-6``).

They are :class:`~app.core.detectors.base.Detector` subclasses so the loop and the harness treat
them like any detector: point scores are computed per point, window scores are the point score at
each window's end point. Feedback is a no-op — labels do not change them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from app.core.detectors.base import Detector
from app.core.runtime import ProgressCallback
from app.core.windows import as_2d, window_ends


class _PointBaseline(Detector):
    """A baseline whose score is defined per point; window score = the end point's score."""

    def fit(self, X: np.ndarray, y: np.ndarray | None = None, progress: ProgressCallback | None = None) -> Detector:
        as_2d(X)
        self.fitted_ = True
        return self

    def point_scores(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def score(self, X: np.ndarray) -> np.ndarray:
        self._check_fitted()
        return self.point_scores(np.asarray(X, dtype=np.float64).reshape(len(X), -1))

    def window_scores(self, X: np.ndarray) -> np.ndarray:
        s = self.score(X)
        return s[window_ends(len(s), self.window, self.stride)]


class RandomScores(_PointBaseline):
    name = "random"

    def point_scores(self, X: np.ndarray) -> np.ndarray:
        return np.random.default_rng(self.seed).random(len(X))


class OneLiner(_PointBaseline):
    name = "oneliner"

    def point_scores(self, X: np.ndarray) -> np.ndarray:
        d = np.abs(np.diff(X, axis=0, prepend=X[:1]))
        return d.max(axis=1)


class RollingZ(_PointBaseline):
    name = "rollingz"

    def __init__(self, *, history: int = 50, **kw: Any) -> None:
        super().__init__(**kw)
        self.history = history

    def point_scores(self, X: np.ndarray) -> np.ndarray:
        # pandas' rolling moments are numerically stable (no cumsum-of-squares cancellation on long series)
        df = pd.DataFrame(X)
        roll = df.rolling(self.history, min_periods=1)
        mean = roll.mean().shift(1).to_numpy()  # statistics of the previous points only: [t-h, t)
        std = roll.std(ddof=0).shift(1).to_numpy()
        z = np.abs(X - mean) / np.maximum(std, 1e-6)
        z[0] = 0.0  # no history at the first point
        return np.nan_to_num(z, nan=0.0).max(axis=1)


BASELINES: dict[str, type[Detector]] = {"random": RandomScores, "oneliner": OneLiner, "rollingz": RollingZ}
REFERENCE_DETECTORS = (*BASELINES, "iforest")
"""The unsupervised references of the tables: named without a query strategy (they are run at budget 0)."""
