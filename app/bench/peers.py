"""Label-efficient peers from other libraries, behind the :class:`~app.core.detectors.base.Detector` interface.

What a user could pick instead of anomaloop, run through the same harness (same windows, splits,
oracle and label budget). Bench only — never imported by ``app/core``. The libraries are the optional
extra ``peers`` (``pip install -e '.[peers]'``); they are imported only when a peer is built, so the
bench and ``make run`` work without them.

- ``aadforest``: coniferest's ``AADForest`` — Active Anomaly Discovery (Das et al. 2017) on an
  isolation forest: each labeled window re-weights the forest's leaves.
- ``xgbod``: PyOD's ``XGBOD`` — unsupervised detectors' scores as extra features of a boosted
  classifier (Zhao & Hryniewicki 2018), trained on the labeled windows only.
- ``deepsad``: deepod's ``DeepSAD`` (Ruff et al. 2020), a deep one-class model pulled towards a centre
  by unlabeled windows and pushed away by labeled anomalies. deepod pins ``torch<1.13.1``, so it is
  *not* in the extra: install it by hand with ``pip install --no-deps deepod==0.4.1 tqdm`` (it runs on
  torch 2.x); without it the peer raises an ``ImportError`` saying so.

Common to all three (the same as ``app/core/detectors/iforest.py``): every series is z-scored per
channel with the mean/std of the ``fit`` data; each window of ``window`` points (default 25) and all
channels is one flat sample of ``window * channels`` features; a window's score is mapped to points by
its end point (the :class:`Detector` default).

Labels. ``feedback(X, ranges)`` turns the analyst's point ranges — and nothing else — into window
labels with ``label_rule``:

- ``"end_point"`` (default, RLAD's rule, ``app.core.windows.window_labels``): a window whose end point
  is labeled takes that point's label. One answered window of 25 points thus labels the 25 windows
  ending inside it (overlapping windows share points: they are not independent samples).
- ``"covered"``: only windows whose every point is labeled count; the label is 1 if any of their
  points is an anomaly. One answered window labels exactly itself.

Every ``feedback`` call gets *all* ranges gathered so far (the loop's contract) and refits from the
unsupervised state, so the result depends only on the ranges, not on the call history.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from app.core.detectors.base import Detector
from app.core.runtime import Progress, ProgressCallback, report
from app.core.windows import LabeledRange, Scaler, as_2d, ranges_to_point_labels, sliding_windows, window_labels

LABEL_RULES = ("end_point", "covered")
INSTALL_HINT = "pip install -e '.[peers]'"


def _require(module: str, peer: str, hint: str = INSTALL_HINT) -> None:
    """Raise a clear ``ImportError`` when the optional library behind ``peer`` is missing."""
    if importlib.util.find_spec(module) is None:
        raise ImportError(f"the '{peer}' peer needs the optional package '{module}': {hint}")


def labeled_window_targets(
    ranges: Sequence[LabeledRange], n_points: int, window: int, stride: int = 1, rule: str = "end_point"
) -> tuple[np.ndarray, np.ndarray]:
    """Which windows the ranges label, and how: ``(indices (k,) int64, labels (k,) int8 0/1)``.

    ``rule``: ``"end_point"`` (a window takes its end point's label) or ``"covered"`` (windows whose
    points are all labeled; 1 if any point is an anomaly). See the module docstring.
    """
    if rule not in LABEL_RULES:
        raise ValueError(f"label_rule must be one of {LABEL_RULES}, not {rule!r}")
    points = ranges_to_point_labels(list(ranges), n_points)
    if rule == "end_point":
        per_window = window_labels(points, window, stride).astype(np.int8)
        idx = np.flatnonzero(per_window >= 0)
        return idx, per_window[idx]
    unknown = np.concatenate([[0], np.cumsum(points < 0)])
    anomalous = np.concatenate([[0], np.cumsum(points == 1)])
    starts = np.arange(0, n_points - window + 1, stride) if n_points >= window else np.zeros(0, dtype=np.int64)
    fully = unknown[starts + window] - unknown[starts] == 0
    idx = np.flatnonzero(fully)
    labels = (anomalous[starts[idx] + window] - anomalous[starts[idx]] > 0).astype(np.int8)
    return idx, labels


class _WindowPeer(Detector):
    """Shared plumbing: standard scaling from the fit data, flat windows, window labels from ranges."""

    module: str = ""

    def __init__(
        self,
        *,
        window: int = 25,
        stride: int = 1,
        seed: int = 0,
        device: str = "auto",
        label_rule: str = "end_point",
        max_fit_windows: int = 100_000,
    ) -> None:
        super().__init__(window=window, stride=stride, seed=seed, device=device)
        if label_rule not in LABEL_RULES:
            raise ValueError(f"label_rule must be one of {LABEL_RULES}, not {label_rule!r}")
        self.label_rule = label_rule
        self.max_fit_windows = max_fit_windows
        _require(self.module, self.name)

    def _flat(self, X: np.ndarray) -> np.ndarray:
        """``(n_points, C) -> (n_windows, window * C)`` float32, scaled with the fit data's statistics."""
        view = sliding_windows(self.scaler_.transform(X), self.window, self.stride)
        return np.ascontiguousarray(view.reshape(len(view), -1), dtype=np.float32)

    def _fit_windows(self, X: np.ndarray) -> np.ndarray:
        """Flat windows of the fit data, a seeded subsample when there are more than ``max_fit_windows``."""
        flat = self._flat(X)
        if len(flat) > self.max_fit_windows:
            rng = np.random.default_rng(self.seed)
            flat = flat[np.sort(rng.choice(len(flat), self.max_fit_windows, replace=False))]
        return flat

    def fit(self, X: np.ndarray, y: np.ndarray | None = None, progress: ProgressCallback | None = None) -> Detector:
        """Unsupervised fit on ``X`` ``(n_points, n_channels)``. ``y`` is ignored: labels come through feedback."""
        x = as_2d(X)
        self.scaler_ = Scaler("standard").fit(x)
        self.n_channels_ = x.shape[1]
        self._fit_unsupervised(self._fit_windows(x))
        self.labeled_windows_ = 0
        self.labeled_anomalies_ = 0
        self.supervised_ = False
        self.fitted_ = True
        report(progress, Progress(phase="fit", fraction=1.0, step=1, total_steps=1))
        return self

    def feedback(
        self, X: np.ndarray, ranges: Sequence[LabeledRange], progress: ProgressCallback | None = None
    ) -> Detector:
        """Refit with every labeled window of ``X`` (window labels from ``ranges`` by ``label_rule``)."""
        self._check_fitted()
        x = as_2d(X)
        idx, labels = labeled_window_targets(ranges, len(x), self.window, self.stride, self.label_rule)
        self.labeled_windows_ = int(len(idx))
        self.labeled_anomalies_ = int(labels.sum())
        self._fit_labeled(self._flat(x), idx, labels)
        report(progress, Progress(phase="feedback", fraction=1.0, step=1, total_steps=1))
        return self

    def to_bytes(self) -> bytes:
        """Not storable: a peer is a bench-only comparison, never a model version. The model envelope
        (:mod:`app.core.persist`) holds data only, and the peers' fitted state is other libraries' objects
        (a Rust forest, an XGBoost booster with 41 PyOD detectors, a torch MLP inside deepod's class) that it
        cannot rebuild without unpickling. The loop copies candidates with ``copy.deepcopy``, which works."""
        raise NotImplementedError(f"the '{self.name}' peer is bench-only and cannot be stored as a model version")

    def _fit_unsupervised(self, flat: np.ndarray) -> None:
        raise NotImplementedError

    def _fit_labeled(self, flat: np.ndarray, idx: np.ndarray, labels: np.ndarray) -> None:
        raise NotImplementedError


# -- AADForest (coniferest) --------------------------------------------------------------------------


class _Constant:
    """A picklable ``(n_anomalies, n_nominals) -> value`` for coniferest's ``prior_influence``."""

    def __init__(self, value: float) -> None:
        self.value = value

    def __call__(self, n_anomalies: int, n_nominals: int) -> float:
        return self.value


def _reciprocal(depth: np.ndarray) -> np.ndarray:
    """coniferest's ``map_value='reciprocal'`` (its default) as a picklable function: ``-1 / depth``."""
    return -np.reciprocal(depth)


class AADForestPeer(_WindowPeer):
    """coniferest ``AADForest`` on flat windows; ``feedback`` re-weights the leaves from the labeled windows.

    Parameters (coniferest's names and defaults): ``n_trees`` (100), ``n_subsamples`` (256 windows per
    tree), ``budget`` (``"auto"``: the quantile ``q_tau`` is solved for), ``C_a``/``C_n`` (1.0: costs
    of a missed anomaly / a false alarm), ``prior_influence`` (0.0: no pull towards the uniform
    weights). Labels go in as ``coniferest.label.Label.ANOMALY`` / ``Label.REGULAR``. Each feedback
    starts again from the uniform leaf weights of the unsupervised forest (the trees never change), so
    it equals coniferest's ``fit`` with all labels at once. ``window_scores`` = ``-score_samples``
    (higher = more anomalous). Single-threaded (``n_jobs=1``) so it shares the machine fairly.
    """

    name = "aadforest"
    module = "coniferest"

    def __init__(
        self,
        *,
        n_trees: int = 100,
        n_subsamples: int = 256,
        budget: int | float | str = "auto",
        C_a: float = 1.0,  # noqa: N803 - coniferest's parameter names
        C_n: float = 1.0,  # noqa: N803
        prior_influence: float = 0.0,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.n_trees = n_trees
        self.n_subsamples = n_subsamples
        self.budget = budget
        self.C_a = C_a
        self.C_n = C_n
        self.prior_influence = prior_influence

    def _fit_unsupervised(self, flat: np.ndarray) -> None:
        from coniferest.aadforest import AADForest

        forest = AADForest(
            n_trees=self.n_trees,
            n_subsamples=min(self.n_subsamples, len(flat)),
            budget=self.budget,
            C_a=self.C_a,
            C_n=self.C_n,
            prior_influence=_Constant(self.prior_influence),
            map_value=_reciprocal,
            n_jobs=1,
            random_seed=self.seed,
        )
        forest.fit(flat)
        self.forest_ = forest
        self.prior_weights_ = forest.evaluator.weights.copy()

    def _fit_labeled(self, flat: np.ndarray, idx: np.ndarray, labels: np.ndarray) -> None:
        from coniferest.label import Label

        self.forest_.evaluator.weights = self.prior_weights_.copy()
        self.supervised_ = len(idx) > 0
        if not self.supervised_:
            return
        known = np.where(labels == 1, Label.ANOMALY, Label.REGULAR).astype(np.int64)
        self.forest_.fit_known(flat, flat[idx], known)

    def window_scores(self, X: np.ndarray) -> np.ndarray:
        """``(n_windows,)``: minus coniferest's score (its low = anomalous), so higher = more anomalous."""
        self._check_fitted()
        return -np.asarray(self.forest_.score_samples(self._flat(X)), dtype=np.float64)


# -- XGBOD (PyOD) ------------------------------------------------------------------------------------


class XGBODPeer(_WindowPeer):
    """PyOD ``XGBOD`` on flat windows, trained on the labeled windows only; scores every window.

    XGBOD is a classifier: it needs both a labeled anomaly and a labeled normal window. **Until it has
    both, it falls back to an unsupervised score**: the core ``iforest`` detector
    (:class:`app.core.detectors.iforest.IForestDetector`, same window, stride, seed and
    ``fallback_estimators`` trees) fitted on the fit data, so at budget 0 ``xgbod`` *is* ``iforest``.
    Once both classes are labeled, PyOD's default XGBOD is trained on the labeled windows alone (its
    41 unsupervised detectors — KNN, LOF, HBOS, OCSVM, IForest — are fitted on those windows too, as
    PyOD does) and its ``decision_function`` (probability of the anomaly class) scores every window.
    Parameters: ``n_estimators`` / ``max_depth`` / ``learning_rate`` of the booster (PyOD's defaults
    100 / 3 / 0.1), ``fallback_estimators`` (100). ``random_state`` is the seed; one thread.
    """

    name = "xgbod"
    module = "pyod"

    def __init__(
        self,
        *,
        n_estimators: int = 100,
        max_depth: int = 3,
        learning_rate: float = 0.1,
        fallback_estimators: int = 100,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        _require("xgboost", self.name)
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.fallback_estimators = fallback_estimators

    def fit(self, X: np.ndarray, y: np.ndarray | None = None, progress: ProgressCallback | None = None) -> Detector:
        from app.core.detectors.iforest import IForestDetector

        self.fallback_ = IForestDetector(
            window=self.window,
            stride=self.stride,
            seed=self.seed,
            n_estimators=self.fallback_estimators,
            max_fit_windows=self.max_fit_windows,
        ).fit(X)
        self.model_ = None
        return super().fit(X, None, progress)

    def _fit_unsupervised(self, flat: np.ndarray) -> None:
        pass  # the fallback forest is fitted in fit(); the classifier waits for labels of both classes

    def _fit_labeled(self, flat: np.ndarray, idx: np.ndarray, labels: np.ndarray) -> None:
        from pyod.models.xgbod import XGBOD

        self.model_ = None
        self.supervised_ = bool(len(idx) and labels.min() == 0 and labels.max() == 1)
        if not self.supervised_:
            return  # one class only: a classifier cannot be trained, keep the unsupervised fallback
        model = XGBOD(
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            learning_rate=self.learning_rate,
            random_state=self.seed,
            n_jobs=1,
        )
        with warnings.catch_warnings():  # PyOD passes xgboost an unused 'silent' and warns about y; both noise
            warnings.simplefilter("ignore", UserWarning)
            model.fit(flat[idx], labels.astype(np.int64))
        self.model_ = model

    def window_scores(self, X: np.ndarray) -> np.ndarray:
        """``(n_windows,)``: the classifier's anomaly probability, or the fallback forest's score before it."""
        self._check_fitted()
        if self.model_ is None:
            return self.fallback_.window_scores(X)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return np.asarray(self.model_.decision_function(self._flat(X)), dtype=np.float64)


# -- DeepSAD (deepod, optional, not in the extra) ----------------------------------------------------


class DeepSADPeer(_WindowPeer):
    """deepod ``DeepSAD`` on flat windows (an MLP, deepod's defaults ``hidden_dims='100,50'``, ``rep_dim=128``).

    ``fit`` trains deepod's ``DeepSVDD`` (DeepSAD without labels) on the fit windows. ``feedback`` with
    at least one labeled anomalous window trains ``DeepSAD`` from scratch on every window of the
    feedback ``X`` (unlabeled ones included, as the method intends), the labeled anomalies marked;
    deepod's DeepSAD does not use labeled *normal* windows (they count as unlabeled). With no labeled
    anomaly it keeps the DeepSVDD. Score: squared distance to the centre. ``epochs`` default 20 (deepod:
    100) to fit a 2-core CPU; ``device`` via :func:`app.core.runtime.resolve_device`. deepod seeds the
    global torch/numpy RNGs from ``seed`` when it builds a model.
    """

    name = "deepsad"
    module = "deepod"

    def __init__(
        self,
        *,
        epochs: int = 20,
        batch_size: int = 64,
        lr: float = 1e-3,
        hidden_dims: str = "100,50",
        rep_dim: int = 128,
        **kw: Any,
    ) -> None:
        if importlib.util.find_spec("deepod") is None:
            raise ImportError(
                "the 'deepsad' peer needs deepod, which pins torch<1.13.1 and so is not in the "
                "'peers' extra: pip install --no-deps deepod==0.4.1 tqdm"
            )
        super().__init__(**kw)
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.hidden_dims = hidden_dims
        self.rep_dim = rep_dim

    def _model(self, cls_name: str) -> Any:
        from deepod.models import tabular

        from app.core.runtime import resolve_device

        cls = getattr(tabular, cls_name)
        return cls(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            hidden_dims=self.hidden_dims,
            rep_dim=self.rep_dim,
            device=resolve_device(self.device),
            verbose=0,
            random_state=self.seed,
        )

    @staticmethod
    def _slim(model: Any) -> Any:
        """Drop deepod's references to the training data (loaders, arrays): state stays small, picklable."""
        for attr in ("train_loader", "test_loader", "train_data", "train_label", "decision_scores_", "labels_"):
            if hasattr(model, attr):
                setattr(model, attr, None)
        return model

    def _fit_unsupervised(self, flat: np.ndarray) -> None:
        self.unsupervised_model_ = self._slim(self._model("DeepSVDD").fit(flat))
        self.model_ = self.unsupervised_model_

    def _fit_labeled(self, flat: np.ndarray, idx: np.ndarray, labels: np.ndarray) -> None:
        self.supervised_ = bool(len(idx) and labels.max() == 1)
        if not self.supervised_:
            self.model_ = self.unsupervised_model_
            return
        y = np.zeros(len(flat), dtype=np.int64)
        y[idx[labels == 1]] = 1
        self.model_ = self._slim(self._model("DeepSAD").fit(flat, y))

    def window_scores(self, X: np.ndarray) -> np.ndarray:
        """``(n_windows,)``: squared distance of each window's representation to the centre."""
        self._check_fitted()
        return np.asarray(self.model_.decision_function(self._flat(X)), dtype=np.float64)


PEERS: dict[str, type[Detector]] = {"aadforest": AADForestPeer, "xgbod": XGBODPeer, "deepsad": DeepSADPeer}
"""Peer name -> class. Listed whether or not its library is installed; building one without it raises
an ``ImportError`` that says what to install (see :func:`available_peers`)."""


PEER_LIBRARIES: dict[str, tuple[tuple[str, ...], str]] = {
    "aadforest": (("coniferest",), INSTALL_HINT),
    "xgbod": (("pyod", "xgboost"), INSTALL_HINT),
    "deepsad": (("deepod",), "pip install --no-deps deepod==0.4.1 tqdm (not in the extra: deepod pins torch<1.13.1)"),
}
"""Peer name -> (modules it imports, how to install them)."""


def available_peers() -> list[str]:
    """The peers whose libraries are importable here."""
    return [name for name, (mods, _) in PEER_LIBRARIES.items() if all(importlib.util.find_spec(m) for m in mods)]
