"""Sliding windows, scaling and the mapping between windows and points.

Conventions used everywhere in the core:

- A series is an array ``(n_points, n_channels)`` of float; a 1-D array is one channel.
- Window ``i`` covers points ``[i * stride, i * stride + window)``; its *end point* is
  ``i * stride + window - 1``. A window's label is its end point's label (RLAD's rule).
- A window score is mapped to points either by its end point (``end_point_scores``: each point
  takes the score of the latest window ending at or before it, and the first ``window - 1``
  points take the first window's score), or, for per-time-step scores such as reconstruction
  error, by averaging over every window that covers the point (``average_over_windows``).
- A labeled range is half-open ``[start, end)`` in point indices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np


@dataclass(frozen=True)
class LabeledRange:
    """An analyst's (or oracle's) answer over points ``[start, end)``: ``value`` 1 anomaly, 0 normal."""

    start: int
    end: int
    value: int

    def __post_init__(self) -> None:
        if self.end <= self.start or self.start < 0:
            raise ValueError(f"labeled range [{self.start}, {self.end}) is empty or negative")
        if self.value not in (0, 1):
            raise ValueError(f"label value must be 0 (normal) or 1 (anomaly), not {self.value!r}")


def as_2d(x: np.ndarray) -> np.ndarray:
    """Return ``x`` as float32 ``(n_points, n_channels)``; 1-D input becomes one channel."""
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"a series must be (n_points, n_channels), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))[:5].tolist()
        raise ValueError(f"series has NaN or inf values (first rows: {bad}); fill them before fitting")
    return arr


def n_windows(n_points: int, window: int, stride: int = 1) -> int:
    """Number of full windows of length ``window`` with step ``stride`` in ``n_points`` points."""
    if n_points < window:
        return 0
    return (n_points - window) // stride + 1


def sliding_windows(x: np.ndarray, window: int, stride: int = 1) -> np.ndarray:
    """A zero-copy view of windows: ``(n_points, C) -> (n_windows, window, C)``.

    Raises ``ValueError`` when the series is shorter than one window.
    """
    x2 = np.asarray(x)
    if x2.ndim == 1:
        x2 = x2[:, None]
    count = n_windows(len(x2), window, stride)
    if count == 0:
        raise ValueError(f"series of {len(x2)} points is shorter than one window of {window}")
    view = np.lib.stride_tricks.sliding_window_view(x2, window, axis=0)  # (n-w+1, C, window)
    return view[::stride].transpose(0, 2, 1)


def flat_windows(x: np.ndarray, window: int, stride: int = 1) -> np.ndarray:
    """Windows as rows of ``window * C`` features: ``(n_points, C) -> (n_windows, window * C)``, point-major
    (a zero-copy view where numpy allows it)."""
    view = sliding_windows(x, window, stride)
    return view.reshape(len(view), -1)


def window_shapes(flat: np.ndarray, window: int) -> np.ndarray:
    """Rows of :func:`flat_windows` with each channel's mean over its window taken away (the window's shape, not
    its level): ``(n, window * C)`` float32, a copy of those rows only."""
    per_point = flat.reshape(len(flat), window, flat.shape[1] // window)  # (n, window, C); n may be 0
    shape = per_point - per_point.mean(axis=1, keepdims=True)
    return np.ascontiguousarray(shape.reshape(flat.shape), dtype=np.float32)


def nearest_distance(
    rows: np.ndarray, reference: np.ndarray, exclude: np.ndarray | None = None, k: int = 1
) -> np.ndarray:
    """Mean Euclidean distance from each of ``rows`` ``(n, d)`` to its ``k`` nearest of ``reference`` ``(m, d)``,
    pairs where ``exclude`` ``(n, m)`` is True left out (inf where a row has fewer than ``k`` left): ``(n,)``
    float64. The nearest are found with one float32 matrix product (the caller batches ``rows``); their distances
    are then recomputed directly in float64, because ``‖q‖² + ‖r‖² − 2 q·r`` loses the digits of a small distance
    between rows far from the origin (windows compared with their level), and its float32 rounding varies with the
    batch a row is scored in and the BLAS thread count (a 1-thread worker and the bench would serve different
    scores)."""
    q = np.ascontiguousarray(rows, dtype=np.float32)
    r = np.ascontiguousarray(reference, dtype=np.float32)
    k = min(k, len(r))
    if len(q) == 0 or k == 0:
        return np.full(len(q), np.inf)
    partial = q @ (-2.0 * r.T)  # ‖q − r‖² − ‖q‖²: ‖q‖² is the same for every r, so it does not change the nearest
    partial += np.einsum("ij,ij->i", r, r)
    if exclude is not None:
        partial[exclude] = np.inf
    # an argmin is ~30 times cheaper than a partition
    nearest = partial.argmin(axis=1)[:, None] if k == 1 else np.argpartition(partial, k - 1, axis=1)[:, :k]
    found = np.isfinite(np.take_along_axis(partial, nearest, axis=1)).all(axis=1)
    gap = q[:, None, :].astype(np.float64) - r[nearest].astype(np.float64)
    return np.where(found, np.sqrt(np.einsum("ijk,ijk->ij", gap, gap)).mean(axis=1), np.inf)


_FINGERPRINT_BASE = np.uint64(0x9E3779B97F4A7C15)  # odd, so every power is a distinct unit mod 2**64


def window_fingerprints(flat: np.ndarray, batch: int = 8192) -> np.ndarray:
    """A 64-bit fingerprint of every row of ``flat`` ``(n, d)``: equal rows (bit for bit, as float32) give equal
    fingerprints; different rows collide with probability about ``2**-64``. ``(n,)`` uint64."""
    n, d = flat.shape
    with np.errstate(over="ignore"):
        powers = np.cumprod(np.full(d, _FINGERPRINT_BASE, dtype=np.uint64), dtype=np.uint64)
        out = np.empty(n, dtype=np.uint64)
        for b in range(0, n, batch):
            bits = np.ascontiguousarray(flat[b : b + batch], dtype=np.float32).view(np.uint32).astype(np.uint64)
            out[b : b + len(bits)] = (bits * powers).sum(axis=1, dtype=np.uint64)  # wraps mod 2**64
    return out


def known_window_positions(rows: np.ndarray, known: np.ndarray, known_positions: np.ndarray) -> np.ndarray:
    """Which known window each of ``rows`` ``(n, d)`` equals, bit for bit: the matching entry of ``known_positions``
    (``known``: sorted :func:`window_fingerprints` of the known windows, ``known_positions`` their window indices in
    the same order), or -1: ``(n,)`` int64."""
    if len(known) == 0:
        return np.full(len(rows), -1, dtype=np.int64)
    fingerprints = window_fingerprints(rows)
    at = np.minimum(np.searchsorted(known, fingerprints), len(known) - 1)
    return np.where(known[at] == fingerprints, known_positions[at], -1).astype(np.int64)


def overlapping_known(
    positions: np.ndarray, reference_positions: np.ndarray, window: int, stride: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """The trivial matches a nearest-window distance leaves out: which rows are a known window (``positions``
    ``(n,)``: its window index, or -1 for none) and, for each, which windows at ``reference_positions`` ``(m,)``
    overlap it — ``(rows (r,) int64, mask (r, m) bool)``. Only the known rows get a mask row: most rows are none."""
    rows = np.flatnonzero(np.asarray(positions) >= 0)
    gap = np.abs(np.asarray(positions)[rows, None] - np.asarray(reference_positions)[None, :]) * stride
    return rows, gap < window


def window_starts(n_points: int, window: int, stride: int = 1) -> np.ndarray:
    """First point index of every window, ``(n_windows,)``."""
    return np.arange(n_windows(n_points, window, stride)) * stride


def window_ends(n_points: int, window: int, stride: int = 1) -> np.ndarray:
    """Last point index (inclusive) of every window, ``(n_windows,)``."""
    return window_starts(n_points, window, stride) + window - 1


def window_labels(point_labels: np.ndarray, window: int, stride: int = 1) -> np.ndarray:
    """Label of each window = label of its end point, ``(n_points,) -> (n_windows,)``."""
    labels = np.asarray(point_labels)
    return cast(np.ndarray, labels[window_ends(len(labels), window, stride)])


def end_point_scores(window_scores: np.ndarray, n_points: int, window: int, stride: int = 1) -> np.ndarray:
    """Point scores from window scores: each point takes the latest window ending at or before it.

    ``(n_windows,) -> (n_points,)``. Points before the first window's end take the first window's
    score, so every point — the first ``window - 1`` included — gets a finite score.
    """
    ws = np.asarray(window_scores, dtype=np.float64)
    ends = window_ends(n_points, window, stride)
    if len(ws) != len(ends):
        raise ValueError(f"{len(ws)} window scores for {len(ends)} windows")
    idx = np.searchsorted(ends, np.arange(n_points), side="right") - 1
    return ws[np.clip(idx, 0, len(ws) - 1)]


def average_over_windows(step_scores: np.ndarray, n_points: int, stride: int = 1) -> np.ndarray:
    """Average per-time-step window scores over every window covering each point.

    ``step_scores``: ``(n_windows, window)``, the score of each time step inside each window.
    Returns ``(n_points,)``. Points no window covers (a tail shorter than ``stride``) take the
    score of the nearest covered point.
    """
    s = np.asarray(step_scores, dtype=np.float64)
    count, window = s.shape
    total = np.zeros(n_points, dtype=np.float64)
    hits = np.zeros(n_points, dtype=np.float64)
    starts = np.arange(count) * stride
    for offset in range(window):  # loop over the short window axis, vectorised over windows
        idx = starts + offset  # distinct for a fixed offset, so fancy-index += is exact
        total[idx] += s[:, offset]
        hits[idx] += 1.0
    covered = hits > 0
    out = np.empty(n_points, dtype=np.float64)
    out[covered] = total[covered] / hits[covered]
    if not covered.all():
        cov_idx = np.flatnonzero(covered)
        nearest = cov_idx[np.clip(np.searchsorted(cov_idx, np.arange(n_points)), 0, len(cov_idx) - 1)]
        out[~covered] = out[nearest[~covered]]
    return out


def ranges_to_point_labels(ranges: list[LabeledRange], n_points: int) -> np.ndarray:
    """Point labels from labeled ranges: ``(n_points,)`` int8 with 1 anomaly, 0 normal, -1 unlabeled.

    Later ranges override earlier ones where they overlap (the latest answer wins).
    """
    labels = np.full(n_points, -1, dtype=np.int8)
    for r in ranges:
        if r.start >= n_points:
            raise ValueError(f"labeled range [{r.start}, {r.end}) is past the series end ({n_points} points)")
        labels[r.start : min(r.end, n_points)] = r.value
    return labels


@dataclass
class Scaler:
    """Per-channel scaling fitted on training data only.

    ``kind='minmax'`` maps the training range to [0, 1] (RLAD); ``kind='standard'`` to zero mean,
    unit variance (reconstruction backbones). Constant channels get scale 1 so nothing divides by 0.
    """

    kind: str = "standard"
    offset_: np.ndarray | None = None
    scale_: np.ndarray | None = None

    def fit(self, x: np.ndarray) -> Scaler:
        x2 = as_2d(x)
        if self.kind == "minmax":
            lo, hi = x2.min(axis=0), x2.max(axis=0)
            self.offset_, scale = lo, hi - lo
        elif self.kind == "standard":
            self.offset_, scale = x2.mean(axis=0), x2.std(axis=0)
        else:
            raise ValueError(f"scaler kind must be 'minmax' or 'standard', not {self.kind!r}")
        self.scale_ = np.where(scale > 1e-12, scale, 1.0).astype(np.float32)
        self.offset_ = self.offset_.astype(np.float32)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        if self.offset_ is None or self.scale_ is None:
            raise RuntimeError("Scaler is not fitted; call fit() on training data first")
        x2 = as_2d(x)
        if x2.shape[1] != len(self.offset_):
            raise ValueError(f"series has {x2.shape[1]} channels, the scaler was fitted on {len(self.offset_)}")
        return cast(np.ndarray, (x2 - self.offset_) / self.scale_)
