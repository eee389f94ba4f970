"""RLAD warm-up (Sec. 4–5.1): an iForest over the windows and the N_w high / low / middle windows.

The forest is the project's :class:`~app.core.detectors.iforest.IForestDetector`, whose window score
is the paper's iForest anomaly score s(x) in (0, 1] (higher = more anomalous; about 0.5 = "no distinct
anomaly"), so "the windows with scores close to 0.5" reads directly off it.
"""

from __future__ import annotations

import numpy as np

from app.core.detectors.iforest import IForestDetector

#: Windows the forest is fitted on at most (each tree sees 256 anyway); bounds time and memory.
FIT_WINDOWS = 20_000


def fit_warmup_forest(X: np.ndarray, window: int, stride: int, seed: int) -> IForestDetector:
    """An iForest fitted on the windows of ``X (n_points, C)`` (a seeded subset of ``FIT_WINDOWS`` at most)."""
    return IForestDetector(window=window, stride=stride, seed=seed, max_fit_windows=FIT_WINDOWS).fit(X)


def select_warmup_windows(scores: np.ndarray, n_warmup: int) -> np.ndarray:
    """The ``n_warmup`` highest-, lowest- and closest-to-0.5-scored windows, as sorted distinct indices.

    ``scores``: iForest scores s(x) ``(n_windows,)``. Returns ``3 * n_warmup`` window indices (fewer
    only when the series has fewer windows); a window two groups would both pick goes to the first.
    """
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(s, kind="stable")
    chosen: list[int] = []
    for candidates in (order[::-1], order, np.argsort(np.abs(s - 0.5), kind="stable")):
        fresh = [int(i) for i in candidates if int(i) not in chosen][:n_warmup]  # keeps each group N_w
        chosen.extend(fresh)
    return np.array(sorted(chosen), dtype=np.int64)
