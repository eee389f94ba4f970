"""Projects, their series set, rounds, queries and the append-only label log."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, CheckConstraint, Column, Float, ForeignKey, Integer, String, Table, UniqueConstraint
from sqlalchemy import true as sa_true
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.thresholds import DEFAULT_THRESHOLD_METHOD
from app.datasets.models import Series
from app.db import Base, utcnow

project_series = Table(
    "project_series",
    Base.metadata,
    Column("project_id", ForeignKey("project.id", ondelete="CASCADE"), primary_key=True),
    Column("series_id", ForeignKey("series.id", ondelete="CASCADE"), primary_key=True),
)

ROUND_STATUSES = ("open", "complete", "training", "done", "failed")  # app.projects.rounds.RoundStatus, in order
LABEL_VALUES = ("anomaly", "normal", "unsure", "retracted")
DEFAULT_ANOMALY_TYPES = ("anomaly",)
LABEL_TYPE_CHARS = 40  # longest anomaly type name
COMMENT_CHARS = 1000  # longest comment on a labeled range


class Project(Base):
    __tablename__ = "project"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("dataset.id", ondelete="RESTRICT"), index=True)
    detector: Mapped[str] = mapped_column(String(32))
    detector_params: Mapped[dict] = mapped_column(JSON, default=dict)
    window: Mapped[int] = mapped_column(Integer)
    stride: Mapped[int] = mapped_column(Integer, default=1)
    strategy: Mapped[str] = mapped_column(String(32))
    strategy_params: Mapped[dict] = mapped_column(JSON, default=dict)
    round_size: Mapped[int] = mapped_column(Integer)
    budget: Mapped[int] = mapped_column(Integer)
    auto_next: Mapped[bool] = mapped_column(default=False)
    oracle: Mapped[str] = mapped_column(String(16), default="human")
    threshold_method: Mapped[str] = mapped_column(String(32), default=DEFAULT_THRESHOLD_METHOD)
    holdout_fraction: Mapped[float] = mapped_column(Float, default=0.0)
    """The last fraction of every series is never queried: model versions are evaluated there."""
    seed: Mapped[int] = mapped_column(Integer, default=0)
    adoption_policy: Mapped[str] = mapped_column(String(16), default="validate", server_default="validate")
    """``validate``: a new version serves only if the newest answers say it is not worse (app.core.adoption);
    ``always``: the newest version serves."""
    max_flag_share: Mapped[float] = mapped_column(Float, default=0.05, server_default="0.05")
    """The threshold guard: a version whose threshold flags more of the pool's points does not serve."""
    follow_new_versions: Mapped[bool] = mapped_column(default=True, server_default=sa_true())
    """False after an admin promotes or rolls back: new versions are stored and shown but do not serve."""
    answers_per_window: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    """Analysts who answer each query window (1..5); with more than one, training uses their consensus
    (app.projects.consensus; docs/ANNOTATORS.md)."""
    review_grace_minutes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Minutes a fully answered round stays open for review before it closes by itself (0: it closes at once).
    New projects get ``ProjectCreate``'s default; 0 here keeps rows made before the setting as they were."""
    anomaly_types: Mapped[list] = mapped_column(
        JSON, default=lambda: list(DEFAULT_ANOMALY_TYPES), server_default='["anomaly"]'
    )
    """Short names an anomalous range may carry as its ``label_type`` (e.g. spike, level shift); training ignores
    them (anomaly vs normal)."""
    serving_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_version.id", ondelete="SET NULL", use_alter=True)
    )
    created_by: Mapped[int | None] = mapped_column(ForeignKey("user_account.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    series: Mapped[list[Series]] = relationship(secondary=project_series, order_by="Series.id")


class Round(Base):
    __tablename__ = "round"
    __table_args__ = (
        UniqueConstraint("project_id", "number"),
        CheckConstraint(f"status IN ({', '.join(repr(s) for s in ROUND_STATUSES)})", name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    strategy: Mapped[str] = mapped_column(String(32))
    k: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="open")
    started_by: Mapped[int | None] = mapped_column(ForeignKey("user_account.id", ondelete="SET NULL"))
    source_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_version.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None]
    review_until: Mapped[datetime | None]
    """Set while every query is answered but the round is still open for review: it closes by itself then
    (app.projects.review); None while answers are missing, and for rounds that closed at once."""
    submitted_by: Mapped[int | None] = mapped_column(ForeignKey("user_account.id", ondelete="SET NULL"))
    """Who submitted the round for retraining (None: it closed by itself or at once)."""
    assignee_ids: Mapped[list[int] | None] = mapped_column(JSON, nullable=True)
    """The analysts (user ids, in the order the admin named them) its windows are dealt to (app.projects.assignment);
    None: anyone with the analyst role answers any window."""


class Query(Base):
    """A window the strategy asked about: ``[start, end)`` in points of ``series_id``."""

    __tablename__ = "query"
    __table_args__ = (UniqueConstraint("round_id", "rank"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("round.id", ondelete="CASCADE"), index=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"))
    start: Mapped[int] = mapped_column(Integer)
    end: Mapped[int] = mapped_column(Integer)
    rank: Mapped[int] = mapped_column(Integer)
    score: Mapped[float | None] = mapped_column(Float)
    margin: Mapped[float | None] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(String(300), default="")
    status: Mapped[str] = mapped_column(String(16), default="pending")
    answered_at: Mapped[datetime | None]
    claimed_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id", ondelete="SET NULL"))
    """The analyst this window was last handed to (one answer per window, a round not dealt to named analysts):
    others are handed other windows until ``claimed_until`` (app/projects/review.py, :func:`claim_next`)."""
    claimed_until: Mapped[datetime | None]


class Label(Base):
    """Append-only: an undo or an edit adds a row that ``supersedes`` the earlier one; nothing is updated."""

    __tablename__ = "label"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), index=True)
    start: Mapped[int] = mapped_column(Integer)
    end: Mapped[int] = mapped_column(Integer)
    value: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16), default="analyst")
    author_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id", ondelete="SET NULL"))
    round_id: Mapped[int | None] = mapped_column(ForeignKey("round.id", ondelete="SET NULL"), index=True)
    query_id: Mapped[int | None] = mapped_column(ForeignKey("query.id", ondelete="SET NULL"), index=True)
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("label.id", ondelete="SET NULL"))
    idempotency_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    label_type: Mapped[str | None] = mapped_column(String(LABEL_TYPE_CHARS))
    """One of the project's ``anomaly_types`` (anomaly ranges only); None when the analyst chose none."""
    comment: Mapped[str | None] = mapped_column(String(COMMENT_CHARS))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
