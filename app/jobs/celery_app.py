"""The Celery app, built from the settings: the web process sends job ids with it, ``anomaloop worker`` runs it.

It lives in ``app`` so that ``app`` never imports ``worker``: the task module is named here only as a string
(:data:`TASK_MODULES`), which the worker process imports when it starts (``worker/`` imports ``app``, not the
reverse). ``worker/celery_app.py`` holds the module-level app that ``celery -A worker.celery_app`` needs.

acks_late + reject_on_worker_lost: a job whose worker dies is delivered again; the job row's lease and the unique
(project, round) version key make the rerun safe.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from celery import Celery

from app.settings import Settings

if TYPE_CHECKING:
    from app.db import Database

TASK_NAME = "anomaloop.run_job"
"""The one task: run a job by id (``worker/tasks.py``)."""
TASK_MODULES = ("worker.tasks",)
"""Imported by a worker process at start, by name; a process that only sends tasks never imports them."""
DEFAULT_BROKER = "redis://127.0.0.1:6379/0"


def make_celery(settings: Settings) -> Celery:
    """A Celery app on the settings' broker (``ANOMALOOP_BROKER_URL``) with the job queue as default queue."""
    app = Celery(
        "anomaloop",
        broker=settings.broker_url,
        backend=settings.result_backend or settings.broker_url,
        include=list(TASK_MODULES),
    )
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=settings.job_queue,
        task_serializer="json",
        accept_content=["json"],
        result_expires=24 * 3600,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": settings.visibility_timeout},
        worker_hijack_root_logger=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    app.anomaloop_settings = settings  # read by the tasks in the worker process
    return app


def default_app() -> Celery:
    """The app from the environment's settings, on a local Redis when no broker is set."""
    settings = Settings()
    if not settings.broker_url:
        settings = settings.model_copy(update={"broker_url": DEFAULT_BROKER})
    return make_celery(settings)


def queue_for(settings: Settings, kind: str | None) -> str:
    """The Celery queue of a job of ``kind``: webhook deliveries (:data:`~app.jobs.runner.NETWORK_KINDS`) on
    their own queue, everything else on the training queue."""
    from app.jobs.runner import NETWORK_KINDS

    return settings.webhook_queue if kind in NETWORK_KINDS else settings.job_queue


def queue_of_job(db: Database, settings: Settings, job_id: int) -> str:
    """The Celery queue of the job ``job_id`` (its kind read from the job row): :func:`queue_for`."""
    from app.jobs import service as jobs

    with db.session_scope() as session:
        return queue_for(settings, jobs.job_kind(session, job_id))


def send_job(app: Celery, job_id: int, queue: str, delay_s: float = 0.0) -> None:
    """Hand a job id to the workers listening on ``queue``, to run at once or ``delay_s`` seconds from now."""
    app.send_task(TASK_NAME, args=[job_id], queue=queue, countdown=delay_s if delay_s > 0 else None)
