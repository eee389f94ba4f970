"""Job endpoints: list, read (progress), cancel, retry."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Query, Request

from app.deps import AdminPrincipal, CurrentPrincipal, SessionDep
from app.jobs import service
from app.jobs.schemas import JobOut

router = APIRouter(tags=["jobs"])


def enqueue_after_commit(request: Request, background: BackgroundTasks, job_ids: list[int]) -> None:
    """Background tasks run after the response, so after the request's transaction committed (Celery's rule)."""
    executor = request.app.state.executor
    for job_id in job_ids:
        if executor is not None:
            background.add_task(executor.enqueue, job_id)


@router.get("/api/v1/jobs", response_model=list[JobOut])
def list_jobs(
    session: SessionDep,
    principal: CurrentPrincipal,
    project_id: int | None = None,
    limit: int = 50,
    webhooks: Annotated[
        bool, Query(description="Include webhook delivery jobs (false: trainings, scoring, …).")
    ] = True,
) -> list[JobOut]:
    jobs = service.list_jobs(session, min(max(limit, 1), 500), project_id, webhooks=webhooks)
    return [JobOut.model_validate(j) for j in jobs]


@router.get("/api/v1/jobs/{job_id}", response_model=JobOut)
def get_job(job_id: int, session: SessionDep, principal: CurrentPrincipal) -> JobOut:
    return JobOut.model_validate(service.get_job(session, job_id))


@router.post("/api/v1/jobs/{job_id}/cancel", response_model=JobOut)
def cancel_job(job_id: int, session: SessionDep, principal: AdminPrincipal) -> JobOut:
    return JobOut.model_validate(service.request_cancel(session, principal.user, job_id))


@router.post("/api/v1/jobs/{job_id}/retry", response_model=JobOut)
def retry_job(
    job_id: int, request: Request, background: BackgroundTasks, session: SessionDep, principal: AdminPrincipal
) -> JobOut:
    job = service.retry(session, principal.user, job_id)
    enqueue_after_commit(request, background, [job.id])
    return JobOut.model_validate(job)
