"""Request/response shapes for datasets and series."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from app.schemas_common import PointTimestamp, UtcDateTime


class SeriesOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    dataset_id: int
    name: str
    split: str
    n_points: int
    n_channels: int
    channel_names: list[str]
    timestamp_kind: str
    first_timestamp: PointTimestamp | None
    last_timestamp: PointTimestamp | None
    has_ground_truth: bool
    n_anomalous_points: int
    n_missing_values: int
    created_at: UtcDateTime


class DatasetOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str
    n_channels: int | None
    series: list[SeriesOut]


class ImportedOut(BaseModel):
    dataset: str
    series_id: int
    name: str
    n_points: int
    n_channels: int
    n_anomalous_points: int
    has_ground_truth: bool


class ViewChannel(BaseModel):
    index: int
    name: str
    i: list[int]
    x: list[float]
    y: list[float | None]


class SeriesViewOut(BaseModel):
    start: int
    end: int
    n_points: int
    x_kind: str
    channels: list[ViewChannel]
    truth: list[tuple[int, int]]


class PointsIn(BaseModel):
    """``POST /api/v1/series/{id}/points`` as JSON (the body may also be CSV: ``text/csv``, a header with
    ``timestamp``, the series' channel names and optionally ``label``)."""

    timestamps: list[str | float] | None = None
    """One per point, strictly increasing and after the series' last one: ISO-8601 or unix seconds (datetime
    series), numbers (number series); left out for a series without timestamps (its points are numbered)."""
    values: list[list[float | None] | float | None]
    """One row per point with one number per channel, in the series' channel order (a bare number per point for a
    one-channel series). NaN, infinite, null and values beyond +-3.4e38 are refused."""
    labels: list[int] | None = None
    """Optional 0/1 ground truth per point, kept only for a series imported with ground truth (missing: 0)."""


class AnomalyOut(BaseModel):
    """A new anomalous segment among the scored points (also sent as an ``anomaly.detected`` webhook)."""

    start: int
    """First point of the segment."""
    end: int
    """One past its last point."""
    start_timestamp: int | float | PointTimestamp | None = None
    """Timestamp of ``start``: ISO 8601 UTC with ``Z`` (datetime series), the number (number series) or the index."""
    end_timestamp: int | float | PointTimestamp | None = None
    """Timestamp of the segment's last point (``end - 1``), in the same form."""
    peak_score: float
    ongoing: bool
    """The segment reaches the newest point (it may go on with the next batch)."""


class ScoringOut(BaseModel):
    project_id: int | None = None
    version_id: int | None = None
    status: str
    """``scored`` (in this request), ``queued`` (a job scores them: ``job_id``), ``up_to_date``,
    ``not_enough_points`` (the series is still shorter than one window of the model), or ``deferred`` (one entry, no
    project: the points are stored but the database was too busy to score them; the first read of their scores does)."""
    scored_points: int = 0
    job_id: int | None = None
    anomalies: list[AnomalyOut] = []
    """New anomalous segments among the scored points; each was sent as an ``anomaly.detected`` webhook."""
    message: str = ""


class AppendOut(BaseModel):
    append_id: int
    series_id: int
    start: int
    """Index of the first appended point; the batch is points ``[start, end)``."""
    end: int
    n_points: int
    first_timestamp: PointTimestamp | None
    last_timestamp: PointTimestamp | None
    scoring: list[ScoringOut]
    """One entry per project whose serving model covers the series."""
