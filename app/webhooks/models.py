"""Webhook subscriptions (where to send which events) and their deliveries (one row per event per subscription)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base, utcnow

DELIVERY_STATUSES = ("pending", "retrying", "delivered", "failed")
"""``pending``: the first attempt is queued; ``retrying``: an attempt failed and the next is scheduled at
``next_attempt_at``; ``delivered``: the receiver answered 2xx; ``failed``: every attempt failed, none is left."""


class WebhookSubscription(Base):
    __tablename__ = "webhook_subscription"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    """An http(s) URL the events are POSTed to."""
    events: Mapped[list] = mapped_column(JSON, default=list)
    """Names from :data:`app.webhooks.service.EVENTS` this subscription receives."""
    secret: Mapped[str] = mapped_column(String(100))
    """The HMAC-SHA256 key that signs every delivery. Stored as it is, not hashed: signing needs the key itself (a
    one-way hash could only check a secret presented to us, and nobody presents it). Shown once, at creation."""
    project_id: Mapped[int | None] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    """Only this project's events; ``None``: every project's."""
    active: Mapped[bool] = mapped_column(default=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("user_account.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """One event for one subscription, and what happened to it: the newest attempt's HTTP status, response time and
    error in columns, every attempt in ``attempt_log``."""

    __tablename__ = "webhook_delivery"

    id: Mapped[int] = mapped_column(primary_key=True)
    """Also the delivery id receivers see (``X-Anomaloop-Delivery``, the body's ``id``): retries repeat it."""
    subscription_id: Mapped[int] = mapped_column(ForeignKey("webhook_subscription.id", ondelete="CASCADE"), index=True)
    event: Mapped[str] = mapped_column(String(50))
    payload: Mapped[dict] = mapped_column(JSON, default=dict)
    """The body's ``data``."""
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    http_status: Mapped[int | None]
    """The newest attempt's HTTP status; ``None`` when no answer came (refused connection, timeout)."""
    response_ms: Mapped[float | None] = mapped_column(Float)
    """The newest attempt's time from sending the request to the end of the answer, in milliseconds."""
    error: Mapped[str | None] = mapped_column(Text)
    """Why the newest attempt failed; ``None`` after a success."""
    attempt_log: Mapped[list] = mapped_column(JSON, default=list)
    """Every attempt: ``{"at": ISO time (UTC), "http_status": int | None, "ms": float, "error": str | None}``."""
    next_attempt_at: Mapped[datetime | None]
    """When the next attempt is due (``pending`` / ``retrying``); ``None`` once delivered or failed."""
    job_id: Mapped[int | None] = mapped_column(ForeignKey("job.id", ondelete="SET NULL"), index=True)
    """The job that makes the attempts (re-queued with a not-before time between them)."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]

    subscription: Mapped[WebhookSubscription] = relationship(lazy="joined")
