"""Model-version and score shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


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
    created_at: datetime
    adoption: dict[str, Any] = {}
    """The adoption verdict: ``serve`` (the checks passed), ``reason``, the agreement figures of the candidate and of
    the version serving when it was judged, the share of points its threshold flags, ``pinned`` when an admin's pick
    kept it from serving."""
    serving: bool = False


class FollowIn(BaseModel):
    follow: bool
    """True: the newest version that passes the checks serves now and new ones serve as they pass; False: keep the
    version serving now."""


class ScoresOut(BaseModel):
    version_id: int
    series_id: int
    start: int
    end: int
    threshold: float | None
    scores: list[float]
    predictions: list[int]
