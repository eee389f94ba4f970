"""Every dataset/series query. Chunked arrays are read by range so a view touches only the rows it needs."""

from __future__ import annotations

import numpy as np
from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from app.datasets.models import Dataset, Series, SeriesChunk

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
