"""Model versions (weights as bytes, so any worker can load them) and their stored scores."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Float, ForeignKey, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow


class ModelVersion(Base):
    """``round_number`` 0 is the initial unsupervised fit; one version per round (unique)."""

    __tablename__ = "model_version"
    __table_args__ = (UniqueConstraint("project_id", "round_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    round_number: Mapped[int] = mapped_column(Integer)
    method: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    weights: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    """Loaded only when read (``repository.weights_of``): a version is fetched on every score read, its weights (MBs
    for a forest) are needed only to score."""
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    threshold: Mapped[float | None] = mapped_column(Float)
    labels_used: Mapped[int] = mapped_column(Integer, default=0)
    device: Mapped[str] = mapped_column(String(32), default="cpu")
    train_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    adoption: Mapped[dict] = mapped_column(JSON, default=dict)
    """The adoption verdict (app.core.adoption.Verdict.as_dict): served or not, why, and the figures behind it."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ScoreChunk(Base):
    """Scores (float32) of one version on one series, chunked like the values. ``kind``: ``point`` (one per point),
    ``window`` (one per window, what strategies rank) or ``margin`` (RLAD's |q0 - q1| per window)."""

    __tablename__ = "score_chunk"

    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_version.id", ondelete="CASCADE"), primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True, default="point")
    chunk_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    start: Mapped[int] = mapped_column(Integer)
    length: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)
