"""A detector whose learning is known in advance, for the adoption tests: labels make it better or worse.

Before any feedback it scores windows at random (seeded); after feedback its window score is the window's largest
|x| (``mode="better"``: the spikes of the test series come first) or minus that (``"worse"``: they come last).
It can hold labels out, and held out it behaves as after feedback (what it learns does not depend on which labels).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from app.core.detectors.base import Detector
from app.core.windows import LabeledRange, as_2d, sliding_windows


class FlipDetector(Detector):
    name: ClassVar[str] = "test_flip"
    can_hold_out_labels: ClassVar[bool] = True

    def __init__(
        self, *, window: int = 25, stride: int = 1, seed: int = 0, device: str = "auto", mode: str = "better"
    ) -> None:
        super().__init__(window=window, stride=stride, seed=seed, device=device)
        self.mode = mode

    def fit(self, X: np.ndarray, y: np.ndarray | None = None, progress: Any = None) -> FlipDetector:
        self.learned_ = False
        self.fitted_ = True
        return self

    def _learned_scores(self, X: np.ndarray) -> np.ndarray:
        peak = np.abs(sliding_windows(as_2d(X), self.window, self.stride)).max(axis=(1, 2))
        return peak if self.mode == "better" else -peak

    def window_scores(self, X: np.ndarray) -> np.ndarray:
        self._check_fitted()
        if self.learned_:
            return self._learned_scores(X)
        return np.random.default_rng(self.seed).random(self.n_windows(len(X)))

    def feedback(self, X: np.ndarray, ranges: Sequence[LabeledRange], progress: Any = None) -> FlipDetector:
        self.learned_ = True
        return self

    def validation_window_scores(
        self, X: np.ndarray, train_ranges: Sequence[LabeledRange], heldout_ranges: Sequence[LabeledRange]
    ) -> np.ndarray:
        return self._learned_scores(X)
