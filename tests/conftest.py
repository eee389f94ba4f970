"""Shared fixtures: real databases (SQLite file and a throwaway PostgreSQL database), loud service skips.

Every persistence test takes ``database`` and so runs twice: ``[sqlite]`` and ``[postgres]``. PostgreSQL is the real
server at 127.0.0.1:5432 (``ANOMALOOP_TEST_POSTGRES`` overrides the admin URL); a database is created for the test
session and dropped at its end. Where a service is unreachable the test is skipped with the reason, the summary
lists it, and with ``ANOMALOOP_REQUIRE_SERVICES=1`` (set by .ci/run) the skip becomes a failure.
"""

from __future__ import annotations

import os
import threading
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from app.db import Database
from app.migrate import upgrade
from app.models import metadata

PG_ADMIN_URL = os.environ.get("ANOMALOOP_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("ANOMALOOP_TEST_REDIS", "redis://127.0.0.1:6379/15")
REQUIRE_SERVICES = os.environ.get("ANOMALOOP_REQUIRE_SERVICES") == "1"


def _find_shared_data() -> Path:
    """``ANOMALOOP_SHARED_DATA``, else ``../shared/data`` beside the checkout, else the workplace's ``/work/shared``."""
    if os.environ.get("ANOMALOOP_SHARED_DATA"):
        return Path(os.environ["ANOMALOOP_SHARED_DATA"])
    for candidate in (Path(__file__).resolve().parents[1].parent / "shared" / "data", Path("/work/shared/data")):
        if candidate.is_dir():
            return candidate
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


SHARED_DATA = _find_shared_data()
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"

_service_skips: list[str] = []


def service_unavailable(what: str, reason: str) -> None:
    """Skip (laptop) or fail (CI) a test whose real service is missing."""
    message = f"{what} unavailable: {reason}"
    _service_skips.append(message)
    if REQUIRE_SERVICES:
        pytest.fail(message + " (ANOMALOOP_REQUIRE_SERVICES=1: CI must exercise the real servers)")
    pytest.skip(message)


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # type: ignore[no-untyped-def]
    if _service_skips:
        terminalreporter.section("real-service tests skipped")
        for line in sorted(set(_service_skips)):
            terminalreporter.write_line(f"SKIPPED {line}")
        terminalreporter.write_line("Start PostgreSQL/Redis or install chromium to run them (see DEVELOPERS.md).")


JOB_THREADS = ("anomaloop-sweeper", "anomaloop-later")
"""Names of an in-process executor's long-lived threads (app/jobs/executor.py)."""


@pytest.fixture(autouse=True)
def no_executor_left_running(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test's in-process executors are shut down when it ends: a sweeper or timer left running goes on taking
    jobs of the (shared, session-long) PostgreSQL database, and ran a later test's job (its ids restart at 1).
    The live server of the browser tests lives for the session and is left out."""
    before = {t.ident for t in threading.enumerate()}
    yield
    if "live_server" in request.fixturenames:
        return
    left = [t.name for t in threading.enumerate() if t.name in JOB_THREADS and t.ident not in before and t.is_alive()]
    assert not left, f"the test left an in-process executor running (threads {left}): shut it down"


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    admin_url = make_url(PG_ADMIN_URL)
    name = f"anomaloop_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - any connection failure means "not here"
        _service_skips.append(
            f"PostgreSQL at {admin_url.render_as_string(hide_password=True)}: {exc.__class__.__name__}"
        )
        yield ""
        return
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _wipe(db: Database) -> None:
    """Empty every table after a test (the app, threads and worker processes commit for real).

    On PostgreSQL ``TRUNCATE`` waits for every lock on the tables: a connection some test left inside a transaction
    would hang the whole suite. So it waits 30 s at most; then the other connections to this test database are
    ended, with a warning naming what they were running, and the wipe is tried once more."""
    if db.engine.dialect.name != "postgresql":
        with db.engine.begin() as conn:
            for table in reversed(metadata.sorted_tables):
                conn.execute(table.delete())
        return
    names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    try:
        with db.engine.begin() as conn:
            conn.execute(text("SET LOCAL lock_timeout = '30s'"))
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        return
    except DBAPIError as exc:
        reason = str(exc.orig).splitlines()[0]
    with db.engine.begin() as conn:
        others = conn.execute(
            text(
                "SELECT pid, state, left(query, 120) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).all()
        conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    warnings.warn(f"wipe after the test: {reason}; ended {len(others)} other connection(s): {others}", stacklevel=1)
    db.engine.dispose()  # the pool's own connections may be among those ended
    with db.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> Iterator[Database]:
    """A migrated, empty database; each test runs once per backend."""
    if request.param == "sqlite":
        url = request.getfixturevalue("sqlite_url")
    else:
        url = request.getfixturevalue("postgres_url")
        if not url:
            service_unavailable("PostgreSQL", f"cannot connect to {make_url(PG_ADMIN_URL).host}:5432")
    db = Database(url)
    try:
        yield db
    finally:
        _wipe(db)
        db.dispose()


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        service_unavailable("real data (../shared/data)", f"not found at {SHARED_DATA}; set ANOMALOOP_SHARED_DATA")
    return SHARED_DATA
