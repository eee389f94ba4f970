"""Job shapes: what progress bars and clients read."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from app.schemas_common import UtcDateTime


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
    created_at: UtcDateTime
    started_at: UtcDateTime | None
    finished_at: UtcDateTime | None
