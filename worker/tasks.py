"""Celery tasks: thin — take an id, run the shared job body, nothing else."""

from __future__ import annotations

import logging
import threading

from celery import shared_task
from celery.signals import worker_ready, worker_shutdown

import app.models  # noqa: F401 - every mapper defined before the sweeper thread runs a query
from app.db import Database
from app.jobs import service as jobs
from app.jobs.celery_app import TASK_NAME, queue_for, queue_of_job, send_job
from app.jobs.runner import LeaseHeld, run_job
from app.projects import review
from app.settings import Settings

log = logging.getLogger("anomaloop.worker")


class _WorkerState:
    """Per worker process: the settings and one database engine, made on first use (after any fork)."""

    settings: Settings | None = None
    db: Database | None = None
    stop = threading.Event()

    @classmethod
    def get(cls) -> tuple[Settings, Database]:
        if cls.db is None:
            cls.settings = Settings()
            cls.db = Database(cls.settings.sqlalchemy_url)
        assert cls.settings is not None
        return cls.settings, cls.db


@shared_task(name=TASK_NAME, bind=True, acks_late=True, reject_on_worker_lost=True)
def run_job_task(self, job_id: int) -> str:  # type: ignore[no-untyped-def]
    settings, db = _WorkerState.get()

    def enqueue(follow_up: int, delay_s: float = 0.0) -> None:
        send_job(self.app, follow_up, queue_of_job(db, settings, follow_up), delay_s)

    try:
        return run_job(db, settings, job_id, enqueue)
    except LeaseHeld:
        return "running elsewhere"  # the sweeper sends it again if that worker's lease runs out


def sweep(app) -> int:  # type: ignore[no-untyped-def]
    """Send again the jobs nobody is doing: running with an expired lease (their worker died), and queued ones when
    the broker's queue is empty (Redis lost the messages, e.g. a restart without persistence)."""
    settings, db = _WorkerState.get()
    with db.session_scope() as session:
        # rounds whose review time is over close here; their retraining jobs, committed, are queued: sent below
        review.close_overdue_rounds(session)
    with db.session_scope() as session:
        stale = jobs.stale_jobs(session)
        queued = {j.id for j in jobs.list_jobs(session, limit=500) if j.status == "queued"}
        queue_of = {job_id: queue_for(settings, jobs.job_kind(session, job_id)) for job_id in stale}
    if not stale:
        return 0
    waiting: dict[str, int] = {}
    with app.connection_for_write() as conn:
        for queue in set(queue_of.values()):
            try:
                waiting[queue] = conn.default_channel.queue_declare(queue, passive=True).message_count
            except Exception:  # noqa: BLE001 - the queue does not exist yet: nothing is waiting
                waiting[queue] = 0
    sent = 0
    for job_id in stale:
        if job_id in queued and waiting[queue_of[job_id]] > 0:
            continue  # its message is still in the queue
        send_job(app, job_id, queue_of[job_id])
        sent += 1
    return sent


@worker_ready.connect
def _start_sweeper(sender=None, **_kw) -> None:  # type: ignore[no-untyped-def]
    app = sender.app

    def loop() -> None:
        while not _WorkerState.stop.is_set():
            try:
                n = sweep(app)
                if n:
                    log.info("re-sent %d orphaned job(s)", n)
            except Exception:  # noqa: BLE001 - broker or database briefly away; next sweep retries
                log.warning("sweep failed", exc_info=True)
            _WorkerState.stop.wait(_WorkerState.get()[0].job_sweep_seconds)

    threading.Thread(target=loop, daemon=True, name="anomaloop-sweeper").start()


@worker_shutdown.connect
def _stop_sweeper(**_kw) -> None:  # type: ignore[no-untyped-def]
    _WorkerState.stop.set()
