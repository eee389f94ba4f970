"""Anomaly events: the segments where a version's point scores are at or above its threshold.

An event is a maximal run of points with ``score >= threshold`` on one series; two runs separated by at most
``merge_gap`` points below the threshold (default :data:`DEFAULT_MERGE_GAP`) are one event, so a score that dips
for a point or two does not split an incident in two. ``merge_gap=0`` gives the raw runs. A missing (NaN) score
counts as below the threshold.

Events are computed from the stored score chunks, one chunk at a time with numpy, in the order of the project's
series (by id) and of their points, and the scan stops as soon as a page is full: a page reads only the chunks up
to its last event (plus the look-ahead that tells whether there is a next page). Pages are cut by an opaque cursor
that remembers the version, the filters and where the last event ended, so paging through a version reaches every
event exactly once even while a newer version starts serving.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy.orm import Session

from app.datasets import service as datasets
from app.datasets.models import Series
from app.errors import AppError, Conflict
from app.projects import service as projects
from app.projects.models import Project
from app.versions import reads, service
from app.versions import repository as repo
from app.versions.models import ModelVersion

DEFAULT_MERGE_GAP = 5
"""Runs above the threshold separated by at most this many points below it form one event."""
MAX_MERGE_GAP = 10_000
DEFAULT_LIMIT = 100
MAX_LIMIT = 1_000
BLOCK_POINTS = reads.BLOCK_POINTS


class InvalidCursor(AppError):
    """A cursor this server did not make, or one made for other filters or another version."""

    status = 422
    code = "invalid_cursor"


@dataclass(frozen=True)
class EventFilters:
    """What a client narrows the events to; a cursor is only valid with the filters it was made for."""

    series_id: int | None = None
    time_from: str | None = None
    time_to: str | None = None
    min_score: float | None = None
    merge_gap: int = DEFAULT_MERGE_GAP

    def fingerprint(self) -> str:
        key = json.dumps([self.series_id, self.time_from, self.time_to, self.min_score, self.merge_gap])
        return hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Cursor:
    """Where the next page starts: series ``series_id`` from point ``position`` on (the end of the last event
    returned; no event spans it), for ``version_id`` and the filters whose fingerprint is ``filters``."""

    version_id: int
    series_id: int
    position: int
    filters: str

    def encode(self) -> str:
        raw = json.dumps({"v": self.version_id, "s": self.series_id, "p": self.position, "f": self.filters})
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @staticmethod
    def decode(text: str) -> Cursor:
        try:
            raw = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
            cursor = Cursor(int(raw["v"]), int(raw["s"]), int(raw["p"]), str(raw["f"]))
        except (ValueError, TypeError, KeyError, binascii.Error):
            raise InvalidCursor(
                "cursor is not one this server made: pass next_cursor from the previous page as is"
            ) from None
        if cursor.position < 0:
            raise InvalidCursor("cursor is not one this server made: pass next_cursor from the previous page as is")
        return cursor


@dataclass(frozen=True)
class Run:
    """Points ``[start, end)`` of one series at or above the threshold (with gaps up to ``merge_gap``)."""

    start: int
    end: int
    peak_score: float
    peak_index: int


@dataclass
class EventLabel:
    id: int
    value: str
    start: int
    end: int
    source: str


@dataclass
class Event:
    """One anomalous segment. ``end`` is exclusive (like every range of the API); ``end_time`` is the timestamp of
    its last point, ``end - 1``. Times are ISO 8601 UTC strings, numbers or row numbers, as the series has them."""

    series_id: int
    version_id: int
    start: int
    end: int
    n_points: int
    start_time: str | float | int
    end_time: str | float | int
    peak_score: float
    peak_index: int
    peak_time: str | float | int
    label: str | None
    """The value of the analysts' labels in force overlapping the event (anomaly, normal, unsure), ``mixed`` when
    they disagree, ``None`` when nobody labeled any of its points."""
    labels: list[EventLabel] = field(default_factory=list)


@dataclass
class EventPage:
    project_id: int
    version_id: int
    threshold: float
    merge_gap: int
    events: list[Event]
    next_cursor: str | None


def list_events(
    session: Session,
    project_id: int,
    *,
    version_id: int | None = None,
    filters: EventFilters | None = None,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
    block_points: int = BLOCK_POINTS,
) -> EventPage:
    """One page of events of ``version_id`` (default: the serving version, or the cursor's) ordered by series id
    then start; ``next_cursor`` is ``None`` on the last page."""
    filters = filters or EventFilters()
    if not 1 <= limit <= MAX_LIMIT:
        raise AppError(f"limit must be between 1 and {MAX_LIMIT}", status=422)
    if not 0 <= filters.merge_gap <= MAX_MERGE_GAP:
        raise AppError(f"merge_gap must be between 0 and {MAX_MERGE_GAP} points", status=422)
    project = projects.get_project(session, project_id)
    after = Cursor.decode(cursor) if cursor else None
    if after is not None:
        if after.filters != filters.fingerprint():
            raise InvalidCursor("this cursor was made for other filters: repeat the first page's filters with it")
        if version_id is not None and version_id != after.version_id:
            raise InvalidCursor(f"this cursor pages through version {after.version_id}, not {version_id}")
        version_id = after.version_id
    version = service.version_to_show(session, project, version_id)
    if version.threshold is None:
        raise Conflict(f"model version {version.id} has no threshold, so it flags no point as anomalous")
    threshold = float(version.threshold)
    found: list[tuple[Series, Run]] = []
    next_cursor = None
    for series in _series_to_scan(session, project, filters, after):
        begin = after.position if after is not None and after.series_id == series.id else 0
        for run in _series_events(session, version, series, threshold, filters, begin, block_points):
            if len(found) == limit:  # one more exists: the page is full and has a successor
                last_series, last = found[-1]
                next_cursor = Cursor(version.id, last_series.id, last.end, filters.fingerprint()).encode()
                break
            found.append((series, run))
        if next_cursor is not None:
            break
    return EventPage(
        project.id, version.id, threshold, filters.merge_gap, _describe(session, project, version, found), next_cursor
    )


def _series_to_scan(session: Session, project: Project, filters: EventFilters, after: Cursor | None) -> list[Series]:
    """The project's series in id order; with a ``series_id`` filter, that series (also one of the project's data set
    imported after the model trained)."""
    if filters.series_id is not None:
        series = [projects.scored_series(session, project, filters.series_id)]
    else:
        series = sorted(project.series, key=lambda s: s.id)
    if after is not None:
        series = [s for s in series if s.id >= after.series_id]
    return series


def _series_events(
    session: Session,
    version: ModelVersion,
    series: Series,
    threshold: float,
    filters: EventFilters,
    begin: int,
    block_points: int,
) -> Iterator[Run]:
    """The events of one series that pass the filters, from point ``begin`` on (a point no event spans)."""
    n = series.n_points
    if n == 0 or begin >= n:
        return
    lo, hi = 0, n
    time_from = reads.parse_time_bound(series, filters.time_from, "from") if filters.time_from is not None else None
    time_to = reads.parse_time_bound(series, filters.time_to, "to") if filters.time_to is not None else None
    if time_from is not None and time_to is not None and time_to <= time_from:
        raise reads.InvalidRange(f"to ({filters.time_to}) must be after from ({filters.time_from})")
    if time_from is not None:
        lo = reads.points_before(session, series, time_from)
    if time_to is not None:
        hi = reads.points_before(session, series, time_to)
    if hi <= lo or hi <= begin:
        return
    reads.ensure_scored(session, version, series)
    if lo > begin:
        begin = max(begin, _safe_start(session, version, series, threshold, lo, filters.merge_gap, block_points))
    for run in runs(_score_blocks(session, version, series, begin, block_points), threshold, filters.merge_gap):
        if run.start >= hi:
            return
        if run.end <= lo:
            continue
        # compared as shown (6 decimals): a float32 peak of 0.9 is 0.899999976 and must pass min_score=0.9
        if filters.min_score is not None and round(run.peak_score, 6) < filters.min_score:
            continue
        yield run


def _score_blocks(
    session: Session, version: ModelVersion, series: Series, begin: int, block_points: int
) -> Iterator[tuple[int, np.ndarray]]:
    """``(offset, float32 scores)`` from ``begin`` to the series' end, one block at a time (read lazily)."""
    lo, n = begin, series.n_points
    while lo < n:
        hi = min(n, (lo // block_points + 1) * block_points)
        yield lo, repo.read_scores(session, version.id, series.id, "point", lo, hi, series.chunk_points)
        lo = hi


def _safe_start(
    session: Session,
    version: ModelVersion,
    series: Series,
    threshold: float,
    position: int,
    merge_gap: int,
    block_points: int,
) -> int:
    """A block start at or before ``position`` that no event spans: the ``merge_gap + 1`` points before it are all
    below the threshold (or it is the first point). Scanning from there finds whole events, never a cut one."""
    start = position // block_points * block_points
    while start > 0:
        before = repo.read_scores(
            session, version.id, series.id, "point", max(0, start - merge_gap - 1), start, series.chunk_points
        )
        if not (before >= threshold).any():
            return start
        start -= block_points
    return 0


def runs(blocks: Iterator[tuple[int, np.ndarray]], threshold: float, merge_gap: int) -> Iterator[Run]:
    """Maximal runs of ``score >= threshold`` over consecutive blocks ``(offset, scores)``, runs closer than
    ``merge_gap + 1`` points merged, in order. Vectorised within a block; a run may continue into the next block."""
    pending: Run | None = None
    for offset, scores in blocks:
        x = np.where(np.isnan(scores), -np.inf, scores.astype(np.float64))
        above = x >= threshold
        if not above.any():
            continue
        edges = np.diff(above.astype(np.int8), prepend=np.int8(0), append=np.int8(0))
        starts = np.flatnonzero(edges == 1)
        ends = np.flatnonzero(edges == -1)
        apart = (starts[1:] - ends[:-1]) > merge_gap
        group_starts = starts[np.concatenate(([True], apart))]
        group_ends = ends[np.concatenate((apart, [True]))]
        # between a group's end and the next group's start every point is below the threshold, so the maximum over
        # [start_i, start_{i+1}) is the group's own peak
        peaks = np.maximum.reduceat(x, group_starts)
        peak_at = _first_peak_positions(x, group_starts, group_ends, peaks)
        for s, e, p, at in zip(
            group_starts.tolist(), group_ends.tolist(), peaks.tolist(), peak_at.tolist(), strict=True
        ):
            run = Run(offset + s, offset + e, float(p), offset + at)
            if pending is not None and run.start - pending.end <= merge_gap:
                better = run.peak_score > pending.peak_score
                pending = Run(
                    pending.start,
                    run.end,
                    run.peak_score if better else pending.peak_score,
                    run.peak_index if better else pending.peak_index,
                )
                continue
            if pending is not None:
                yield pending
            pending = run
    if pending is not None:
        yield pending


def _first_peak_positions(
    x: np.ndarray, group_starts: np.ndarray, group_ends: np.ndarray, peaks: np.ndarray
) -> np.ndarray:
    """For each group ``[start, end)``, the position of the first point equal to its peak."""
    group_of = np.repeat(np.arange(len(group_starts)), group_ends - group_starts)
    position = np.concatenate(
        [np.arange(s, e) for s, e in zip(group_starts.tolist(), group_ends.tolist(), strict=True)]
    )
    hits = x[position] == peaks[group_of]
    _, first = np.unique(group_of[hits], return_index=True)
    return position[hits][first]


def _describe(
    session: Session, project: Project, version: ModelVersion, found: list[tuple[Series, Run]]
) -> list[Event]:
    """Events with their timestamps and the labels in force that overlap them (one label query per series)."""
    out: list[Event] = []
    by_series: dict[int, list[Run]] = {}
    series_of: dict[int, Series] = {}
    for series, run in found:
        by_series.setdefault(series.id, []).append(run)
        series_of[series.id] = series
    for series_id, series_runs in by_series.items():
        series = series_of[series_id]
        stamps = _Timestamps(session, series)
        labels = projects.effective_labels(
            session, project.id, series_id=series_id, start=series_runs[0].start, end=series_runs[-1].end
        )
        label_starts = np.array([lab.start for lab in labels], dtype=np.int64)
        label_ends = np.array([lab.end for lab in labels], dtype=np.int64)
        for run in series_runs:
            overlapping = np.flatnonzero((label_starts < run.end) & (label_ends > run.start)).tolist()
            event_labels = [
                EventLabel(labels[i].id, labels[i].value, labels[i].start, labels[i].end, labels[i].source)
                for i in overlapping
            ]
            values = {lab.value for lab in event_labels}
            out.append(
                Event(
                    series_id=series_id,
                    version_id=version.id,
                    start=run.start,
                    end=run.end,
                    n_points=run.end - run.start,
                    start_time=stamps.at(run.start),
                    end_time=stamps.at(run.end - 1),
                    peak_score=round(run.peak_score, 6),
                    peak_index=run.peak_index,
                    peak_time=stamps.at(run.peak_index),
                    label=(values.pop() if len(values) == 1 else "mixed") if values else None,
                    labels=event_labels,
                )
            )
    return out


class _Timestamps:
    """Timestamps of single points of one series, reading each stored chunk at most once (for one page)."""

    def __init__(self, session: Session, series: Series) -> None:
        self.session = session
        self.series = series
        self.chunks: dict[int, np.ndarray] = {}

    def at(self, index: int) -> str | float | int:
        size = self.series.chunk_points
        c = index // size
        if c not in self.chunks:
            lo, hi = c * size, min(self.series.n_points, (c + 1) * size)
            self.chunks[c] = datasets.read_timestamps(self.session, self.series, lo, hi)
        i = index - c * size
        return reads.timestamp_values(self.chunks[c][i : i + 1], self.series.timestamp_kind)[0]
