"""Every model-version and stored-score query."""

from __future__ import annotations

import numpy as np
from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session, defer

from app.projects.models import Project
from app.versions.models import ModelVersion, ScoreChunk


def get(session: Session, version_id: int) -> ModelVersion | None:
    return session.get(ModelVersion, version_id)


def get_for_round(session: Session, project_id: int, round_number: int) -> ModelVersion | None:
    return session.scalar(
        select(ModelVersion).where(ModelVersion.project_id == project_id, ModelVersion.round_number == round_number)
    )


def latest(session: Session, project_id: int) -> ModelVersion | None:
    return session.scalar(
        select(ModelVersion).where(ModelVersion.project_id == project_id).order_by(ModelVersion.round_number.desc())
    )


def list_for_project(session: Session, project_id: int) -> list[ModelVersion]:
    """Versions without their weights (lists never need the bytes)."""
    return list(
        session.scalars(
            select(ModelVersion)
            .options(defer(ModelVersion.weights))
            .where(ModelVersion.project_id == project_id)
            .order_by(ModelVersion.round_number)
        )
    )


def add(session: Session, version: ModelVersion) -> ModelVersion:
    session.add(version)
    session.flush()
    return version


def write_scores(
    session: Session, version_id: int, series_id: int, kind: str, scores: np.ndarray, chunk_points: int
) -> None:
    session.execute(
        delete(ScoreChunk).where(
            ScoreChunk.model_version_id == version_id, ScoreChunk.series_id == series_id, ScoreChunk.kind == kind
        )
    )
    arr = np.ascontiguousarray(scores, dtype=np.float32)
    rows = [
        {
            "model_version_id": version_id,
            "series_id": series_id,
            "kind": kind,
            "chunk_index": i // chunk_points,
            "start": i,
            "length": len(arr[i : i + chunk_points]),
            "data": arr[i : i + chunk_points].tobytes(),
        }
        for i in range(0, len(arr), chunk_points)
    ]
    if rows:
        session.execute(insert(ScoreChunk), rows)


def read_scores(
    session: Session, version_id: int, series_id: int, kind: str, start: int, end: int, chunk_points: int
) -> np.ndarray:
    """Scores ``[start, end)`` (float32); reads only the chunks that overlap."""
    if end <= start:
        return np.empty(0, dtype=np.float32)
    rows = session.execute(
        select(ScoreChunk.start, ScoreChunk.data)
        .where(
            ScoreChunk.model_version_id == version_id,
            ScoreChunk.series_id == series_id,
            ScoreChunk.kind == kind,
            ScoreChunk.chunk_index >= start // chunk_points,
            ScoreChunk.chunk_index <= (end - 1) // chunk_points,
        )
        .order_by(ScoreChunk.chunk_index)
    ).all()
    parts = []
    for chunk_start, data in rows:
        arr = np.frombuffer(data, dtype=np.float32)
        parts.append(arr[max(start - chunk_start, 0) : max(0, min(end - chunk_start, len(arr)))])
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.float32)


def has_scores(session: Session, version_id: int, series_id: int, kind: str = "point") -> bool:
    return (
        session.scalar(
            select(ScoreChunk.chunk_index)
            .where(
                ScoreChunk.model_version_id == version_id, ScoreChunk.series_id == series_id, ScoreChunk.kind == kind
            )
            .limit(1)
        )
        is not None
    )


def serving_or_latest(session: Session, project: Project) -> ModelVersion | None:
    """The version that serves: the project's pick, or (before any) the newest."""
    if project.serving_version_id:
        return session.get(ModelVersion, project.serving_version_id)
    return latest(session, project.id)


def weights_of(session: Session, version_id: int) -> bytes:
    """A version's stored weights (lists defer them)."""
    weights = session.scalar(select(ModelVersion.weights).where(ModelVersion.id == version_id))
    if weights is None:  # the column is NOT NULL: only a missing version has none
        raise LookupError(f"no model version with id {version_id}")
    return weights


def newest_served_version(session: Session, project_id: int) -> ModelVersion | None:
    """The newest version whose adoption verdict let it serve (versions from before safe adoption count as served)."""
    for version in reversed(list_for_project(session, project_id)):
        if (version.adoption or {}).get("serve", True):
            return version
    return None


def scored_length(session: Session, version_id: int, series_id: int, kind: str = "point") -> int:
    """How many leading elements of ``kind`` a version has stored for a series (0 when none)."""
    end = session.scalar(
        select(func.max(ScoreChunk.start + ScoreChunk.length)).where(
            ScoreChunk.model_version_id == version_id, ScoreChunk.series_id == series_id, ScoreChunk.kind == kind
        )
    )
    return int(end or 0)


def write_scores_from(
    session: Session, version_id: int, series_id: int, kind: str, start: int, scores: np.ndarray, chunk_points: int
) -> None:
    """Replace a version's ``kind`` scores from element ``start`` on with ``scores`` (what follows is dropped); the
    scores before ``start`` stay. Only the chunks from ``start``'s on are rewritten."""
    first = start // chunk_points
    kept = read_scores(session, version_id, series_id, kind, first * chunk_points, start, chunk_points)
    if len(kept) != start - first * chunk_points:
        raise ValueError(f"version {version_id} has no {kind} scores up to {start} on series {series_id}")
    session.execute(
        delete(ScoreChunk).where(
            ScoreChunk.model_version_id == version_id,
            ScoreChunk.series_id == series_id,
            ScoreChunk.kind == kind,
            ScoreChunk.chunk_index >= first,
        )
    )
    arr = np.concatenate([kept, np.asarray(scores, dtype=np.float32)])
    offset = first * chunk_points
    rows = [
        {
            "model_version_id": version_id,
            "series_id": series_id,
            "kind": kind,
            "chunk_index": first + i // chunk_points,
            "start": offset + i,
            "length": len(arr[i : i + chunk_points]),
            "data": arr[i : i + chunk_points].tobytes(),
        }
        for i in range(0, len(arr), chunk_points)
    ]
    if rows:
        session.execute(insert(ScoreChunk), rows)
