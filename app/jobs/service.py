"""Job rows: create (deduplicated), claim with a lease, report progress, finish, fail, cancel."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from app.accounts.models import User
from app.accounts.service import audit
from app.db import utcnow
from app.errors import Conflict, NotFound
from app.jobs import repository as repo
from app.jobs.models import Job
from app.projects import rounds
from app.projects.rounds import RoundStatus
from app.webhooks import service as webhooks

SILENT_KINDS = ("webhook",)
"""Job kinds whose failure sends no ``job.failed`` webhook."""


def create_job(
    session: Session,
    kind: str,
    *,
    project_id: int | None = None,
    round_id: int | None = None,
    dedupe_key: str | None = None,
) -> Job:
    """A queued job; with ``dedupe_key`` an existing job for the same work is returned instead of a second one."""
    if dedupe_key:
        existing = repo.get_by_key(session, dedupe_key)
        if existing is not None:
            return existing
    return repo.add(
        session,
        Job(
            kind=kind,
            status="queued",
            project_id=project_id,
            round_id=round_id,
            dedupe_key=dedupe_key,
            message="waiting for a worker",
        ),
    )


def get_job(session: Session, job_id: int) -> Job:
    job = repo.get(session, job_id)
    if job is None:
        raise NotFound(f"no job with id {job_id}")
    return job


def job_kind(session: Session, job_id: int) -> str | None:
    """The job's kind; ``None`` for a missing job."""
    job = repo.get(session, job_id)
    return job.kind if job is not None else None


def claim(session: Session, job_id: int, worker: str, lease_seconds: int) -> bool:
    now = utcnow()
    return repo.claim(session, job_id, worker, now, now + timedelta(seconds=lease_seconds))


def report(
    session: Session,
    job_id: int,
    worker: str,
    *,
    progress: float,
    phase: str,
    message: str,
    detail: dict,
    lease_seconds: int,
) -> bool:
    """Write progress and renew the lease; ``False`` if the job is no longer this worker's."""
    return repo.update_running(
        session,
        job_id,
        worker,
        progress=round(min(max(progress, 0.0), 100.0), 2),
        phase=phase[:50],
        message=message[:500],
        detail=detail,
        lease_until=utcnow() + timedelta(seconds=lease_seconds),
    )


def renew(session: Session, job_id: int, worker: str, lease_seconds: int) -> bool:
    return repo.update_running(session, job_id, worker, lease_until=utcnow() + timedelta(seconds=lease_seconds))


def finish(session: Session, job_id: int, worker: str, message: str) -> None:
    repo.update_running(
        session,
        job_id,
        worker,
        status="done",
        progress=100.0,
        phase="done",
        message=message[:500],
        finished_at=utcnow(),
        lease_until=None,
    )


def fail(session: Session, job_id: int, worker: str, error: str) -> list[int]:
    """Mark the job failed and tell the ``job.failed`` webhooks; returns their delivery jobs, to enqueue after
    commit. A webhook delivery's own job failing is not announced (a receiver that is down would be told about
    itself, again and again): its delivery log says it."""
    failed = repo.update_running(
        session,
        job_id,
        worker,
        status="failed",
        phase="failed",
        message="failed",
        error=error[:4000],
        finished_at=utcnow(),
        lease_until=None,
    )
    job = repo.get(session, job_id)
    if not failed or job is None or job.kind in SILENT_KINDS:
        return []
    payload = {"job_id": job.id, "kind": job.kind, "project_id": job.project_id, "round_id": job.round_id}
    return webhooks.emit(session, "job.failed", {**payload, "error": error[:1000]})


def defer(session: Session, job_id: int, worker: str, not_before: datetime, message: str) -> bool:
    """Put a running job back in the queue, not to run before ``not_before`` (a webhook delivery's retry)."""
    return repo.update_running(
        session,
        job_id,
        worker,
        status="queued",
        phase="waiting",
        message=message[:500],
        not_before=not_before,
        lease_until=None,
    )


def mark_cancelled(session: Session, job_id: int, worker: str) -> None:
    repo.update_running(
        session,
        job_id,
        worker,
        status="cancelled",
        phase="cancelled",
        message="cancelled by an admin",
        finished_at=utcnow(),
        lease_until=None,
    )


def request_cancel(session: Session, actor: User | None, job_id: int) -> Job:
    """Ask a job to stop: a queued job stops at once, a running one at its next progress report."""
    job = get_job(session, job_id)
    if job.status not in ("queued", "running"):
        raise Conflict(f"job {job_id} is already {job.status}")
    job.cancel_requested = True
    if job.status == "queued":
        job.status, job.phase, job.message, job.finished_at = (
            "cancelled",
            "cancelled",
            "cancelled by an admin",
            utcnow(),
        )
        _release_round(session, job)
        if job.kind == "webhook":
            webhooks.cancel_delivery(session, job.id)
    audit(session, actor, "job.cancel", "job", job.id, kind=job.kind)
    return job


def retry(session: Session, actor: User | None, job_id: int) -> Job:
    """Queue a failed or cancelled job again (the same row: a round still yields one version)."""
    job = get_job(session, job_id)
    if job.status not in ("failed", "cancelled"):
        raise Conflict(f"job {job_id} is {job.status}; only failed or cancelled jobs can be retried")
    job.status, job.cancel_requested, job.error, job.progress = "queued", False, None, 0.0
    job.phase, job.message, job.finished_at, job.lease_until = "", "waiting for a worker", None, None
    job.not_before = None
    if job.round_id is not None:
        rounds.move(session, job.round_id, (RoundStatus.FAILED,), RoundStatus.COMPLETE)
    if job.kind == "webhook":
        webhooks.reopen_delivery(session, job.id)
    audit(session, actor, "job.retry", "job", job.id, kind=job.kind)
    return job


def _release_round(session: Session, job: Job) -> None:
    if job.round_id is not None:
        rounds.move(session, job.round_id, (RoundStatus.TRAINING,), RoundStatus.COMPLETE)


def stale_jobs(session: Session) -> list[int]:
    return repo.stale(session, utcnow())


def list_jobs(session: Session, limit: int = 50, project_id: int | None = None, *, webhooks: bool = True) -> list[Job]:
    """The newest jobs, newest first; ``webhooks=False`` leaves out webhook deliveries (their own log is on the
    webhooks page), so a receiver that is down does not bury the trainings."""
    return repo.list_recent(session, limit, project_id, exclude_kinds=() if webhooks else ("webhook",))
