"""Where jobs run: an in-process worker thread (no broker configured) or Celery workers (ANOMALOOP_BROKER_URL).

Both call :func:`app.jobs.runner.run_job`; callers commit before they enqueue.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from app.db import Database
from app.jobs import service as jobs
from app.jobs.runner import LeaseHeld, run_job
from app.settings import Settings

log = logging.getLogger("anomaloop.jobs")
SWEEP_EVERY_S = 15.0


class Executor(Protocol):
    def enqueue(self, job_id: int) -> None: ...

    def shutdown(self) -> None: ...


class InProcessExecutor:
    """One worker thread in the web process; a sweeper re-runs jobs left queued or orphaned by a crash."""

    def __init__(self, settings: Settings, db: Database, sweep: bool = True) -> None:
        self.settings, self.db = settings, db
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="anomaloop-job")
        self._pending: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sweeper = None
        if sweep:
            self._sweeper = threading.Thread(target=self._sweep_loop, daemon=True, name="anomaloop-sweeper")
            self._sweeper.start()

    def enqueue(self, job_id: int) -> None:
        with self._lock:
            if job_id in self._pending:
                return
            self._pending.add(job_id)
        self.pool.submit(self._run, job_id)

    def _run(self, job_id: int) -> None:
        try:
            run_job(self.db, self.settings, job_id, self.enqueue)
        except LeaseHeld:
            pass  # the sweeper retries it once the lease has run out
        except Exception:
            log.exception("job %s crashed the executor thread", job_id)
        finally:
            with self._lock:
                self._pending.discard(job_id)

    def sweep(self) -> None:
        with self.db.session_scope() as session:
            for job_id in jobs.stale_jobs(session):
                self.enqueue(job_id)

    def _sweep_loop(self) -> None:
        while True:
            try:
                self.sweep()
            except Exception:  # noqa: BLE001 - the database may be briefly away; try again next time
                log.warning("job sweep failed", exc_info=True)
            if self._stop.wait(SWEEP_EVERY_S):
                return

    def wait_idle(self, timeout: float = 600.0) -> bool:
        """Block until no job is pending (tests, the CLI's --wait)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._pending:
                    return True
            time.sleep(0.05)
        return False

    def shutdown(self) -> None:
        self._stop.set()
        self.pool.shutdown(wait=True, cancel_futures=True)


class CeleryExecutor:
    """Send job ids to Celery; the worker's task calls the same run_job."""

    def __init__(self, settings: Settings) -> None:
        # here, not at the top: Celery and its broker client load only when a broker is configured
        from app.jobs.celery_app import TASK_NAME, make_celery

        self.app = make_celery(settings)
        self.task, self.queue = TASK_NAME, settings.job_queue

    def enqueue(self, job_id: int) -> None:
        self.app.send_task(self.task, args=[job_id], queue=self.queue)

    def shutdown(self) -> None:
        self.app.close()


def make_executor(settings: Settings, db: Database) -> InProcessExecutor | CeleryExecutor:
    if settings.broker_url:
        return CeleryExecutor(settings)
    return InProcessExecutor(settings, db)
