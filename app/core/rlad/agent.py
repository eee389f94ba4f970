"""The RLAD agent: a DQN whose Q-function is an LSTM over one window (read top to bottom).

Paper, Sec. 5.2 and Algorithm 1: an eval network ``Q`` and a target network ``Q̂`` of the same shape
(LSTM, forget-gate bias 1.0, then a linear layer to two Q-values: q0 normal, q1 anomaly), a replay
memory of 1,000 transitions, ε-greedy exploration with a decaying ε, and the target

    target = r + γ · max_a' Q̂(s', a')        (no bootstrap when s is the series' last window)

fitted by gradient descent on ``(Q(s, a) − target)²``; ``Q̂`` copies ``Q`` every ``target_update_every``
learning steps. ``q1 − q0`` is the window's anomaly score and ``|q0 − q1|`` its margin (Eq. 5).

A state may carry side features beside its window (``WindowEnv.features``, e.g. the warm-up iForest's
score); the network concatenates them to the LSTM's last hidden state before the linear head.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
from torch import nn

from app.core.rlad.environment import WindowEnv
from app.core.runtime import Progress, ProgressCallback, report


@dataclass(frozen=True)
class DQNConfig:
    """Hyperparameters of the agent (saved beside the weights)."""

    hidden_size: int = 32
    """LSTM units. The paper gives one hidden layer but no size; 32 keeps 1M-window scoring fast on CPU."""
    gamma: float = 0.8
    """Discount factor (paper: 0.8 for Yahoo, 0.98 for KPI)."""
    learning_rate: float = 1e-3
    """Adam step size."""
    batch_size: int = 64
    """Transitions per gradient step, sampled uniformly from the replay memory."""
    replay_size: int = 1000
    """Replay memory capacity N (paper: 1,000)."""
    target_update_every: int = 100
    """Copy the eval network to the target network every this many gradient steps (paper: r)."""
    epsilon_start: float = 1.0
    """Exploration rate at the agent's first step."""
    epsilon_end: float = 0.1
    """Exploration floor; kept above 0 so both Q-values of a window keep receiving targets."""
    epsilon_decay_steps: int = 10_000
    """Steps (over all training rounds) for ε to fall linearly from start to end (paper: rate 1/500,000)."""
    max_grad_norm: float = 10.0
    """Gradient-norm clip; keeps early bootstrapped targets from blowing up the LSTM."""
    cpu_threads: int = 1
    """Torch threads while training or scoring on CPU (0 = leave torch's setting). The per-step
    tensors are small (batch × hidden), so extra threads mostly add synchronisation, and on a busy
    machine spinning threads collapse: on the 2-core dev box under load, 1 vs 2 threads measured
    12 vs 52 ms per training step and 5.7 vs 65 s to score 1,000,000 windows."""


class QNetwork(nn.Module):
    """LSTM over a window, then a linear map of ``[last hidden state, side features]`` to ``(q0, q1)``."""

    def __init__(self, n_channels: int, hidden_size: int, n_features: int = 0) -> None:
        super().__init__()
        self.n_features = n_features
        self.lstm = nn.LSTM(n_channels, hidden_size, batch_first=True)
        self.head = nn.Linear(hidden_size + n_features, 2)
        # Forget-gate bias 1.0 (paper, Sec. 6.3). PyTorch orders gates (input, forget, cell, output)
        # and adds bias_ih + bias_hh, so set one forget chunk to 1 and the other to 0.
        with torch.no_grad():
            self.lstm.get_parameter("bias_ih_l0")[hidden_size : 2 * hidden_size].fill_(1.0)
            self.lstm.get_parameter("bias_hh_l0")[hidden_size : 2 * hidden_size].fill_(0.0)

    def forward(self, states: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        _, (h, _) = self.lstm(states)  # states (B, window, C) -> h (1, B, hidden)
        last = h[-1] if features is None or self.n_features == 0 else torch.cat([h[-1], features], dim=1)
        return cast(torch.Tensor, self.head(last))  # (B, hidden + F) -> (B, 2)


@contextmanager
def _cpu_threads(device: torch.device, threads: int) -> Iterator[None]:
    """Use ``threads`` torch threads inside the block on CPU, then restore the caller's setting."""
    if device.type != "cpu" or threads <= 0:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def linear_schedule(start: float, end: float, duration: int, t: int) -> float:
    """ε at step ``t``: linear from ``start`` to ``end`` over ``duration`` steps, then ``end``."""
    slope = (end - start) / max(duration, 1)
    return max(slope * t + start, end)


class ReplayMemory:
    """Ring buffer of transitions ``(s, a, r, s', done)``; states are stored as copies, ``(window, C)``,
    with their side features ``(n_features,)``."""

    def __init__(self, capacity: int, state_shape: tuple[int, ...], n_features: int = 0) -> None:
        self.capacity = capacity
        self.states = np.zeros((capacity, *state_shape), dtype=np.float32)
        self.next_states = np.zeros((capacity, *state_shape), dtype=np.float32)
        self.features = np.zeros((capacity, n_features), dtype=np.float32)
        self.next_features = np.zeros((capacity, n_features), dtype=np.float32)
        self.actions = np.zeros(capacity, dtype=np.int64)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.dones = np.zeros(capacity, dtype=np.float32)
        self.indices = np.zeros(capacity, dtype=np.int64)  # window index of s, for inspection only
        self.pos = 0
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def push(
        self,
        state: np.ndarray,
        action: int,
        reward: float,
        next_state: np.ndarray,
        done: bool,
        index: int = -1,
        features: np.ndarray | None = None,
        next_features: np.ndarray | None = None,
    ) -> None:
        i = self.pos
        self.states[i], self.next_states[i] = state, next_state
        if features is not None and next_features is not None:
            self.features[i], self.next_features[i] = features, next_features
        self.actions[i], self.rewards[i], self.dones[i], self.indices[i] = action, reward, float(done), index
        self.pos = (self.pos + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        """``(s, a, r, s', done, f, f')`` of ``batch_size`` transitions drawn uniformly (with replacement)."""
        idx = rng.integers(0, self.size, size=batch_size)
        return (
            self.states[idx],
            self.actions[idx],
            self.rewards[idx],
            self.next_states[idx],
            self.dones[idx],
            self.features[idx],
            self.next_features[idx],
        )


@dataclass(frozen=True)
class EpisodeStats:
    """What one episode did: summed reward, mean TD loss (NaN before learning starts), ε at its end."""

    reward: float
    loss: float
    epsilon: float
    steps: int


class DQNAgent:
    """Eval and target networks, their optimizer and the global step count (drives ε)."""

    def __init__(
        self, n_channels: int, config: DQNConfig, device: str = "cpu", seed: int = 0, n_features: int = 0
    ) -> None:
        self.config = config
        self.n_features = n_features
        self.device = torch.device(device)
        # The initial weights are the only torch randomness (sampling and ε use numpy's rng); seed
        # them in a forked RNG so building an agent leaves the caller's global torch state alone.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.q_network = QNetwork(n_channels, config.hidden_size, n_features).to(self.device)
        self.target_network = QNetwork(n_channels, config.hidden_size, n_features).to(self.device)
        self.target_network.load_state_dict(self.q_network.state_dict())
        self.optimizer = torch.optim.Adam(self.q_network.parameters(), lr=config.learning_rate)
        self.steps_done = 0  # environment steps over every training round
        self.updates_done = 0  # gradient steps over every training round

    # -- inference ---------------------------------------------------------------------------
    @torch.no_grad()
    def q_values(self, windows: np.ndarray, batch_size: int = 2048, features: np.ndarray | None = None) -> np.ndarray:
        """Q-values ``(n_windows, 2)`` (columns q0 normal, q1 anomaly) of ``windows (n, window, C)``.

        ``features``: ``(n, n_features)`` side features of the windows (required when the agent has any).
        Runs in batches so memory stays bounded however long the series (each batch is copied
        from a possibly zero-copy window view).
        """
        if self.n_features and (features is None or features.shape != (len(windows), self.n_features)):
            raise ValueError(f"the agent reads {self.n_features} side features per window; pass (n_windows, F)")
        self.q_network.eval()
        out = np.empty((len(windows), 2), dtype=np.float32)
        with _cpu_threads(self.device, self.config.cpu_threads):
            for lo in range(0, len(windows), batch_size):
                batch = torch.as_tensor(np.ascontiguousarray(windows[lo : lo + batch_size]), device=self.device)
                extra = None
                if self.n_features:
                    assert features is not None  # checked above
                    extra = torch.as_tensor(
                        np.ascontiguousarray(features[lo : lo + batch_size], np.float32), device=self.device
                    )
                out[lo : lo + len(batch)] = self.q_network(batch, extra).cpu().numpy()  # (B, window, C) -> (B, 2)
        return out

    @torch.no_grad()
    def greedy_action(self, state: np.ndarray, features: np.ndarray | None = None) -> int:
        """argmax_a Q(state, a) for one window ``(window, C)`` with its side features ``(n_features,)``."""
        extra = None
        if self.n_features:
            assert features is not None, f"the agent reads {self.n_features} side features; pass them"
            extra = torch.tensor(features[None], device=self.device)
        q = self.q_network(torch.tensor(state[None], device=self.device), extra)  # (1, window, C) -> (1, 2)
        return int(q.argmax(dim=1).item())

    def epsilon(self) -> float:
        c = self.config
        return linear_schedule(c.epsilon_start, c.epsilon_end, c.epsilon_decay_steps, self.steps_done)

    # -- learning ----------------------------------------------------------------------------
    def learn(self, memory: ReplayMemory, rng: np.random.Generator) -> float:
        """One gradient step on a sampled mini-batch; returns the TD loss."""
        batch = memory.sample(self.config.batch_size, rng)
        s, a, r, s_next, done, f, f_next = (torch.as_tensor(v, device=self.device) for v in batch)  # s (B, window, C)
        with torch.no_grad():
            next_value = self.target_network(s_next, f_next).max(dim=1).values  # (B,)
            target = r + self.config.gamma * next_value * (1.0 - done)  # (B,)
        self.q_network.train()
        q_taken = self.q_network(s, f).gather(1, a[:, None]).squeeze(1)  # (B,)
        loss = nn.functional.mse_loss(q_taken, target)
        self.optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(self.q_network.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
        self.updates_done += 1
        if self.updates_done % self.config.target_update_every == 0:
            self.target_network.load_state_dict(self.q_network.state_dict())
        return float(loss.item())

    def train(
        self,
        env: WindowEnv,
        *,
        episodes: int,
        steps_per_episode: int,
        rng: np.random.Generator,
        prefill: Sequence[int] = (),
        progress: ProgressCallback | None = None,
    ) -> tuple[ReplayMemory, list[EpisodeStats]]:
        """Algorithm 1: ``episodes`` episodes over the labeled windows of ``env``.

        A fresh replay memory per call (pseudo-labels change between rounds, so old transitions
        would carry stale rewards). ``prefill``: window indices whose transitions for *both*
        actions go in first — the iForest warm-up windows, for a diverse memory (Sec. 5.1).
        ``progress`` gets one report per episode (and may raise ``Cancelled``).
        Returns the memory (for inspection) and per-episode statistics.
        """
        if env.n_features != self.n_features:
            raise ValueError(f"the environment has {env.n_features} side features, the agent reads {self.n_features}")
        memory = ReplayMemory(self.config.replay_size, env.windows.shape[1:], env.n_features)
        for index in prefill:
            for action in (0, 1):
                self._remember(env, memory, int(index), action)
        stats: list[EpisodeStats] = []
        with _cpu_threads(self.device, self.config.cpu_threads):
            for episode in range(episodes):
                stats.append(self._episode(env, memory, steps_per_episode, rng))
                report(
                    progress,
                    Progress(
                        phase="rlad",
                        fraction=(episode + 1) / episodes,
                        step=episode + 1,
                        total_steps=episodes,
                        loss=stats[-1].loss,
                        reward=stats[-1].reward,
                        extra={"epsilon": stats[-1].epsilon},
                    ),
                )
        return memory, stats

    def _episode(
        self, env: WindowEnv, memory: ReplayMemory, steps_per_episode: int, rng: np.random.Generator
    ) -> EpisodeStats:
        """Act ε-greedily on up to ``steps_per_episode`` labeled windows, learning after every step."""
        total_reward, losses = 0.0, []
        visits = env.episode(rng, steps_per_episode)
        for index in visits:
            if rng.random() < self.epsilon():
                action = int(rng.integers(0, 2))
            else:
                action = self.greedy_action(env.state(int(index)), env.feature(int(index)))
            total_reward += self._remember(env, memory, int(index), action)
            self.steps_done += 1
            if len(memory) >= self.config.batch_size:
                losses.append(self.learn(memory, rng))
        loss = float(np.mean(losses)) if losses else float("nan")
        return EpisodeStats(total_reward, loss, self.epsilon(), len(visits))

    @staticmethod
    def _remember(env: WindowEnv, memory: ReplayMemory, index: int, action: int) -> float:
        """Step ``env`` from window ``index`` and store the transition; returns its reward."""
        step = env.step(index, action)
        memory.push(
            env.state(index),
            action,
            step.reward,
            env.state(step.next_index),
            step.terminated,
            index,
            env.feature(index),
            env.feature(step.next_index),
        )
        return step.reward

    # -- serialization -----------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """Both networks, the optimizer and the step counts, as ``torch.save`` bytes (tensors on CPU)."""
        buf = io.BytesIO()
        cpu = {k: v.cpu() for k, v in self.q_network.state_dict().items()}
        target = {k: v.cpu() for k, v in self.target_network.state_dict().items()}
        optimizer = _to_cpu(self.optimizer.state_dict())
        torch.save(
            {
                "q": cpu,
                "target": target,
                "optimizer": optimizer,
                "steps_done": self.steps_done,
                "updates_done": self.updates_done,
            },
            buf,
        )
        return buf.getvalue()

    def load_bytes(self, data: bytes) -> None:
        state = torch.load(io.BytesIO(data), map_location=self.device, weights_only=True)
        self.q_network.load_state_dict(state["q"])
        self.target_network.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps_done, self.updates_done = int(state["steps_done"]), int(state["updates_done"])


def _to_cpu(obj: object) -> object:
    """Optimizer state with every tensor moved to CPU (its nesting kept)."""
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    return obj
