"""Name -> detector class, imported lazily so that ``iforest`` users never import torch."""

from __future__ import annotations

import importlib
from typing import Any, cast

from app.core import persist
from app.core.detectors.base import Detector

# name -> "module:Class"; modules are imported only when the name is asked for.
_REGISTRY: dict[str, str] = {
    "iforest": "app.core.detectors.iforest:IForestDetector",
    "knn": "app.core.detectors.knn:KNNDetector",
    "diff": "app.core.detectors.statistical:DiffScorer",
    "rollingz": "app.core.detectors.statistical:RollingZScorer",
    "level": "app.core.detectors.statistical:LevelScorer",
    "ensemble": "app.core.detectors.ensemble:EnsembleDetector",
    "ae": "app.core.detectors.reconstruction:DenseAE",
    "vae": "app.core.detectors.reconstruction:DenseVAE",
    "lstm_ae": "app.core.detectors.reconstruction:LSTMAE",
    "lstm_vae": "app.core.detectors.reconstruction:LSTMVAE",
    "usad": "app.core.detectors.reconstruction:USAD",
    "transformer": "app.core.detectors.reconstruction:TransformerAE",
    "rlad": "app.core.rlad.detector:RLADDetector",
}


def available_detectors() -> list[str]:
    """Every registered detector name."""
    return sorted(_REGISTRY)


def detector_class(name: str) -> type[Detector]:
    """The class registered as ``name``; ``ValueError`` naming the choices otherwise."""
    try:
        target = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown detector {name!r}; choose one of {', '.join(available_detectors())}") from None
    module_name, class_name = target.split(":")
    return cast("type[Detector]", getattr(importlib.import_module(module_name), class_name))


def make_detector(name: str, **params: Any) -> Detector:
    """Build an unfitted detector by name with keyword parameters, checked (:meth:`Detector.check_params`):
    ``TypeError`` for an unknown parameter, ``ValueError`` saying what to fix for a wrong type or value."""
    return detector_class(name)(**params).check_params()


def load_detector(data: bytes, device: str | None = None) -> Detector:
    """Rebuild a fitted detector from :meth:`Detector.to_bytes` output (the :mod:`app.core.persist` envelope).

    ``device``: where the restored model scores and learns (``auto|cpu|cuda``; a GPU worker refining a version
    first trained on a CPU passes its own); ``None`` keeps the device it was stored with. Either way a device this
    machine lacks falls back to what it has, so a GPU worker's model still loads in a CPU-only web process.

    Nothing in ``data`` is unpickled or imported. ``persist.LegacyModelError`` (a ``ValueError``) for a version
    stored in the old pickle format, saying how to replace it; ``persist.ModelFormatError`` (also a
    ``ValueError``) for bytes that are not an intact envelope or name an unknown detector.
    """
    payload = persist.loads(data)
    if device is not None:
        payload["params"] = {**payload["params"], "device": device}
    try:
        cls = detector_class(payload["name"])
    except ValueError as exc:
        raise persist.ModelFormatError(f"stored model: {exc}") from None
    return cls.from_state(payload)
