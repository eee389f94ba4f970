"""Sanity baselines under the same protocol as every detector (some benchmarks are trivially solvable).

- ``random``: i.i.d. uniform scores from the seed — the PR-AUC floor (≈ the anomaly rate).
- ``oneliner``: max over channels of ``|x_t − x_{t−1}|`` (first point 0): the core's ``diff`` scorer.
- ``rollingz``: max over channels of ``|x_t − mean| / std`` over the previous ``history`` points
  (50; fewer at the series start, 0 at the first point; a std below ``1e-6`` counts as ``1e-6``): the
  core's ``rollingz`` scorer (:mod:`app.core.detectors.statistical`). Both standardise channels with the
  fit part's mean and std, which on the protocol's already z-scored data changes nothing.

They are :class:`~app.core.detectors.base.Detector` subclasses so the loop and the harness treat
them like any detector: point scores are computed per point, window scores are the point score at
each window's end point. Feedback is a no-op — labels do not change them.
"""

from __future__ import annotations

import numpy as np

from app.core.detectors.base import Detector
from app.core.detectors.statistical import DiffScorer, RollingZScorer
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


OneLiner = DiffScorer
"""The one-liner |Δx| lives in the core now (``diff``, an ensemble member); the bench keeps its name."""
RollingZ = RollingZScorer
"""The rolling z-score lives in the core now (``rollingz``, an ensemble member)."""


BASELINES: dict[str, type[Detector]] = {"random": RandomScores, "oneliner": OneLiner, "rollingz": RollingZ}
REFERENCE_DETECTORS = (*BASELINES, "iforest")
"""The unsupervised references of the tables: named without a query strategy (they are run at budget 0)."""
