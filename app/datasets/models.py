"""Datasets, series and their values stored in fixed-size chunks (float32 bytes)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base, utcnow


class Dataset(Base):
    __tablename__ = "dataset"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(String(2000), default="")
    n_channels: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    series: Mapped[list[Series]] = relationship(back_populates="dataset", order_by="Series.id")


class Series(Base):
    """One imported file. ``timestamp_kind``: ``datetime`` (int64 ns since epoch, UTC), ``number`` (float64 as
    given) or ``index`` (no timestamp column: the row number)."""

    __tablename__ = "series"
    __table_args__ = (UniqueConstraint("dataset_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("dataset.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(300))
    split: Mapped[str] = mapped_column(String(8), default="all")
    n_points: Mapped[int] = mapped_column(Integer, default=0)
    n_channels: Mapped[int] = mapped_column(Integer)
    channel_names: Mapped[list[str]] = mapped_column(JSON)
    timestamp_kind: Mapped[str] = mapped_column(String(16))
    first_timestamp: Mapped[str | None] = mapped_column(String(64))
    last_timestamp: Mapped[str | None] = mapped_column(String(64))
    has_ground_truth: Mapped[bool] = mapped_column(default=False)
    n_anomalous_points: Mapped[int] = mapped_column(Integer, default=0)
    n_missing_values: Mapped[int] = mapped_column(Integer, default=0)
    chunk_points: Mapped[int] = mapped_column(Integer)
    source_name: Mapped[str] = mapped_column(String(500), default="")
    sha256: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    dataset: Mapped[Dataset] = relationship(back_populates="series")


class SeriesChunk(Base):
    """``kind``: ``values`` (float32 ``(length, n_channels)`` row-major), ``timestamps`` (int64 ns or float64),
    ``truth`` (int8 ground truth 0/1, kept apart from analyst labels)."""

    __tablename__ = "series_chunk"

    series_id: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    chunk_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    start: Mapped[int] = mapped_column(Integer)
    length: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class SeriesAppend(Base):
    """One batch of points appended to a series through the API (``POST /api/v1/series/{id}/points``).

    Points ``[start, end)`` of the series. ``idempotency_key`` (unique per series; NULL when the client sent none)
    with ``body_sha256`` (of the parsed points, so a retried batch is recognised whatever its JSON formatting) makes
    a retried batch land once. ``scoring`` is what the append answered about scoring it (replayed on a retry).
    """

    __tablename__ = "series_append"
    __table_args__ = (UniqueConstraint("series_id", "idempotency_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), index=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    body_sha256: Mapped[str] = mapped_column(String(64))
    start: Mapped[int] = mapped_column(Integer)
    end: Mapped[int] = mapped_column(Integer)
    first_timestamp: Mapped[str | None] = mapped_column(String(64))
    last_timestamp: Mapped[str | None] = mapped_column(String(64))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("user_account.id", ondelete="SET NULL"))
    scoring: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
