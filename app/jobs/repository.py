"""Every job query."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, or_, select, update
from sqlalchemy.orm import Session

from app.jobs.models import Job


def get(session: Session, job_id: int) -> Job | None:
    return session.get(Job, job_id)


def get_by_key(session: Session, key: str) -> Job | None:
    return session.scalar(select(Job).where(Job.dedupe_key == key))


def add(session: Session, job: Job) -> Job:
    session.add(job)
    session.flush()
    return job


def claim(session: Session, job_id: int, worker: str, now: datetime, lease_until: datetime) -> bool:
    """Take a queued job that is due, or one whose worker's lease ran out (it died); only one caller wins."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, or_(_due(now), (Job.status == "running") & (Job.lease_until < now)))
        .values(
            status="running",
            worker=worker,
            lease_until=lease_until,
            started_at=now,
            attempts=Job.attempts + 1,
            error=None,
        )
        .execution_options(synchronize_session=False)
    )
    return cast("CursorResult[Any]", result).rowcount == 1


def update_running(session: Session, job_id: int, worker: str, **values: object) -> bool:
    """Write progress / renew the lease, only while this worker still owns the job."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "running", Job.worker == worker)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return cast("CursorResult[Any]", result).rowcount == 1


def stale(session: Session, now: datetime) -> list[int]:
    """Jobs nobody is working on: queued and due, or running with an expired lease."""
    return list(
        session.scalars(
            select(Job.id).where(or_(_due(now), (Job.status == "running") & (Job.lease_until < now))).order_by(Job.id)
        )
    )


def _due(now: datetime) -> ColumnElement[bool]:
    """Queued, and not waiting for a later time (``not_before``)."""
    return (Job.status == "queued") & (Job.not_before.is_(None) | (Job.not_before <= now))


def list_recent(
    session: Session, limit: int = 50, project_id: int | None = None, exclude_kinds: tuple[str, ...] = ()
) -> list[Job]:
    q = select(Job).order_by(Job.id.desc()).limit(limit)
    if project_id is not None:
        q = q.where(Job.project_id == project_id)
    if exclude_kinds:
        q = q.where(Job.kind.not_in(exclude_kinds))
    return list(session.scalars(q))
