"""Streaming reader for CSV, CSV.gz and Parquet series files: validates as it goes, yields fixed-size blocks.

Nothing here touches the database; :func:`app.datasets.service.import_files` writes what this yields inside one
transaction, so a file that fails validation half-way leaves no row behind.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
import pandas as pd

from app.errors import AppError

FillPolicy = Literal["reject", "ffill", "zero", "keep"]
SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")
# Unix seconds between 1973-03-03 and 5138-11-16: integer timestamps in this range are read as times.
UNIX_SECONDS_RANGE = (1e8, 1e11)
FLOAT32_MAX = float(np.finfo(np.float32).max)  # values are stored as float32: larger ones would become inf


class ImportError_(AppError):
    """A file cannot be imported; the message names the file, the line and what to fix."""


@dataclass(frozen=True)
class ImportOptions:
    """How to read a file. Column names are matched exactly."""

    label_column: str | None = "label"
    """0/1 ground-truth column; missing is fine when it is the default ``label``; ``None`` ignores it."""
    label_column_required: bool = False
    timestamp_column: str | None = "timestamp"
    """ISO-8601 strings, unix seconds, or any increasing number; missing means the row index."""
    timestamp_column_required: bool = False
    timestamps: Literal["strict", "index"] = "strict"
    """``strict`` stores the timestamp column and rejects duplicate or decreasing times; ``index`` drops it and
    uses the row number (for files whose clock goes back, e.g. a few NAB series)."""
    exclude_columns: tuple[str, ...] = ("changepoint",)
    """Columns that are neither channels nor labels (SKAB's ``changepoint``)."""
    fill: FillPolicy = "reject"
    """NaN/inf values: ``reject`` (error with line numbers), ``ffill`` (previous value), ``zero``, ``keep``
    (stored as NaN, drawn as gaps, forward-filled before a model sees them)."""
    chunk_points: int = 65_536
    max_bytes: int | None = None
    """Largest decompressed CSV (bytes) or Parquet column data accepted; ``None`` is no limit (the command line).
    The web sets it to the upload limit, so a small ``.csv.gz`` cannot expand into gigabytes."""
    timestamp_kind: Literal["datetime", "number"] | None = None
    """Read the timestamp column as this kind instead of guessing it from the first rows: points appended to a
    series keep the series' kind (integer unix seconds appended to a ``number`` series stay numbers)."""
    appending: bool = False
    """Messages for points appended to a series (``POST /api/v1/series/{id}/points``): the import's command-line
    remedies (``--fill``, ``--timestamps index``) do not apply there."""


@dataclass
class SeriesHeader:
    """What the first block tells about a file."""

    channel_names: list[str]
    timestamp_kind: str  # datetime | number | index
    has_ground_truth: bool


@dataclass
class Block:
    """Up to ``chunk_points`` consecutive rows: values ``(n, C)`` float32, timestamps ``(n,)`` int64 ns or
    float64 or ``None``, truth ``(n,)`` int8 or ``None``."""

    values: np.ndarray
    timestamps: np.ndarray | None
    truth: np.ndarray | None


@dataclass
class ReadStats:
    n_points: int = 0
    n_anomalous: int = 0
    n_missing: int = 0
    first_timestamp: str | None = None
    last_timestamp: str | None = None
    sha256: str = ""
    _last_ts: float | int | None = field(default=None, repr=False)


def series_name(path: Path) -> str:
    """File name without its data suffix: ``machine-1-1.test.csv.gz`` -> ``machine-1-1.test``."""
    name = path.name
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def series_split(name: str) -> str:
    """``train`` / ``test`` for the ``<series>.train`` / ``<series>.test`` convention, else ``all``."""
    for split in ("train", "test"):
        if name.endswith("." + split):
            return split
    return "all"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _Capped(io.RawIOBase):
    """A binary stream that fails once more than ``limit`` bytes were read from ``inner`` (a gzip member that
    expands without bound is refused after ``limit`` bytes, never read to its end)."""

    def __init__(self, inner: BinaryIO, limit: int, name: str) -> None:
        self.inner, self.limit, self.name_, self.seen = inner, limit, name, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        data = self.inner.read(len(buffer))
        self.seen += len(data)
        if self.seen > self.limit:
            raise ImportError_(
                f"{self.name_}: expands to more than {_size(self.limit)}; split it or import it with the command line",
                status=413,
            )
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self.inner.close()
        super().close()


def _size(n: int) -> str:
    return f"{n / (1024 * 1024):,.0f} MB" if n >= 1024 * 1024 else f"{n:,} bytes"


def _header_names(path: Path) -> list[str] | None:
    """The CSV header row as written (pandas renames a repeated ``v`` to ``v.1``, hiding the mistake)."""
    import csv
    import gzip

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", newline="", encoding="utf-8", errors="replace") as fh:
            line = fh.readline(1 << 20)
    except (OSError, EOFError):
        return None  # unreadable: pandas says why below
    rows = list(csv.reader([line]))
    return [c.strip() for c in rows[0]] if rows else None


def _check_unique(names: list[str], file_name: str) -> None:
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ImportError_(
            f"{file_name}: column name(s) {repeated} appear more than once in the header; every "
            "column needs its own name"
        )


def _frames(path: Path, chunk_points: int, max_bytes: int | None = None) -> Iterator[pd.DataFrame]:
    lower = path.name.lower()
    if lower.endswith((".parquet", ".pq")):
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(path)
        except Exception as exc:
            raise ImportError_(f"{path.name}: not a readable Parquet file ({exc})") from None
        _check_unique([str(n) for n in pf.schema_arrow.names], path.name)
        if max_bytes is not None:
            meta = pf.metadata
            size = sum(
                meta.row_group(i).column(j).total_uncompressed_size
                for i in range(meta.num_row_groups)
                for j in range(meta.num_columns)
            )
            if size > max_bytes:
                raise ImportError_(
                    f"{path.name}: its columns hold {_size(size)} uncompressed, more than the {_size(max_bytes)} limit",
                    status=413,
                )
        for batch in pf.iter_batches(batch_size=chunk_points):
            yield batch.to_pandas()
        return
    names = _header_names(path)
    if names:
        _check_unique(names, path.name)
    source: Path | io.BufferedReader = path
    if max_bytes is not None:
        import gzip

        raw = gzip.open(path, "rb") if lower.endswith(".gz") else path.open("rb")  # noqa: SIM115 - closed below
        source = io.BufferedReader(_Capped(raw, max_bytes, path.name), 1 << 20)  # type: ignore[arg-type]
    try:
        reader = pd.read_csv(
            source, chunksize=chunk_points, compression="infer" if source is path else None, low_memory=False
        )
        yield from reader
    except pd.errors.EmptyDataError:
        raise ImportError_(f"{path.name}: the file is empty; expected a header row and data rows") from None
    except (UnicodeDecodeError, pd.errors.ParserError, OSError, EOFError) as exc:
        raise ImportError_(f"{path.name}: not a CSV file pandas can parse ({type(exc).__name__}: {exc})") from None
    finally:
        if source is not path:
            source.close()  # type: ignore[union-attr]


def _lines(rows: np.ndarray, offset: int, limit: int = 5, first: int = 2, what: str = "line(s)") -> str:
    """``what`` and the numbers of the first ``limit`` bad rows: 1-based file lines by default (the header is line
    1, so the first data row is ``first`` = 2); ``first=0, what="point(s)"`` numbers the points of a JSON batch."""
    shown = ", ".join(str(int(r) + offset + first) for r in rows[:limit])
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return f"{what} {shown}{more}"


class SeriesReader:
    """Iterate a file's validated blocks: ``header`` is set after the first block is read.

    ``frames``: already parsed rows (a JSON batch of points) validated exactly as a file's; ``path`` then only
    names them in messages, and bad rows are called points of the batch (0-based) instead of file lines.
    """

    def __init__(self, path: Path, options: ImportOptions, frames: Iterable[pd.DataFrame] | None = None) -> None:
        self.path = path
        self.options = options
        self.frames = frames
        self.header: SeriesHeader | None = None
        self.stats = ReadStats()
        self._carry: np.ndarray | None = None  # last finite row, for ffill across blocks

    def _at(self, rows: np.ndarray, offset: int) -> str:
        """Where the bad ``rows`` are, for a message: file lines, or points of a JSON batch."""
        if self.frames is not None:
            return _lines(rows, offset, first=0, what="point(s)")
        return _lines(rows, offset)

    def blocks(self) -> Iterator[Block]:
        if self.frames is None:
            if not self.path.exists():
                raise ImportError_(f"{self.path}: no such file")
            if self.path.is_dir():
                raise ImportError_(f"{self.path}: is a folder; import its files or pass the folder to import_paths")
        offset = 0
        source = (
            self.frames
            if self.frames is not None
            else _frames(self.path, self.options.chunk_points, self.options.max_bytes)
        )
        for frame in source:
            if len(frame) == 0:
                continue
            if self.header is None:
                self.header = self._make_header(frame)
            yield self._block(frame, offset)
            offset += len(frame)
        if self.header is None or offset == 0:
            raise ImportError_(f"{self.path.name}: the file has a header but no data rows")
        self.stats.n_points = offset
        if self.frames is None:
            self.stats.sha256 = file_sha256(self.path)

    # -- first block: decide what the columns are ------------------------------------------
    def _make_header(self, frame: pd.DataFrame) -> SeriesHeader:
        opts, name = self.options, self.path.name
        cols = [str(c) for c in frame.columns]
        if len(set(cols)) != len(cols):
            raise ImportError_(f"{name}: duplicate column names in the header: {cols}")
        ts = opts.timestamp_column if opts.timestamp_column in cols else None
        if opts.timestamp_column and opts.timestamp_column_required and ts is None:
            raise ImportError_(f"{name}: no timestamp column {opts.timestamp_column!r}; columns are {cols}")
        label = opts.label_column if opts.label_column in cols else None
        if opts.label_column and opts.label_column_required and label is None:
            raise ImportError_(f"{name}: no label column {opts.label_column!r}; columns are {cols}")
        channels = [c for c in cols if c not in {ts, label, *opts.exclude_columns}]
        numeric = [c for c in channels if _numeric_fraction(frame[c]) > 0.5]
        if not numeric:
            raise ImportError_(f"{name}: no numeric column to import (columns: {cols})")
        non_numeric = [c for c in channels if c not in numeric]
        if non_numeric:
            raise ImportError_(
                f"{name}: column(s) {non_numeric} are not numeric; drop them or name them with --exclude-column"
            )
        kind = "index"
        if ts is not None and opts.timestamps == "index":
            self._ts_col, self._label_col, self._channels = None, label, numeric
            return SeriesHeader(numeric, "index", label is not None)
        if ts is not None and opts.timestamp_kind is not None:
            numeric_ts = pd.api.types.is_numeric_dtype(frame[ts])
            kind = "unix" if opts.timestamp_kind == "datetime" and numeric_ts else opts.timestamp_kind
            if opts.timestamp_kind == "number" and not numeric_ts:
                raise ImportError_(f"{name}: the series has numeric timestamps; {ts!r} holds text")
        elif ts is not None:
            kind = "number" if pd.api.types.is_numeric_dtype(frame[ts]) else "datetime"
            if kind == "number":
                first = frame[ts].dropna()
                lo, hi = UNIX_SECONDS_RANGE
                if len(first) and ((first % 1) == 0).all() and first.between(lo, hi).all():
                    kind = "unix"
        self._ts_col, self._label_col, self._channels = ts, label, numeric
        return SeriesHeader(numeric, "datetime" if kind == "unix" else kind, label is not None)

    # -- every block ---------------------------------------------------------------------------
    def _block(self, frame: pd.DataFrame, offset: int) -> Block:
        name = self.path.name
        missing_cols = [c for c in self._channels if c not in frame.columns]
        if missing_cols:
            raise ImportError_(f"{name}: columns {missing_cols} disappear after line {offset + 1}")
        raw = frame[self._channels]
        values = raw.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
        text_bad = raw.notna().to_numpy() & np.isnan(values)
        if text_bad.any():
            rows = np.flatnonzero(text_bad.any(axis=1))
            raise ImportError_(f"{name}: non-numeric values at {self._at(rows, offset)}")
        values = self._fill(values, offset)
        return Block(values.astype(np.float32), self._timestamps(frame, offset), self._truth(frame, offset))

    def _fill(self, values: np.ndarray, offset: int) -> np.ndarray:
        # beyond float32's range a value would be stored as +-inf: as bad as an inf in the file
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(values) | (np.abs(values) > FLOAT32_MAX)
        if not bad.any():
            self._carry = values[-1]
            return values
        rows = np.flatnonzero(bad.any(axis=1))
        policy = self.options.fill
        if policy == "reject":
            remedy = (
                "send finite numbers only (leave a point out rather than sending a gap)"
                if self.options.appending
                else "fix the file or import with --fill ffill|zero|keep"
            )
            raise ImportError_(
                f"{self.path.name}: NaN, empty, infinite or out-of-range (beyond +-3.4e38, float32) values at "
                f"{self._at(rows, offset)}; {remedy}"
            )
        self.stats.n_missing += int(bad.sum())
        values = values.copy()
        if policy == "zero":
            values[bad] = 0.0
        elif policy == "keep":
            values[bad] = np.nan
        else:  # ffill: previous finite value in the column, carried across blocks; leading gaps take the next
            frame = pd.DataFrame(np.where(bad, np.nan, values))
            if self._carry is not None:
                frame = pd.concat([pd.DataFrame(self._carry[None, :]), frame], ignore_index=True)
            frame = frame.ffill().bfill()
            if self._carry is not None:
                frame = frame.iloc[1:]
            values = frame.to_numpy()
            if np.isnan(values).any():
                raise ImportError_(f"{self.path.name}: a channel has no finite value to fill from")
        finite_rows = np.isfinite(values).all(axis=1)
        if finite_rows.any():
            self._carry = values[np.flatnonzero(finite_rows)[-1]]
        return values

    def _timestamps(self, frame: pd.DataFrame, offset: int) -> np.ndarray | None:
        if self._ts_col is None:
            return None
        name, col = self.path.name, frame[self._ts_col]
        if col.isna().any():
            raise ImportError_(f"{name}: empty timestamps at {self._at(np.flatnonzero(col.isna()), offset)}")
        kind = self.header.timestamp_kind if self.header else "index"
        if kind == "datetime":
            try:
                if pd.api.types.is_numeric_dtype(col):
                    parsed = pd.to_datetime(col.astype("int64"), unit="s", utc=True)
                else:
                    parsed = pd.to_datetime(col, utc=True, format="ISO8601", errors="coerce")
            except (ValueError, TypeError):
                parsed = pd.Series(pd.NaT, index=col.index)
            if parsed.isna().any():
                rows = np.flatnonzero(parsed.isna().to_numpy())
                raise ImportError_(
                    f"{name}: timestamps are not ISO-8601 or unix seconds at {self._at(rows, offset)} "
                    f"(first: {col.iloc[rows[0]]!r})"
                )
            ts = parsed.to_numpy(dtype="datetime64[ns]").astype(np.int64)
            fmt = [str(parsed.iloc[0]), str(parsed.iloc[-1])]
        else:
            try:
                ts = pd.to_numeric(col).to_numpy(dtype=np.float64)
            except (ValueError, TypeError):
                raise ImportError_(f"{name}: timestamps mix numbers and text near line {offset + 2}") from None
            fmt = [repr(float(ts[0])), repr(float(ts[-1]))]
        prev = self.stats._last_ts
        seq = ts if prev is None else np.concatenate([[prev], ts])
        steps = np.diff(seq)
        if (steps <= 0).any():
            # steps[j] compares seq[j] and seq[j + 1]; seq[j + 1] is this frame's row j (+1 without a carry)
            rows = np.flatnonzero(steps <= 0) + (1 if prev is None else 0)
            what = "duplicate" if (steps == 0).any() else "non-increasing"
            remedy = (
                "send points in time order, each after the series' last timestamp"
                if self.options.appending
                else "sort the file, or import with --timestamps index to use the row number instead"
            )
            raise ImportError_(
                f"{name}: {what} timestamps at {self._at(rows, offset)}; timestamps must strictly increase ({remedy})"
            )
        if self.stats.first_timestamp is None:
            self.stats.first_timestamp = fmt[0]
        self.stats.last_timestamp = fmt[1]
        self.stats._last_ts = ts[-1]
        return ts

    def _truth(self, frame: pd.DataFrame, offset: int) -> np.ndarray | None:
        if self._label_col is None:
            return None
        col = pd.to_numeric(frame[self._label_col], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isin(col, (0.0, 1.0))
        if bad.any():
            raise ImportError_(
                f"{self.path.name}: label column {self._label_col!r} must be 0 or 1; other values at "
                f"{self._at(np.flatnonzero(bad), offset)}"
            )
        truth = col.astype(np.int8)
        self.stats.n_anomalous += int(truth.sum())
        return truth


def _numeric_fraction(col: pd.Series) -> float:
    present = col.dropna()
    if len(present) == 0:
        return 1.0  # an all-empty column is numeric with gaps; the fill policy decides
    if pd.api.types.is_numeric_dtype(present):
        return 1.0
    return float(pd.to_numeric(present, errors="coerce").notna().mean())


def rebuffer(blocks: Iterator[Block], size: int) -> Iterator[Block]:
    """Regroup blocks into exactly ``size`` rows each (the last may be shorter): Parquet row groups and CSV
    chunks do not always line up with the storage chunk size."""
    pending: list[Block] = []
    count = 0
    for block in blocks:
        pending.append(block)
        count += len(block.values)
        while count >= size:
            merged = _concat(pending)
            optional = (merged.timestamps, merged.truth)
            yield Block(merged.values[:size], *(None if a is None else a[:size] for a in optional))
            rest = Block(merged.values[size:], *(None if a is None else a[size:] for a in optional))
            pending, count = ([rest] if len(rest.values) else []), len(rest.values)
    if count:
        yield _concat(pending)


def _concat(blocks: list[Block]) -> Block:
    if len(blocks) == 1:
        return blocks[0]
    ts = None if blocks[0].timestamps is None else np.concatenate([b.timestamps for b in blocks])
    truth = None if blocks[0].truth is None else np.concatenate([b.truth for b in blocks])
    return Block(np.concatenate([b.values for b in blocks]), ts, truth)
