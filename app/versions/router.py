"""Model versions: list, promote / roll back, pull scores and predictions by range."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.deps import AdminPrincipal, CurrentPrincipal, SessionDep
from app.errors import AppError
from app.projects import service as projects
from app.versions import service
from app.versions.schemas import FollowIn, ScoresOut, VersionOut

router = APIRouter(tags=["versions"])
MAX_SCORE_POINTS = 1_000_000


@router.get("/api/v1/projects/{project_id}/versions", response_model=list[VersionOut])
def list_versions(project_id: int, session: SessionDep, principal: CurrentPrincipal) -> list[VersionOut]:
    versions = service.list_versions(session, project_id)  # read before the project: a version committed in between
    project = projects.get_project(session, project_id)  # is then missing from the list, never listed as not serving
    return [
        VersionOut.model_validate(v).model_copy(update={"serving": v.id == project.serving_version_id})
        for v in versions
    ]


@router.post("/api/v1/versions/{version_id}/promote", response_model=VersionOut)
def promote(version_id: int, session: SessionDep, principal: AdminPrincipal) -> VersionOut:
    version = service.promote(session, principal.user, version_id)
    return VersionOut.model_validate(version).model_copy(update={"serving": True})


@router.post("/api/v1/projects/{project_id}/follow-versions")
def follow_versions(project_id: int, body: FollowIn, session: SessionDep, principal: AdminPrincipal) -> dict:
    """Let new versions serve as they pass the adoption checks (after a promote or roll-back they do not)."""
    project = service.follow_new_versions(session, principal.user, project_id, body.follow)
    return {
        "project_id": project.id,
        "follow_new_versions": project.follow_new_versions,
        "serving_version_id": project.serving_version_id,
    }


@router.get("/api/v1/projects/{project_id}/scores", response_model=ScoresOut)
def scores(
    project_id: int,
    session: SessionDep,
    principal: CurrentPrincipal,
    series_id: int,
    start: Annotated[int, Query(ge=0)] = 0,
    end: Annotated[int | None, Query(ge=1)] = None,
    version_id: Annotated[int | None, Query(description="Default: the serving version.")] = None,
) -> ScoresOut:
    """Anomaly scores (higher = more anomalous) and 0/1 predictions at the version's threshold, by point range."""
    project = projects.get_project(session, project_id)
    version = service.version_to_show(session, project, version_id)
    values = service.read_scores(session, version, series_id, start, end)
    if len(values) > MAX_SCORE_POINTS:
        raise AppError(f"ask for at most {MAX_SCORE_POINTS:,} points at a time", status=413)
    threshold = version.threshold
    return ScoresOut(
        version_id=version.id,
        series_id=series_id,
        start=start,
        end=start + len(values),
        threshold=threshold,
        scores=[round(float(v), 6) for v in values],
        predictions=[int(v >= threshold) for v in values] if threshold is not None else [],
    )


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
