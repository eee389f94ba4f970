"""RLAD warm-up (Sec. 4–5.1): iForest window scores and the N_w high / low / middle windows.

The iForest is scikit-learn's ``IsolationForest`` on flattened min-max-scaled windows, used here
directly: when this module was written ``app.core.detectors.iforest`` did not exist yet, and RLAD
needs the paper's native score scale anyway (s(x) in (0, 1), where ~0.5 means "no distinct anomaly"),
to pick the windows "with anomaly scores close to 0.5".
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import IsolationForest

#: Windows the forest is fitted on at most (each tree sees 256 anyway); bounds time and memory.
FIT_WINDOWS = 20_000
#: Windows flattened and scored per batch; bounds memory on long multivariate series.
SCORE_BATCH = 16_384


def fit_isolation_forest(windows: np.ndarray, seed: int, n_estimators: int = 100) -> IsolationForest:
    """Fit an iForest on ``windows (n_windows, window, C)`` (a random subset of ``FIT_WINDOWS`` at most)."""
    rng = np.random.default_rng(seed)
    count = len(windows)
    idx = np.sort(rng.choice(count, FIT_WINDOWS, replace=False)) if count > FIT_WINDOWS else np.arange(count)
    flat = np.asarray(windows[idx], dtype=np.float32).reshape(len(idx), -1)
    return IsolationForest(n_estimators=n_estimators, max_samples=min(256, len(idx)), random_state=seed).fit(flat)


def isolation_scores(model: IsolationForest, windows: np.ndarray) -> np.ndarray:
    """The paper's iForest anomaly score s(x) in (0, 1) per window, ``(n_windows,)``; higher = more anomalous."""
    out = np.empty(len(windows), dtype=np.float64)
    for lo in range(0, len(windows), SCORE_BATCH):
        flat = np.asarray(windows[lo : lo + SCORE_BATCH], dtype=np.float32).reshape(-1, model.n_features_in_)
        out[lo : lo + len(flat)] = -model.score_samples(flat)  # sklearn returns -s(x)
    return out


def select_warmup_windows(scores: np.ndarray, n_warmup: int) -> np.ndarray:
    """The ``n_warmup`` highest-, lowest- and closest-to-0.5-scored windows, as sorted distinct indices.

    ``scores``: iForest scores ``(n_windows,)`` from :func:`isolation_scores`. Returns at most
    ``3 * n_warmup`` window indices (fewer only when the series has fewer windows).
    """
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(s, kind="stable")
    chosen: list[int] = []
    for candidates in (order[::-1], order, np.argsort(np.abs(s - 0.5), kind="stable")):
        taken = 0
        for i in candidates:  # skip windows another group already took, so the groups stay N_w each
            if taken == n_warmup:
                break
            if int(i) not in chosen:
                chosen.append(int(i))
                taken += 1
    return np.array(sorted(chosen), dtype=np.int64)
