"""One settings object, read from the environment (prefix ``ANOMALOOP_``) at the edges and passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, NonNegativeFloat, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SECRET = "dev-insecure-secret-change-me"  # noqa: S105 - refused outside development


class Settings(BaseSettings):
    """Deployment settings. Every field can be set as ``ANOMALOOP_<FIELD>`` in the environment or ``.env``."""

    model_config = SettingsConfigDict(env_prefix="ANOMALOOP_", env_file=".env", extra="ignore")

    environment: Literal["development", "production"] = "development"
    """``production`` refuses the default secret key."""
    data_dir: Path = Path("var")
    """Folder for the SQLite file and scratch uploads (created on start)."""
    database_url: str | None = None
    """SQLAlchemy URL; default ``sqlite:///<data_dir>/anomaloop.db``. Postgres: ``postgresql+psycopg://...``."""
    broker_url: str | None = None
    """Celery broker (``redis://127.0.0.1:6379/0``); unset means the in-process executor."""
    result_backend: str | None = None
    """Celery result backend; defaults to the broker URL."""
    job_queue: Literal["cpu", "gpu"] = "cpu"
    """Celery queue that training jobs go to: GPU workers consume ``gpu`` and ``cpu``, CPU workers ``cpu``."""
    webhook_queue: str = Field("webhooks", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    """Celery queue that webhook deliveries go to, apart from training so that a delivery never waits for a fit:
    every ``anomaloop worker`` consumes it after its training queues, and ``anomaloop worker --queues webhooks``
    runs a worker of network threads for it alone."""
    visibility_timeout: int = 3600
    """Seconds before Redis hands an unacknowledged job to another worker (a dead worker's job is retaken sooner,
    when its lease in the job row runs out)."""
    job_lease_seconds: int = 30
    """A running job's worker renews its lease in the job row; a lease this old means the worker died."""
    job_sweep_seconds: float = 10.0
    """How often a worker looks for jobs nobody is doing (a dead worker's, or messages a broker lost)."""
    train_threads: int = Field(1, ge=0)
    """CPU threads of torch and of the BLAS / OpenMP pools while a job trains and scores; 0 keeps the libraries'
    defaults (one per core). Set only around the job's training step and restored after. 1 by default: the models
    are small (an LSTM of 64 at batches of 8-32), so a second thread gains little, and when the cores are busy (the
    web process, a second worker, another program) the threads wait on each other: on a loaded 2-core machine a
    100,000-point lstm_ae fit took 89 s with 2 torch threads and 3.3 s with 1. Raise it on a dedicated many-core
    worker."""
    secret_key: SecretStr = SecretStr(DEFAULT_SECRET)
    """HMAC key of the sign-in form's CSRF token. Must be set (at least 32 characters) in production."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where torch trains and scores: ``auto`` picks CUDA when present."""
    chunk_points: int = 65_536
    """Points per stored value chunk (row) of a series."""
    max_upload_mb: int = Field(512, ge=1)
    """Largest accepted upload (form or API), refused from its ``Content-Length`` before it is read; also the
    largest decompressed size of an uploaded ``.csv.gz`` and of an uploaded Parquet file's columns."""
    max_json_kb: int = Field(1024, ge=1)
    """Largest accepted body of any other request (JSON or form), refused before it is read."""
    max_concurrent_requests: int = Field(8, ge=1)
    """Reads (GET, HEAD) one web process works on at once (static files and ``/healthz`` aside); the rest wait their
    turn in the event loop, first come first served. A few per core keeps requests that need the CPU from starving
    each other (see :meth:`app.accounts.guard.Guard._admission`)."""
    max_concurrent_writes: int = Field(4, ge=1)
    """Writes one web process works on at once, apart from the reads: a write may wait for a lock, and reads do
    not queue behind it. A read holds one database connection, a write at most two (an append's scoring, an
    upload's import): keep reads + 2 × writes within ``db_pool_size + db_max_overflow`` (8 + 2 × 4 = 16 of 20)."""
    web_workers: int = Field(1, ge=1, le=64)
    """Web processes ``anomaloop serve`` starts, all on one port (:mod:`app.serving`). Each has its own database
    pool, admission slots, caches and, without a broker, its own in-process executor (a job is claimed with a lease
    in its row, so it runs once whichever process took it); ``/metrics`` adds up the requests of all of them. One
    per core is the usual choice; 1 keeps the app in one process (the default)."""
    admission_wait_seconds: float = Field(5.0, gt=0)
    """Seconds a request waits for its turn before it gets 503 with ``Retry-After``."""
    db_pool_size: int = Field(10, ge=1)
    """Database connections kept open per process (see :class:`app.db.PoolOptions` for the reasoning)."""
    db_max_overflow: int = Field(10, ge=0)
    """Extra connections opened under load and closed when idle."""
    db_pool_timeout: float = Field(5.0, gt=0)
    """Seconds a request waits for a free connection before it gets 503 with ``Retry-After``."""
    login_max_failures: int = Field(5, ge=1)
    """Wrong passwords for one account within ``login_window_minutes`` before it is locked for the rest of the
    window (failures before the account's last successful sign-in do not count)."""
    login_max_failures_per_address: int = Field(20, ge=1)
    """Wrong passwords from one client address within ``login_window_minutes`` before it is refused."""
    login_window_minutes: int = Field(15, ge=1)
    """Sliding window of the sign-in limiter."""
    session_hours: int = 12
    """How long a browser session lasts."""
    webhook_timeout_s: float = Field(5.0, gt=0, le=60)
    """Seconds one webhook delivery attempt waits to connect and for the receiver's answer; then it counts as
    failed and is retried."""
    webhook_backoff_s: list[NonNegativeFloat] = Field(default_factory=lambda: [10.0, 60.0, 300.0, 1800.0])
    """Seconds before each retry of a failed webhook delivery (JSON list, e.g. ``[10, 60, 300, 1800]``): one
    attempt plus one per entry, then the delivery is marked failed."""
    webhook_workers: int = Field(2, ge=1, le=32)
    """Threads of the in-process executor that deliver webhooks, apart from the one that trains, so that a slow
    receiver never delays training (Celery workers run deliveries as ordinary jobs)."""
    sweep_every_s: float = Field(15.0, gt=0, le=86_400)
    """How often the in-process executor looks for jobs left queued or orphaned by a crash, and for rounds whose
    review time is over (seconds; it also looks once at start)."""

    @model_validator(mode="after")
    def _refuse_default_secret(self) -> Settings:
        if self.environment == "production":
            key = self.secret_key.get_secret_value()
            if key == DEFAULT_SECRET:
                raise ValueError("ANOMALOOP_SECRET_KEY must be set when ANOMALOOP_ENVIRONMENT=production")
            if len(key) < 32:
                raise ValueError("ANOMALOOP_SECRET_KEY must have at least 32 characters in production")
        return self

    def pool_options(self):  # type: ignore[no-untyped-def]
        """The database pool of a web process (:class:`app.db.PoolOptions`)."""
        from app.db import PoolOptions

        return PoolOptions(size=self.db_pool_size, overflow=self.db_max_overflow, timeout=self.db_pool_timeout)

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'anomaloop.db').as_posix()}"

    @property
    def is_sqlite(self) -> bool:
        return self.sqlalchemy_url.startswith("sqlite")
