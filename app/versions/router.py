"""Model versions: list, promote / roll back, pull scores and predictions by range, anomaly events."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, BackgroundTasks, Depends, Header, Query, Request, Response
from fastapi.responses import StreamingResponse

from app.deps import AdminPrincipal, CurrentPrincipal, DatabaseDep, OptionalPrincipal, Principal, RawBody, SessionDep
from app.errors import Unauthorized
from app.jobs.router import enqueue_after_commit
from app.projects import service as projects
from app.versions import events, reads, scoring, service
from app.versions.schemas import ArrayScoresOut, EventPageOut, FollowIn, ScoresOut, VersionOut

router = APIRouter(tags=["versions"])


@router.get("/api/v1/projects/{project_id}/versions", response_model=list[VersionOut])
def list_versions(project_id: int, session: SessionDep, principal: CurrentPrincipal) -> list[VersionOut]:
    versions = service.list_versions(session, project_id)  # read before the project: a version committed in between
    project = projects.get_project(session, project_id)  # is then missing from the list, never listed as not serving
    return [
        VersionOut.model_validate(v).model_copy(update={"serving": v.id == project.serving_version_id})
        for v in versions
    ]


@router.post("/api/v1/versions/{version_id}/promote", response_model=VersionOut)
def promote(
    version_id: int, request: Request, background: BackgroundTasks, session: SessionDep, principal: AdminPrincipal
) -> VersionOut:
    version, job_ids = service.promote(session, principal.user, version_id)
    enqueue_after_commit(request, background, job_ids)  # the version.served webhooks
    return VersionOut.model_validate(version).model_copy(update={"serving": True})


@router.post("/api/v1/projects/{project_id}/follow-versions")
def follow_versions(
    project_id: int,
    body: FollowIn,
    request: Request,
    background: BackgroundTasks,
    session: SessionDep,
    principal: AdminPrincipal,
) -> dict:
    """Let new versions serve as they pass the adoption checks (after a promote or roll-back they do not)."""
    project, job_ids = service.follow_new_versions(session, principal.user, project_id, body.follow)
    enqueue_after_commit(request, background, job_ids)  # the version.served webhooks
    return {
        "project_id": project.id,
        "follow_new_versions": project.follow_new_versions,
        "serving_version_id": project.serving_version_id,
    }


_SCORES_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "model": ScoresOut,
        "description": "The scores as JSON (ScoresOut) or as CSV (`index,timestamp,score,prediction`); large ranges "
        "are streamed.",
        "content": {"text/csv": {"schema": {"type": "string"}}},
    },
    304: {"description": "The client's copy (`If-None-Match`) is current."},
    416: {"description": "The range lies beyond the series; the message gives the valid range."},
    422: {"description": "The range is inverted or invalid; the message gives the valid range."},
}


@router.get("/api/v1/projects/{project_id}/scores", response_model=None, responses=_SCORES_RESPONSES)
def scores(
    project_id: int,
    session: SessionDep,
    database: DatabaseDep,
    principal: CurrentPrincipal,
    series_id: int,
    start: Annotated[int | None, Query(ge=0, description="First point (index range; default 0).")] = None,
    end: Annotated[int | None, Query(ge=1, description="One past the last point (default: the series' end).")] = None,
    time_from: Annotated[
        str | None,
        Query(
            alias="from", description="Time range start, inclusive: ISO 8601 or unix seconds (number series: a number)."
        ),
    ] = None,
    time_to: Annotated[str | None, Query(alias="to", description="Time range end, exclusive.")] = None,
    version_id: Annotated[int | None, Query(description="Default: the serving version.")] = None,
    format: Annotated[Literal["json", "csv"], Query(description="json (ScoresOut) or csv.")] = "json",
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """Anomaly scores (higher = more anomalous), timestamps and 0/1 predictions at the version's threshold, by point
    range (`start`, `end`) or time range (`from`, `to`). Ranges of any size; large ones are streamed. The ETag
    names (version, series, range, format): send it back as `If-None-Match` to get a 304 while it holds."""
    body = reads.read_scores(
        session,
        database.session_scope,
        project_id,
        series_id,
        version_id=version_id,
        start=start,
        end=end,
        time_from=time_from,
        time_to=time_to,
        fmt=format,
        if_none_match=if_none_match,
    )
    if body.content is None:
        return Response(status_code=304, headers=body.headers)
    if isinstance(body.content, bytes):
        return Response(body.content, media_type=body.media_type, headers=body.headers)
    return StreamingResponse(body.content, media_type=body.media_type, headers=body.headers)


@router.get("/api/v1/projects/{project_id}/events", response_model=EventPageOut)
def anomaly_events(
    project_id: int,
    session: SessionDep,
    principal: CurrentPrincipal,
    series_id: int | None = None,
    time_from: Annotated[
        str | None, Query(alias="from", description="Events ending at or after this time (ISO 8601 or unix seconds).")
    ] = None,
    time_to: Annotated[str | None, Query(alias="to", description="Events starting before this time.")] = None,
    min_score: Annotated[float | None, Query(description="Only events whose peak score reaches this.")] = None,
    merge_gap: Annotated[
        int, Query(ge=0, le=events.MAX_MERGE_GAP, description="Runs this many points apart or closer are one event.")
    ] = events.DEFAULT_MERGE_GAP,
    version_id: Annotated[int | None, Query(description="Default: the serving version (or the cursor's).")] = None,
    limit: Annotated[int, Query(ge=1, le=events.MAX_LIMIT)] = events.DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=500, description="`next_cursor` of the previous page.")] = None,
) -> EventPageOut:
    """Anomalous segments of a version: runs of points at or above its threshold (runs at most `merge_gap` points
    apart merged), by series then start, with their peak score and the analysts' labels that overlap them."""
    page = events.list_events(
        session,
        project_id,
        version_id=version_id,
        filters=events.EventFilters(series_id, time_from, time_to, min_score, merge_gap),
        limit=limit,
        cursor=cursor,
    )
    return EventPageOut.model_validate(page)


@router.get("/api/v1/projects/{project_id}/scores/view")
def scores_view(
    project_id: int,
    session: SessionDep,
    principal: CurrentPrincipal,
    series_id: int,
    start: Annotated[int, Query(ge=0)] = 0,
    end: Annotated[int | None, Query(ge=1)] = None,
    width: Annotated[int, Query(ge=16, le=4000)] = 1000,
    version_id: Annotated[int | None, Query(description="Default: the serving version.")] = None,
) -> dict:
    """Scores downsampled for a chart of ``width`` pixels (the explorer's overlay), plus the threshold."""
    project = projects.get_project(session, project_id)
    version = service.version_to_show(session, project, version_id)
    return service.score_view(session, project, version, series_id, start, end, width)


async def _reader(principal: OptionalPrincipal) -> Principal:
    """Any signed-in caller with read scope: scoring an array stores nothing, so a read-only token may POST it."""
    if principal is None:
        raise Unauthorized("sign in first")
    principal.require("read")
    return principal


@router.post(
    "/api/v1/projects/{project_id}/score",
    response_model=ArrayScoresOut,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"type": "object", "properties": {"values": {"type": "array"}}}},
                "text/csv": {"schema": {"type": "string"}},
            },
        }
    },
)
def score_array(
    project_id: int,
    session: SessionDep,
    principal: Annotated[Principal, Depends(_reader)],
    body: RawBody,
    content_type: Annotated[str, Header()] = "application/json",
) -> ArrayScoresOut:
    """Score uploaded values with the project's serving model without storing them (read scope): JSON
    `{"values": [[...], ...]}` (one row per point, one number per channel) or CSV with the channels' names as header;
    at most 100,000 points. Returns the scores, the threshold and 0/1 predictions (score >= threshold)."""
    return ArrayScoresOut.model_validate(scoring.score_array(session, project_id, body, content_type))
