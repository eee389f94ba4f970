"""Every dataset/series query. Chunked arrays are read by range so a view touches only the rows it needs."""

from __future__ import annotations

import numpy as np
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from app.datasets.models import Dataset, Series, SeriesAppend, SeriesChunk

# kind -> numpy dtype of the stored bytes
CHUNK_DTYPES = {"values": np.float32, "truth": np.int8, "ts_ns": np.int64, "ts_num": np.float64}


def get_dataset_by_name(session: Session, name: str) -> Dataset | None:
    return session.scalar(select(Dataset).where(Dataset.name == name))


def get_dataset(session: Session, dataset_id: int) -> Dataset | None:
    return session.get(Dataset, dataset_id)


def list_datasets(session: Session) -> list[Dataset]:
    return list(session.scalars(select(Dataset).order_by(Dataset.id)))


def count_datasets(session: Session) -> int:
    return session.scalar(select(func.count(Dataset.id))) or 0


def add_dataset(session: Session, name: str, description: str = "") -> Dataset:
    dataset = Dataset(name=name, description=description)
    session.add(dataset)
    session.flush()
    return dataset


def get_series(session: Session, series_id: int) -> Series | None:
    return session.get(Series, series_id)


def get_series_by_name(session: Session, dataset_id: int, name: str) -> Series | None:
    return session.scalar(select(Series).where(Series.dataset_id == dataset_id, Series.name == name))


def list_series(session: Session, dataset_id: int) -> list[Series]:
    return list(session.scalars(select(Series).where(Series.dataset_id == dataset_id).order_by(Series.id)))


def add_series(session: Session, series: Series) -> Series:
    session.add(series)
    session.flush()
    return series


def write_chunk(session: Session, series_id: int, kind: str, index: int, start: int, array: np.ndarray) -> None:
    """Insert one chunk row with a Core insert (no ORM identity map: imports stay at constant memory)."""
    data = np.ascontiguousarray(array, dtype=CHUNK_DTYPES[kind]).tobytes()
    session.execute(
        insert(SeriesChunk),
        [
            {
                "series_id": series_id,
                "kind": kind,
                "chunk_index": index,
                "start": start,
                "length": len(array),
                "data": data,
            }
        ],
    )


def delete_chunks(session: Session, series_id: int, kind: str) -> None:
    session.execute(delete(SeriesChunk).where(SeriesChunk.series_id == series_id, SeriesChunk.kind == kind))


def read_range(session: Session, series: Series, kind: str, start: int = 0, end: int | None = None) -> np.ndarray:
    """Rows ``[start, end)`` of a chunked array: ``values`` -> ``(n, C)`` float32, others ``(n,)``."""
    end = series.n_points if end is None else min(end, series.n_points)
    start = max(0, start)
    width = series.n_channels if kind == "values" else 1
    dtype = CHUNK_DTYPES[kind]
    if end <= start:
        return np.empty((0, width) if kind == "values" else (0,), dtype=dtype)
    size = series.chunk_points
    rows = session.execute(
        select(SeriesChunk.start, SeriesChunk.data)
        .where(
            SeriesChunk.series_id == series.id,
            SeriesChunk.kind == kind,
            SeriesChunk.chunk_index >= start // size,
            SeriesChunk.chunk_index <= (end - 1) // size,
        )
        .order_by(SeriesChunk.chunk_index)
    ).all()
    parts = []
    for chunk_start, data in rows:
        arr = np.frombuffer(data, dtype=dtype)
        if kind == "values":
            arr = arr.reshape(-1, width)
        lo, hi = max(start - chunk_start, 0), min(end - chunk_start, len(arr))
        parts.append(arr[lo:hi])
    if not parts:
        return np.empty((0, width) if kind == "values" else (0,), dtype=dtype)
    return np.concatenate(parts)


def chunk_kinds(session: Session, series_id: int) -> set[str]:
    return set(session.scalars(select(SeriesChunk.kind).where(SeriesChunk.series_id == series_id).distinct()))


# -- appends -----------------------------------------------------------------------------------------------------


def lock_series_for_write(session: Session, series_id: int) -> Series | None:
    """The series row locked until the transaction ends, read after the lock is held (so ``n_points`` is current):
    a row lock on PostgreSQL; on SQLite a no-op UPDATE first takes the database's write lock (what ``BEGIN
    IMMEDIATE`` does; ``FOR UPDATE`` does nothing there). Concurrent appends to one series queue here."""
    if session.get_bind().dialect.name == "sqlite":
        session.execute(
            update(Series)
            .where(Series.id == series_id)
            .values(id=Series.id)
            .execution_options(synchronize_session=False)
        )
    # populate_existing: a copy of the row read before the lock (the identity map) would hide a concurrent append
    return session.scalar(
        select(Series).where(Series.id == series_id).with_for_update().execution_options(populate_existing=True)
    )


def append_rows(session: Session, series: Series, kind: str, array: np.ndarray) -> None:
    """Store ``array`` as points ``[n_points, n_points + len)`` of a chunked array: the last chunk, when partly
    filled, is completed in place, the rest goes into new chunks, so chunk ``i`` still starts at ``i *
    chunk_points`` and range reads stay as they are. ``series.n_points`` is the length before the append."""
    size = series.chunk_points
    data = np.ascontiguousarray(array, dtype=CHUNK_DTYPES[kind])
    start = series.n_points
    taken = 0
    if start % size:
        index = start // size
        row = session.execute(
            select(SeriesChunk.length, SeriesChunk.data).where(
                SeriesChunk.series_id == series.id, SeriesChunk.kind == kind, SeriesChunk.chunk_index == index
            )
        ).one()
        taken = min(len(data), size - row.length)
        session.execute(
            update(SeriesChunk)
            .where(SeriesChunk.series_id == series.id, SeriesChunk.kind == kind, SeriesChunk.chunk_index == index)
            .values(length=row.length + taken, data=row.data + data[:taken].tobytes())
            .execution_options(synchronize_session=False)
        )
    for at in range(start + taken, start + len(data), size):
        part = data[at - start : at - start + size]
        write_chunk(session, series.id, kind, at // size, at, part)


def last_stored(session: Session, series: Series, kind: str) -> np.ndarray:
    """The last stored element of a chunked array (empty for an empty series)."""
    return read_range(session, series, kind, series.n_points - 1, series.n_points)


def get_append_by_key(session: Session, series_id: int, key: str) -> SeriesAppend | None:
    return session.scalar(
        select(SeriesAppend).where(SeriesAppend.series_id == series_id, SeriesAppend.idempotency_key == key)
    )


def get_append(session: Session, append_id: int) -> SeriesAppend | None:
    return session.get(SeriesAppend, append_id)


def add_append(session: Session, batch: SeriesAppend) -> SeriesAppend:
    session.add(batch)
    session.flush()
    return batch
