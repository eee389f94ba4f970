"""Job shapes: what progress bars and clients read."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class JobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    status: str
    project_id: int | None
    round_id: int | None
    progress: float
    phase: str
    message: str
    error: str | None
    detail: dict[str, Any]
    cancel_requested: bool
    attempts: int
    worker: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
