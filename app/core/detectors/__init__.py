"""Detectors by name. ``make_detector('lstm_ae', window=50, seed=0)``; torch loads only when asked."""

from app.core.detectors.registry import available_detectors, detector_class, load_detector, make_detector

__all__ = ["available_detectors", "detector_class", "load_detector", "make_detector"]
