"""Project, round, query and label endpoints (/api/v1). Pages live in app/projects/pages.py."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, BackgroundTasks, Query, Request
from fastapi.responses import Response, StreamingResponse

from app.deps import AdminPrincipal, CurrentPrincipal, SessionDep
from app.errors import AppError
from app.jobs.router import enqueue_after_commit
from app.projects import labels, review, service
from app.projects.schemas import (
    AdjudicateIn,
    AnswerIn,
    AnswerOut,
    LabelIn,
    LabelOut,
    ProjectCreate,
    ProjectOut,
    ProjectSettingsIn,
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


@router.patch("/api/v1/projects/{project_id}", response_model=ProjectOut)
def update_project(
    project_id: int, body: ProjectSettingsIn, session: SessionDep, principal: AdminPrincipal
) -> ProjectOut:
    """Change a project's settings (admins): ``anomaly_types``, the types an anomalous range may carry;
    ``review_grace_minutes``, how long a fully answered round waits for review; ``answers_per_window``, how many
    analysts answer each window (between rounds only: 409 while one is open)."""
    project = service.get_project(session, project_id)
    if body.anomaly_types is not None:
        project = service.update_anomaly_types(session, principal.user, project_id, body.anomaly_types)
    if body.review_grace_minutes is not None:
        project = review.set_review_grace(session, principal.user, project_id, body.review_grace_minutes)
    if body.answers_per_window is not None:
        project = review.set_answers_per_window(session, principal.user, project_id, body.answers_per_window)
    return ProjectOut.model_validate(project)


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
    started = service.start_round(session, principal.user, project_id, body.strategy, body.k, body.assignees)
    enqueue_after_commit(request, background, started.job_ids)
    return RoundOut.model_validate(started.round)


@router.get("/api/v1/rounds/{round_id}/queries", response_model=list[QueryOut])
def list_queries(round_id: int, session: SessionDep, principal: CurrentPrincipal) -> list[QueryOut]:
    return [QueryOut.model_validate(q) for q in service.list_queries(session, round_id)]


@router.get("/api/v1/projects/{project_id}/next-query", response_model=QueryOut | None)
def next_query(project_id: int, session: SessionDep, principal: CurrentPrincipal) -> QueryOut | None:
    """The window to answer next, or null when none is left for you. With one answer per window it is handed to you
    for a few minutes (asking again gives it back): analysts working on the same round get different windows, and
    null while the windows left are with other analysts. A read-only caller is shown the window without taking it."""
    query = service.next_query(session, project_id, principal.user, claim=principal.allows("write"))
    return QueryOut.model_validate(query) if query else None


@router.post("/api/v1/queries/{query_id}/claim", response_model=QueryOut)
def claim(query_id: int, session: SessionDep, principal: CurrentPrincipal) -> QueryOut:
    """Take a window for a few minutes (the labeling page does when it shows one): other analysts asking for the
    next window are handed others meanwhile. 409 when another analyst holds it (the message names them)."""
    return QueryOut.model_validate(review.claim(session, principal.user, query_id))


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
    ranges = None
    if body.ranges is not None:
        ranges = [service.AnsweredRange(r.start, r.end, r.value, r.label_type, r.comment) for r in body.ranges]
    result = service.answer_query(
        session,
        principal.user,
        query_id,
        body.value or "normal",  # AnswerIn: a value, or ranges (then the rest of the window is normal by default)
        rng,
        body.idempotency_key,
        ranges=ranges,
        label_type=body.label_type,
        comment=body.comment,
    )
    enqueue_after_commit(request, background, result.job_ids)
    return AnswerOut(
        query_id=result.query.id,
        labels=[LabelOut.model_validate(lab) for lab in result.labels],
        duplicate=result.duplicate,
        round_status=result.round.status,
        round_answered=result.answered,
        round_total=result.total,
        round_review_until=result.round.review_until,
        next_query_id=result.next_query.id if result.next_query else None,
    )


@router.post("/api/v1/queries/{query_id}/undo", response_model=QueryOut)
def undo(query_id: int, session: SessionDep, principal: CurrentPrincipal) -> QueryOut:
    return QueryOut.model_validate(service.undo_answer(session, principal.user, query_id))


@router.post("/api/v1/projects/{project_id}/labels", response_model=LabelOut, status_code=201)
def add_label(project_id: int, body: LabelIn, session: SessionDep, principal: CurrentPrincipal) -> LabelOut:
    label = service.add_free_label(
        session,
        principal.user,
        project_id,
        body.series_id,
        body.start,
        body.end,
        body.value,
        body.idempotency_key,
        label_type=body.label_type,
        comment=body.comment,
    )
    return LabelOut.model_validate(label)


_LABELS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "json: a list of labeled ranges; csv: the same as CSV (one row per labeled range); "
        "points_csv: one row per timestamp of `series_id`, streamed.",
        "content": {
            "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
            "text/csv": {"schema": {"type": "string"}},
        },
    },
}


@router.get("/api/v1/projects/{project_id}/labels", response_model=None, responses=_LABELS_RESPONSES)
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


# -- label edits (append-only: app/projects/labels.py) --------------------------------------------------------------


@router.get("/api/v1/labels", response_model=list[labels.LabelRow], tags=["labels"])
def list_labels(project_id: int, series_id: int, session: SessionDep, principal: CurrentPrincipal) -> list:
    """The labels in force of a project on one series, oldest first, with author, type and comment."""
    return labels.series_labels(session, project_id, series_id)


@router.get("/api/v1/labels/{label_id}/history", response_model=list[labels.LabelRow], tags=["labels"])
def label_history(label_id: int, session: SessionDep, principal: CurrentPrincipal) -> list:
    """Every row of a label's history, oldest first: what it replaced, itself, and what replaced it."""
    return labels.label_history(session, label_id)


@router.patch("/api/v1/labels/{label_id}", response_model=labels.LabelRow, tags=["labels"])
def edit_label(
    label_id: int, body: labels.LabelEdit, session: SessionDep, principal: CurrentPrincipal
) -> labels.LabelRow:
    """Change a label's value, range, type or comment (its author or an admin; a write-scoped token). Append-only:
    answers the new row, which supersedes the old one; 409 when the label was already changed or deleted."""
    return labels.edit_label(session, principal.user, label_id, body, is_admin=principal.is_admin)


@router.delete("/api/v1/labels/{label_id}", response_model=labels.LabelRow, tags=["labels"])
def delete_label(label_id: int, session: SessionDep, principal: CurrentPrincipal) -> labels.LabelRow:
    """Take a label out of force (its author or an admin): answers the ``retracted`` row that supersedes it; the
    old row stays in the history. 409 when the label was already changed or deleted."""
    return labels.delete_label(session, principal.user, label_id, is_admin=principal.is_admin)


# -- several annotators and the review before retraining (app/projects/review.py) --------------------------------


@router.post("/api/v1/rounds/{round_id}/submit", response_model=RoundOut)
def submit_round(
    round_id: int, request: Request, background: BackgroundTasks, session: SessionDep, principal: CurrentPrincipal
) -> RoundOut:
    """Close a fully answered round for retraining now, before its review grace period is over (analysts, admins)."""
    submitted = review.submit_round(session, principal.user, round_id)
    enqueue_after_commit(request, background, submitted.job_ids)
    return RoundOut.model_validate(submitted.round)


@router.get("/api/v1/projects/{project_id}/agreement")
def agreement(project_id: int, session: SessionDep, principal: CurrentPrincipal) -> dict[str, Any]:
    """How much the analysts agree (Krippendorff's alpha, Cohen's kappa per pair; overall and per round, over windows
    answered by at least two) and the windows they disagree on, with consensus and adjudication."""
    return review.project_agreement(session, project_id)


@router.post("/api/v1/queries/{query_id}/adjudicate", response_model=LabelOut, status_code=201)
def adjudicate(query_id: int, body: AdjudicateIn, session: SessionDep, principal: AdminPrincipal) -> LabelOut:
    """An admin decides a window the analysts disagree on; the decision wins the consensus training uses."""
    return LabelOut.model_validate(review.adjudicate_query(session, principal.user, query_id, body.value))
