"""Every webhook query."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.webhooks.models import WebhookDelivery, WebhookSubscription


def add(session: Session, row: WebhookSubscription | WebhookDelivery) -> None:
    session.add(row)
    session.flush()


def get_subscription(session: Session, subscription_id: int) -> WebhookSubscription | None:
    return session.get(WebhookSubscription, subscription_id)


def list_subscriptions(session: Session) -> list[WebhookSubscription]:
    return list(session.scalars(select(WebhookSubscription).order_by(WebhookSubscription.id)))


def active_subscriptions(session: Session) -> list[WebhookSubscription]:
    return list(
        session.scalars(
            select(WebhookSubscription).where(WebhookSubscription.active.is_(True)).order_by(WebhookSubscription.id)
        )
    )


def delete_subscription(session: Session, subscription: WebhookSubscription) -> None:
    session.delete(subscription)
    session.flush()


def get_delivery(session: Session, delivery_id: int) -> WebhookDelivery | None:
    return session.get(WebhookDelivery, delivery_id)


def delivery_for_job(session: Session, job_id: int) -> WebhookDelivery | None:
    return session.scalar(select(WebhookDelivery).where(WebhookDelivery.job_id == job_id))


def list_deliveries(
    session: Session, subscription_id: int | None, limit: int, before_id: int | None = None
) -> list[WebhookDelivery]:
    """Newest first; ``before_id`` continues a page (ids below it); ``subscription_id`` ``None``: every one's."""
    q = select(WebhookDelivery).order_by(WebhookDelivery.id.desc()).limit(limit)
    if subscription_id is not None:
        q = q.where(WebhookDelivery.subscription_id == subscription_id)
    if before_id is not None:
        q = q.where(WebhookDelivery.id < before_id)
    return list(session.scalars(q))
