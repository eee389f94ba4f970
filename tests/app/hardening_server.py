"""A real server process (``anomaloop serve``) on the test database, and the accounts and rows the hardening tests need.

The hardening tests talk to a server over loopback, as clients and attackers do: a TestClient runs the app in the
test's own process and would not show the event loop blocking, the pool running dry or a body being read.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from app.accounts.service import create_api_token, create_user
from app.db import Database
from app.projects.models import Project, Query, Round

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log: Path
    tmp: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-5000:]


@contextmanager
def running_server(database: Database, data_dir: Path, **env: str) -> Iterator[Server]:
    """``anomaloop serve`` on a free loopback port (settings from ``env``: ``ANOMALOOP_…`` variables); its
    ``TMPDIR`` is ``data_dir/tmp``."""
    port = free_port()
    tmp = data_dir / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ANOMALOOP_")}
    environ.update(
        ANOMALOOP_DATABASE_URL=database.url,
        ANOMALOOP_DATA_DIR=str(data_dir),
        TMPDIR=str(tmp),
        ANOMALOOP_DEVICE="cpu",
        **env,
    )
    log = data_dir / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "app.cli",
                "serve",
                "--no-demo",
                "--no-migrate",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=environ,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(f"http://127.0.0.1:{port}", process, log, tmp)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(server.url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start:\n{server.log_text()}")
            time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


PASSWORD = "hardening-password-1"


def make_user(database: Database, name: str, role: str, scopes: list[str] | None = None) -> str | None:
    """Create a user; returns the plain text of a new API token with ``scopes`` when given."""
    with database.session_scope() as session:
        user = create_user(session, name, role, PASSWORD)
        if scopes is None:
            return None
        _, plain = create_api_token(session, user, f"{name}-token", scopes)
        return plain


def sign_in(client: httpx.Client | httpx.AsyncClient, name: str) -> None:
    """Sign in through the form as a script would (no browser headers, so no form token is needed)."""
    response = client.post("/login", data={"username": name, "password": PASSWORD, "next": "/"})
    assert response.status_code in (200, 303), response.text[:500]
    assert "anomaloop_session" in client.cookies


def open_round(database: Database, n_queries: int = 3, n_points: int = 1000, window: int = 25) -> tuple[int, list[int]]:
    """A project with one open human round of ``n_queries`` queries, made directly in the database (no model
    needed to test how answers are stored). Returns ``(project id, query ids)``."""
    from app.datasets.models import Dataset, Series

    with database.session_scope() as session:
        dataset = Dataset(name="hardening", n_channels=1)
        session.add(dataset)
        session.flush()
        series = Series(
            dataset_id=dataset.id,
            name="s",
            n_points=n_points,
            n_channels=1,
            channel_names=["v"],
            timestamp_kind="index",
            chunk_points=65_536,
        )
        session.add(series)
        session.flush()
        project = Project(
            name="hardening",
            dataset_id=dataset.id,
            detector="iforest",
            window=window,
            stride=1,
            strategy="top_k",
            round_size=n_queries,
            budget=100,
        )
        project.series = [series]
        session.add(project)
        session.flush()
        rnd = Round(project_id=project.id, number=1, strategy="top_k", k=n_queries, status="open")
        session.add(rnd)
        session.flush()
        queries = [
            Query(round_id=rnd.id, series_id=series.id, start=i * 100, end=i * 100 + window, rank=i)
            for i in range(n_queries)
        ]
        session.add_all(queries)
        session.flush()
        return project.id, [q.id for q in queries]
