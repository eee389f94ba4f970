"""Dataset use cases: import files, read series ranges. Services take a session and never commit."""

from __future__ import annotations

import bisect
import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from app.datasets import overview as ov
from app.datasets import repository as repo
from app.datasets.models import Dataset, Series, SeriesAppend
from app.datasets.reader import (
    SUFFIXES,
    ImportError_,
    ImportOptions,
    SeriesReader,
    rebuffer,
    series_name,
    series_split,
)
from app.errors import AppError, Conflict, NotFound


@dataclass(frozen=True)
class ImportedSeries:
    dataset: str
    series_id: int
    name: str
    n_points: int
    n_channels: int
    n_anomalous_points: int
    has_ground_truth: bool


def data_files(path: Path) -> list[Path]:
    """The importable files at ``path``: the file itself, or a folder's CSV/CSV.gz/Parquet files, sorted."""
    if not path.exists():
        raise ImportError_(f"{path}: no such file or folder")
    if path.is_file():
        return [path]
    files = [p for p in sorted(path.iterdir()) if p.is_file() and p.name.lower().endswith(SUFFIXES)]
    if not files:
        raise ImportError_(f"{path}: the folder has no .csv, .csv.gz or .parquet file")
    return files


def import_files(
    session: Session,
    paths: list[Path],
    dataset_name: str,
    options: ImportOptions,
    *,
    names: list[str] | None = None,
) -> list[ImportedSeries]:
    """Import every file into ``dataset_name`` (created if new). Raises :class:`ImportError_` on the first bad
    file; the caller's transaction then rolls back every row this call wrote."""
    dataset = repo.get_dataset_by_name(session, dataset_name) or repo.add_dataset(session, dataset_name)
    imported = []
    for i, path in enumerate(paths):
        name = names[i] if names else series_name(path)
        imported.append(_import_one(session, dataset, path, name, options))
    return imported


def _import_one(session: Session, dataset: Dataset, path: Path, name: str, options: ImportOptions) -> ImportedSeries:
    if repo.get_series_by_name(session, dataset.id, name) is not None:
        raise Conflict(f"{path.name}: data set {dataset.name!r} already has a series named {name!r}")
    reader = SeriesReader(path, options)
    size = options.chunk_points
    series: Series | None = None
    start = 0
    for index, block in enumerate(rebuffer(reader.blocks(), size)):
        if series is None:
            header = reader.header
            assert header is not None
            n_channels = len(header.channel_names)
            if dataset.n_channels is not None and dataset.n_channels != n_channels:
                raise ImportError_(
                    f"{path.name}: has {n_channels} channel(s) but data set {dataset.name!r} has "
                    f"{dataset.n_channels}; import it into another data set"
                )
            dataset.n_channels = n_channels
            series = repo.add_series(
                session,
                Series(
                    dataset_id=dataset.id,
                    name=name,
                    split=series_split(name),
                    n_channels=n_channels,
                    channel_names=header.channel_names,
                    timestamp_kind=header.timestamp_kind,
                    has_ground_truth=header.has_ground_truth,
                    chunk_points=size,
                    source_name=path.name,
                ),
            )
        repo.write_chunk(session, series.id, "values", index, start, block.values)
        if block.timestamps is not None:
            kind = "ts_ns" if block.timestamps.dtype == np.int64 else "ts_num"
            repo.write_chunk(session, series.id, kind, index, start, block.timestamps)
        if block.truth is not None:
            repo.write_chunk(session, series.id, "truth", index, start, block.truth)
        start += len(block.values)
    assert series is not None  # reader.blocks() raises on a file with no rows
    stats = reader.stats
    series.n_points = stats.n_points
    series.n_anomalous_points = stats.n_anomalous
    series.n_missing_values = stats.n_missing
    series.first_timestamp = stats.first_timestamp
    series.last_timestamp = stats.last_timestamp
    series.sha256 = stats.sha256
    session.flush()
    return ImportedSeries(
        dataset.name,
        series.id,
        name,
        series.n_points,
        series.n_channels,
        series.n_anomalous_points,
        series.has_ground_truth,
    )


def list_datasets(session: Session) -> list[Dataset]:
    return repo.list_datasets(session)


def find_dataset(session: Session, name: str) -> Dataset | None:
    """The data set named ``name``, or None."""
    return repo.get_dataset_by_name(session, name)


def get_dataset(session: Session, dataset_id: int) -> Dataset:
    dataset = repo.get_dataset(session, dataset_id)
    if dataset is None:
        raise NotFound(f"no data set with id {dataset_id}")
    return dataset


def get_series(session: Session, series_id: int) -> Series:
    series = repo.get_series(session, series_id)
    if series is None:
        raise NotFound(f"no series with id {series_id}")
    return series


def read_values(session: Session, series: Series, start: int = 0, end: int | None = None) -> np.ndarray:
    """Values ``(n, n_channels)`` float32 of points ``[start, end)``; NaN where imported with ``--fill keep``."""
    return repo.read_range(session, series, "values", start, end)


def read_truth(session: Session, series: Series, start: int = 0, end: int | None = None) -> np.ndarray | None:
    """Imported ground truth ``(n,)`` int8, or ``None`` when the file had no label column."""
    if not series.has_ground_truth:
        return None
    return repo.read_range(session, series, "truth", start, end)


def read_timestamps(session: Session, series: Series, start: int = 0, end: int | None = None) -> np.ndarray:
    """Timestamps of ``[start, end)``: ``datetime64[ns]`` for datetime series, float64 numbers, or the row index."""
    end = series.n_points if end is None else min(end, series.n_points)
    if series.timestamp_kind == "datetime":
        return repo.read_range(session, series, "ts_ns", start, end).view("datetime64[ns]")
    if series.timestamp_kind == "number":
        return repo.read_range(session, series, "ts_num", start, end)
    return np.arange(max(start, 0), end, dtype=np.int64)


@dataclass(frozen=True)
class SeriesView:
    """A downsampled window of a series for a chart: per channel, the kept point indices and values."""

    start: int
    end: int
    n_points: int
    x_kind: str  # datetime (ms since epoch) | number | index
    channels: list[dict]  # {"index", "name", "x", "y"}: y has None where the value is missing (a gap)
    truth: list[tuple[int, int]]  # ground-truth anomaly segments [start, end) overlapping the view (points)


def downsample_indices(y: np.ndarray, n_out: int, x: np.ndarray | None = None) -> np.ndarray:
    """Indices of at most ``n_out`` points that keep the shape of ``y`` (MinMaxLTTB from tsdownsample; the
    NaN-aware variant when ``y`` has gaps so a gap stays a gap). ``x`` (increasing, same length) places
    unevenly spaced points, e.g. the candidates of a min/max summary."""
    from tsdownsample import MinMaxLTTBDownsampler, NaNMinMaxLTTBDownsampler

    if len(y) <= n_out:
        return np.arange(len(y))
    n_out = max(n_out, 4)
    y = np.ascontiguousarray(y)
    args = (y,) if x is None else (np.ascontiguousarray(x), y)
    if np.isnan(y).any():
        return np.asarray(NaNMinMaxLTTBDownsampler().downsample(*args, n_out=n_out))
    return np.asarray(MinMaxLTTBDownsampler().downsample(*args, n_out=n_out))


def truth_segments(truth: np.ndarray, offset: int = 0) -> list[tuple[int, int]]:
    """Maximal runs of 1 as half-open ``[start, end)`` point ranges, shifted by ``offset``."""
    if truth is None or len(truth) == 0:
        return []
    # Comparing neighbours as booleans: ~40x faster than diff over an int8 copy on millions of points.
    flags = truth > 0
    edges = np.flatnonzero(flags[1:] != flags[:-1]) + 1
    if flags[0]:
        edges = np.concatenate([[0], edges])
    if flags[-1]:
        edges = np.concatenate([edges, [len(flags)]])
    return [(int(a) + offset, int(b) + offset) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def series_view(
    session: Session, series: Series, start: int, end: int | None, width_px: int, channels: list[int] | None
) -> SeriesView:
    """Points ``[start, end)`` downsampled to about two points per pixel per channel.

    A narrow range reads only its own chunks. A range wider than :func:`_overview_threshold` is drawn from the
    series' cached min/max summary (:mod:`app.datasets.overview`), so its cost does not grow with the series.
    Ground-truth segments closer than one pixel are merged: at most about ``width_px`` shapes come back.
    """
    end = series.n_points if end is None else min(end, series.n_points)
    start = max(0, min(start, end - 1))
    if end <= start:
        raise AppError(f"empty range [{start}, {end}) on a series of {series.n_points} points")
    chosen = list(range(series.n_channels)) if channels is None else channels
    bad = [c for c in chosen if not 0 <= c < series.n_channels]
    if bad:
        raise AppError(f"channel(s) {bad} do not exist; the series has {series.n_channels}")
    width_px = max(8, min(int(width_px), 4000))
    n_out = max(16, width_px * 2)
    sparse = end - start >= _overview_threshold(series.n_points, n_out)
    if sparse:
        summary = series_overview(session, series)
        picked = [summary.candidates(c, start, end) for c in chosen]
        truth = _overlapping(summary.truth, start, end)
    else:
        values = read_values(session, series, start, end)
        xs_all = None if series.timestamp_kind == "index" else _x_numbers(read_timestamps(session, series, start, end))
        picked = []
        for c in chosen:
            y = np.ascontiguousarray(values[:, c], dtype=np.float64)
            picked.append(ov.Candidates(np.arange(start, end, dtype=np.int64), y, xs_all))
        raw_truth = read_truth(session, series, start, end)
        truth = truth_segments(raw_truth, start) if raw_truth is not None else []
    out = []
    for c, cand in zip(chosen, picked, strict=True):
        keep = downsample_indices(cand.y, n_out, cand.i if sparse else None)  # raw points are evenly spaced
        i = cand.i[keep]
        x = i if cand.x is None else cand.x[keep]
        out.append(
            {
                "index": c,
                "name": series.channel_names[c],
                "i": i.tolist(),
                "x": x.tolist(),
                # float32 data: 7 significant digits say all there is; None is a gap, never 0.
                "y": [None if v != v else v for v in np.char.mod("%.7g", cand.y[keep]).astype(np.float64).tolist()],
            }
        )
    return SeriesView(
        start, end, series.n_points, series.timestamp_kind, out, _merge_close(truth, (end - start) / width_px)
    )


def _overview_threshold(n_points: int, n_out: int) -> int:
    # From here on each of the ~n_out/2 output pixels spans >= 4 summary blocks, i.e. the summary offers at least
    # as many candidates (min and max per block) as MinMaxLTTB's own pre-selection would on the raw points.
    return 2 * ov.block_size(n_points) * n_out


def series_overview(session: Session, series: Series) -> ov.SeriesOverview:
    """The series' min/max summary: built once by reading every chunk, then served from its database's
    :class:`~app.datasets.overview.OverviewCache` (:attr:`app.db.Database.caches`; a session made outside
    :class:`~app.db.Database` builds it every time)."""
    database = session.info.get("database")
    if database is None:
        cache = ov.OverviewCache(0)
    else:  # setdefault keeps the first cache two racing threads make
        cache = database.caches.get("overviews") or database.caches.setdefault(
            "overviews", ov.OverviewCache(ov.OVERVIEW_CACHE_BYTES)
        )
    # created_at tells a re-imported series with a reused id apart; n_points changes when points are appended.
    key = (series.id, series.n_points, series.created_at)
    found = cache.get(key)
    if found is not None:
        return found
    block = ov.block_size(series.n_points)
    step = block * max(1, -(-series.chunk_points // block))  # whole blocks, about one stored chunk per read

    def parts():  # type: ignore[no-untyped-def]
        for a in range(0, series.n_points, step):
            b = min(a + step, series.n_points)
            x = None if series.timestamp_kind == "index" else _x_numbers(read_timestamps(session, series, a, b))
            yield a, read_values(session, series, a, b), x

    truth = read_truth(session, series)
    summary = ov.build_overview(
        parts(), series.n_points, series.n_channels, block, truth_segments(truth) if truth is not None else []
    )
    cache.put(key, summary)
    return summary


def _x_numbers(stamps: np.ndarray) -> np.ndarray:
    """Chart x values: datetimes as float ms since the epoch, numbers as float64."""
    if np.issubdtype(stamps.dtype, np.datetime64):
        return stamps.astype("datetime64[ms]").astype(np.int64).astype(np.float64)
    return stamps.astype(np.float64)


def _overlapping(segments: list[tuple[int, int]], start: int, end: int) -> list[tuple[int, int]]:
    """The sorted, disjoint ``segments`` that overlap ``[start, end)``."""
    first = bisect.bisect_right([b for _, b in segments], start)
    out = []
    for a, b in segments[first:]:
        if a >= end:
            break
        out.append((a, b))
    return out


def _merge_close(segments: list[tuple[int, int]], gap: float) -> list[tuple[int, int]]:
    """Merge sorted segments separated by less than ``gap`` points (sub-pixel gaps are invisible anyway)."""
    out: list[tuple[int, int]] = []
    for a, b in segments:
        if out and a - out[-1][1] < gap:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


# -- live data: points appended to a series ------------------------------------------------------------------------

MAX_APPEND_POINTS = 1_000_000
"""Most points in one appended batch (the request body limit, ``ANOMALOOP_MAX_JSON_KB``, usually binds first)."""
MAX_APPEND_VALUES = 5_000_000
"""Most values (points x channels) in one batch: bounds the memory a batch takes while it is validated."""
MAX_IDEMPOTENCY_KEY = 200


@dataclass(frozen=True)
class PointsBatch:
    """Validated points ready to store: ``values`` ``(n, C)`` float32 in the series' channel order, ``timestamps``
    ``(n,)`` int64 ns (datetime series) or float64 (number series) or ``None`` (index series), ``truth`` ``(n,)``
    int8 or ``None``; the first/last timestamps as the series shows them; ``sha256`` of the parsed content (a
    retried batch hashes the same whatever its formatting)."""

    values: np.ndarray
    timestamps: np.ndarray | None
    truth: np.ndarray | None
    first_timestamp: str | None
    last_timestamp: str | None
    sha256: str

    def __len__(self) -> int:
        return len(self.values)


@dataclass(frozen=True)
class Appended:
    """A stored batch (or, ``replayed``, the batch an earlier request with the same idempotency key stored)."""

    batch: SeriesAppend
    series: Series
    replayed: bool


class PointsError(ImportError_):
    """A batch of points that cannot be stored; the message says which points and what to fix."""

    status = 422


def parse_points(series: Series, body: bytes, content_type: str) -> PointsBatch:
    """Parse and validate a batch for ``series``: JSON (``{"timestamps": [...], "values": [[...], ...],
    "labels": [...]}``; ``values`` rows hold one number per channel, or are bare numbers for one channel) or CSV
    (``text/csv``: a header naming the series' channels and ``timestamp``, as in an import). Validated by the
    import's reader (:class:`app.datasets.reader.SeriesReader`): NaN, empty, infinite and beyond-float32 values,
    timestamps that do not strictly increase, labels other than 0/1 are refused (:class:`PointsError`, 422)."""
    kind = content_type.split(";")[0].strip().lower()
    try:
        if kind in ("text/csv", "application/csv"):
            return _parse_csv(series, body)
        if kind in ("", "application/json") or kind.endswith("+json"):
            return _parse_json(series, body)
    except ImportError_ as exc:  # the reader's 400s (and 413 for a too large body) as this endpoint's 422
        raise PointsError(exc.message, status=exc.status if exc.status != 400 else 422) from None
    raise PointsError(f"send the points as application/json or text/csv, not {kind!r}", status=415)


def _options(series: Series) -> ImportOptions:
    kind = series.timestamp_kind
    return ImportOptions(
        label_column="label",
        timestamp_column="timestamp",
        timestamp_column_required=kind != "index",
        timestamps="index" if kind == "index" else "strict",
        timestamp_kind=None if kind == "index" else kind,  # type: ignore[arg-type]
        exclude_columns=(),
        fill="reject",
        chunk_points=MAX_APPEND_POINTS,
        appending=True,
    )


def _parse_json(series: Series, body: bytes, scratch: bool = False) -> PointsBatch:
    """``scratch``: values to score without storing (``series`` is a stand-in naming the model's channels):
    timestamps and labels are ignored."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise PointsError(f'the body is not JSON ({exc}); send {{"timestamps": [...], "values": [...]}}') from None
    if not isinstance(doc, dict) or "values" not in doc:
        raise PointsError('send a JSON object {"timestamps": [...], "values": [[...], ...]} (one row per point)')
    unknown = sorted(set(doc) - {"timestamps", "values", "labels"})
    if unknown:
        raise PointsError(f"unknown field(s) {unknown}; a batch has timestamps, values and optionally labels")
    values, stamps, labels = doc["values"], doc.get("timestamps"), doc.get("labels")
    if scratch:
        stamps = labels = None
    owner = "the model" if scratch else f"series {series.id}"
    if not isinstance(values, list) or not values:
        raise PointsError("the batch has no points: values must be a non-empty list, one row per point")
    _check_size(len(values), series.n_channels)
    width = series.n_channels
    rows: list[list[Any]] = []
    for i, row in enumerate(values):
        if not isinstance(row, list):
            row = [row]
        if len(row) != width:
            raise PointsError(
                f"point {i} has {len(row)} value(s); {owner} has {width} channel(s) "
                f"({', '.join(series.channel_names[:10])}): send one value per channel"
            )
        if not all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in row):
            raise PointsError(f"point {i}: values must be numbers, not {row[:10]!r}")
        rows.append(row)
    names = [f"channel {c}" for c in range(width)]
    # null becomes NaN here and is refused by the reader with the point numbers, like an empty cell in a CSV
    try:
        array = np.array(rows, dtype=np.float64)
    except OverflowError:
        raise PointsError("a value is beyond +-3.4e38 (float32); send finite numbers only") from None
    frame = pd.DataFrame(array, columns=names)
    if series.timestamp_kind == "index":
        if stamps is not None:
            raise PointsError(
                f"series {series.id} has no timestamps (it was imported without a timestamp column): leave "
                f"timestamps out; the points are numbered from {series.n_points}"
            )
    else:
        if not isinstance(stamps, list) or len(stamps) != len(values):
            got = len(stamps) if isinstance(stamps, list) else "no"
            raise PointsError(
                f"send one timestamp per point: {got} timestamps for {len(values)} points "
                f"({'ISO-8601 or unix seconds' if series.timestamp_kind == 'datetime' else 'numbers'})"
            )
        if any(isinstance(t, bool) or not isinstance(t, (str, int, float)) for t in stamps):
            raise PointsError("timestamps must be strings (ISO-8601) or numbers")
        kinds = {isinstance(t, str) for t in stamps}
        if len(kinds) > 1:
            raise PointsError("timestamps mix text and numbers; send them all one way")
        if True in kinds:
            column = pd.Series(stamps, dtype=object)
        else:
            try:
                column = pd.Series(np.array(stamps, dtype=np.float64))
            except OverflowError:
                raise PointsError("a timestamp is too large a number; send unix seconds or ISO-8601") from None
            if not np.isfinite(column.to_numpy()).all():
                raise PointsError("timestamps must be finite numbers")
        frame.insert(0, "timestamp", column)
    if labels is not None:
        if not isinstance(labels, list) or len(labels) != len(values):
            raise PointsError("labels must be a list with one 0/1 per point")
        bad = [i for i, v in enumerate(labels) if isinstance(v, bool) or v not in (0, 1)]
        if bad:
            raise PointsError(f"labels must be 0 or 1; other values at point(s) {bad[:5]}")
        frame["label"] = pd.Series(labels, dtype=object)
    reader = SeriesReader(Path("points"), _options(series), frames=[frame])
    return _collect(series, reader, channel_order=names)


def _parse_csv(series: Series, body: bytes, scratch: bool = False) -> PointsBatch:
    if not body.strip():
        raise PointsError("the batch has no points: send a header row and at least one data row")
    with tempfile.TemporaryDirectory(prefix="points-") as folder:
        path = Path(folder) / "points.csv"
        path.write_bytes(body)
        reader = SeriesReader(path, _options(series))
        return _collect(series, reader, channel_order=None, scratch=scratch)


def _check_size(n_points: int, n_channels: int) -> None:
    if n_points > MAX_APPEND_POINTS or n_points * n_channels > MAX_APPEND_VALUES:
        raise PointsError(
            f"a batch holds at most {MAX_APPEND_POINTS:,} points and {MAX_APPEND_VALUES:,} values; split these "
            f"{n_points:,} points into smaller batches",
            status=413,
        )


def _collect(
    series: Series, reader: SeriesReader, channel_order: list[str] | None, scratch: bool = False
) -> PointsBatch:
    """Run the reader over the whole batch and put the channels in the series' order."""
    blocks = list(reader.blocks())
    header = reader.header
    assert header is not None  # blocks() raises on a batch without rows
    if channel_order is None:  # CSV: the header names the channels
        missing = [c for c in series.channel_names if c not in header.channel_names]
        extra = [c for c in header.channel_names if c not in series.channel_names]
        if missing or extra:
            raise PointsError(
                f"the CSV's columns do not match {'the model' if scratch else f'series {series.id}'}: "
                + "; ".join(
                    part
                    for part in (
                        f"missing {missing}" if missing else "",
                        f"not channels of {'the model' if scratch else 'the series'} {extra}" if extra else "",
                    )
                    if part
                )
                + f"; expected {'' if scratch else 'timestamp, '}{', '.join(series.channel_names)}"
                + " (and optionally label)"
            )
        order = [header.channel_names.index(c) for c in series.channel_names]
    else:
        order = list(range(len(channel_order)))
    values = np.concatenate([b.values for b in blocks])[:, order]
    _check_size(len(values), series.n_channels)
    stamps = None if blocks[0].timestamps is None else np.concatenate([b.timestamps for b in blocks])
    truth = None if blocks[0].truth is None else np.concatenate([b.truth for b in blocks])
    digest = hashlib.sha256(np.ascontiguousarray(values, dtype=np.float32).tobytes())
    for part in (stamps, truth):
        digest.update(b"|" + (b"-" if part is None else np.ascontiguousarray(part).tobytes()))
    stats = reader.stats
    return PointsBatch(values, stamps, truth, stats.first_timestamp, stats.last_timestamp, digest.hexdigest())


def parse_values(channel_names: list[str], body: bytes, content_type: str, max_points: int) -> np.ndarray:
    """Values to score without storing them, ``(n, C)`` float32 in ``channel_names`` order: JSON ``{"values":
    [[...], ...]}`` or CSV with a header naming the channels (a ``timestamp`` and a ``label`` column may be there and
    are ignored). Validated as an appended batch (:func:`parse_points`); at most ``max_points`` points (413)."""
    stand_in = Series(id=0, n_points=0, n_channels=len(channel_names), channel_names=channel_names)
    stand_in.timestamp_kind = "index"
    kind = content_type.split(";")[0].strip().lower()
    try:
        if kind in ("text/csv", "application/csv"):
            batch = _parse_csv(stand_in, body, scratch=True)
        elif kind in ("", "application/json") or kind.endswith("+json"):
            batch = _parse_json(stand_in, body, scratch=True)
        else:
            raise PointsError(f"send the values as application/json or text/csv, not {kind!r}", status=415)
    except ImportError_ as exc:
        raise PointsError(exc.message, status=exc.status if exc.status != 400 else 422) from None
    if len(batch) > max_points:
        raise PointsError(f"score at most {max_points:,} points at a time, not {len(batch):,}", status=413)
    return batch.values


def _show_timestamp(series: Series, value: np.generic) -> str:
    if series.timestamp_kind == "datetime":
        return str(pd.Timestamp(int(value), tz="UTC"))
    return repr(float(value))


def append_points(
    session: Session, actor_id: int | None, series_id: int, batch: PointsBatch, key: str | None = None
) -> Appended:
    """Store ``batch`` after the series' last point, in the caller's transaction: the values, timestamps and
    ground truth chunks, the series' length and last timestamp, and the batch row, all or nothing.

    The series row is locked first, so concurrent appends to one series take turns and each sees the end the
    previous one left. With ``key`` (the client's ``Idempotency-Key``) a batch already stored under that key is
    answered again (``replayed``) if it is the same batch, refused (409) if it is not."""
    if key is not None and not 0 < len(key) <= MAX_IDEMPOTENCY_KEY:
        raise PointsError(f"the Idempotency-Key must have 1 to {MAX_IDEMPOTENCY_KEY} characters")
    series = repo.lock_series_for_write(session, series_id)
    if series is None:
        raise NotFound(f"no series with id {series_id}")
    if key is not None:
        earlier = repo.get_append_by_key(session, series_id, key)
        if earlier is not None:
            if earlier.body_sha256 != batch.sha256:
                raise Conflict(
                    f"Idempotency-Key {key!r} was already used for a different batch on series {series_id} "
                    f"(points {earlier.start}-{earlier.end - 1}); send a new key for new points"
                )
            return Appended(earlier, series, replayed=True)
    if batch.values.shape[1] != series.n_channels:
        raise PointsError(f"the batch has {batch.values.shape[1]} channel(s); the series has {series.n_channels}")
    if batch.timestamps is not None:
        kind = "ts_ns" if series.timestamp_kind == "datetime" else "ts_num"
        last = repo.last_stored(session, series, kind)
        if len(last) and batch.timestamps[0] <= last[0]:
            raise PointsError(
                f"the first point's timestamp {_show_timestamp(series, batch.timestamps[0])} is not after the "
                f"series' last one, {_show_timestamp(series, last[0])} (point {series.n_points - 1}); send only "
                "points newer than that (a retried batch needs the same Idempotency-Key to be recognised)"
            )
    start, n = series.n_points, len(batch)
    repo.append_rows(session, series, "values", batch.values)
    if batch.timestamps is not None:
        repo.append_rows(
            session, series, "ts_ns" if series.timestamp_kind == "datetime" else "ts_num", batch.timestamps
        )
    if series.has_ground_truth:
        # appended points without a label column count as normal in the ground truth (what an oracle answers)
        truth = batch.truth if batch.truth is not None else np.zeros(n, dtype=np.int8)
        repo.append_rows(session, series, "truth", truth)
        series.n_anomalous_points += int(truth.sum())
    series.n_points = start + n
    if batch.last_timestamp is not None:
        series.last_timestamp = batch.last_timestamp
    row = repo.add_append(
        session,
        SeriesAppend(
            series_id=series.id,
            idempotency_key=key,
            body_sha256=batch.sha256,
            start=start,
            end=start + n,
            first_timestamp=batch.first_timestamp,
            last_timestamp=batch.last_timestamp,
            created_by=actor_id,
            scoring=[],
        ),
    )
    return Appended(row, series, replayed=False)


def get_append(session: Session, append_id: int) -> SeriesAppend:
    batch = repo.get_append(session, append_id)
    if batch is None:
        raise NotFound(f"no appended batch with id {append_id}")
    return batch


def lock_series(session: Session, series_id: int) -> Series:
    """The series, locked against concurrent appends until the transaction ends (scores are stored under it)."""
    series = repo.lock_series_for_write(session, series_id)
    if series is None:
        raise NotFound(f"no series with id {series_id}")
    return series
