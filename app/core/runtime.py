"""Device choice, seeding and progress reporting shared by every detector."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


def resolve_device(device: str = "auto") -> str:
    """Map ``auto|cpu|cuda`` (or ``cuda:N``) to a concrete torch device string.

    ``auto`` picks ``cuda`` when a GPU is visible. Importing torch is deferred so that
    pure-numpy users (metrics, iforest) never pay for it.
    """
    if device not in {"auto", "cpu"} and not device.startswith("cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, not {device!r}")
    if device == "cpu":
        return "cpu"
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA GPU is visible; use 'auto' or 'cpu'")
    return device


def resolve_load_device(device: str = "auto") -> str:
    """The device to restore a stored model onto: ``device`` if this machine has it, else the best available.

    A model trained on a GPU worker (stored with ``device='cuda'``) must still load, score and learn in a
    CPU-only process (the web process, a CPU worker). Only ``fit`` holds a missing GPU against its caller.
    """
    try:
        return resolve_device(device)
    except ValueError:
        return resolve_device("auto")


def seed_everything(seed: int) -> np.random.Generator:
    """Seed ``random``, numpy's legacy RNG and torch (if imported) in one place.

    Returns a fresh numpy ``Generator`` seeded with ``seed`` for callers that prefer a local RNG.
    """
    random.seed(seed)
    np.random.seed(seed % (2**32))
    import sys

    if "torch" in sys.modules:
        import torch

        torch.manual_seed(seed)
    return np.random.default_rng(seed)


class Cancelled(Exception):
    """Raised by a progress callback to stop a long fit or feedback run cleanly."""


@dataclass(frozen=True)
class Progress:
    """One progress report from a training loop.

    ``fraction`` is in [0, 1] over the whole call; ``step`` is an epoch or an episode.
    """

    phase: str
    fraction: float
    step: int = 0
    total_steps: int = 0
    loss: float | None = None
    reward: float | None = None
    extra: dict[str, float] = field(default_factory=dict)


ProgressCallback = Callable[[Progress], None]


def report(callback: ProgressCallback | None, progress: Progress) -> None:
    """Send ``progress`` to ``callback`` if there is one (the callback may raise :class:`Cancelled`)."""
    if callback is not None:
        callback(progress)
