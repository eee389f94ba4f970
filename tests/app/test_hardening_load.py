"""The server survives a burst of callers: no request hangs, an exhausted pool answers 503 with Retry-After.

Before: the async ``optional_principal`` ran its database reads on the event loop; forty concurrent requests with a
made-up bearer token used up the pool, the loop waited on the pool while the requests holding connections waited on
the loop, and the server (``/healthz`` included) froze for minutes.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.accounts.models import ApiToken
from app.db import Database, PoolOptions
from app.settings import Settings
from app.web import create_app
from tests.app.hardening_server import make_user, running_server, sign_in

HANG_BOUND_S = 10.0


async def _burst(url: str, token: str, cookies: httpx.Cookies, n: int = 100) -> list[tuple[str, int]]:
    """``n`` concurrent requests: anonymous with a made-up token, with a real token, with a session (pages and
    API), all at once on their own connections. Returns ``(kind, status)``; raises if any takes over the bound."""
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=0)
    async with (
        httpx.AsyncClient(base_url=url, limits=limits, timeout=HANG_BOUND_S) as anon,
        httpx.AsyncClient(base_url=url, limits=limits, timeout=HANG_BOUND_S, cookies=cookies) as browser,
    ):

        async def one(i: int) -> tuple[str, int]:
            kind = ("forged", "token", "session", "page")[i % 4]
            if kind == "forged":
                r = await anon.get("/api/v1/me", headers={"Authorization": f"Bearer alp_made-up-{i}"})
            elif kind == "token":
                r = await anon.get(
                    "/api/v1/datasets" if i % 8 == 1 else "/api/v1/me", headers={"Authorization": f"Bearer {token}"}
                )
            elif kind == "session":
                r = await browser.get("/api/v1/me")
            else:
                r = await browser.get("/", headers={"Accept": "text/html"})
            return kind, r.status_code

        return await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(n))), HANG_BOUND_S + 2)


def test_a_hundred_concurrent_callers_complete_and_health_answers_after(database, tmp_path):
    token = make_user(database, "admin", "admin", ["read"])
    with running_server(database, tmp_path) as server:
        with httpx.Client(base_url=server.url) as client:
            sign_in(client, "admin")
            cookies = client.cookies
        for _wave in range(2):  # the second wave meets whatever the first left behind
            started = time.monotonic()
            results = asyncio.run(_burst(server.url, token, cookies))
            elapsed = time.monotonic() - started
            assert elapsed < HANG_BOUND_S, f"the burst took {elapsed:.1f} s"
            expected = {"forged": 401, "token": 200, "session": 200, "page": 200}
            wrong = [(kind, status) for kind, status in results if status not in (expected[kind], 503)]
            assert not wrong, f"{wrong[:10]}\n{server.log_text()}"
            health = httpx.get(server.url + "/healthz", timeout=2)
            assert health.status_code == 200 and health.json()["status"] == "ok"
        assert "unhandled error" not in server.log_text(), server.log_text()
    with database.session_scope() as session:  # the token's use was recorded (at most once a minute)
        assert session.scalar(select(ApiToken.last_used_at)) is not None


def test_no_free_connection_gets_503_with_retry_after_not_a_hang(database, tmp_path):
    token = make_user(database, "admin", "admin", ["read"])
    small = Database(database.url, PoolOptions(size=1, overflow=0, timeout=1.0))
    try:
        app = create_app(Settings(database_url=database.url, data_dir=tmp_path), small)
        with TestClient(app) as client:
            assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
            held = small.engine.connect()  # the pool's only connection, busy elsewhere
            try:
                started = time.monotonic()
                r = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
                assert r.status_code == 503 and r.headers["Retry-After"].isdigit(), r.text
                assert "busy" in r.json()["detail"]
                assert time.monotonic() - started < HANG_BOUND_S
                page = client.get("/", headers={"Authorization": f"Bearer {token}", "Accept": "text/html"})
                assert page.status_code == 503 and "Retry-After" in page.headers
                assert client.get("/healthz").status_code == 200  # needs no database
            finally:
                held.close()
            assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    finally:
        small.dispose()


def _rss_kb(pid: int) -> int:
    from pathlib import Path

    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _send_partial(url: str, path: str, headers: dict[str, str], body_bytes: int) -> bytes:
    """Send a request's headers and the first ``body_bytes`` of its body, then read what the server answers."""
    import socket
    from urllib.parse import urlparse

    where = urlparse(url)
    with socket.create_connection((where.hostname, where.port), timeout=HANG_BOUND_S) as sock:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {where.hostname}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            + "\r\n"
        )
        sock.sendall(head.encode())
        block = b"x" * 65_536
        if headers.get("Transfer-Encoding") == "chunked":
            block = b"10000\r\n" + block + b"\r\n"
        try:
            sent = 0
            while sent < body_bytes:
                sock.sendall(block)
                sent += 65_536
        except OSError:
            pass  # the server answered and closed: it did not want the rest
        reply = b""
        try:
            while b"\r\n\r\n" not in reply:
                data = sock.recv(65_536)
                if not data:
                    break
                reply += data
        except OSError:
            pass
        return reply


def test_a_300_mb_anonymous_upload_is_refused_without_being_read(database, tmp_path):
    make_user(database, "admin", "admin")
    with running_server(database, tmp_path) as server:
        rss_before = _rss_kb(server.process.pid)
        multipart = {"Content-Type": "multipart/form-data; boundary=xyz", "Accept": "application/json"}
        cases = [
            ({**multipart, "Content-Length": str(300 * 1024 * 1024)}, "/api/v1/datasets/import", b" 401 "),
            ({**multipart, "Transfer-Encoding": "chunked"}, "/api/v1/datasets/import", b" 401 "),
            (
                {**multipart, "Content-Length": str(300 * 1024 * 1024), "Authorization": "Bearer alp_forged"},
                "/api/v1/datasets/import",
                b" 401 ",
            ),
            (
                {"Content-Type": "application/json", "Content-Length": str(100 * 1024 * 1024)},
                "/api/v1/tokens",
                b" 401 ",
            ),
            (
                {"Content-Type": "application/x-www-form-urlencoded", "Content-Length": str(100 * 1024 * 1024)},
                "/login",
                b" 413 ",
            ),
        ]
        for headers, path, status in cases:
            started = time.monotonic()
            reply = _send_partial(server.url, path, headers, 4 * 1024 * 1024)
            assert reply.startswith(b"HTTP/1.1") and status in reply.split(b"\r\n")[0] + b" ", (path, reply[:200])
            assert time.monotonic() - started < HANG_BOUND_S
        assert list(server.tmp.iterdir()) == [], "nothing of the refused bodies reached a temporary file"
        assert not any((tmp_path / "uploads").glob("upload-*/*"))
        assert _rss_kb(server.process.pid) - rss_before < 50 * 1024, "the bodies were not buffered in memory"
        assert httpx.get(server.url + "/healthz", timeout=2).status_code == 200


def _app_with_a_slow_route(database, tmp_path, **settings) -> tuple[Any, threading.Semaphore, threading.Event]:
    """The app with ``/api/v1/test-hold`` (GET and POST): a slow request (a long read, a write waiting for a lock)
    that holds its slot until ``release`` is set; ``entered`` counts the requests that got in."""
    app = create_app(Settings(database_url=database.url, data_dir=tmp_path, **settings), database)
    entered, release = threading.Semaphore(0), threading.Event()

    def hold() -> dict:
        entered.release()
        release.wait(HANG_BOUND_S)
        return {"held": True}

    app.add_api_route("/api/v1/test-hold", hold, methods=["GET", "POST"])
    return app, entered, release


def test_requests_beyond_the_admission_limit_wait_their_turn_then_get_503(database, tmp_path):
    """At most ``max_concurrent_requests`` reads are worked on at once; the next waits its turn, and one that waits
    longer than ``admission_wait_seconds`` gets 503 with Retry-After. ``/healthz`` never waits."""
    token = make_user(database, "admin", "admin", ["read"])
    bearer = {"Authorization": f"Bearer {token}"}
    app, entered, release = _app_with_a_slow_route(
        database, tmp_path, max_concurrent_requests=2, admission_wait_seconds=0.5
    )
    with TestClient(app) as client, ThreadPoolExecutor(4) as pool:
        held = [pool.submit(client.get, "/api/v1/test-hold") for _ in range(2)]
        assert entered.acquire(timeout=HANG_BOUND_S) and entered.acquire(timeout=HANG_BOUND_S)
        started = time.monotonic()
        r = client.get("/api/v1/me", headers=bearer)
        waited = time.monotonic() - started
        assert r.status_code == 503 and r.headers["Retry-After"].isdigit(), r.text
        assert "busy" in r.json()["detail"] and 0.4 < waited < HANG_BOUND_S
        assert client.get("/healthz").status_code == 200  # never queued behind the slow ones
        queued = pool.submit(client.get, "/api/v1/me", headers=bearer)
        time.sleep(0.1)
        assert not queued.done()  # waiting for a slot, not refused
        release.set()
        assert queued.result(HANG_BOUND_S).status_code == 200
        assert [f.result(HANG_BOUND_S).status_code for f in held] == [200, 200]


def test_reads_do_not_queue_behind_writes(database, tmp_path):
    """Writes have slots of their own (a write may wait for a lock): with every write slot taken, a read is answered
    at once and the next write waits its turn (here until 503)."""
    token = make_user(database, "admin", "admin", ["read"])
    bearer = {"Authorization": f"Bearer {token}"}
    app, entered, release = _app_with_a_slow_route(
        database, tmp_path, max_concurrent_requests=2, max_concurrent_writes=1, admission_wait_seconds=0.5
    )
    with TestClient(app) as client, ThreadPoolExecutor(2) as pool:
        held = pool.submit(client.post, "/api/v1/test-hold", headers=bearer)
        assert entered.acquire(timeout=HANG_BOUND_S)
        started = time.monotonic()
        assert client.get("/api/v1/me", headers=bearer).status_code == 200
        assert time.monotonic() - started < 0.4  # not the admission wait
        assert client.post("/api/v1/test-hold", headers=bearer).status_code == 503
        # a GET that writes (next-query claims the caller's window) waits for a write slot too, not a read's
        assert client.get("/api/v1/projects/1/next-query", headers=bearer).status_code == 503
        assert client.get("/api/v1/projects/1/labeling", headers=bearer).status_code != 503  # a plain read
        release.set()
        assert held.result(HANG_BOUND_S).status_code == 200
        assert client.get("/api/v1/projects/1/next-query", headers=bearer).status_code == 404  # admitted: no project
