"""The Celery app: ``celery -A worker.celery_app worker`` or ``anomaloop worker``.

Tasks take ids and call :func:`app.jobs.runner.run_job`, the same body as the in-process executor. acks_late +
reject_on_worker_lost: a job whose worker dies is delivered again; the job row's lease and the unique
(project, round) version key make the rerun safe.
"""

from __future__ import annotations

from celery import Celery

from app.settings import Settings


def make_celery(settings: Settings) -> Celery:
    app = Celery("anomaloop", broker=settings.broker_url, backend=settings.result_backend or settings.broker_url,
                 include=["worker.tasks"])
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


def _default_app() -> Celery:
    settings = Settings()
    if not settings.broker_url:
        settings = settings.model_copy(update={"broker_url": "redis://127.0.0.1:6379/0"})
    return make_celery(settings)


# `celery -A worker.celery_app` needs a module-level app; the web process builds its own via make_celery.
app = _default_app()
