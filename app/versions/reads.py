"""Reading a version's scores by point range or time range, as JSON or CSV, streamed chunk by chunk.

A read is planned first (:func:`plan_score_read`) in the request's transaction: the range is resolved and checked
(an inverted or invalid range is a 422, one beyond the series a 416; never an empty answer), the scores are made
to exist (:func:`ensure_scored`, which goes through :func:`app.versions.service.read_scores`) and the ETag is
known before any data is read, so ``If-None-Match`` answers 304 at the cost of a few small queries.

The body is then written block by block (one stored chunk of timestamps and scores at a time, 65,536 points by
default): memory stays bounded whatever the range, and no block's values are held as Python objects beyond the
block. A large range is streamed with a short read transaction per block, so a slow client holds no database
connection between blocks. The scores of a (version, series, range) never change once stored, except the last
window of points a version has scored, which is scored again when points are appended after it
(app/versions/scoring.py); the ETag of a range reaching into that window changes with it.

Time bounds (``from`` / ``to``) follow the series' timestamps (app/datasets/models.py ``Series.timestamp_kind``):
``datetime`` series take ISO 8601 (a naive time is UTC) or unix seconds; ``number`` series take numbers in their
own unit; ``index`` series (no timestamp column) take row numbers. The range is half-open: ``from <= t < to``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import numpy as np
import orjson
from sqlalchemy.orm import Session

from app.datasets import service as datasets
from app.datasets.models import Series
from app.errors import AppError, NotFound
from app.projects import service as projects
from app.versions import repository as repo
from app.versions import scoring, service
from app.versions.models import ModelVersion

FORMATS = ("json", "csv")
MEDIA_TYPES = {"json": "application/json", "csv": "text/csv; charset=utf-8"}
INLINE_POINTS = 65_536
"""Ranges up to this many points are answered in one body (with a Content-Length); larger ones are streamed."""
BLOCK_POINTS = 65_536
"""Points formatted at a time while streaming (the default stored chunk size): bounds the server's memory."""
FORMAT_POINTS = 16_384
"""Points turned into text at a time (each block is formatted in slices of this many)."""
FORMAT_REVISION = "2"
"""Part of every ETag: bump it when the bytes of a read change for the same data (a new field, a new number format)."""
CSV_HEADER = "index,timestamp,score,prediction\n"
INT64_MIN, INT64_MAX = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)

SessionFactory = Callable[[], AbstractContextManager[Session]]


class RangeNotSatisfiable(AppError):
    """The range lies (partly) beyond the series: the message says which range is valid."""

    status = 416
    code = "range_not_satisfiable"


class InvalidRange(AppError):
    """The range is inverted, empty or cannot be read: the message says what a valid one looks like."""

    status = 422
    code = "invalid_range"


@dataclass(frozen=True)
class ScoreRead:
    """A checked read: the scores of ``version_id`` on points ``[start, end)`` of ``series_id`` in ``fmt``."""

    project_id: int
    version_id: int
    series_id: int
    start: int
    end: int
    threshold: float | None
    timestamp_kind: str  # datetime | number | index (app/datasets/models.py)
    fmt: str  # json | csv
    etag: str

    @property
    def n_points(self) -> int:
        return self.end - self.start

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.fmt]

    def headers(self) -> dict[str, str]:
        """ETag and caching headers; a CSV also names its file."""
        out = {
            "ETag": self.etag,
            # the serving version can change at any time: a cache may keep the body but must ask again (304)
            "Cache-Control": "private, no-cache",
        }
        if self.fmt == "csv":
            name = f"scores-p{self.project_id}-v{self.version_id}-s{self.series_id}-{self.start}-{self.end}.csv"
            out["Content-Disposition"] = f'attachment; filename="{name}"'
        return out


@dataclass
class ScoreBody:
    """What the route sends: 304 (``content`` None), or 200 with the whole body (bytes) or a stream of blocks."""

    status: int
    headers: dict[str, str]
    media_type: str
    content: bytes | Iterator[bytes] | None


# -- planning -------------------------------------------------------------------------------------------------------


def read_scores(
    session: Session,
    open_session: SessionFactory,
    project_id: int,
    series_id: int,
    *,
    version_id: int | None = None,
    start: int | None = None,
    end: int | None = None,
    time_from: str | None = None,
    time_to: str | None = None,
    fmt: str = "json",
    if_none_match: str | None = None,
    inline_points: int = INLINE_POINTS,
) -> ScoreBody:
    """The use case behind ``GET /api/v1/projects/{id}/scores``: plan the read, answer 304 when the client holds
    it, else its body: built here for small ranges, else a stream that opens ``open_session()`` per block."""
    read = plan_score_read(
        session,
        project_id,
        series_id,
        version_id=version_id,
        start=start,
        end=end,
        time_from=time_from,
        time_to=time_to,
        fmt=fmt,
    )
    if not_modified(read, if_none_match):
        return ScoreBody(304, read.headers(), read.media_type, None)
    if read.n_points <= inline_points:
        return ScoreBody(200, read.headers(), read.media_type, b"".join(render(session, read)))
    return ScoreBody(200, read.headers(), read.media_type, stream(open_session, read))


def plan_score_read(
    session: Session,
    project_id: int,
    series_id: int,
    *,
    version_id: int | None = None,
    start: int | None = None,
    end: int | None = None,
    time_from: str | None = None,
    time_to: str | None = None,
    fmt: str = "json",
) -> ScoreRead:
    """Resolve and check the range (by index or by time, not both) and make sure the version has its scores."""
    if fmt not in FORMATS:
        raise InvalidRange(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    project = projects.get_project(session, project_id)
    series = projects.scored_series(session, project, series_id)
    version = service.version_to_show(session, project, version_id)
    if (start is not None or end is not None) and (time_from is not None or time_to is not None):
        raise InvalidRange("give the range either by index (start, end) or by time (from, to), not both")
    if time_from is not None or time_to is not None:
        lo, hi = time_range(session, series, time_from, time_to)
    else:
        lo, hi = index_range(series, start, end)
    scored = ensure_scored(session, version, series, hi)
    # A version's stored scores never change, but for the last window of points it has scored: when points are
    # appended those are scored again with the windows that now cover them from the other side
    # (app/versions/scoring.py). A range reaching into them is tagged with how far the scoring has got.
    settled = hi <= scored - project.window
    return ScoreRead(
        project_id=project.id,
        version_id=version.id,
        series_id=series.id,
        start=lo,
        end=hi,
        threshold=version.threshold,
        timestamp_kind=series.timestamp_kind,
        fmt=fmt,
        etag=etag_for(version.id, series.id, lo, hi, fmt, None if settled else scored),
    )


def index_range(series: Series, start: int | None, end: int | None) -> tuple[int, int]:
    """``[start, end)`` checked against the series: 422 when inverted or negative, 416 when beyond its points."""
    n = series.n_points
    valid = f"series {series.id} has {n:,} points: valid ranges are 0 <= start < end <= {n}"
    lo = 0 if start is None else start
    hi = n if end is None else end
    if lo < 0 or hi < 0:
        raise InvalidRange(f"start and end count points from 0; {valid}")
    if n == 0:
        raise RangeNotSatisfiable(f"series {series.id} has no points yet")
    if end is not None and start is not None and hi <= lo:
        raise InvalidRange(f"end ({hi}) must be greater than start ({lo}); {valid}")
    if lo >= n:
        raise RangeNotSatisfiable(f"start {lo} is beyond the last point; {valid}")
    if hi > n:
        raise RangeNotSatisfiable(f"end {hi} is beyond the series; {valid}")
    if hi <= lo:
        raise InvalidRange(f"end ({hi}) must be greater than start ({lo}); {valid}")
    return lo, hi


def time_range(session: Session, series: Series, time_from: str | None, time_to: str | None) -> tuple[int, int]:
    """The points with ``from <= timestamp < to`` as an index range; 422 when a bound is unreadable or ``to`` is not
    after ``from``, 416 when no point of the series lies in between (the message gives the series' span)."""
    lo_value = parse_time_bound(series, time_from, "from") if time_from is not None else None
    hi_value = parse_time_bound(series, time_to, "to") if time_to is not None else None
    if lo_value is not None and hi_value is not None and hi_value <= lo_value:
        raise InvalidRange(f"to ({time_to}) must be after from ({time_from}); the range is from <= t < to")
    if series.n_points == 0:
        raise RangeNotSatisfiable(f"series {series.id} has no points yet")
    lo = 0 if lo_value is None else points_before(session, series, lo_value)
    hi = series.n_points if hi_value is None else points_before(session, series, hi_value)
    if hi <= lo:
        span = describe_span(series)
        raise RangeNotSatisfiable(f"no point of series {series.id} lies in from <= t < to; {span}")
    return lo, hi


def describe_span(series: Series) -> str:
    if series.timestamp_kind == "index":
        return f"it has no timestamp column: its times are the row numbers 0 to {series.n_points - 1}"
    return (
        f"its {series.n_points:,} points run from {series.first_timestamp} to {series.last_timestamp} "
        f"({'ISO 8601 or unix seconds' if series.timestamp_kind == 'datetime' else 'numbers'})"
    )


def parse_time_bound(series: Series, text: str, name: str) -> int | float:
    """A ``from`` / ``to`` value in the series' own time unit: integer ns since the epoch for ``datetime`` series
    (exact: compared with the stored int64 as an integer), the number otherwise."""
    raw = text.strip()
    number: float | None
    try:
        number = float(raw)
    except ValueError:
        number = None
    if number is not None and not math.isfinite(number):
        raise InvalidRange(f"{name} must be a finite number or an ISO 8601 time, not {text!r}")
    if series.timestamp_kind == "datetime":
        if number is not None:  # unix seconds, converted from the text so that no digit is lost
            return int(Decimal(raw).scaleb(9).to_integral_value())
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            raise InvalidRange(
                f"{name} must be an ISO 8601 time (e.g. 2024-01-31T12:00:00Z) or unix seconds, not {text!r}"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
        return (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1_000
    if number is None:
        what = "numbers" if series.timestamp_kind == "number" else "row numbers (it has no timestamp column)"
        raise InvalidRange(f"series {series.id}'s timestamps are {what}: give {name} as a number, not {text!r}")
    return number


def points_before(session: Session, series: Series, value: int | float) -> int:
    """How many points have a timestamp ``< value`` (timestamps strictly increase: a binary search over the stored
    chunks, reading about log2(chunks) + 1 of them)."""
    n = series.n_points
    if series.timestamp_kind == "index":
        return int(min(max(math.ceil(value), 0), n))
    if isinstance(value, int):  # ns: keep the comparison with the stored int64 inside its range
        value = min(max(value, INT64_MIN), INT64_MAX)
    size = series.chunk_points
    chunks: dict[int, np.ndarray] = {}  # this search's reads; a chunk is read once

    def chunk(c: int) -> np.ndarray:
        if c not in chunks:
            chunks[c] = _raw_timestamps(session, series, c * size, min(n, (c + 1) * size))
        return chunks[c]

    lo, hi = 0, (n + size - 1) // size  # the first chunk whose last timestamp is >= value is in [lo, hi]
    while lo < hi:
        mid = (lo + hi) // 2
        if chunk(mid)[-1] >= value:
            hi = mid
        else:
            lo = mid + 1
    if lo * size >= n:
        return n
    return lo * size + int(np.searchsorted(chunk(lo), value, side="left"))


def _raw_timestamps(session: Session, series: Series, start: int, end: int) -> np.ndarray:
    """Timestamps of ``[start, end)`` as stored: int64 ns (datetime), float64 (number) or int64 row numbers."""
    ts = datasets.read_timestamps(session, series, start, end)
    return ts.view(np.int64) if series.timestamp_kind == "datetime" else ts


def ensure_scored(session: Session, version: ModelVersion, series: Series, end: int | None = None) -> int:
    """Make sure ``version`` has point scores of ``series`` up to ``end`` (default: its last point) and return how
    many points it has scored. :func:`app.versions.scoring.ensure_scored` is the one place that knows how missing
    scores are made (a series imported or points appended after the version trained: scored in the request when
    few, else a job and a 409 that names it). A range found short while its body is written ends the body short
    (:func:`blocks`)."""
    end = series.n_points if end is None else min(end, series.n_points)
    scored = scoring.ensure_scored(session, version, series.id, end)
    if scored < end:
        raise NotFound(f"model version {version.id} has no score for point {end - 1} of series {series.id}")
    return scored


def etag_for(version_id: int, series_id: int, start: int, end: int, fmt: str, revision: int | None = None) -> str:
    """One ETag per (version, series, range, format). Weak, because the same representation may be sent
    gzip-compressed or not. ``revision``: how far the version has scored the series, for a range whose last
    scores may still be refined (see :func:`plan_score_read`)."""
    key = f"{FORMAT_REVISION}:{version_id}:{series_id}:{start}:{end}:{fmt}:{'' if revision is None else revision}"
    return f'W/"{hashlib.sha256(key.encode()).hexdigest()[:32]}"'


def not_modified(read: ScoreRead, if_none_match: str | None) -> bool:
    """``If-None-Match`` holds the read's ETag (weak comparison, as RFC 9110 asks for GET) or ``*``."""
    if not if_none_match:
        return False
    wanted = _opaque(read.etag)
    for tag in if_none_match.split(","):
        tag = tag.strip()
        if tag == "*" or _opaque(tag) == wanted:
            return True
    return False


def _opaque(tag: str) -> str:
    return tag[2:] if tag.startswith("W/") else tag


# -- the body -------------------------------------------------------------------------------------------------------


@dataclass
class Block:
    """Points ``[start, start + len(scores))``: raw timestamps and float32 scores."""

    start: int
    timestamps: np.ndarray
    scores: np.ndarray


def blocks(
    session_for_block: Callable[[], AbstractContextManager[Session]],
    read: ScoreRead,
    block_points: int = BLOCK_POINTS,
    *,
    with_timestamps: bool = True,
    with_scores: bool = True,
) -> Iterator[Block]:
    """The read's points, ``block_points`` at a time (aligned to multiples of ``block_points`` so each block reads
    the fewest stored chunks), each read in a session of its own."""
    lo = read.start
    while lo < read.end:
        hi = min(read.end, (lo // block_points + 1) * block_points)
        with session_for_block() as session:
            series = datasets.get_series(session, read.series_id)
            ts = _raw_timestamps(session, series, lo, hi) if with_timestamps else np.empty(0)
            scores = (
                repo.read_scores(session, read.version_id, read.series_id, "point", lo, hi, series.chunk_points)
                if with_scores
                else np.empty(0, dtype=np.float32)
            )
        if with_scores and len(scores) != hi - lo:
            # planned scores vanished (the version was deleted meanwhile): end the body short rather than lie
            raise RuntimeError(f"scores of version {read.version_id} on series {read.series_id} changed while read")
        # formatted a slice at a time: the text of a point costs ~10 times its float, so this bounds the peak
        for at in range(0, hi - lo, FORMAT_POINTS):
            yield Block(
                lo + at,
                ts[at : at + FORMAT_POINTS] if with_timestamps else ts,
                scores[at : at + FORMAT_POINTS] if with_scores else scores,
            )
        lo = hi


def render(session: Session, read: ScoreRead, block_points: int = BLOCK_POINTS) -> Iterator[bytes]:
    """The body, reading in ``session`` (the request's): for small ranges, joined at once."""

    def same_session() -> AbstractContextManager[Session]:
        return _Borrowed(session)

    return _body(same_session, read, block_points, one_pass=True)


def stream(open_session: SessionFactory, read: ScoreRead, block_points: int = BLOCK_POINTS) -> Iterator[bytes]:
    """The body as a stream: each block in a short transaction of its own (``open_session()``)."""
    return _body(open_session, read, block_points)


class _Borrowed(AbstractContextManager[Session]):
    """A session lent for a block: neither committed nor closed here (its owner does both)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def __enter__(self) -> Session:
        return self.session

    def __exit__(self, *exc: object) -> None:
        return None


def _body(factory: SessionFactory, read: ScoreRead, block_points: int, *, one_pass: bool = False) -> Iterator[bytes]:
    if read.fmt == "csv":
        yield CSV_HEADER.encode()
        for block in blocks(factory, read, block_points):
            yield _csv_rows(block, read).encode()
        return
    head = {
        "version_id": read.version_id,
        "series_id": read.series_id,
        "start": read.start,
        "end": read.end,
        "threshold": read.threshold,
        "timestamp_kind": read.timestamp_kind,
    }
    # JSON with three parallel arrays (the shape clients of the earlier, unstreamed endpoint parse). A stream makes
    # three passes over the blocks, each reading only what it writes, so no array is ever held whole; a range
    # answered in one body (INLINE_POINTS at most) reads its blocks once and holds them.
    held = list(blocks(factory, read, block_points)) if one_pass else None

    def each(**only: bool) -> Iterator[Block]:
        return iter(held) if held is not None else blocks(factory, read, block_points, **only)

    kind, threshold = read.timestamp_kind, read.threshold
    yield (json.dumps(head, separators=(",", ":"))[:-1] + ',"timestamps":[').encode()
    yield from _joined(_json_timestamps(b.timestamps, kind) for b in each(with_scores=False))
    yield b'],"scores":['
    yield from _joined(_json_scores(b.scores) for b in each(with_timestamps=False))
    yield b'],"predictions":['
    if threshold is not None:
        yield from _joined(_json_predictions(b.scores, threshold) for b in each(with_timestamps=False))
    yield b"]}"


def _joined(parts: Iterator[bytes]) -> Iterator[bytes]:
    """Comma-joined JSON array items (each part holds one block's items, comma-separated), one piece per block."""
    first = True
    for items in parts:
        if not items:
            continue
        yield items if first else b"," + items
        first = False


# orjson writes a numpy array's items at C speed (NaN and ±inf as null, datetime64 as RFC 3339): the formatting that
# cost most of a 10,000-point read (the CSV, and timestamps finer than a second, keep the texts below)
_NUMPY = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z


def _json_items(values: np.ndarray) -> bytes:
    """A numpy array's JSON items, comma-separated, without the brackets."""
    return orjson.dumps(np.ascontiguousarray(values), option=_NUMPY)[1:-1]


def _json_scores(scores: np.ndarray) -> bytes:
    """Scores rounded to 6 decimals (``null`` where not finite: JSON has no NaN); the values of :func:`_score_texts`."""
    return _json_items(np.round(scores.astype(np.float64), 6))


def _json_predictions(scores: np.ndarray, threshold: float) -> bytes:
    """1 where the score is at or above the threshold, else 0 (a missing score predicts nothing: 0)."""
    return _json_items((scores >= threshold).astype(np.uint8))


def _json_timestamps(ts: np.ndarray, kind: str) -> bytes:
    """Timestamps as JSON items: the texts of :func:`_timestamp_texts`, byte for byte."""
    if kind == "datetime":
        ns = ts.view(np.int64)
        if not (ns % 1_000_000_000).any():  # whole seconds (most series): orjson writes them as _iso_texts does
            return _json_items(ns.view("datetime64[ns]").astype("datetime64[s]"))
        return ",".join(_timestamp_texts(ts, kind)).encode()
    return _json_items(ts)


def _score_texts(scores: np.ndarray) -> list[str]:
    """Scores rounded to 6 decimals as JSON numbers (``null`` where not finite: JSON has no NaN)."""
    rounded = np.round(scores.astype(np.float64), 6)
    texts = list(map(repr, rounded.tolist()))
    if not np.isfinite(rounded).all():
        for i in np.flatnonzero(~np.isfinite(rounded)).tolist():
            texts[i] = "null"
    return texts


def _prediction_texts(scores: np.ndarray, threshold: float) -> list[str]:
    """1 where the score is at or above the threshold, else 0 (a missing score predicts nothing: 0)."""
    return ["1" if p else "0" for p in (scores >= threshold).tolist()]


def _timestamp_texts(ts: np.ndarray, kind: str, *, quoted: bool = True) -> list[str]:
    """JSON values of timestamps: ISO 8601 UTC strings (as short as exact), numbers, or row numbers."""
    if kind == "datetime":
        texts = _iso_texts(ts)
        return [f'"{t}"' for t in texts] if quoted else texts
    if kind == "number":
        return list(map(repr, ts.tolist()))
    return list(map(str, ts.tolist()))


def timestamp_values(ts: np.ndarray, kind: str) -> list[str | float | int]:
    """Timestamps as JSON values: ISO 8601 UTC strings (seconds, finer only where the data are) for ``datetime``,
    else the numbers."""
    if kind == "datetime":
        return list(_iso_texts(ts))
    return ts.tolist()


def _iso_texts(ts: np.ndarray) -> list[str]:
    """ISO 8601 UTC with seconds, and with as many decimals as the finest timestamp of the block needs."""
    ns = ts.view(np.int64)
    unit = "s"
    for candidate, step in (("ns", 1_000), ("us", 1_000_000), ("ms", 1_000_000_000)):
        if (ns % step != 0).any():
            unit = candidate
            break
    # numpy's own text of a UTC datetime64 (no time zone) plus "Z": the fastest exact formatting numpy offers
    return [t + "Z" for t in ns.view("datetime64[ns]").astype(f"datetime64[{unit}]").astype(str).tolist()]


def _csv_rows(block: Block, read: ScoreRead) -> str:
    """``index,timestamp,score,prediction`` lines; the same numbers as the JSON (an empty field where it has null)."""
    n = len(block.scores)
    if n == 0:
        return ""
    index = map(str, range(block.start, block.start + n))
    stamps = _timestamp_texts(block.timestamps, read.timestamp_kind, quoted=False)
    scores = [("" if s == "null" else s) for s in _score_texts(block.scores)]
    predictions = _prediction_texts(block.scores, read.threshold) if read.threshold is not None else [""] * n
    # map/zip/join run in C: a Python-level format per row would cost several times more on millions of rows
    return "\n".join(map(",".join, zip(index, stamps, scores, predictions, strict=True))) + "\n"
