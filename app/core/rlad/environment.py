"""The RLAD Markov decision process over the windows of one series (no torch here).

State ``i`` is window ``i`` (``(window, n_channels)``, min-max scaled). The action is the agent's
prediction: 0 normal, 1 anomaly. The reward comes from the window's *training* label — a true label
the oracle gave, or a pseudo-label from propagation — never from anything else: the environment is
built from those labels only, so ground truth the oracle did not give cannot leak in. The next state
is window ``i + 1``, the next window in time (the public reference code stepped to the wrong one);
the last window of the series is terminal. Unlabeled windows have no reward, so they cannot be
stepped; they still serve as next states, whose value the target network estimates.

Each window may also carry side features ``(n_features,)`` that the Q-network reads beside the window
(the detector passes the warm-up iForest's standardized window score): they are part of the state,
never a label, so they can carry no ground truth either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np

UNLABELED = -1


@dataclass(frozen=True)
class Rewards:
    """Reward table (paper: ``(r1, r2, -r1, -r2)`` for TP, TN, FN, FP with r1 = 5, r2 = 1)."""

    tp: float = 5.0
    """Predicted anomaly, label anomaly."""
    tn: float = 1.0
    """Predicted normal, label normal."""
    fn: float = -5.0
    """Predicted normal, label anomaly (a missed anomaly costs as much as a hit earns)."""
    fp: float = -1.0
    """Predicted anomaly, label normal."""

    def __call__(self, label: int, action: int) -> float:
        if label not in (0, 1) or action not in (0, 1):
            raise ValueError(f"reward needs label and action in {{0, 1}}, got label={label}, action={action}")
        if label == 1:
            return self.tp if action == 1 else self.fn
        return self.fp if action == 1 else self.tn


@dataclass(frozen=True)
class Step:
    """One transition by window index: ``next_index`` is ``index + 1``, or ``index`` when terminal."""

    index: int
    action: int
    reward: float
    next_index: int
    terminated: bool


class WindowEnv:
    """Windows of one series with their training labels.

    ``windows``: ``(n_windows, window, n_channels)`` float32 (a view is fine; nothing is copied).
    ``labels``: ``(n_windows,)`` int, 1 anomaly, 0 normal, -1 unlabeled — true labels where the
    oracle answered, pseudo-labels elsewhere. ``pseudo``: optional ``(n_windows,)`` bool marking the
    pseudo-labelled windows (bookkeeping only: the reward treats both kinds alike). ``features``:
    optional ``(n_windows, n_features)`` float32 side features of each state (module doc).
    """

    def __init__(
        self,
        windows: np.ndarray,
        labels: np.ndarray,
        pseudo: np.ndarray | None = None,
        rewards: Rewards | None = None,
        features: np.ndarray | None = None,
    ) -> None:
        if len(windows) != len(labels):
            raise ValueError(f"{len(windows)} windows but {len(labels)} labels")
        if features is not None and len(features) != len(windows):
            raise ValueError(f"{len(windows)} windows but {len(features)} feature rows")
        self.windows = windows
        self.features = (
            np.zeros((len(windows), 0), dtype=np.float32) if features is None else np.asarray(features, np.float32)
        )
        self.labels = np.asarray(labels, dtype=np.int64)
        self.pseudo = np.zeros(len(labels), dtype=bool) if pseudo is None else np.asarray(pseudo, dtype=bool)
        self.rewards = rewards or Rewards()
        self.labeled = np.flatnonzero(self.labels != UNLABELED)  # sorted: time order

    @property
    def n_features(self) -> int:
        return int(self.features.shape[1])

    @property
    def n_windows(self) -> int:
        return len(self.windows)

    def state(self, index: int) -> np.ndarray:
        """Window ``index``: ``(window, n_channels)``."""
        return cast(np.ndarray, self.windows[index])

    def feature(self, index: int) -> np.ndarray:
        """Side features of window ``index``: ``(n_features,)`` (empty when there are none)."""
        return cast(np.ndarray, self.features[index])

    def step(self, index: int, action: int) -> Step:
        """Take ``action`` in state ``index``; reward from its training label, next state ``index + 1``."""
        label = int(self.labels[index])
        if label == UNLABELED:
            raise ValueError(f"window {index} has no label (true or pseudo), so it has no reward")
        terminated = index == self.n_windows - 1
        next_index = index if terminated else index + 1
        return Step(index, int(action), self.rewards(label, int(action)), next_index, terminated)

    def episode(self, rng: np.random.Generator, max_steps: int) -> np.ndarray:
        """The labeled windows one episode visits, in time order: all, or ``max_steps`` drawn without replacement.

        Every labeled window is equally likely, wherever it lies. (An earlier walk through a contiguous
        slice of the labeled windows let each episode see one stretch of the series only: with a replay
        memory of 1,000 the agent forgot the rest and fitted only 85–95% of its own training labels on
        SMD.) The transition of a visit is unchanged — its next state is still the next window in time —
        because the action does not move the environment: the visit order only decides which labeled
        windows feed the replay memory.
        """
        count = len(self.labeled)
        if count <= max_steps:
            return self.labeled
        return np.sort(rng.choice(self.labeled, max_steps, replace=False))
