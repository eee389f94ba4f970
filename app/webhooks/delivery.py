"""The ``webhook`` job: one attempt to POST a delivery, then done, a retry later, or failed.

Each attempt is one run of the delivery's job. A failed attempt puts the same job back in the queue with a
not-before time (:class:`app.jobs.runner.RunLater`): the in-process executor's timer thread or Celery's countdown
runs it when the backoff (``ANOMALOOP_WEBHOOK_BACKOFF_S``) has passed, and the sweepers find it after a restart. No
database transaction is open while the receiver is waited for.
"""

from __future__ import annotations

import time

import httpx

from app import __version__
from app.db import Database
from app.jobs.runner import RunLater
from app.settings import Settings
from app.webhooks import service
from app.webhooks.service import Attempt, AttemptResult

MAX_ANSWER_BYTES = 1024
"""Of a receiver's answer only this much is read (into the error of a failed attempt)."""


class DeliveryFailed(Exception):
    """Every attempt of a delivery failed; the job fails with this message."""


def deliver(db: Database, settings: Settings, job_id: int) -> str:
    """Make the next attempt of the delivery of ``job_id``; returns the finished job's message, raises
    :class:`RunLater` for a retry and :class:`DeliveryFailed` when no attempt is left."""
    with db.session_scope() as session:
        attempt = service.prepare_attempt(session, job_id)
    if attempt is None:
        return "nothing to deliver (already delivered, or the webhook was deleted)"
    result = post(attempt, settings.webhook_timeout_s)
    with db.session_scope() as session:
        outcome = service.record_attempt(session, attempt.delivery_id, result, list(settings.webhook_backoff_s))
    what = f"HTTP {result.http_status}" if result.http_status is not None else (result.error or "no answer")
    if outcome is None:
        return "the webhook was deleted during the attempt"
    if outcome.status == "delivered":
        return f"{attempt.event} delivered to {attempt.url}: {what} in {result.ms:.0f} ms"
    if outcome.status == "retrying":
        raise RunLater(
            outcome.retry_in_s, f"attempt {outcome.attempts} failed ({what[:200]}); next in {outcome.retry_in_s:g} s"
        )
    raise DeliveryFailed(
        f"delivery {attempt.delivery_id} of {attempt.event} to {attempt.url} failed after {outcome.attempts} "
        f"attempt(s); the last: {result.error or what}"
    )


def post(attempt: Attempt, timeout_s: float) -> AttemptResult:
    """POST the signed body; a 2xx answer within ``timeout_s`` (to connect, and between bytes of the answer) is
    success. Redirects are not followed (the receiver's URL is what the admin registered)."""
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"anomaloop-webhooks/{__version__}",
        "X-Anomaloop-Event": attempt.event,
        "X-Anomaloop-Delivery": str(attempt.delivery_id),
        "X-Anomaloop-Timestamp": timestamp,
        service.SIGNATURE_HEADER: service.signature(attempt.secret, timestamp, attempt.body),
    }
    started = time.perf_counter()
    try:
        with (
            httpx.Client(timeout=timeout_s, follow_redirects=False) as client,
            client.stream("POST", attempt.url, content=attempt.body, headers=headers) as response,
        ):
            answer = b""
            for chunk in response.iter_bytes():
                answer += chunk
                if len(answer) >= MAX_ANSWER_BYTES or time.perf_counter() - started > timeout_s:
                    break  # enough to say why; a trickling answer must not hold the worker
            ms = (time.perf_counter() - started) * 1000
            if 200 <= response.status_code < 300:
                return AttemptResult(response.status_code, ms, None)
            text = answer[:MAX_ANSWER_BYTES].decode("utf-8", "replace").strip()
            reason = f"HTTP {response.status_code}" + (f": {text[:300]}" if text else "")
            return AttemptResult(response.status_code, ms, reason)
    except Exception as exc:  # noqa: BLE001 - whatever went wrong (refused, timeout, bad TLS), the attempt failed
        return AttemptResult(None, (time.perf_counter() - started) * 1000, f"{type(exc).__name__}: {exc}"[:500])
