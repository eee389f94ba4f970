"""Request and response bodies of the webhook API."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from app.schemas_common import UtcDateTime


class WebhookCreate(BaseModel):
    url: str = Field(max_length=2000, description="http(s) URL that receives the events as POSTed JSON")
    events: list[str] = Field(
        min_length=1,
        max_length=20,
        description="events to receive: round.completed, version.created, version.served, job.failed, anomaly.detected",
    )
    project_id: int | None = Field(
        None, ge=1, le=2**31 - 1, description="only this project's events; omitted: every project's"
    )


class WebhookOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    url: str
    events: list[str]
    project_id: int | None
    active: bool
    created_by: int | None
    created_at: UtcDateTime


class WebhookCreated(WebhookOut):
    secret: str = Field(
        description="the HMAC-SHA256 key of X-Anomaloop-Signature; shown only in this answer, store it now"
    )


class DeliveryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    subscription_id: int
    event: str
    payload: dict
    status: str = Field(description="pending, retrying, delivered or failed")
    attempts: int
    http_status: int | None = Field(description="the newest attempt's HTTP status; null when no answer came")
    response_ms: float | None = Field(description="the newest attempt's response time in milliseconds")
    error: str | None
    attempt_log: list[dict] = Field(description="every attempt: at, http_status, ms, error")
    next_attempt_at: UtcDateTime | None
    created_at: UtcDateTime
    delivered_at: UtcDateTime | None


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    next_cursor: int | None = Field(description="pass as ?cursor= for the next (older) page; null on the last page")
