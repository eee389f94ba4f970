"""Engine, session scope and the declarative ``Base`` with a constraint naming convention."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, MetaData, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class PoolOptions:
    """Connection pool of one process. A read holds one connection, a write at most two (its dependencies' session
    and one a route opens for a transaction of its own, such as an upload's import or an append's scoring), returned
    when its transaction ends.

    The guard admits at most ``max_concurrent_requests`` (8) reads and ``max_concurrent_writes`` (4) writes at once
    (:meth:`app.accounts.guard.Guard._admission`): at most 8 + 2 × 4 = 16 connections, so ``size + overflow`` (20)
    leaves room for the in-process worker, the token-use writer and the webhook sender; when every connection is in
    use anyway, a request waits at most ``timeout`` seconds and then gets 503 with ``Retry-After`` instead of
    queueing without bound. 20 is also far below PostgreSQL's default ``max_connections`` (100), leaving room for
    workers and a second web process. ``recycle`` drops connections a server or firewall may have cut; ``pre_ping``
    (PostgreSQL) tests a connection before use so a restarted server costs no failed request.
    """

    size: int = 10
    overflow: int = 10
    timeout: float = 5.0
    recycle: int = 1800
    sqlite_busy_seconds: float = 30.0
    """SQLite waits this long for another writer's lock (an import holds it for its whole transaction)."""


def make_engine(url: str, pool: PoolOptions | None = None) -> Engine:
    """An engine for ``url``. SQLite gets WAL, foreign keys and a busy timeout so the web thread and the
    in-process worker can share the file."""
    pool = pool or PoolOptions()
    sizes = {
        "pool_size": pool.size,
        "max_overflow": pool.overflow,
        "pool_timeout": pool.timeout,
        "pool_recycle": pool.recycle,
    }
    if url.startswith("sqlite"):
        if ":memory:" in url or url.rstrip("/") == "sqlite:":
            sizes = {}  # in-memory SQLite uses a single-connection pool without these options
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": pool.sqlite_busy_seconds}, **sizes
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "savepoint")
        def _sqlite_savepoint(conn, _name) -> None:  # type: ignore[no-untyped-def]
            # pysqlite opens a transaction only before DML, so a SAVEPOINT issued first ran outside any transaction
            # and its RELEASE committed at once: a new model version became visible before the round status and the
            # serving pick written after it in the same scope. A savepoint now always sits inside a transaction.
            # (Reads keep running outside one until the first write, so they never hold a stale snapshot that
            # could not be upgraded to a write.)
            if not conn.connection.dbapi_connection.in_transaction:
                conn.exec_driver_sql("BEGIN")

        return engine
    return create_engine(url, pool_pre_ping=True, **sizes)


class Database:
    """The engine and a session factory; created once at the edge (app, CLI, worker) and passed down."""

    def __init__(self, url: str, pool: PoolOptions | None = None) -> None:
        # Every model module imported and every mapper configured here, in the creating thread: configuring lazily on
        # the first query raced with imports in a Celery worker's sweeper thread and broke every mapper for good.
        from sqlalchemy.orm import configure_mappers

        import app.models  # noqa: F401

        configure_mappers()
        self.url = url
        self.engine = make_engine(url, pool)
        self.caches: dict[str, Any] = {}
        """Caches services keep beside the engine (loaded model versions: app.versions.scoring; chart summaries:
        app.datasets.service); they live and die with this object, so two apps or test databases in one process
        never share one."""
        # every session can reach its Database (and so the caches) through ``session.info["database"]``
        self.sessions = sessionmaker(self.engine, expire_on_commit=False, info={"database": self})

    @contextmanager
    def session_scope(self) -> Iterator[Session]:
        """One transaction: commit on success, roll back on any error. Services never commit."""
        session = self.sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()
