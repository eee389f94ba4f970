"""Browser fixtures: a real server (uvicorn in a thread) on a migrated SQLite file, and Debian's chromium.

Playwright drives the system chromium (``/usr/bin/chromium``); it never downloads a browser. Where chromium is
missing the tests are skipped loudly on a laptop and fail in CI (``service_unavailable``). Every page a test visits
is saved under ``test-artifacts/screenshots/`` so a person can look at what the browser saw.
"""

from __future__ import annotations

import re
import shutil
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app.accounts.service import create_user
from app.datasets.reader import ImportOptions
from app.datasets.service import import_files
from app.db import Database
from app.migrate import upgrade
from app.settings import Settings
from app.web import create_app
from tests.conftest import ARTIFACTS, service_unavailable

PASSWORDS = {"admin": "admin-browser-pw-1", "analyst": "analyst-browser-pw-1"}
SCREENSHOTS = ARTIFACTS / "screenshots"
BIG_POINTS = 3_000_000
VIEWPORT = {"width": 1440, "height": 900}
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test here that drives chromium (the ``browser`` fixture, or ``page`` on top of it) is a ``browser`` test,
    marked or not, so ``make test-fast`` (``-m "not browser"``) never starts one. Those that only read files or talk
    HTTP to the live server stay in the fast set."""
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here) and "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)


@dataclass
class LiveServer:
    url: str
    database: Database
    series: dict[str, int] = field(default_factory=dict)  # name -> series id


def _write_big(path: Path) -> None:
    """A 3,000,000-point random walk with 12 ground-truth anomaly segments (Parquet: written in ~1 s, where the
    same CSV takes ~15 s on a busy 2-core machine; it goes through the same import as a CSV)."""
    rng = np.random.default_rng(7)
    values = np.cumsum(rng.normal(size=BIG_POINTS)).astype(np.float32)
    label = np.zeros(BIG_POINTS, dtype=np.int8)
    for start in np.linspace(100_000, BIG_POINTS - 100_000, 12).astype(int):
        label[start : start + 5_000] = 1
        values[start : start + 5_000] += 150  # a visible level shift under each shaded segment
    pd.DataFrame({"value": values, "label": label}).to_parquet(path, index=False)


def _write_gappy(path: Path) -> None:
    """5,000 points, three channels, timestamps every minute; channel ``b`` misses points 2,000-2,499."""
    t = pd.date_range("2024-03-01", periods=5_000, freq="min")
    x = np.arange(5_000)
    frame = pd.DataFrame(
        {
            "timestamp": t.strftime("%Y-%m-%d %H:%M:%S"),
            "a": np.sin(x / 80.0),
            "b": np.cos(x / 50.0) * 3 + 10,
            "c": (x % 700) / 700.0,
            "label": ((x >= 3_600) & (x < 3_700)).astype(int),
        }
    )
    frame.loc[2_000:2_499, "b"] = np.nan
    frame.to_csv(path, index=False, na_rep="")


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The app on a fresh, migrated SQLite file with an admin, an analyst, a 3,000,000-point series and a
    three-channel series with a gap, served by uvicorn on a free port."""
    import uvicorn

    folder = tmp_path_factory.mktemp("browser")
    url = f"sqlite:///{folder / 'browser.db'}"
    upgrade(url)
    database = Database(url)
    _write_big(folder / "walk3m.parquet")
    _write_gappy(folder / "gappy.csv")
    with database.session_scope() as session:
        for role, password in PASSWORDS.items():
            create_user(session, role, role, password)
        big = import_files(session, [folder / "walk3m.parquet"], "synthetic", ImportOptions())
        gappy = import_files(session, [folder / "gappy.csv"], "sensors", ImportOptions(fill="keep"))
    settings = Settings(database_url=url, data_dir=folder, broker_url=None)
    app = create_app(settings, database)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # a free port, held from here on: no race with another process
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="live-server")
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=2) as response:  # noqa: S310 - our own server
                if response.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"the live server did not answer /healthz at {base}")
        time.sleep(0.1)
    try:
        yield LiveServer(base, database, {"walk3m": big[0].series_id, "gappy": gappy[0].series_id})
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
        database.dispose()


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Debian's chromium, headless, driven by Playwright (never a downloaded browser)."""
    executable = shutil.which("chromium")
    if executable is None:
        service_unavailable("chromium", "no `chromium` on PATH (Debian: apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        service_unavailable("chromium", f"playwright for Python is not installed ({exc})")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser, live_server: LiveServer, request: pytest.FixtureRequest) -> Iterator[object]:
    """A fresh browser context (no cookies) at 1440x900; JavaScript errors fail the test; the last state of the
    page is saved as ``<test name>-end.png``."""
    context = browser.new_context(viewport=VIEWPORT, base_url=live_server.url)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
        assert not errors, f"JavaScript errors on the page: {errors}"
    finally:
        try:
            shot(page, f"{request.node.name}-end")
        finally:
            context.close()


def shot(page, name: str) -> Path:  # type: ignore[no-untyped-def]
    """Save a full-page screenshot as ``test-artifacts/screenshots/<name>.png``."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / (re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") + ".png")
    page.screenshot(path=str(path), full_page=True)
    return path


def visit(page, path: str, name: str | None = None):  # type: ignore[no-untyped-def]
    """Open ``path``, wait until the network is idle, save a screenshot; returns the main response."""
    response = page.goto(path, wait_until="networkidle")
    shot(page, name or path.strip("/").replace("/", "-") or "home")
    return response


def login(page, role: str) -> None:  # type: ignore[no-untyped-def]
    """Sign in through the form as ``role`` (``admin`` or ``analyst``; the user name is the role)."""
    page.goto("/login")
    page.fill("input[name=username]", role)
    page.fill("input[name=password]", PASSWORDS[role])
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()
    assert not page.url.rstrip("/").endswith("/login"), f"sign-in as {role} failed: still on {page.url}"


def open_first_round(database: Database, create: object, start: bool = True) -> dict:
    """Create the project ``create`` (a ``ProjectCreate``) as the admin, train its first model here (no worker), open
    round 1: ``{"id", "round_id", "queries": [(query id, start, end), ...]}`` in rank order (``start=False``: no
    round, ``{"id"}``)."""
    from app.accounts import repository as accounts_repo
    from app.jobs.runner import run_job
    from app.projects import service as projects

    with database.session_scope() as session:
        project, job_id = projects.create_project(
            session,
            accounts_repo.get_user_by_name(session, "admin"),
            create,  # type: ignore[arg-type]
        )
        project_id = project.id
    assert run_job(database, Settings(database_url=database.url, broker_url=None), job_id, lambda _: None) == "done"
    if not start:
        return {"id": project_id}
    with database.session_scope() as session:
        started = projects.start_round(session, accounts_repo.get_user_by_name(session, "admin"), project_id)
        queries = [(q.id, q.start, q.end) for q in projects.repo.list_queries(session, started.round.id)]
    return {"id": project_id, "round_id": started.round.id, "queries": queries}
