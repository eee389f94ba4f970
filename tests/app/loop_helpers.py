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


def wait_version(db: Database, project_id: int, round_number: int, timeout: float) -> dict:
    """Poll until the project's version for ``round_number`` exists; fail with the job error if a job failed."""
    import time

    from app.jobs import service as jobs
    from app.versions import repository as versions_repo

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.session_scope() as session:
            version = versions_repo.get_for_round(session, project_id, round_number)
            if version is not None:
                from app.projects.models import Project

                serving = versions_repo.serving_or_latest(session, session.get(Project, project_id))
                return dict(
                    version.metrics,
                    id=version.id,
                    labels_used=version.labels_used,
                    adoption=dict(version.adoption),
                    served_id=serving.id,
                    served_pr_auc=serving.metrics.get("pr_auc"),
                )
            failed = [j for j in jobs.list_jobs(session, 100, project_id) if j.status == "failed"]
            if failed:
                raise AssertionError(f"job {failed[0].id} failed: {failed[0].error}")
        time.sleep(0.3)
    raise TimeoutError(f"no version for round {round_number} of project {project_id} after {timeout:.0f} s")


def run_rounds(db: Database, enqueue, project_id: int, rounds: int, timeout: float) -> list[dict]:  # type: ignore[no-untyped-def]
    """Initial version already enqueued; run ``rounds`` ground-truth rounds; returns the versions' metrics 0..rounds."""
    out = [wait_version(db, project_id, 0, timeout)]
    for number in range(1, rounds + 1):
        with db.session_scope() as session:
            started = projects.start_round(session, None, project_id)
            assert started.round.number == number and started.job_ids, "the oracle completes the round at once"
            job_ids = started.job_ids
        for job_id in job_ids:
            enqueue(job_id)
        out.append(wait_version(db, project_id, number, timeout))
    return out
