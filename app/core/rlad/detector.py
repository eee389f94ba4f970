"""``RLADDetector``: the RLAD method (seed 000) behind the common :class:`Detector` contract.

How the active-learning loop drives it (every true label the agent ever sees comes through here,
so the caller's count of asked labels is the whole truth; ``labels_seen_`` lets it check):

1. ``fit(X)`` — unsupervised: fits the min-max scaler (on ``X`` only), the warm-up iForest and a
   freshly initialised DQN. No labels are used, nothing is trained with labels.
2. ``initial_queries(X)`` — the warm-up windows to ask the oracle: the ``n_warmup`` (N_w) highest-,
   lowest- and closest-to-0.5 iForest-scored windows. The caller asks and counts them.
3. ``feedback(X, ranges)`` — with *all* labels gathered so far: window labels (a window's label is its
   end point's), label propagation to pseudo-label confident unlabeled windows, then DQN training
   that continues from the current weights. ``margins(X)`` ranks windows for the ``margin`` query
   strategy (smallest = most uncertain).

Three choices beyond the paper, all switchable for the ablations (``warmup_feature``, ``warm_start``,
``agent_gate``):

- The warm-up iForest's window score, standardized on the fit data, is a side feature of every state
  (the Q-network's head reads it beside the LSTM's last hidden state). With a few dozen labels an LSTM
  over raw windows learns the anomaly types it was shown and loses the ones the forest already ranked
  well: on the loop-test KPI slice (first 8,000 points, 70/30) the plain DQN fell from the forest's 0.794
  PR-AUC to 0.66–0.72 after 100 labels; with the feature, a fresh agent per round (below) and episodes
  that cover every labeled window (``WindowEnv.episode``), 2% end-point labels give 0.831 (seed 1:
  0.820 vs the forest's 0.770). It does not rescue every series: on an SMD machine-1-2 slice the agent
  still ends far below the forest (0.24 vs 0.52). The feature is unsupervised (no label in it).
- ``warm_start=False`` (scikit-learn's name and meaning): every ``feedback`` round trains a fresh agent
  on all labels so far, so a version depends on the labels, the seed and the round only, and rounds do
  not pile up gradient steps on the same few labels (continuing made the scores swing by ±0.15
  PR-AUC between consecutive rounds on KPI and SMD slices). ``True`` continues from the current weights.
- ``agent_gate=True``: a trained agent serves only when agents cross-fitted over the gathered answers rank
  them better than the warm-up forest beyond noise (:meth:`RLADDetector._gate`); else the forest's scores
  serve. Without it the loop-test KPI slice served 0.750 after round 1 and 0.749 after round 3 against the
  forest's 0.794; with it the forest kept serving there, and on the same slice with 2 % labels in two rounds the
  agent passed the gate and served 0.806 / 0.796 (seeds 0 / 1; forest 0.794 / 0.770).

Scores: a window's score is ``q1 − q0`` (higher = more anomalous). Before the first training round —
and while the labels hold no anomaly, when no round trains — there are no Q-values worth reading, so
the score is the iForest score ``s(x) − 0.5`` (also > 0 for "leans anomalous"); with
``use_warmup=False`` there is no iForest and the untrained DQN's ``q1 − q0`` is returned.
``score(X)`` maps window scores to points by end point: point ``t`` takes the window ending at ``t``,
and the first ``window − 1`` points take the first window's score.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal, cast

import numpy as np

from app.core.detectors.base import Detector
from app.core.rlad.agent import DQNAgent, DQNConfig
from app.core.rlad.environment import UNLABELED, WindowEnv
from app.core.rlad.propagation import propagate_labels
from app.core.rlad.warmup import fit_warmup_forest, select_warmup_windows
from app.core.runtime import Cancelled, Progress, ProgressCallback, report, resolve_device, resolve_load_device
from app.core.windows import LabeledRange, Scaler, as_2d, ranges_to_point_labels, sliding_windows, window_labels


class RLADDetector(Detector):
    """LSTM-DQN anomaly detector with iForest warm-up, label propagation and margin active learning.

    Defaults follow the paper (ω = 25, N_w = 5, replay 1,000, rewards 5/1/−5/−1, γ = 0.8); the training
    budget per ``feedback`` round is ``episodes × steps_per_episode`` environment steps (one gradient
    step each once the memory holds a batch): 10 × 300 = 3,000 steps, about 10–20 s on one CPU core,
    independent of the series length. Scoring runs the LSTM in batches of ``score_batch`` windows.
    """

    name: ClassVar[str] = "rlad"
    summary: ClassVar[str] = (
        "RLAD: LSTM-DQN agent with iForest warm-up and label propagation; answers label one point each."
    )
    starter_params: ClassVar[dict[str, Any]] = {
        "episodes": 10,
        "steps_per_episode": 300,
        "n_warmup": 5,
        "hidden_size": 32,
    }
    default_strategy: ClassVar[str] = "margin"  # the paper's active learning: smallest |q0 - q1|
    answer_mode: ClassVar[str] = "end_point"  # a window's label is its end point's: one point per answer
    provides_margins: ClassVar[bool] = True
    asks_warmup: ClassVar[bool] = True
    param_bounds: ClassVar[dict[str, str]] = {
        **dict.fromkeys(("n_warmup", "episodes", "steps_per_episode", "n_pseudo", "epsilon_decay_steps"), "[0, inf)"),
        **dict.fromkeys(("hidden_size", "batch_size", "replay_size", "target_update_every"), "[1, inf)"),
        **dict.fromkeys(("propagation_nodes", "score_batch"), "[1, inf)"),
        **dict.fromkeys(("gamma", "epsilon_start", "epsilon_end"), "[0, 1]"),
        "learning_rate": "(0, inf)",
        "gate_folds": "[2, inf)",
        "gate_margin": "[0, 1)",
    }

    def __init__(
        self,
        *,
        window: int = 25,
        stride: int = 1,
        seed: int = 0,
        device: str = "auto",
        n_warmup: int = 5,
        use_warmup: bool = True,
        use_propagation: bool = True,
        warmup_feature: bool = True,
        warm_start: bool = False,
        hidden_size: int = 32,
        gamma: float = 0.8,
        learning_rate: float = 1e-3,
        batch_size: int = 64,
        replay_size: int = 1000,
        target_update_every: int = 100,
        epsilon_start: float = 1.0,
        epsilon_end: float = 0.1,
        epsilon_decay_steps: int = 10_000,
        episodes: int = 10,
        steps_per_episode: int = 300,
        n_pseudo: int = 200,
        propagation_nodes: int = 2000,
        propagation_method: Literal["propagation", "spreading"] = "propagation",
        score_batch: int = 2048,
        agent_gate: bool = True,
        gate_folds: int = 3,
        gate_margin: float = 0.02,
    ) -> None:
        super().__init__(window=window, stride=stride, seed=seed, device=device)
        self.n_warmup = n_warmup
        self.use_warmup = use_warmup
        self.use_propagation = use_propagation
        self.warmup_feature = warmup_feature
        self.warm_start = warm_start
        self.hidden_size = hidden_size
        self.gamma = gamma
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.replay_size = replay_size
        self.target_update_every = target_update_every
        self.epsilon_start = epsilon_start
        self.epsilon_end = epsilon_end
        self.epsilon_decay_steps = epsilon_decay_steps
        self.episodes = episodes
        self.steps_per_episode = steps_per_episode
        self.n_pseudo = n_pseudo
        self.propagation_nodes = propagation_nodes
        self.propagation_method = propagation_method
        self.score_batch = score_batch
        self.agent_gate = agent_gate
        self.gate_folds = gate_folds
        self.gate_margin = gate_margin

    # -- helpers ----------------------------------------------------------------------------
    def config(self) -> DQNConfig:
        """The agent's hyperparameters, from this detector's parameters."""
        return DQNConfig(
            hidden_size=self.hidden_size,
            gamma=self.gamma,
            learning_rate=self.learning_rate,
            batch_size=self.batch_size,
            replay_size=self.replay_size,
            target_update_every=self.target_update_every,
            epsilon_start=self.epsilon_start,
            epsilon_end=self.epsilon_end,
            epsilon_decay_steps=self.epsilon_decay_steps,
        )

    def _windows(self, X: np.ndarray) -> np.ndarray:
        """Scaled windows of ``X``: ``(n_points, C) -> (n_windows, window, C)`` float32 (a view)."""
        return sliding_windows(self.scaler_.transform(X), self.window, self.stride)

    def _features(self, X: np.ndarray) -> np.ndarray | None:
        """The states' side features ``(n_windows, 1)``: the iForest window score standardized on the fit
        data; ``None`` without the warm-up feature."""
        if self.n_features_ == 0:
            return None
        assert self.iforest_ is not None  # the feature is the warm-up forest's score
        s = self.iforest_.window_scores(as_2d(X))
        return ((s - self.feature_mean_) / self.feature_std_).astype(np.float32)[:, None]

    def _new_agent(self) -> DQNAgent:
        # A model stored by a GPU worker (device 'cuda') loads, scores and learns where no GPU is (a CPU-only web
        # process); only ``fit`` refuses a device this machine lacks.
        device = resolve_load_device(self.device)
        return DQNAgent(self.n_channels_, self.config(), device, self.seed, self.n_features_)

    def _rng(self, purpose: int) -> np.random.Generator:
        # One stream per (round, purpose): a round's result depends on the seed and the round only.
        return np.random.default_rng([self.seed, getattr(self, "rounds_", 0), purpose])

    # -- the contract -----------------------------------------------------------------------
    def fit(self, X: np.ndarray, y: np.ndarray | None = None, progress: ProgressCallback | None = None) -> RLADDetector:
        """Unsupervised warm-up on ``X (n_points, C)``: scaler, iForest, an untrained DQN.

        ``y``: optional point labels ``(n_points,)`` (1, 0, -1 unknown); if any is known, one
        training round on them follows, exactly as ``feedback`` would do.
        """
        x = as_2d(X)
        resolve_device(self.device)  # a fit on a device this machine lacks is refused (ValueError)
        self.scaler_ = Scaler("minmax").fit(x)
        self.n_channels_ = x.shape[1]
        self.iforest_ = fit_warmup_forest(x, self.window, self.stride, self.seed) if self.use_warmup else None
        self.n_features_ = 1 if self.use_warmup and self.warmup_feature else 0
        if self.n_features_:
            assert self.iforest_ is not None  # n_features_ is 1 only with the warm-up forest
            fit_scores = self.iforest_.window_scores(x)
            self.feature_mean_, self.feature_std_ = float(fit_scores.mean()), float(fit_scores.std()) or 1.0
        self.agent_ = self._new_agent()
        self.warmup_windows_ = np.empty(0, dtype=np.int64)
        self.labels_seen_ = 0
        self.rounds_ = 0
        self.trained_ = False
        self.gated_ = False
        self.last_round_: dict[str, Any] = {}
        self.fitted_ = True
        report(progress, Progress(phase="warmup", fraction=1.0))
        if y is not None:
            point_labels = np.asarray(y).astype(np.int8)
            if len(point_labels) != len(x):
                raise ValueError(f"y has {len(point_labels)} labels for {len(x)} points")
            if (point_labels != UNLABELED).any():
                self._train(x, point_labels, progress)
        return self

    def initial_queries(self, X: np.ndarray) -> np.ndarray:
        """Window indices of ``X`` to ask the oracle before the first round: ``(≤ 3·n_warmup,)`` sorted.

        With ``use_warmup`` they are the iForest's N_w highest-, lowest- and middle-scored windows
        (their transitions also seed the replay memory once labeled); without it, as many windows
        drawn uniformly at random, so the ablation spends the same number of labels.
        """
        self._check_fitted()
        if self.use_warmup:
            assert self.iforest_ is not None  # fitted with use_warmup
            chosen = select_warmup_windows(self.iforest_.window_scores(X), self.n_warmup)
        else:
            total = self.n_windows(len(X))
            chosen = np.sort(self._rng(2).choice(total, min(3 * self.n_warmup, total), replace=False))
        self.warmup_windows_ = chosen.astype(np.int64)
        return self.warmup_windows_.copy()

    def window_scores(self, X: np.ndarray) -> np.ndarray:
        """``q1 − q0`` per window ``(n_windows,)``; before any training, the iForest fallback (module doc)."""
        self._check_fitted()
        if (not self.trained_ or self.gated_) and self.iforest_ is not None:
            return self.iforest_.window_scores(X) - 0.5
        return self._agent_window_scores(X)

    def margins(self, X: np.ndarray, window_scores: np.ndarray | None = None) -> np.ndarray:
        """``|q0 − q1|`` per window ``(n_windows,)`` (Eq. 5); the smallest are the most uncertain.

        Before any training this is the distance of the iForest score from 0.5, by the same rule. While the gate
        keeps the forest serving, the trained agent's margins (the windows it is unsure of are asked next).
        ``window_scores``: this detector's ``window_scores(X)`` when the caller already has them (the margin is
        their absolute value), which saves a second pass of the forest and the DQN over ``X``.
        """
        if self.trained_ and self.gated_:
            # the forest's scores serve, but the agent still asks: its uncertainty is what the next answers should
            # settle (querying the forest's middle instead changed which windows got asked, and lost ground)
            return cast(np.ndarray, np.abs(self._agent_window_scores(X)))
        if window_scores is None:
            window_scores = self.window_scores(X)
        return np.abs(np.asarray(window_scores, dtype=np.float64))

    def _agent_window_scores(self, X: np.ndarray) -> np.ndarray:
        return self._q_margin(self.agent_, self._windows(X), self._features(X))

    def _q_margin(self, agent: DQNAgent, windows: np.ndarray, features: np.ndarray | None) -> np.ndarray:
        """``q1 − q0`` of ``agent`` per window ``(n_windows,)``, float64."""
        q = agent.q_values(windows, self.score_batch, features)
        return cast(np.ndarray, (q[:, 1] - q[:, 0]).astype(np.float64))

    def _warmup_windows(self, x: np.ndarray) -> np.ndarray:
        """The warm-up windows of ``x`` recomputed from the forest (what ``initial_queries`` picks on the same
        ``x``), so the replay memory is seeded with the labeled ones whether or not this very object was asked
        (the product asks a stored copy, then trains another)."""
        if not self.use_warmup or self.iforest_ is None:
            return np.empty(0, dtype=np.int64)
        return select_warmup_windows(self.iforest_.window_scores(x), self.n_warmup)

    def feedback(
        self, X: np.ndarray, ranges: Sequence[LabeledRange], progress: ProgressCallback | None = None
    ) -> RLADDetector:
        """One training round on ``X`` with *all* labels so far; continues from the current weights.

        ``ranges``: labeled point ranges; a window is labeled when its end point is. If ``progress``
        raises ``Cancelled``, the agent is restored to its state before the call and it re-raises.
        """
        self._check_fitted()
        x = as_2d(X)
        self._train(x, ranges_to_point_labels(list(ranges), len(x)), progress)
        return self

    def training_env(self, X: np.ndarray, point_labels: np.ndarray) -> WindowEnv:
        """The environment a round would train in: true window labels plus this round's pseudo-labels.

        ``point_labels``: ``(n_points,)`` 1 / 0 / -1 unknown. Only windows without a true label can get
        a pseudo-label, and their reward then comes from the pseudo-label alone.
        """
        self._check_fitted()
        return self._env(self._windows(X), self._features(X), point_labels)

    def _env(self, windows: np.ndarray, features: np.ndarray | None, point_labels: np.ndarray) -> WindowEnv:
        """:meth:`training_env` from windows and side features already at hand (the gate's folds reuse them)."""
        true = window_labels(np.asarray(point_labels), self.window, self.stride).astype(np.int8)
        if self.use_propagation:
            pseudo = propagate_labels(
                windows,
                true,
                n_pseudo=self.n_pseudo,
                rng=self._rng(0),
                max_nodes=self.propagation_nodes,
                method=self.propagation_method,
            )
        else:
            pseudo = np.full(len(true), UNLABELED, dtype=np.int8)
        is_pseudo = (true == UNLABELED) & (pseudo != UNLABELED)
        return WindowEnv(windows, np.where(is_pseudo, pseudo, true), pseudo=is_pseudo, features=features)

    def _train(self, x: np.ndarray, point_labels: np.ndarray, progress: ProgressCallback | None) -> None:
        report(progress, Progress(phase="propagation", fraction=0.0))
        env = self.training_env(x, point_labels)
        true_labeled = (env.labels != UNLABELED) & ~env.pseudo
        self.labels_seen_ = int(true_labeled.sum())
        if self.labels_seen_ == 0:
            return
        if self.iforest_ is not None and not (env.labels[true_labeled] == 1).any():
            # Only normals labeled: q1 never earns a positive reward, so q1 − q0 would rank windows by noise
            # (on four KPI series whose pool queries found no anomaly, 1% labels took PR-AUC below random).
            # Keep the warm-up forest's ranking until an anomaly is labeled.
            self.rounds_ += 1
            self.trained_ = False
            self.last_round_ = {"labels": self.labels_seen_, "skipped": "no anomaly labeled yet: warm-up scores kept"}
            report(progress, Progress(phase="rlad", fraction=1.0))
            return
        agent, stats = self._train_agent(x, env, true_labeled, progress)
        self.agent_ = agent
        self.rounds_ += 1
        self.trained_ = True
        self.last_round_ = {
            "labels": self.labels_seen_,
            "pseudo_labels": int(env.pseudo.sum()),
            "pseudo_anomalies": int((env.pseudo & (env.labels == 1)).sum()),
            "episode_rewards": [s.reward for s in stats],
            "episode_losses": [s.loss for s in stats],
            "epsilon": stats[-1].epsilon if stats else self.agent_.epsilon(),
        }
        self.gated_ = False
        if self.agent_gate and self.iforest_ is not None:
            gate = self._gate(x, point_labels, env, true_labeled, progress)
            self.gated_ = gate["forest_serves"]
            self.last_round_["gate"] = gate

    def _train_agent(
        self,
        x: np.ndarray,
        env: WindowEnv,
        true_labeled: np.ndarray,
        progress: ProgressCallback | None,
        fresh: bool = False,
    ) -> tuple[DQNAgent, list[Any]]:
        """Train an agent on ``env``: a fresh one, or with ``warm_start`` (and not ``fresh``) the current one in
        place."""
        prefill = [int(i) for i in self._warmup_windows(x) if i < env.n_windows and true_labeled[i]]
        # A cancel must leave the previous agent as it was. A fresh agent is only adopted once trained;
        # warm_start trains the current one in place, so only then is a snapshot needed.
        in_place = self.warm_start and not fresh
        agent = self.agent_ if in_place else self._new_agent()
        snapshot = agent.to_bytes() if in_place else None
        try:
            _, stats = agent.train(
                env,
                episodes=self.episodes,
                steps_per_episode=self.steps_per_episode,
                rng=self._rng(1),
                prefill=prefill if self.use_warmup else (),
                progress=progress,
            )
        except Cancelled:
            if snapshot is not None:
                agent.load_bytes(snapshot)
            raise
        return agent, stats

    def _gate(
        self,
        x: np.ndarray,
        point_labels: np.ndarray,
        env: WindowEnv,
        true_labeled: np.ndarray,
        progress: ProgressCallback | None,
    ) -> dict[str, Any]:
        """Whether the trained agent earns its place over the warm-up forest, judged on answers it did not learn.

        The labeled windows are split in ``gate_folds`` folds; for each, a fresh agent learns from every label
        but the fold's (propagation included) and places the fold's windows among all windows (percentile
        ranks). The forest never learned from any label, so its ranks of the same windows are honest too. Both
        are scored by :func:`app.core.adoption.agreement` (class-balanced; 0.5 is chance). The agent serves
        only when its cross-fitted figure beats the forest's beyond noise: by more than ``max(gate_margin, one
        standard error of the paired difference)``, the asymmetry of safe adoption (app/core/adoption.py), since
        the forest is what serves until labels show better. Else the forest's scores serve (``gated_``).
        Costs ``gate_folds`` more trainings per round."""
        from app.core.adoption import agreement, percentile_ranks

        assert self.iforest_ is not None  # only called with the warm-up forest
        labeled = np.flatnonzero(true_labeled)
        y = (env.labels[labeled] == 1).astype(np.int64)
        if y.min() == y.max():  # one class only: every window agrees or none does
            return {"forest_serves": False, "skipped": "the labels hold one class only"}
        # overlapping labeled windows (one answer's range) share a fold: the agent must not learn a window's twin
        run = np.concatenate([[0], np.cumsum(np.diff(labeled) >= self.window // self.stride)])
        n_runs = int(run[-1]) + 1
        n_folds = min(self.gate_folds, n_runs)
        if n_folds < 2:
            return {"forest_serves": False, "skipped": "the labels form one answer only"}
        order = self._rng(3).permutation(n_runs)
        run_fold = np.empty(n_runs, dtype=np.int64)
        run_fold[order] = np.arange(n_runs) % n_folds
        fold = run_fold[run]
        ends = labeled * self.stride + self.window - 1  # a window's label is its end point's
        forest_scores = self.iforest_.window_scores(x)
        agent_ranks = np.zeros(len(labeled))
        for f in range(n_folds):
            report(progress, Progress(phase="gate", fraction=f / n_folds))
            masked = np.array(point_labels, copy=True)
            masked[ends[fold == f]] = UNLABELED
            fold_env = self._env(env.windows, env.features, masked)
            fold_labeled = (fold_env.labels != UNLABELED) & ~fold_env.pseudo
            if not (fold_env.labels[fold_labeled] == 1).any():
                # nothing anomalous left to learn from: this agent would not train, the forest would serve
                agent_scores = forest_scores
            else:
                agent, _ = self._train_agent(x, fold_env, fold_labeled, None, fresh=True)
                agent_scores = self._q_margin(agent, env.windows, env.features)
            rows = fold == f
            agent_ranks[rows] = percentile_ranks(agent_scores[labeled[rows]], agent_scores)
        forest_ranks = percentile_ranks(forest_scores[labeled], forest_scores)
        agent_v, weights = agreement(agent_ranks, y)
        forest_v, _ = agreement(forest_ranks, y)
        agent_fig, forest_fig = float(np.sum(weights * agent_v)), float(np.sum(weights * forest_v))
        diff = agent_v - forest_v
        stderr = float(np.sqrt(np.sum(weights**2 * (diff - (agent_fig - forest_fig)) ** 2)))
        needed = max(self.gate_margin, stderr)
        report(progress, Progress(phase="gate", fraction=1.0))
        return {
            "forest_serves": not agent_fig - forest_fig > needed,
            "agent_figure": round(agent_fig, 6),
            "forest_figure": round(forest_fig, 6),
            "needed_gain": round(needed, 6),
            "folds": n_folds,
            "labeled_windows": len(labeled),
        }

    def training_notes(self) -> tuple[dict[str, Any], str]:
        """The last round's gate (``agent_gate`` in the version's metrics) and which model scores, in words."""
        gate = getattr(self, "last_round_", {}).get("gate")  # none before fit
        if gate is None:
            return {}, ""
        if "agent_figure" not in gate:  # skipped: one class, or one answer
            return {"agent_gate": gate}, ""
        agent, forest, needed = gate["agent_figure"], gate["forest_figure"], gate["needed_gain"]
        figures = f"{agent:.3f} vs {forest:.3f}, more than {needed:.3f} needed"
        if gate["forest_serves"]:
            clause = (
                f"RLAD's agent did not beat its warm-up forest on answers it did not learn ({figures}): this version "
                "scores with the forest"
            )
        else:
            clause = f"RLAD's agent beat its warm-up forest on answers it did not learn ({figures})"
        return {"agent_gate": gate}, clause

    # -- serialization ----------------------------------------------------------------------
    def _get_state(self) -> dict[str, Any]:
        state = {k: v for k, v in vars(self).items() if k.endswith("_") and k != "agent_"}
        state["agent_bytes"] = self.agent_.to_bytes()  # weights as CPU tensors, whatever the device
        return state

    def _set_state(self, state: dict[str, Any]) -> None:
        state = dict(state)
        agent_bytes = state.pop("agent_bytes")
        super()._set_state(state)
        self.n_features_ = state.get("n_features_", 0)  # versions stored before the warm-up feature have none
        self.gated_ = state.get("gated_", False)  # nor those stored before the agent gate
        self.agent_ = self._new_agent()
        self.agent_.load_bytes(agent_bytes)
