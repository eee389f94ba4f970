"""Webhook subscriptions and deliveries."""

from __future__ import annotations

from sqlalchemy.orm import Session

EVENTS = ("round.completed", "version.created", "version.served", "job.failed", "anomaly.detected")


def emit(session: Session, event: str, payload: dict) -> list[int]:
    """Record ``event`` for every active subscription in the caller's transaction; returns the delivery job ids the
    caller enqueues after commit. A failing receiver never affects the caller."""
    if event not in EVENTS:
        raise ValueError(f"unknown webhook event {event!r}")
    return []
