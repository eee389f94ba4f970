"""Where jobs run: an in-process worker thread (no broker configured) or Celery workers (ANOMALOOP_BROKER_URL).

Both call :func:`app.jobs.runner.run_job`; callers commit before they enqueue.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from app.db import Database
from app.jobs import service as jobs
from app.jobs.runner import NETWORK_KINDS, LeaseHeld, run_job
from app.projects import review
from app.settings import Settings

log = logging.getLogger("anomaloop.jobs")


class Executor(Protocol):
    def enqueue(self, job_id: int, delay_s: float = 0.0) -> None: ...

    def shutdown(self) -> None: ...


class InProcessExecutor:
    """One worker thread in the web process for training; a small pool of its own for jobs that wait on the
    network (webhook deliveries, :data:`~app.jobs.runner.NETWORK_KINDS`), so neither waits behind the other; a
    timer thread for jobs to run later (a delivery's retry); a sweeper re-runs jobs left queued or orphaned by a
    crash (and, after a restart, the retries whose timer died with the process)."""

    def __init__(self, settings: Settings, db: Database, sweep: bool = True) -> None:
        self.settings, self.db = settings, db
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="anomaloop-job")
        self.network_pool = ThreadPoolExecutor(
            max_workers=settings.webhook_workers, thread_name_prefix="anomaloop-webhook"
        )
        self._pending: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._later: list[tuple[float, int]] = []  # heap of (time.monotonic() when due, job id)
        self._later_ready = threading.Condition()
        self._timer = threading.Thread(target=self._later_loop, daemon=True, name="anomaloop-later")
        self._timer.start()
        self._sweeper = None
        if sweep:
            self._sweeper = threading.Thread(target=self._sweep_loop, daemon=True, name="anomaloop-sweeper")
            self._sweeper.start()

    def enqueue(self, job_id: int, delay_s: float = 0.0) -> None:
        """Run ``job_id`` now, or (``delay_s`` > 0) hand it to the timer thread."""
        if delay_s > 0:
            with self._later_ready:
                heapq.heappush(self._later, (time.monotonic() + delay_s, job_id))
                self._later_ready.notify()
            return
        with self._lock:
            if job_id in self._pending:
                return
            self._pending.add(job_id)
        try:
            pool = self.network_pool if self._kind(job_id) in NETWORK_KINDS else self.pool
            pool.submit(self._run, job_id)
        except Exception:
            with self._lock:
                self._pending.discard(job_id)
            raise

    def _kind(self, job_id: int) -> str | None:
        with self.db.session_scope() as session:
            return jobs.job_kind(session, job_id)

    def _later_loop(self) -> None:
        """Enqueue each delayed job when its time comes."""
        while not self._stop.is_set():
            with self._later_ready:
                now = time.monotonic()
                due = []
                while self._later and self._later[0][0] <= now:
                    due.append(heapq.heappop(self._later)[1])
                if not due:
                    self._later_ready.wait(self._later[0][0] - now if self._later else None)
                    continue
            for job_id in due:
                with self._lock:
                    finishing = job_id in self._pending
                try:
                    # its previous run is still returning (a very short delay): look again in a moment, not drop it
                    self.enqueue(job_id, 0.05 if finishing else 0.0)
                except Exception:  # noqa: BLE001 - the database may be briefly away; the sweeper finds the job
                    log.warning("could not enqueue delayed job %s", job_id, exc_info=True)

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
            # rounds whose review time is over close here; their retraining jobs, committed, are queued: sent below
            review.close_overdue_rounds(session)
        with self.db.session_scope() as session:
            for job_id in jobs.stale_jobs(session):
                self.enqueue(job_id)

    def _sweep_loop(self) -> None:
        while True:
            try:
                self.sweep()
            except Exception:  # noqa: BLE001 - the database may be briefly away; try again next time
                log.warning("job sweep failed", exc_info=True)
            if self._stop.wait(self.settings.sweep_every_s):
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
        with self._later_ready:
            self._later_ready.notify_all()
        self.network_pool.shutdown(wait=True, cancel_futures=True)
        self.pool.shutdown(wait=True, cancel_futures=True)
        # and no sweep or timer is left touching the database once the app (or a test) is done with it
        for thread in (self._timer, self._sweeper):
            if thread is not None:
                thread.join(timeout=10)


class CeleryExecutor:
    """Send job ids to Celery, each to its kind's queue (training, or webhook deliveries); the worker's task calls
    the same run_job."""

    def __init__(self, settings: Settings, db: Database) -> None:
        # here, not at the top: Celery and its broker client load only when a broker is configured
        from app.jobs.celery_app import make_celery

        self.settings, self.db = settings, db
        self.app = make_celery(settings)

    def enqueue(self, job_id: int, delay_s: float = 0.0) -> None:
        """Send ``job_id`` to its queue; with ``delay_s`` > 0 as a countdown (the broker's worker holds it until
        then)."""
        from app.jobs.celery_app import queue_of_job, send_job

        send_job(self.app, job_id, queue_of_job(self.db, self.settings, job_id), delay_s)

    def shutdown(self) -> None:
        self.app.close()


def make_executor(settings: Settings, db: Database) -> InProcessExecutor | CeleryExecutor:
    if settings.broker_url:
        return CeleryExecutor(settings, db)
    return InProcessExecutor(settings, db)
