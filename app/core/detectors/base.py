"""The one detector interface every detector implements (scikit-learn estimator contract).

- ``__init__`` stores keyword hyperparameters only; learned state ends in ``_``.
- ``fit(X)`` learns unsupervised (or from the labels given) and returns ``self``.
- ``score(X)`` returns one float per point, higher = more anomalous, never NaN.
- ``window_scores(X)`` returns one float per window (``(n_windows,)``) — what query strategies rank.
- ``feedback(X, ranges)`` refines a fitted model with labeled point ranges and returns ``self``.
- ``to_bytes()`` / ``registry.load_detector(bytes)`` round-trip with identical scores. The bytes are the
  envelope of :mod:`app.core.persist` (a JSON header and arrays/tensors, never a pickle).

``X`` is ``(n_points, n_channels)`` (1-D means one channel), raw values; scaling is learned in
``fit`` from the training data only and applied to anything scored later.
"""

from __future__ import annotations

import math
import types
import typing
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal, Union

import numpy as np

from app.core import persist
from app.core.runtime import ProgressCallback
from app.core.windows import LabeledRange, end_point_scores, n_windows


def fits_type(value: Any, hint: Any) -> bool:
    """Whether a parameter ``value`` (as parsed from JSON or given in Python) is of the annotated type ``hint``.

    ``int`` takes whole numbers only (not ``True``), ``float`` any finite number, ``bool`` only ``True``/``False``;
    lists, tuples and mappings are checked element by element; an annotation this does not know passes."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (Union, types.UnionType):
        return any(fits_type(value, arg) for arg in args)
    if hint is None or hint is type(None):
        return value is None
    if origin is Literal:
        return value in args
    if hint is bool:
        return isinstance(value, bool | np.bool_)
    if isinstance(value, bool | np.bool_):
        return False
    if hint is int:
        return isinstance(value, int | np.integer)
    if hint is float:
        return isinstance(value, int | float | np.integer | np.floating) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple, Sequence):
        element = args[0] if args and (origin is not tuple or args[-1] is Ellipsis or len(args) == 1) else Any
        return isinstance(value, list | tuple) and all(fits_type(v, element) for v in value)
    if origin in (dict, Mapping):
        return (
            isinstance(value, Mapping)
            and all(fits_type(k, args[0]) and fits_type(v, args[1]) for k, v in value.items())
            if args
            else isinstance(value, Mapping)
        )
    return not isinstance(hint, type) or isinstance(value, hint)


def describe_type(hint: Any) -> str:
    """The annotated type ``hint`` in words for an error message ("a whole number", "a number or null")."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(describe_type(arg) for arg in args)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    words = {bool: "true or false", int: "a whole number", float: "a number", str: "text", type(None): "null"}
    if hint in words:
        return words[hint]
    if origin in (list, tuple, Sequence):
        plural = {str: "strings", int: "whole numbers", float: "numbers"}
        return f"a list of {plural[args[0]]}" if args and args[0] in plural else "a list"
    if origin in (dict, Mapping):
        return "a mapping (a JSON object)"
    return getattr(hint, "__name__", str(hint))


def in_interval(value: float, interval: str) -> bool:
    """Whether ``value`` lies in ``interval``, written ``"[low, high)"`` (``[``/``]`` closed, ``(``/``)`` open,
    ``inf`` unbounded)."""
    low, high = (float(part) for part in interval[1:-1].split(","))
    above = value >= low if interval[0] == "[" else value > low
    below = value <= high if interval[-1] == "]" else value < high
    return above and below


class NotFittedError(RuntimeError):
    """The detector was used before ``fit``."""


class Detector(ABC):
    """Base class; subclasses set ``name`` and implement the abstract methods.

    What the rest of the system needs to know about a detector lives here as class attributes, read by the CLI,
    the project form, the services and the bench alike (never a list of names elsewhere):

    - ``default_window`` / ``default_strategy``: what a new project or a bench run uses unless told otherwise.
    - ``answer_mode``: how the ground-truth oracle answers a query window, in the product and in the bench:
      ``"window"`` labels every point of the window (runs of equal labels; what an analyst marking sub-ranges
      gives), ``"end_point"`` only its last point (RLAD's window label: one revealed point per answer).
    - ``method_label``: the method name shown beside a model version (``{name}`` is replaced by ``name``).
    - ``provides_margins``: ``margins(X, window_scores)`` gives ``|q0 - q1|`` per window (uncertainty strategies).
    - ``asks_warmup``: ``initial_queries(X)`` names the windows to ask before any label (RLAD's warm-up).
    - ``can_hold_out_labels``: ``validation_window_scores(X, train_ranges, heldout_ranges)`` scores windows as if
      ``heldout_ranges`` had never been learned from (how a new version is validated on labels it did not see).
    - ``explains_windows``: ``window_drivers(X, window_scores)`` and ``member_names_`` name what drove each score.
    - ``extrapolates_tail``: whether a score past the largest seen on the fit data should keep counting as
      rarer (the ensemble's tail normaliser extrapolates it); False for a distance that grows with any drift.
    - ``summary`` / ``starter_params``: the "New project" form's one line of help and starting parameters.
    - ``param_bounds``: the interval each numeric parameter must lie in (``"[1, inf)"``, ``"(0, 1)"``), read with
      the constructor's annotations by :meth:`check_params`; a subclass declares only its own parameters' bounds.
    """

    name: ClassVar[str]
    default_window: ClassVar[int] = 25
    default_strategy: ClassVar[str] = "top_k"
    answer_mode: ClassVar[str] = "window"
    method_label: ClassVar[str] = "{name}"
    provides_margins: ClassVar[bool] = False
    asks_warmup: ClassVar[bool] = False
    can_hold_out_labels: ClassVar[bool] = False
    explains_windows: ClassVar[bool] = False
    extrapolates_tail: ClassVar[bool] = True
    summary: ClassVar[str] = ""
    """One line for the "New project" form; detectors without one (the ensemble's point scorers) are not offered."""
    starter_params: ClassVar[dict[str, Any]] = {}
    """Parameters the form starts from: small on purpose (a first model in seconds on a CPU)."""
    param_bounds: ClassVar[dict[str, str]] = {"window": "[1, inf)", "stride": "[1, inf)"}

    @classmethod
    def method(cls) -> str:
        """The method name shown beside a model version (e.g. ``lstm_ae+minimax``)."""
        return cls.method_label.format(name=cls.name)

    def __init__(self, *, window: int = 25, stride: int = 1, seed: int = 0, device: str = "auto") -> None:
        self.window = window
        self.stride = stride
        self.seed = seed
        self.device = device

    # -- parameters -------------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        """Constructor keyword arguments (those not ending in ``_``), as stored in ``__init__``."""
        return {k: v for k, v in vars(self).items() if not k.endswith("_") and not k.startswith("_")}

    @classmethod
    def param_types(cls) -> dict[str, Any]:
        """Each constructor parameter's annotation, read from every ``__init__`` up the class hierarchy (a subclass
        taking ``**kw`` still gets its parents' types)."""
        hints: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            init = klass.__dict__.get("__init__")
            if klass is not object and init is not None:
                hints.update(typing.get_type_hints(init))
        hints.pop("return", None)
        return hints

    @classmethod
    def all_param_bounds(cls) -> dict[str, str]:
        """``param_bounds`` merged up the class hierarchy (the subclass's interval wins)."""
        merged: dict[str, str] = {}
        for klass in reversed(cls.__mro__):
            merged.update(klass.__dict__.get("param_bounds", {}))
        return merged

    def check_params(self) -> Detector:
        """Refuse a parameter of the wrong type (its annotation) or outside its ``param_bounds`` with a
        ``ValueError`` saying what to fix ("k must be a whole number in [1, inf), not 0").

        :func:`~app.core.detectors.registry.make_detector` calls it, so the "New project" form answers 400 at once
        instead of the project's first training job failing inside numpy or torch. Returns ``self``."""
        hints, bounds = self.param_types(), self.all_param_bounds()
        for name, value in self.get_params().items():
            hint = hints.get(name, Any)
            if not fits_type(value, hint):
                raise ValueError(f"{name} must be {describe_type(hint)}, not {value!r}")
            interval = bounds.get(name)
            numeric = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
            if interval is not None and numeric and not in_interval(float(value), interval):
                raise ValueError(f"{name} must be {describe_type(hint)} in {interval}, not {value!r}")
        return self

    def _check_fitted(self) -> None:
        if not getattr(self, "fitted_", False):
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit() first")

    # -- the contract -----------------------------------------------------------------------
    @abstractmethod
    def fit(self, X: np.ndarray, y: np.ndarray | None = None, progress: ProgressCallback | None = None) -> Detector:
        """Learn from ``X`` ``(n_points, n_channels)``; ``y`` optional point labels (-1 unknown)."""

    @abstractmethod
    def window_scores(self, X: np.ndarray) -> np.ndarray:
        """One anomaly score per window of ``X``: ``(n_windows,)``, higher = more anomalous."""

    def score(self, X: np.ndarray) -> np.ndarray:
        """One anomaly score per point: ``(n_points,)``. Default maps window scores by end point."""
        x = np.asarray(X)
        return end_point_scores(self.window_scores(x), len(x), self.window, self.stride)

    def point_and_window_scores(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(score(X), window_scores(X))`` with as few passes as the detector allows (the worker stores both)."""
        windows = self.window_scores(X)
        if type(self).score is Detector.score:  # points are the window scores mapped by end point: no second pass
            x = np.asarray(X)
            return end_point_scores(windows, len(x), self.window, self.stride), windows
        return self.score(X), windows

    def threshold_basis(self, X: np.ndarray, points: np.ndarray) -> np.ndarray:
        """The point scores ``(n_points,)`` a threshold is chosen on, given ``points = score(X)``. Default: ``points``.

        A detector with a score term that only lowers windows resembling answered false alarms returns the score
        without that term, so the threshold is placed as if those answers had lowered nothing and the term only
        takes alarms away where it is applied (the ensemble's exemplars, its module docstring step 7)."""
        return points

    def feedback(
        self, X: np.ndarray, ranges: Sequence[LabeledRange], progress: ProgressCallback | None = None
    ) -> Detector:
        """Refine the fitted model with labeled point ranges on ``X``. Default: no-op (unsupervised)."""
        self._check_fitted()
        return self

    def training_notes(self) -> tuple[dict[str, Any], str]:
        """What the last ``fit`` or ``feedback`` decided beyond its scores: figures to store with the version's
        metrics, and a clause for its adoption verdict ("" for none). Default: nothing more was decided."""
        return {}, ""

    def n_windows(self, n_points: int) -> int:
        """Number of windows this detector sees in a series of ``n_points``."""
        return n_windows(n_points, self.window, self.stride)

    # -- serialization ----------------------------------------------------------------------
    def _get_state(self) -> dict[str, Any]:
        """Learned state as values :func:`app.core.persist.dumps` can store: JSON values, tuples, bytes, numpy
        arrays, torch tensors, fitted detectors and the classes in ``persist.VALUE_CLASSES`` (torch modules as
        ``torch.save``'d ``state_dict`` bytes the subclass reloads with ``weights_only=True``)."""
        return {k: v for k, v in vars(self).items() if k.endswith("_")}

    def _set_state(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, v)

    def to_bytes(self) -> bytes:
        """Parameters and learned state in the :mod:`app.core.persist` envelope; ``load_detector`` gives
        identical scores. ``TypeError`` if the state holds a value that cannot be stored without pickle."""
        self._check_fitted()
        return persist.dumps(self.name, self.get_params(), self._get_state())

    @classmethod
    def from_state(cls, payload: dict[str, Any]) -> Detector:
        """Rebuild from ``{"name", "params", "state"}`` as :func:`app.core.persist.loads` returns it."""
        det = cls(**payload["params"])
        det._set_state(payload["state"])
        return det
