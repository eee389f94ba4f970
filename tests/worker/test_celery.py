"""The loop on PostgreSQL + Redis + real ``anomaloop worker`` processes, and what happens when things break."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pytest
from sqlalchemy import func, select

from app.jobs.executor import CeleryExecutor
from app.jobs.models import Job
from app.projects import service as projects
from app.projects.models import Label
from app.versions.models import ModelVersion
from tests.app.loop_helpers import create, import_series, run_rounds, wait_version
from tests.conftest import service_unavailable
from tests.worker.conftest import celery_settings, wait_for
from tests.worker.loop_config import LOOP_CASES, LOOP_SERIES, assert_labels_paid

# each test trains several models on real worker processes: on a loaded 2-core machine that takes minutes
pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(1800)]


@pytest.fixture
def celery(pg, redis_url, tmp_path):
    executor = CeleryExecutor(celery_settings(pg, redis_url, tmp_path), pg)
    yield executor
    executor.shutdown()


@pytest.mark.parametrize("case", sorted(LOOP_CASES))
def test_three_rounds_on_celery_pay_on_the_held_back_part(case, pg, celery, start_worker, shared_data):
    start_worker()
    path, limit = LOOP_SERIES
    dataset_id = import_series(pg, shared_data / path, f"celery-{case}", limit_points=limit)
    project_id, job_id = create(pg, dataset_id, name=f"celery-{case}", **LOOP_CASES[case])
    celery.enqueue(job_id)
    versions = run_rounds(pg, celery.enqueue, project_id, rounds=3, timeout=900)
    assert_labels_paid(case, versions)
    with pg.session_scope() as s:
        assert s.scalar(select(func.count()).select_from(ModelVersion)) == 4


def _slow_project(pg, shared_data, name: str) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """An lstm_ae project whose retraining takes long enough to be interrupted."""
    dataset_id = import_series(pg, shared_data / "nab" / "realKnownCause__nyc_taxi.csv.gz", name)
    return create(
        pg,
        dataset_id,
        name=name,
        detector="lstm_ae",
        window=50,
        strategy="top_k",
        round_size=5,
        budget=50,
        oracle="ground_truth",
        holdout_fraction=0.3,
        detector_params={"epochs": 1, "max_train_windows": 256, "feedback_epochs": 150},
    )


def _start_round(pg) -> int:  # type: ignore[no-untyped-def]
    with pg.session_scope() as s:
        project_id = s.scalar(select(Job.project_id).limit(1))
        started = projects.start_round(s, None, project_id)
        [job_id] = started.job_ids
        return job_id


def _labels(pg) -> int:  # type: ignore[no-untyped-def]
    with pg.session_scope() as s:
        return s.scalar(select(func.count()).select_from(Label))


def _job(pg, job_id: int) -> Job:  # type: ignore[no-untyped-def]
    with pg.session_scope() as s:
        return s.get(Job, job_id)


def _versions_for(pg, project_id: int, number: int) -> int:  # type: ignore[no-untyped-def]
    with pg.session_scope() as s:
        return s.scalar(
            select(func.count())
            .select_from(ModelVersion)
            .where(ModelVersion.project_id == project_id, ModelVersion.round_number == number)
        )


def test_worker_killed_mid_training_job_completes_once(pg, celery, start_worker, shared_data):
    first = start_worker()
    project_id, fit_job = _slow_project(pg, shared_data, "killed")
    celery.enqueue(fit_job)
    wait_version(pg, project_id, 0, 300)
    job_id = _start_round(pg)
    labels_before = _labels(pg)
    celery.enqueue(job_id)
    wait_for(
        lambda: (j := _job(pg, job_id)).status == "running" and j.phase == "feedback" and j.progress > 5,
        300,
        "the retraining to be well under way",
    )
    first.kill()
    assert _job(pg, job_id).status == "running"  # the row still says running: its lease will run out
    start_worker()
    wait_version(pg, project_id, 1, 600)
    job = wait_for(lambda: (j := _job(pg, job_id)).status == "done" and j, 60, "the job row to say done")
    assert job.attempts >= 2
    assert _versions_for(pg, project_id, 1) == 1
    assert _labels(pg) == labels_before  # no label lost


def test_same_round_enqueued_twice_and_two_workers_yield_one_version(pg, celery, start_worker, shared_data):
    start_worker()
    start_worker()
    project_id, fit_job = _slow_project(pg, shared_data, "twice")
    celery.enqueue(fit_job)
    wait_version(pg, project_id, 0, 300)
    job_id = _start_round(pg)
    celery.enqueue(job_id)
    celery.enqueue(job_id)  # a duplicate message: the second worker must not train the same round
    wait_version(pg, project_id, 1, 600)
    wait_for(lambda: _job(pg, job_id).status == "done", 60, "the job to finish")
    time.sleep(3)  # give a stray duplicate time to (wrongly) write
    assert _versions_for(pg, project_id, 1) == 1
    assert _job(pg, job_id).attempts == 1


def test_two_workers_two_projects_both_finish(pg, celery, start_worker, shared_data):
    start_worker()
    start_worker()
    ids = []
    for name in ("left", "right"):
        dataset_id = import_series(pg, shared_data / "nab" / "realKnownCause__nyc_taxi.csv.gz", name)
        project_id, job_id = create(
            pg,
            dataset_id,
            name=name,
            detector="iforest",
            window=25,
            strategy="top_k",
            round_size=5,
            budget=20,
            oracle="ground_truth",
            auto_next=True,
        )
        ids.append(project_id)
        celery.enqueue(job_id)
    for project_id in ids:  # auto_next chains the rounds until the budget is spent: 4 rounds of 5
        wait_version(pg, project_id, 4, 600)
    with pg.session_scope() as s:
        workers = {j.worker.split(":")[1] for j in s.scalars(select(Job)) if j.worker}
    assert len(workers) == 2  # both workers took jobs


@pytest.fixture
def own_redis(tmp_path):
    """A private redis-server we may restart (the shared one stays up for everything else)."""
    binary = shutil.which("redis-server")
    if binary is None:
        service_unavailable("redis-server binary", "not on PATH")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]

    def start() -> subprocess.Popen:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
        import redis

        wait_for(lambda: _ping(redis.Redis(port=port)), 10, "redis to start", every=0.1)
        return proc

    state = {"proc": start()}

    def restart() -> None:
        state["proc"].kill()
        state["proc"].wait(10)
        state["proc"] = start()

    yield f"redis://127.0.0.1:{port}/0", restart
    state["proc"].kill()


def _ping(client) -> bool:  # type: ignore[no-untyped-def]
    try:
        return bool(client.ping())
    except Exception:  # noqa: BLE001
        return False


def test_redis_restart_mid_run_loses_no_round(pg, own_redis, start_worker, shared_data, tmp_path):
    """Redis keeps nothing on disk here. A running job goes on through the restart (its state is in PostgreSQL);
    a job whose message Redis lost is sent again by the worker's sweep (queued row, empty queue)."""
    broker, restart = own_redis
    start_worker(broker)
    executor = CeleryExecutor(celery_settings(pg, broker, tmp_path), pg)
    project_id, fit_job = _slow_project(pg, shared_data, "restart")
    executor.enqueue(fit_job)
    wait_version(pg, project_id, 0, 300)
    running = _start_round(pg)
    executor.enqueue(running)
    wait_for(lambda: _job(pg, running).status == "running", 120, "the retraining to start")
    restart()
    wait_version(pg, project_id, 1, 600)
    lost = _start_round(pg)  # committed, but its message never reaches a worker: Redis goes away first
    restart()
    wait_version(pg, project_id, 2, 600)
    assert _job(pg, lost).status == "done"
    assert _versions_for(pg, project_id, 1) == 1 and _versions_for(pg, project_id, 2) == 1
    executor.shutdown()
