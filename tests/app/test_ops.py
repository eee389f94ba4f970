"""Operations as an operator and an API client meet them: /healthz, /metrics, the offline API docs, one error shape."""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import func, select

from app.db import Database
from app.errors import AppError
from app.jobs.models import Job
from app.observability import Metrics, observe_scoring_seconds, record_points_ingested
from app.serving import serve_processes
from app.settings import Settings
from app.versions.models import ModelVersion
from app.web import create_app
from tests.app.hardening_server import make_user, running_server
from tests.conftest import _wipe, service_unavailable

UNREACHABLE_BROKER = "redis://127.0.0.1:1/0"  # port 1: nothing listens there, the connection is refused at once


def _error_shape(body: dict, code: str | tuple[str, ...]) -> None:
    assert set(body) == {"detail", "code", "errors"}, body
    assert isinstance(body["detail"], str) and body["detail"], body
    assert re.fullmatch(r"[a-z][a-z_]*", body["code"]) and body["code"] in (
        (code,) if isinstance(code, str) else code
    ), body
    assert isinstance(body["errors"], list)


# -- /healthz -----------------------------------------------------------------------------------------------------


def test_healthz_reports_the_database_and_no_broker_when_none_is_configured(anonymous_client):
    r = anonymous_client.get("/healthz")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ok" and body["failed"] == [] and body["executor"] == "in-process"
    assert body["checks"]["database"]["ok"] is True and "broker" not in body["checks"]
    assert r.headers["cache-control"] == "no-store"


def test_healthz_degrades_with_503_naming_an_unreachable_broker(database, tmp_path):
    settings = Settings(database_url=database.url, data_dir=tmp_path, broker_url=UNREACHABLE_BROKER)
    client = TestClient(create_app(settings, database))  # no lifespan: no Celery executor needed to ask for health
    r = client.get("/healthz")
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["status"] == "degraded" and body["failed"] == ["broker"] and body["executor"] == "celery"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["broker"]["ok"] is False and "unreachable" in body["checks"]["broker"]["error"]
    assert "127.0.0.1:1" not in r.text  # the probe is public: no addresses or credentials in it


def test_healthz_degrades_with_503_naming_an_unreachable_database(tmp_path):
    settings = Settings(database_url="postgresql+psycopg://nobody:secret@127.0.0.1:1/none", data_dir=tmp_path)
    client = TestClient(create_app(settings))
    r = client.get("/healthz")
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["status"] == "degraded" and body["failed"] == ["database"]
    assert body["checks"]["database"]["ok"] is False and "secret" not in r.text


# -- /metrics -----------------------------------------------------------------------------------------------------


def _sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample of the Prometheus text ``text`` (labels in any order), or None."""
    for line in text.splitlines():
        found = re.match(r"^(\w+)(?:\{(.*)\})? (\S+)$", line)
        if found and found.group(1) == name and dict(re.findall(r'(\w+)="([^"]*)"', found.group(2) or "")) == labels:
            return float(found.group(3))
    return None


def test_metrics_count_requests_by_route_template_and_read_the_database(admin_client, analyst_client, database):
    with database.session_scope() as session:
        session.add_all([Job(kind="train", status="failed"), Job(kind="train", status="done")])
    assert admin_client.get("/api/v1/projects/987654").status_code == 404
    assert admin_client.get("/api/v1/projects/123456").status_code == 404
    assert admin_client.get("/api/v1/datasets").status_code == 200
    assert admin_client.get("/api/v1/no-such-route").status_code == 404
    r = admin_client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain"), r.text
    text = r.text
    route = "/api/v1/projects/{project_id}"
    assert _sample(text, "anomaloop_http_requests_total", method="GET", route=route, status="404") == 2.0
    assert _sample(text, "anomaloop_http_requests_total", method="GET", route="/api/v1/datasets", status="200") == 1.0
    assert _sample(text, "anomaloop_http_requests_total", method="GET", route="<unmatched>", status="404") == 1.0
    assert "/api/v1/projects/987654" not in text  # raw paths never become labels
    assert _sample(text, "anomaloop_http_request_duration_seconds_count", method="GET", route=route) == 2.0
    assert _sample(text, "anomaloop_database_up") == 1.0
    assert _sample(text, "anomaloop_jobs", state="failed") == 1.0 and _sample(text, "anomaloop_jobs", state="done")
    assert "# TYPE anomaloop_rounds gauge" in text and "# TYPE anomaloop_labels gauge" in text
    assert _sample(text, "anomaloop_points_ingested_total") == 0.0
    assert "process_resident_memory_bytes" in text
    # The guard's refusals count too, under their route's template.
    assert admin_client.post("/api/v1/projects", content=b"x" * 2_000_000).status_code == 413
    text = admin_client.get("/metrics").text
    assert _sample(text, "anomaloop_http_requests_total", method="POST", route="/api/v1/projects", status="413") == 1.0
    # Analysts may not read them; an anonymous scraper gets a JSON 401, not the sign-in page.
    r = analyst_client.get("/metrics")
    assert r.status_code == 403 and "admin" in r.json()["detail"]
    with TestClient(admin_client.app) as anonymous:
        r = anonymous.get("/metrics", follow_redirects=False)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        _error_shape(r.json(), "unauthorized")


def _worker_pids(pid: int) -> list[int]:
    """The processes uvicorn spawned to serve (not multiprocessing's resource tracker beside them)."""
    children = [int(c) for task in Path(f"/proc/{pid}/task").glob("*/children") for c in task.read_text().split()]
    return [c for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


def _listeners(port: int) -> int:
    """Sockets listening on ``port`` on IPv4 loopback, as the kernel lists them (``/proc/net/tcp``, state 0A)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
            count += 1
    return count


def _me_counts_by_process(folder: Path) -> dict[str, float]:
    """``GET /api/v1/me`` answers counted by each process, read from its own counter file alone."""
    counts = {}
    for file in folder.glob("counter_*.db"):
        with tempfile.TemporaryDirectory() as alone:
            shutil.copy(file, alone)
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=alone)
            found = registry.get_sample_value(
                "anomaloop_http_requests_total", {"method": "GET", "route": "/api/v1/me", "status": "200"}
            )
        counts[file.stem] = found or 0.0
    return counts


def test_several_web_processes_share_one_port_one_metrics_count_and_the_jobs(database, tmp_path):
    """``anomaloop serve`` with ANOMALOOP_WEB_WORKERS=2: two processes answer on one port; a scrape of either counts
    the requests of both; a training job runs once, in whichever process took it."""
    token = make_user(database, "admin", "admin", ["admin"])
    auth = {"Authorization": f"Bearer {token}"}
    with running_server(database, tmp_path, ANOMALOOP_WEB_WORKERS="2") as server:
        assert len(_worker_pids(server.process.pid)) == 2, server.log_text()
        # prometheus-client's multiprocess mode keeps each process's counters in a file of its own: ask on fresh
        # connections until both processes have answered some (the second may still be starting)
        sent, deadline = 0, time.monotonic() + 60
        while (
            time.monotonic() < deadline and sum(n > 0 for n in _me_counts_by_process(tmp_path / "metrics").values()) < 2
        ):
            with httpx.Client(base_url=server.url, headers=auth) as client:
                assert client.get("/api/v1/me").status_code == 200
            sent += 1
            time.sleep(0.01)  # a request is counted just after its answer
        per_process = _me_counts_by_process(tmp_path / "metrics")
        assert len(per_process) == 2 and all(per_process.values()), f"one process answered all {sent}: {per_process}"
        for _ in range(4):  # whichever process answers the scrape counts both
            with httpx.Client(base_url=server.url, headers=auth) as client:
                text = client.get("/metrics").text
            assert (
                _sample(text, "anomaloop_http_requests_total", method="GET", route="/api/v1/me", status="200") == sent
            )
            assert _sample(text, "anomaloop_database_up") == 1.0
        with httpx.Client(base_url=server.url, headers=auth, timeout=60) as client:
            rows = "\n".join(f"{i},{math.sin(i / 7):.4f}" for i in range(600))
            r = client.post(
                "/api/v1/datasets/import",
                files={"file": ("two.csv", f"timestamp,value\n{rows}\n".encode())},
                data={"dataset": "two"},
            )
            assert r.status_code == 201, r.text
            dataset_id = client.get("/api/v1/datasets").json()[0]["id"]
            spec = {"name": "two", "dataset_id": dataset_id, "detector": "iforest", "window": 25, "budget": 50}
            r = client.post("/api/v1/projects", json=spec)
            assert r.status_code == 201, r.text
            deadline = time.monotonic() + 120
            while not client.get(f"/api/v1/projects/{r.json()['id']}/versions").json():
                assert time.monotonic() < deadline, server.log_text()
                time.sleep(0.2)
        # a web process that dies is replaced, and the port answers meanwhile. Connections the kernel queued for the
        # dying process's socket are reset (the price of a socket each, app/serving.py): wait until its socket is
        # closed — not merely until it is a zombie: the zombie leader's other threads still hold its files for a
        # few milliseconds — and from then on every request is answered
        port = int(server.url.rsplit(":", 1)[1])
        assert _listeners(port) == 2
        killed = _worker_pids(server.process.pid)[0]
        os.kill(killed, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while _listeners(port) > 1:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        while True:
            assert httpx.get(server.url + "/healthz", timeout=5).status_code == 200
            pids = _worker_pids(server.process.pid)
            if len(pids) == 2 and killed not in pids and _listeners(port) == 2:
                break  # the replacement listens
            assert time.monotonic() < deadline, server.log_text()
            time.sleep(0.2)
        for _ in range(20):  # new connections land on both processes now
            assert httpx.get(server.url + "/healthz", timeout=5).status_code == 200
        log = server.log_text()
    assert server.process.returncode == 0, log  # SIGTERM: every process shut down in time, none was killed
    assert f"web process {killed} exited" in log, log
    assert "unhandled error" not in log, log
    with database.session_scope() as session:
        assert [(job.kind, job.status) for job in session.scalars(select(Job))] == [("fit", "done")]
        assert session.scalar(select(func.count()).select_from(ModelVersion)) == 1
    assert not (tmp_path / "metrics").exists()  # the shared counters go with the server


def test_several_web_processes_on_a_port_another_program_holds_is_a_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(AppError, match=f"cannot listen on 127.0.0.1:{port}"):
            serve_processes(2, "127.0.0.1", port, "warning")


def test_metrics_accept_an_admins_read_token_as_prometheus_sends_it(admin_client, app):
    r = admin_client.post("/api/v1/tokens", json={"name": "prometheus", "scopes": ["read"]})
    assert r.status_code == 201, r.text
    with TestClient(app) as scraper:
        headers = {"Authorization": f"Bearer {r.json()['token']}", "Accept": "application/openmetrics-text"}
        r = scraper.get("/metrics", headers=headers)
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/openmetrics-text")
        assert r.text.rstrip().endswith("# EOF")
        r = scraper.get("/metrics", headers={"Authorization": "Bearer alp_wrong"})
        assert r.status_code == 401
        _error_shape(r.json(), ("unauthorized", "invalid_token"))


def test_points_recorded_outside_a_request_go_nowhere_unless_metrics_are_given():
    metrics = Metrics()
    record_points_ingested(5)  # no request, no metrics given: nothing to count into (and no global registry)
    observe_scoring_seconds(0.5)
    record_points_ingested(7, metrics=metrics)  # a worker passes the metrics it owns
    observe_scoring_seconds(0.25, metrics=metrics)
    text = metrics.render(None)[0].decode()
    assert _sample(text, "anomaloop_points_ingested_total") == 7.0
    assert _sample(text, "anomaloop_scoring_duration_seconds_sum") == 0.25


def test_a_request_counts_points_into_its_own_apps_metrics(app, settings, database):
    @app.get("/test-ingest", include_in_schema=False)
    def ingest() -> dict[str, str]:  # a sync route: runs in the threadpool, as the points route does
        record_points_ingested(100)
        observe_scoring_seconds(0.02)
        return {"ok": "yes"}

    other = create_app(settings, database)
    with TestClient(app) as client:
        assert client.get("/test-ingest").status_code == 200
    metrics: Metrics = app.state.metrics
    text = metrics.render(None)[0].decode()
    assert _sample(text, "anomaloop_points_ingested_total") == 100.0
    assert _sample(text, "anomaloop_scoring_duration_seconds_count") == 1.0
    untouched = other.state.metrics.render(None)[0].decode()  # each app has its own registry
    assert _sample(untouched, "anomaloop_points_ingested_total") == 0.0


# -- API docs -----------------------------------------------------------------------------------------------------


def test_api_docs_are_served_from_our_own_files_with_a_strict_policy(anonymous_client):
    r = anonymous_client.get("/api/docs")
    assert r.status_code == 200
    html = r.text
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js?v=" in html
    assert "/static/vendor/swagger-ui/swagger-ui.css?v=" in html
    assert not re.search(r"""(src|href)=["']https?://""", html), "every asset of the page is ours"
    assert "cdn" not in html.lower() and "validatorUrl" in html
    csp = r.headers["content-security-policy"]
    assert "script-src 'self' 'sha256-" in csp and "unsafe-inline" not in csp.split("style-src")[0]
    assert "jsdelivr" not in csp and "frame-ancestors 'none'" in csp
    for asset in re.findall(r"""(?:src|href)="(/static/vendor/swagger-ui/[^"]+)""", html):
        got = anonymous_client.get(asset)
        assert got.status_code == 200 and len(got.content) > 10_000, asset
    assert anonymous_client.get("/api/redoc").status_code == 404


def test_openapi_has_a_bearer_scheme_and_the_error_shape(anonymous_client):
    doc = anonymous_client.get("/api/openapi.json").json()
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    error = {"$ref": "#/components/schemas/Error"}
    assert doc["components"]["schemas"]["Error"]["required"] == ["detail", "code", "errors"]
    for path, operations in doc["paths"].items():
        assert path.startswith("/api/"), path
        for method, operation in operations.items():
            assert operation["security"] == [{"bearerAuth": []}], (method, path)
            assert operation["responses"]["default"]["content"]["application/json"]["schema"] == error
            if "422" in operation["responses"]:
                assert operation["responses"]["422"]["content"]["application/json"]["schema"] == error
    assert "HTTPValidationError" not in doc["components"]["schemas"]


@pytest.fixture
def sqlite_database(sqlite_url: str) -> Iterator[Database]:
    """The docs page does not depend on the database: its browser test runs once, on SQLite."""
    db = Database(sqlite_url)
    try:
        yield db
    finally:
        _wipe(db)
        db.dispose()


@pytest.mark.browser
def test_api_docs_render_in_chromium_without_a_request_leaving_the_machine(sqlite_database, tmp_path):
    database = sqlite_database
    executable = shutil.which("chromium")
    if executable is None:
        service_unavailable("chromium", "no `chromium` on PATH (Debian: apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    from tests.app.hardening_server import running_server

    with running_server(database, tmp_path) as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page()
            requested: list[str] = []
            problems: list[str] = []
            page.on("request", lambda request: requested.append(request.url))
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
            page.goto(server.url + "/api/docs", wait_until="networkidle")
            page.wait_for_selector(".swagger-ui .info .title", timeout=15_000)
            assert "anomaloop" in page.inner_text(".swagger-ui .info .title")
            page.wait_for_selector(".opblock", timeout=15_000)
            assert page.locator("button.authorize").count() == 1  # the bearer scheme gives the Authorize button
            outside = [url for url in requested if not url.startswith(server.url) and not url.startswith("data:")]
            assert not outside, outside
            assert not problems, problems  # a CSP violation or a script error shows here
        finally:
            browser.close()


# -- the one error shape ------------------------------------------------------------------------------------------


def test_every_api_error_has_the_one_shape(admin_client, analyst_client, anonymous_client, database, tmp_path):
    r = anonymous_client.get("/api/v1/me")
    assert r.status_code == 401
    _error_shape(r.json(), "unauthorized")
    r = anonymous_client.post("/api/v1/projects", json={})
    assert r.status_code == 401
    _error_shape(r.json(), ("unauthorized", "invalid_token"))
    r = analyst_client.post("/api/v1/datasets/import", files={"file": ("a.csv", b"value\n1\n")})
    assert r.status_code == 403
    _error_shape(r.json(), ("forbidden", "insufficient_scope", "admins_only"))
    r = admin_client.get("/api/v1/projects/424242")
    assert r.status_code == 404
    _error_shape(r.json(), "not_found")
    r = admin_client.get("/api/v1/nothing-here")
    assert r.status_code == 404 and "/api/docs" in r.json()["detail"]
    _error_shape(r.json(), "not_found")
    r = admin_client.delete("/api/v1/datasets")
    assert r.status_code == 405 and "GET" in r.json()["detail"]
    _error_shape(r.json(), "method_not_allowed")
    r = admin_client.post("/api/v1/projects", json={"name": 5})
    assert r.status_code == 422
    body = r.json()
    _error_shape(body, "invalid_input")
    assert body["errors"] and all({"field", "message", "type"} <= set(e) for e in body["errors"])
    assert any(e["field"].startswith("body.") for e in body["errors"]) and body["detail"].startswith("invalid input")
    small = Settings(database_url=database.url, data_dir=tmp_path, max_json_kb=1)
    with TestClient(create_app(small, database)) as client:
        from tests.app.conftest import sign_in

        sign_in(client, "admin")
        r = client.post("/api/v1/projects", json={"name": "x" * 5_000})
        assert r.status_code == 413
        _error_shape(r.json(), "too_large")


def test_pages_keep_their_html_errors_and_the_sign_in_redirect(admin_client, anonymous_client):
    r = anonymous_client.get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    r = admin_client.get("/no-such-page", headers={"Accept": "text/html"})
    assert r.status_code == 404 and "<html" in r.text.lower() and "no such page" in r.text
