"""Webhook subscriptions and deliveries: register, list, delete, emit an event, and each attempt's bookkeeping.

:func:`emit` only writes rows in the caller's transaction (a delivery per matching subscription and a ``webhook``
job per delivery); the HTTP request is made by the job (:mod:`app.webhooks.delivery`), after the caller committed,
so a slow or failing receiver never holds up labeling or training.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from app.accounts.models import User
from app.accounts.service import audit
from app.db import utcnow
from app.errors import AppError, NotFound
from app.jobs import service as jobs
from app.webhooks import repository as repo
from app.webhooks.models import WebhookDelivery, WebhookSubscription

EVENTS = ("round.completed", "version.created", "version.served", "job.failed", "anomaly.detected")
TEST_EVENT = "ping"
"""Sent by ``POST /api/v1/webhooks/{id}/test`` to that subscription only; nobody subscribes to it."""
SIGNATURE_HEADER = "X-Anomaloop-Signature"
MAX_URL = 2000


# -- subscriptions --------------------------------------------------------------------------------------------------


def check_url(url: str) -> str:
    """``url`` stripped, if it is an absolute http(s) URL with a host; else 422 saying what to fix."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        host, _port = parts.hostname, parts.port  # .port raises ValueError for a port out of range
    except ValueError as exc:
        raise AppError(f"the webhook URL {url[:100]!r} is malformed: {exc}", status=422) from None
    if parts.scheme not in ("http", "https"):
        raise AppError(
            f"the webhook URL must start with http:// or https:// (got {url[:100]!r})", status=422, code="invalid_url"
        )
    if not host:
        raise AppError(f"the webhook URL {url[:100]!r} has no host", status=422, code="invalid_url")
    if len(url) > MAX_URL or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise AppError(
            f"the webhook URL must be at most {MAX_URL} characters, without spaces or control characters", status=422
        )
    return url


def check_events(events: list[str]) -> list[str]:
    """The event names, each once in the order given; 422 for an empty list or an unknown name."""
    unknown = [e[:60] for e in events if e not in EVENTS]
    if unknown:
        raise AppError(
            f"unknown webhook event(s) {', '.join(map(repr, unknown[:5]))}; choose from {', '.join(EVENTS)}",
            status=422,
            code="invalid_event",
        )
    if not events:
        raise AppError(f"choose at least one event: {', '.join(EVENTS)}", status=422)
    return list(dict.fromkeys(events))


def create_subscription(
    session: Session, actor: User | None, url: str, events: list[str], project_id: int | None = None
) -> tuple[WebhookSubscription, str]:
    """Register ``url`` for ``events`` (of ``project_id`` only, or of every project); returns the subscription and
    its signing secret, which is shown to the admin this once (it is stored as it is: signing needs it)."""
    secret = "whsec_" + secrets.token_urlsafe(32)
    subscription = WebhookSubscription(
        url=check_url(url),
        events=check_events(events),
        secret=secret,
        project_id=project_id,
        active=True,
        created_by=actor.id if actor else None,
    )
    repo.add(session, subscription)
    audit(session, actor, "webhook.create", "webhook", subscription.id, url=subscription.url, events=events)
    return subscription, secret


def get_subscription(session: Session, subscription_id: int) -> WebhookSubscription:
    subscription = repo.get_subscription(session, subscription_id)
    if subscription is None:
        raise NotFound(f"no webhook with id {subscription_id}")
    return subscription


def list_subscriptions(session: Session) -> list[WebhookSubscription]:
    return repo.list_subscriptions(session)


def delete_subscription(session: Session, actor: User | None, subscription_id: int) -> None:
    """Remove the subscription and its delivery log; deliveries still queued find nothing to send and end."""
    subscription = get_subscription(session, subscription_id)
    audit(session, actor, "webhook.delete", "webhook", subscription.id, url=subscription.url)
    repo.delete_subscription(session, subscription)


def list_deliveries(
    session: Session, subscription_id: int | None, limit: int = 50, cursor: int | None = None
) -> tuple[list[WebhookDelivery], int | None]:
    """One page of deliveries, newest first (of one subscription, or of all for ``None``), and the cursor of the
    next page (``None`` on the last)."""
    if subscription_id is not None:
        get_subscription(session, subscription_id)
    limit = min(max(limit, 1), 200)
    rows = repo.list_deliveries(session, subscription_id, limit + 1, cursor)
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more else None)


def send_test(session: Session, actor: User | None, subscription_id: int) -> tuple[WebhookDelivery, list[int]]:
    """Queue a ``ping`` to one subscription (active or not); returns the delivery and the job to enqueue."""
    subscription = get_subscription(session, subscription_id)
    payload = {"webhook_id": subscription.id, "message": "a test delivery from anomaloop"}
    delivery, job_id = _queue(session, subscription, TEST_EVENT, payload)
    audit(session, actor, "webhook.test", "webhook", subscription.id, delivery=delivery.id)
    return delivery, [job_id]


# -- events ---------------------------------------------------------------------------------------------------------


def emit(session: Session, event: str, payload: dict) -> list[int]:
    """Record ``event`` for every active subscription in the caller's transaction; returns the delivery job ids the
    caller enqueues after commit. A failing receiver never affects the caller.

    ``payload`` (JSON values) is the body's ``data``; its ``project_id``, when present, selects the subscriptions
    limited to a project."""
    if event not in EVENTS:
        raise ValueError(f"unknown webhook event {event!r}")
    project_id = payload.get("project_id")
    job_ids = []
    for subscription in repo.active_subscriptions(session):
        if event in subscription.events and subscription.project_id in (None, project_id):
            job_ids.append(_queue(session, subscription, event, payload)[1])
    return job_ids


def _queue(
    session: Session, subscription: WebhookSubscription, event: str, payload: dict
) -> tuple[WebhookDelivery, int]:
    delivery = WebhookDelivery(
        subscription_id=subscription.id,
        event=event,
        payload=payload,
        status="pending",
        attempts=0,
        attempt_log=[],
        next_attempt_at=utcnow(),
    )
    repo.add(session, delivery)
    job = jobs.create_job(session, "webhook", dedupe_key=f"webhook:{delivery.id}")
    delivery.job_id = job.id
    session.flush()
    return delivery, job.id


def cancel_delivery(session: Session, job_id: int) -> None:
    """An admin cancelled the delivery's waiting job: no attempt follows, so the delivery is ``failed``, saying why
    (it would otherwise read ``retrying`` for ever)."""
    delivery = repo.delivery_for_job(session, job_id)
    if delivery is not None and delivery.status in ("pending", "retrying"):
        delivery.status, delivery.next_attempt_at, delivery.error = "failed", None, "cancelled by an admin"


def reopen_delivery(session: Session, job_id: int) -> None:
    """An admin retried the delivery's job: it is due again now (its attempt log is kept)."""
    delivery = repo.delivery_for_job(session, job_id)
    if delivery is not None and delivery.status == "failed":
        delivery.status, delivery.next_attempt_at = "retrying" if delivery.attempts else "pending", utcnow()


# -- attempts (called by the delivery job, app/webhooks/delivery.py) --------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """What one attempt sends: the body is the same bytes on every attempt of a delivery."""

    delivery_id: int
    url: str
    secret: str
    event: str
    body: bytes


@dataclass(frozen=True)
class AttemptResult:
    http_status: int | None
    ms: float
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None and self.http_status is not None and 200 <= self.http_status < 300


@dataclass(frozen=True)
class Outcome:
    status: str  # delivered, retrying or failed
    attempts: int
    retry_in_s: float = 0.0


def body_of(delivery: WebhookDelivery) -> bytes:
    """The POSTed JSON: ``{"event", "id", "created_at", "data"}`` (``created_at``: when the event happened, UTC)."""
    document = {
        "event": delivery.event,
        "id": delivery.id,
        "created_at": delivery.created_at.isoformat(timespec="seconds") + "Z",
        "data": delivery.payload,
    }
    return json.dumps(document, separators=(",", ":"), sort_keys=True, default=str).encode()


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 with the subscription's secret over ``<timestamp>.<body>``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def prepare_attempt(session: Session, job_id: int) -> Attempt | None:
    """The next attempt of the delivery ``job_id`` makes; ``None`` when there is nothing to send (the webhook was
    deleted, or a rerun finds the delivery already delivered)."""
    delivery = repo.delivery_for_job(session, job_id)
    if delivery is None or delivery.status == "delivered":
        return None
    subscription = delivery.subscription
    return Attempt(delivery.id, subscription.url, subscription.secret, delivery.event, body_of(delivery))


def record_attempt(session: Session, delivery_id: int, result: AttemptResult, backoff_s: list[float]) -> Outcome | None:
    """Log one attempt on the delivery and decide what comes next: delivered, a retry after
    ``backoff_s[attempts - 1]`` seconds, or failed once every retry is spent. ``None`` if the delivery is gone."""
    delivery = repo.get_delivery(session, delivery_id)
    if delivery is None:
        return None
    now = utcnow()
    delivery.attempts += 1
    delivery.http_status, delivery.response_ms, delivery.error = result.http_status, round(result.ms, 1), result.error
    entry = {
        "at": now.isoformat(timespec="milliseconds") + "Z",
        "http_status": result.http_status,
        "ms": round(result.ms, 1),
        "error": result.error,
    }
    delivery.attempt_log = [*delivery.attempt_log, entry]  # a new list: JSON columns track assignment, not append
    if result.ok:
        delivery.status, delivery.delivered_at, delivery.next_attempt_at = "delivered", now, None
        return Outcome("delivered", delivery.attempts)
    if delivery.attempts <= len(backoff_s):
        delay = float(backoff_s[delivery.attempts - 1])
        delivery.status, delivery.next_attempt_at = "retrying", now + timedelta(seconds=delay)
        return Outcome("retrying", delivery.attempts, delay)
    delivery.status, delivery.next_attempt_at = "failed", None
    return Outcome("failed", delivery.attempts)
