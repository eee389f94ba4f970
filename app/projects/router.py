"""Project, round, query and label endpoints (/api/v1). Pages live in app/projects/pages.py."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from fastapi import APIRouter, BackgroundTasks, Query, Request
from fastapi.responses import Response, StreamingResponse

from app.deps import AdminPrincipal, CurrentPrincipal, SessionDep
from app.errors import AppError
from app.jobs.router import enqueue_after_commit
from app.projects import service
from app.projects.schemas import (
    AnswerIn,
    AnswerOut,
    LabelIn,
    LabelOut,
    ProjectCreate,
    ProjectOut,
    QueryOut,
    RoundOut,
    RoundStart,
)

router = APIRouter(tags=["projects"])


@router.get("/api/v1/projects", response_model=list[ProjectOut])
def list_projects(session: SessionDep, principal: CurrentPrincipal) -> list[ProjectOut]:
    return [ProjectOut.model_validate(p) for p in service.list_projects(session)]


@router.post("/api/v1/projects", response_model=ProjectOut, status_code=201)
def create_project(
    body: ProjectCreate, request: Request, background: BackgroundTasks, session: SessionDep, principal: AdminPrincipal
) -> ProjectOut:
    project, job_id = service.create_project(session, principal.user, body)
    enqueue_after_commit(request, background, [job_id])
    return ProjectOut.model_validate(project)


@router.get("/api/v1/projects/{project_id}", response_model=ProjectOut)
def get_project(project_id: int, session: SessionDep, principal: CurrentPrincipal) -> ProjectOut:
    return ProjectOut.model_validate(service.get_project(session, project_id))


@router.get("/api/v1/projects/{project_id}/rounds", response_model=list[RoundOut])
def list_rounds(project_id: int, session: SessionDep, principal: CurrentPrincipal) -> list[RoundOut]:
    return [RoundOut.model_validate(r) for r in service.list_rounds(session, project_id)]


@router.post("/api/v1/projects/{project_id}/rounds", response_model=RoundOut, status_code=201)
def start_round(
    project_id: int,
    body: RoundStart,
    request: Request,
    background: BackgroundTasks,
    session: SessionDep,
    principal: AdminPrincipal,
) -> RoundOut:
    started = service.start_round(session, principal.user, project_id, body.strategy, body.k)
    enqueue_after_commit(request, background, started.job_ids)
    return RoundOut.model_validate(started.round)


@router.get("/api/v1/rounds/{round_id}/queries", response_model=list[QueryOut])
def list_queries(round_id: int, session: SessionDep, principal: CurrentPrincipal) -> list[QueryOut]:
    return [QueryOut.model_validate(q) for q in service.list_queries(session, round_id)]


@router.get("/api/v1/projects/{project_id}/next-query", response_model=QueryOut | None)
def next_query(project_id: int, session: SessionDep, principal: CurrentPrincipal) -> QueryOut | None:
    query = service.next_query(session, project_id)
    return QueryOut.model_validate(query) if query else None


@router.post("/api/v1/queries/{query_id}/answer", response_model=AnswerOut)
def answer(
    query_id: int,
    body: AnswerIn,
    request: Request,
    background: BackgroundTasks,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> AnswerOut:
    """Store an answer at once. Send an ``idempotency_key`` per answer: a retry after a network error returns the
    stored result (``duplicate: true``) and never writes twice."""
    rng = None
    if body.anomaly_start is not None and body.anomaly_end is not None:  # AnswerIn: both or neither
        rng = (body.anomaly_start, body.anomaly_end)
    result = service.answer_query(session, principal.user, query_id, body.value, rng, body.idempotency_key)
    enqueue_after_commit(request, background, result.job_ids)
    return AnswerOut(
        query_id=result.query.id,
        labels=[LabelOut.model_validate(lab) for lab in result.labels],
        duplicate=result.duplicate,
        round_status=result.round.status,
        round_answered=result.answered,
        round_total=result.total,
        next_query_id=result.next_query.id if result.next_query else None,
    )


@router.post("/api/v1/queries/{query_id}/undo", response_model=QueryOut)
def undo(query_id: int, session: SessionDep, principal: CurrentPrincipal) -> QueryOut:
    return QueryOut.model_validate(service.undo_answer(session, principal.user, query_id))


@router.post("/api/v1/projects/{project_id}/labels", response_model=LabelOut, status_code=201)
def add_label(project_id: int, body: LabelIn, session: SessionDep, principal: CurrentPrincipal) -> LabelOut:
    label = service.add_free_label(
        session, principal.user, project_id, body.series_id, body.start, body.end, body.value, body.idempotency_key
    )
    return LabelOut.model_validate(label)


@router.get("/api/v1/projects/{project_id}/labels")
def export_labels(
    project_id: int,
    session: SessionDep,
    principal: CurrentPrincipal,
    format: Annotated[
        Literal["json", "csv", "points_csv"],
        Query(description="json or csv: one row per labeled range; points_csv: one row per timestamp of series_id"),
    ] = "json",
    series_id: int | None = None,
) -> Response:
    if format == "json":
        return Response(json.dumps(service.export_labels(session, project_id)), media_type="application/json")
    if format == "csv":
        return Response(
            service.export_labels_csv(session, project_id),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="labels-project-{project_id}.csv"'},
        )
    if series_id is None:
        raise AppError("points_csv needs series_id")
    lines = service.export_point_labels_csv(session, project_id, series_id)
    return StreamingResponse(
        lines,
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="labels-project-{project_id}-series-{series_id}.csv"'},
    )
