"""Model-version and score shapes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from app.schemas_common import UtcDateTime


class VersionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    project_id: int
    round_number: int
    method: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    threshold: float | None
    labels_used: int
    device: str
    train_seconds: float
    created_at: UtcDateTime
    adoption: dict[str, Any] = {}
    """The adoption verdict: ``serve`` (the checks passed), ``reason``, the agreement figures of the candidate and of
    the version serving when it was judged, the share of points its threshold flags and the guard's limit,
    ``raised_from`` (the threshold its labels chose, when the guard raised it to the limit), ``pinned`` when an
    admin's pick kept it from serving."""
    serving: bool = False


class FollowIn(BaseModel):
    follow: bool
    """True: the newest version that passes the checks serves now and new ones serve as they pass; False: keep the
    version serving now."""


class ScoresOut(BaseModel):
    """``GET /api/v1/projects/{id}/scores`` as JSON: three parallel arrays over points ``[start, end)``."""

    version_id: int
    series_id: int
    start: int
    end: int
    """Exclusive: the answer covers points ``start .. end - 1``."""
    threshold: float | None
    timestamp_kind: str = "index"
    """``datetime`` (timestamps are ISO 8601 UTC strings), ``number`` (as imported) or ``index`` (row numbers)."""
    timestamps: list[str | float | int] = []
    scores: list[float | None]
    """Higher = more anomalous, rounded to 6 decimals; ``null`` where the model gave no score (a gap)."""
    predictions: list[int]
    """1 where the score is at or above the threshold, else 0; empty when the version has no threshold."""


class EventLabelOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    value: str
    start: int
    end: int
    source: str


class EventOut(BaseModel):
    """One anomalous segment: points ``[start, end)`` of a series at or above the version's threshold."""

    model_config = ConfigDict(from_attributes=True)

    series_id: int
    version_id: int
    start: int
    end: int
    """Exclusive, like every range of the API; ``end_time`` is the timestamp of the last point (``end - 1``)."""
    n_points: int
    start_time: str | float | int
    end_time: str | float | int
    peak_score: float
    peak_index: int
    peak_time: str | float | int
    label: str | None
    """The analysts' label in force on the segment (``anomaly``, ``normal``, ``unsure``; ``mixed`` when overlapping
    labels disagree; ``null`` when none overlaps); ``labels`` lists them."""
    labels: list[EventLabelOut]


class EventPageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    project_id: int
    version_id: int
    threshold: float
    merge_gap: int
    """Runs separated by at most this many points below the threshold are one event."""
    events: list[EventOut]
    next_cursor: str | None
    """Pass as ``cursor`` for the next page; ``null`` on the last page."""


class ArrayScoresOut(BaseModel):
    """``POST /api/v1/projects/{id}/score``: uploaded values scored by the serving version, nothing stored."""

    project_id: int
    version_id: int
    n_points: int
    threshold: float | None
    scores: list[float]
    """One per uploaded point, higher = more anomalous (as the version's stored scores of the same values)."""
    predictions: list[int]
    """1 where the score is at or above the threshold (empty when the version has none)."""
