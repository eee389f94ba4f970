"""Helpers for loop tests: import a real series, create a project, run jobs in this process."""

from __future__ import annotations

from pathlib import Path

from app.datasets.reader import ImportOptions
from app.datasets.service import import_files
from app.db import Database
from app.jobs.executor import InProcessExecutor
from app.projects import service as projects
from app.projects.schemas import ProjectCreate
from app.settings import Settings


def import_series(db: Database, path: Path, dataset: str, limit_points: int | None = None) -> int:
    """Import a real file (optionally only its first ``limit_points`` rows, through a temp copy); returns dataset id."""
    if limit_points is not None:
        import pandas as pd

        frame = pd.read_csv(path, nrows=limit_points)
        target = Path(str(path).replace("/", "_"))
        tmp = Path("/tmp") / f"anomaloop-test-{target.name.removesuffix('.gz')}"
        frame.to_csv(tmp, index=False)
        path = tmp
    with db.session_scope() as session:
        [item] = import_files(session, [path], dataset, ImportOptions(timestamps="index"))
        from app.datasets import repository

        return repository.get_dataset_by_name(session, item.dataset).id


def create(db: Database, dataset_id: int, **spec) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    with db.session_scope() as session:
        project, job_id = projects.create_project(session, None, ProjectCreate(dataset_id=dataset_id, **spec))
        return project.id, job_id


def executor(db: Database, tmp_path: Path) -> InProcessExecutor:
    settings = Settings(database_url=db.url, data_dir=tmp_path, device="cpu", job_lease_seconds=30)
    return InProcessExecutor(settings, db, sweep=False)
