"""The RLAD Markov decision process over the windows of one series (no torch here).

State ``i`` is window ``i`` (``(window, n_channels)``, min-max scaled). The action is the agent's
prediction: 0 normal, 1 anomaly. The reward comes from the window's *training* label — a true label
the oracle gave, or a pseudo-label from propagation — never from anything else: the environment is
built from those labels only, so ground truth the oracle did not give cannot leak in. The next state
is window ``i + 1``, the next window in time (the public reference code stepped to the wrong one);
the last window of the series is terminal. Unlabeled windows have no reward, so they cannot be
stepped; they still serve as next states, whose value the target network estimates.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    pseudo-labelled windows (bookkeeping only: the reward treats both kinds alike).
    """

    def __init__(
        self,
        windows: np.ndarray,
        labels: np.ndarray,
        pseudo: np.ndarray | None = None,
        rewards: Rewards | None = None,
    ) -> None:
        if len(windows) != len(labels):
            raise ValueError(f"{len(windows)} windows but {len(labels)} labels")
        self.windows = windows
        self.labels = np.asarray(labels, dtype=np.int64)
        self.pseudo = np.zeros(len(labels), dtype=bool) if pseudo is None else np.asarray(pseudo, dtype=bool)
        self.rewards = rewards or Rewards()
        self.labeled = np.flatnonzero(self.labels != UNLABELED)  # sorted: time order

    @property
    def n_windows(self) -> int:
        return len(self.windows)

    def state(self, index: int) -> np.ndarray:
        """Window ``index``: ``(window, n_channels)``."""
        return self.windows[index]

    def step(self, index: int, action: int) -> Step:
        """Take ``action`` in state ``index``; reward from its training label, next state ``index + 1``."""
        label = int(self.labels[index])
        if label == UNLABELED:
            raise ValueError(f"window {index} has no label (true or pseudo), so it has no reward")
        terminated = index == self.n_windows - 1
        next_index = index if terminated else index + 1
        return Step(index, int(action), self.rewards(label, int(action)), next_index, terminated)

    def episode(self, rng: np.random.Generator, max_steps: int) -> np.ndarray:
        """The labeled windows one episode visits: up to ``max_steps`` of them in time order.

        Starts at a random labeled window (so long label sets are covered across episodes) and
        walks forward through the labeled windows; where labeled windows are contiguous the visits
        are a true trajectory (each next state is the next one visited).
        """
        count = len(self.labeled)
        if count == 0:
            return self.labeled
        if count <= max_steps:
            return self.labeled
        start = int(rng.integers(0, count - max_steps + 1))
        return self.labeled[start : start + max_steps]
