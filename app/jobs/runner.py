"""The body of every job, shared by the in-process executor and the Celery task.

It takes ids, claims the job with a lease, and runs the work in short transactions around a training step that holds
none, so labels keep flowing while a model trains. A rerun (a retried or duplicated message) finds the round's version
already stored and only marks the job done: one version per round however often the job runs.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Protocol

from threadpoolctl import threadpool_limits

from app.core.runtime import Cancelled, Progress
from app.db import Database, utcnow
from app.jobs import service as jobs
from app.projects import rounds
from app.projects.rounds import RoundStatus
from app.settings import Settings
from app.versions import service as versions

log = logging.getLogger("anomaloop.jobs")
REPORT_EVERY_S = 1.0  # progress rows are written at most this often
TRAINING_KINDS = ("fit", "retrain")
NETWORK_KINDS = ("webhook",)
"""Short jobs that wait on the network: the in-process executor runs them in a small pool of their own, so a slow
receiver never waits in front of a training job, nor a training job in front of a delivery."""
TaskBody = Callable[[Database, Settings, int], str]
"""A job that is not training: ``(db, settings, job_id) -> message`` for the finished job; raising fails it."""


def task_for(kind: str) -> TaskBody:
    """The body of a job kind other than training. Each kind's module is imported here, when such a job runs."""
    if kind == "webhook":
        from app.webhooks.delivery import deliver

        return deliver
    if kind == "score":  # points appended to a series, or a series asked for before its scores existed
        from app.versions.scoring import run_score_job

        return run_score_job
    raise ValueError(f"no job kind {kind!r}")


class Enqueue(Protocol):
    """How a job hands job ids to its executor: at once, or not before ``delay_s`` seconds from now."""

    def __call__(self, job_id: int, delay_s: float = 0.0, /) -> None: ...


class LeaseHeld(Exception):
    """Another live worker owns this job; the caller may retry after the lease runs out."""


class RunLater(Exception):
    """Raised by a task body: put the job back in the queue to run again in ``delay_s`` seconds (a webhook
    delivery's retry); ``message`` is what the job row shows meanwhile."""

    def __init__(self, delay_s: float, message: str) -> None:
        super().__init__(message)
        self.delay_s, self.message = delay_s, message


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def run_job(db: Database, settings: Settings, job_id: int, enqueue: Enqueue) -> str:
    """Run one job to its end; returns its final status (``queued`` when it is to run again later). Raises
    :class:`LeaseHeld` if a live worker has it."""
    me = worker_name()
    with db.session_scope() as session:
        job = jobs.get_job(session, job_id)
        if job.status in ("done", "failed", "cancelled"):
            return job.status
        if job.status == "queued" and job.not_before is not None and job.not_before > utcnow():
            enqueue(job_id, (job.not_before - utcnow()).total_seconds())  # came early (a redelivered message)
            return "queued"
        if not jobs.claim(session, job_id, me, settings.job_lease_seconds):
            raise LeaseHeld(f"job {job_id} is running on {job.worker}")
        kind = job.kind
    if kind in TRAINING_KINDS:
        return _run_training(db, settings, job_id, me, enqueue)
    return _run_task(db, settings, job_id, me, kind, enqueue)


def _run_task(db: Database, settings: Settings, job_id: int, me: str, kind: str, enqueue: Enqueue) -> str:
    """A short job that is not training (see :func:`task_for`): run it, then mark the job done or failed, or put it
    back in the queue when the body asks to run again later (:class:`RunLater`)."""
    try:
        message = task_for(kind)(db, settings, job_id)
    except RunLater as later:
        with db.session_scope() as session:
            deferred = jobs.defer(session, job_id, me, utcnow() + timedelta(seconds=later.delay_s), later.message)
        if deferred:
            enqueue(job_id, max(later.delay_s, 0.01))  # always through the delay path: this run is still pending
        return "queued"
    except Exception as exc:
        log.exception("job %s (%s) failed", job_id, kind)
        with db.session_scope() as session:
            follow_up = jobs.fail(session, job_id, me, f"{type(exc).__name__}: {exc}")
        for follow in follow_up:
            enqueue(follow)
        return "failed"
    with db.session_scope() as session:
        jobs.finish(session, job_id, me, message)
    return "done"


def _run_training(db: Database, settings: Settings, job_id: int, me: str, enqueue: Enqueue) -> str:
    """Train a project's model (``fit``) or retrain it after a round (``retrain``) and store the version."""
    stop_heartbeat = threading.Event()
    lease = settings.job_lease_seconds
    heartbeat = threading.Thread(target=_heartbeat, args=(db, job_id, me, lease, stop_heartbeat), daemon=True)
    heartbeat.start()
    try:
        with db.session_scope() as session:
            job = jobs.get_job(session, job_id)
            jobs.report(
                session,
                job_id,
                me,
                progress=1,
                phase="loading",
                message="reading data and labels",
                detail={},
                lease_seconds=lease,
            )
            inputs = versions.prepare_training(session, job)
        if inputs is None:
            with db.session_scope() as session:
                jobs.finish(session, job_id, me, "already trained (a rerun found the stored version)")
            return "done"
        reporter = _Reporter(db, job_id, me, lease)
        with training_threads(settings.train_threads):
            output = versions.train(inputs, settings.device, progress=reporter)
        with db.session_scope() as session:
            jobs.report(
                session,
                job_id,
                me,
                progress=99,
                phase="storing",
                message="writing the version and scores",
                detail={},
                lease_seconds=lease,
            )
        with db.session_scope() as session:
            job = jobs.get_job(session, job_id)
            version, follow_up = versions.store_training(session, job, inputs, output)
            summary = ", ".join(
                f"{k} {v:.3f}"
                for k, v in version.metrics.items()
                if k in ("pr_auc", "labels_pr_auc") and isinstance(v, float)
            )
            jobs.finish(session, job_id, me, f"model version {version.id} (round {version.round_number}) {summary}")
        for follow in follow_up:
            enqueue(follow)
        return "done"
    except Cancelled:
        with db.session_scope() as session:
            jobs.mark_cancelled(session, job_id, me)
            job = jobs.get_job(session, job_id)
            jobs._release_round(session, job)
        return "cancelled"
    except Exception as exc:
        log.exception("job %s failed", job_id)
        with db.session_scope() as session:
            follow_up = jobs.fail(session, job_id, me, f"{type(exc).__name__}: {exc}")
            job = jobs.get_job(session, job_id)
            if job.round_id is not None:
                rounds.move(session, job.round_id, (RoundStatus.TRAINING, RoundStatus.COMPLETE), RoundStatus.FAILED)
        for follow in follow_up:
            enqueue(follow)
        return "failed"
    finally:
        stop_heartbeat.set()


@contextmanager
def training_threads(threads: int) -> Iterator[None]:
    """Run the block with ``threads`` CPU threads in torch and in the BLAS / OpenMP pools numpy, scipy and
    scikit-learn use (0: leave them alone), then restore the old counts.

    Why the BLAS pools too: RLAD's label propagation is a scikit-learn matrix loop; on a loaded 2-core machine it
    took 7.5-8.1 s with OpenBLAS's 2 threads and 3.9-4.1 s with 1. The counts are per process, so this assumes one
    training job at a time per process (the in-process executor has one job thread; a Celery worker runs one job
    per process); a web request scoring in the same process meanwhile runs with the same counts.
    """
    if threads <= 0:
        yield
        return
    import torch  # lazily: the web process imports this module before any job runs

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        torch.set_num_threads(before)


def _heartbeat(db: Database, job_id: int, me: str, lease: int, stop: threading.Event) -> None:
    """Renew the lease while the job runs, even through a long step with no progress callback."""
    while not stop.wait(lease / 4):
        try:
            with db.session_scope() as session:
                if not jobs.renew(session, job_id, me, lease):
                    return
        except Exception:  # noqa: BLE001 - a missed beat is retried; the lease is 4 beats long
            log.warning("heartbeat for job %s failed", job_id, exc_info=True)


class _Reporter:
    """The core's progress callback: writes the job row at most once a second and turns a cancel into Cancelled."""

    def __init__(self, db: Database, job_id: int, me: str, lease: int) -> None:
        self.db, self.job_id, self.me, self.lease = db, job_id, me, lease
        self.last = 0.0

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        if now - self.last < REPORT_EVERY_S and p.fraction < 1.0:
            return
        self.last = now
        detail = {"step": p.step, "total_steps": p.total_steps, "loss": p.loss, "reward": p.reward, **p.extra}
        parts = [p.phase, f"{p.step}/{p.total_steps}" if p.total_steps else ""]
        if p.loss is not None:
            parts.append(f"loss {p.loss:.4g}")
        if p.reward is not None:
            parts.append(f"reward {p.reward:.4g}")
        with self.db.session_scope() as session:
            job = jobs.get_job(session, self.job_id)
            if job.cancel_requested:
                raise Cancelled(f"job {self.job_id} cancelled")
            owned = jobs.report(
                session,
                self.job_id,
                self.me,
                progress=2 + 96 * p.fraction,
                phase=p.phase,
                message=" · ".join(x for x in parts if x),
                detail=detail,
                lease_seconds=self.lease,
            )
        if not owned:
            raise Cancelled(f"job {self.job_id} is no longer this worker's")
