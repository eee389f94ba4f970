"""Real Celery workers (``anomaloop worker`` subprocesses) on the real Redis and PostgreSQL servers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib

from app.db import Database
from app.settings import Settings
from tests.conftest import REDIS_URL, _wipe, service_unavailable

ROOT = Path(__file__).resolve().parents[2]
LEASE_SECONDS = 6


@pytest.fixture(scope="session")
def redis_url() -> str:
    try:
        client = redis_lib.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        client.ping()
        client.flushdb()
    except Exception as exc:  # noqa: BLE001
        service_unavailable("Redis", f"{REDIS_URL}: {exc.__class__.__name__}")
    return REDIS_URL


@pytest.fixture
def pg(postgres_url) -> Iterator[Database]:
    if not postgres_url:
        service_unavailable("PostgreSQL", "cannot connect")
    db = Database(postgres_url)
    yield db
    _wipe(db)
    db.dispose()


def worker_env(db_url: str, broker: str, tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "ANOMALOOP_DATABASE_URL": db_url,
            "ANOMALOOP_BROKER_URL": broker,
            "ANOMALOOP_DEVICE": "cpu",
            "ANOMALOOP_DATA_DIR": str(tmp),
            "ANOMALOOP_JOB_LEASE_SECONDS": str(LEASE_SECONDS),
            "ANOMALOOP_JOB_SWEEP_SECONDS": "2",
            "ANOMALOOP_VISIBILITY_TIMEOUT": "3600",
            "OMP_NUM_THREADS": "1",
        }
    )
    return env


class WorkerProcess:
    """One ``anomaloop worker`` in its own process group, its log in a file."""

    def __init__(self, env: dict[str, str], log: Path, *args: str) -> None:
        self.log = log
        self.proc = subprocess.Popen(  # noqa: S603 - our own CLI
            [sys.executable, "-m", "app.cli", "worker", "--loglevel", "info", *args],
            cwd=ROOT,
            env=env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "ready." in self.log.read_text():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log.read_text()[-2000:]}")
            time.sleep(0.2)
        raise TimeoutError(f"worker not ready: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL the whole group: no goodbye, no ack, exactly like a lost machine."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def start_worker(pg, redis_url, tmp_path) -> Iterator:
    workers: list[WorkerProcess] = []

    def start(broker: str | None = None) -> WorkerProcess:
        w = WorkerProcess(worker_env(pg.url, broker or redis_url, tmp_path), tmp_path / f"worker-{len(workers)}.log")
        workers.append(w)
        w.wait_ready()
        return w

    yield start
    for w in workers:
        w.stop()
    redis_lib.Redis.from_url(redis_url).flushdb()


def celery_settings(db: Database, broker: str, tmp: Path) -> Settings:
    return Settings(database_url=db.url, broker_url=broker, data_dir=tmp, device="cpu", job_lease_seconds=LEASE_SECONDS)


def wait_for(predicate, timeout: float, what: str, every: float = 0.5):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
