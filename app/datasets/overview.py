"""A per-series min/max summary so a wide chart view never reads every point.

A chart of ``w`` pixels needs about ``2 w`` points. For a view that spans hundreds of thousands of points, reading
them all (and downsampling them) costs time proportional to the series. Instead the series is cut once into blocks
of ``block`` points and, per channel and block, the points that can matter on screen are kept: the minimum, the
maximum and the first missing value (so a gap stays a gap). A wide view downsamples those *candidates* with the same
MinMaxLTTB as a narrow view uses on raw points; since a pixel then spans many blocks, every pixel still gets its true
extremes. Pure numpy: the service feeds it blocks read from the database and keeps it in an :class:`OverviewCache`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass

import numpy as np

MIN_BLOCK = 64
"""Smallest block (points). Candidates are at most 3 per block, so a summary is ~1/20 of the series or less."""
MAX_BLOCKS = 65_536
"""Most blocks per channel: bounds a summary to ~1.5 MB a channel (index time) whatever the series length."""


def block_size(n_points: int) -> int:
    """Points per block for a series of ``n_points``: a power of two >= :data:`MIN_BLOCK`."""
    block = MIN_BLOCK
    while n_points > block * MAX_BLOCKS:
        block *= 2
    return block


@dataclass(frozen=True)
class Candidates:
    """One channel's kept points, in increasing index order."""

    i: np.ndarray  # (m,) int64 point indices
    y: np.ndarray  # (m,) float64 values; NaN where the value is missing
    x: np.ndarray | None  # (m,) float64 timestamps (ms since epoch or numbers); None when x is the index


@dataclass(frozen=True)
class SeriesOverview:
    n_points: int
    block: int
    channels: list[Candidates]
    truth: list[tuple[int, int]]  # every ground-truth segment [start, end) of the series

    @property
    def nbytes(self) -> int:
        return sum(c.i.nbytes + c.y.nbytes + (0 if c.x is None else c.x.nbytes) for c in self.channels)

    def candidates(self, channel: int, start: int, end: int) -> Candidates:
        """Kept points of ``channel`` with index in ``[start, end)``."""
        c = self.channels[channel]
        lo, hi = np.searchsorted(c.i, [start, end])
        return Candidates(c.i[lo:hi], c.y[lo:hi], None if c.x is None else c.x[lo:hi])


def build_overview(
    parts: Iterable[tuple[int, np.ndarray, np.ndarray | None]],
    n_points: int,
    n_channels: int,
    block: int,
    truth: list[tuple[int, int]],
) -> SeriesOverview:
    """Summarise a series from consecutive ``(start, values (n, C) float32, x (n,) float64 | None)`` parts.

    Every part but the last must start on a block boundary and hold a whole number of blocks.
    """
    kept_i: list[list[np.ndarray]] = [[] for _ in range(n_channels)]
    kept_y: list[list[np.ndarray]] = [[] for _ in range(n_channels)]
    kept_x: list[list[np.ndarray]] = [[] for _ in range(n_channels)]
    has_x = False
    for start, values, x in parts:
        if start % block:
            raise ValueError(f"part at {start} does not start on a block of {block}")
        n = len(values)
        nb = -(-n // block)
        # (C, blocks, block): each block's points contiguous, so the reductions below run along memory.
        cube: np.ndarray = np.full((n_channels, nb * block), np.nan, dtype=np.float32)
        cube[:, :n] = values.T
        cube = cube.reshape(n_channels, nb, block)
        missing = ~np.isfinite(cube)
        if n == nb * block and not missing.any():  # the common case: no gap, no short last block
            lo, hi = cube.argmin(axis=2), cube.argmax(axis=2)  # (C, blocks)
            any_missing = None
        else:
            lo = np.where(missing, np.inf, cube).argmin(axis=2)  # an all-missing block gives its first point
            hi = np.where(missing, -np.inf, cube).argmax(axis=2)
            first_missing, any_missing = missing.argmax(axis=2), missing.any(axis=2)
        offsets = start + np.arange(nb) * block  # (blocks,)
        flat = cube.reshape(n_channels, -1)
        for c in range(n_channels):
            pieces = [offsets + lo[c], offsets + hi[c]]
            if any_missing is not None:
                pieces.append((offsets + first_missing[c])[any_missing[c]])
            idx = np.unique(np.concatenate(pieces))
            idx = idx[idx < start + n]  # drops the padding of a short last block
            kept_i[c].append(idx)
            kept_y[c].append(flat[c, idx - start].astype(np.float64))
            if x is not None:
                has_x = True
                kept_x[c].append(np.asarray(x, dtype=np.float64)[idx - start])
    channels = [
        Candidates(
            np.concatenate(kept_i[c]) if kept_i[c] else np.empty(0, np.int64),
            np.concatenate(kept_y[c]) if kept_y[c] else np.empty(0),
            np.concatenate(kept_x[c]) if has_x else None,
        )
        for c in range(n_channels)
    ]
    return SeriesOverview(n_points, block, channels, truth)


class OverviewCache:
    """A thread-safe LRU of summaries bounded by their total size in bytes (one per :class:`~app.db.Database`)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[Hashable, SeriesOverview] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> SeriesOverview | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: Hashable, item: SeriesOverview) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._items[key] = item
            self._bytes += item.nbytes
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= dropped.nbytes

    def __len__(self) -> int:
        return len(self._items)


OVERVIEW_CACHE_BYTES = 256 << 20
"""Summaries of recently viewed long series kept per database, at most 256 MB in all; rebuilt after eviction."""
