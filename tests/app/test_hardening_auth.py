"""Hostile callers: token scopes, the sign-in limiter and its CSRF, security headers, oversized and odd inputs."""

from __future__ import annotations

import gzip
import io
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.accounts.models import AuditEvent
from app.settings import Settings
from app.web import create_app
from tests.app.conftest import PASSWORDS
from tests.app.hardening_server import open_round


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _token(client: TestClient, scopes: list[str], headers: dict[str, str] | None = None) -> str:
    r = client.post("/api/v1/tokens", json={"name": "t", "scopes": scopes}, headers=headers or {})
    assert r.status_code == 201, r.text
    return r.json()["token"]


# -- scopes ----------------------------------------------------------------------------------------------------


def test_a_token_never_mints_a_broader_one_and_scopes_compose(admin_client, anonymous_client):
    read_write = _token(admin_client, ["read", "write"])
    r = anonymous_client.post("/api/v1/tokens", json={"name": "up", "scopes": ["admin"]}, headers=_bearer(read_write))
    assert r.status_code == 403 and "broader scopes" in r.json()["detail"]
    r = anonymous_client.post(
        "/api/v1/tokens", json={"name": "up", "scopes": ["read", "write", "admin"]}, headers=_bearer(read_write)
    )
    assert r.status_code == 403
    assert anonymous_client.get("/admin/audit", headers=_bearer(read_write)).status_code == 403
    # narrower or equal is fine
    assert (
        anonymous_client.post(
            "/api/v1/tokens", json={"name": "r", "scopes": ["read"]}, headers=_bearer(read_write)
        ).status_code
        == 201
    )
    # a read token writes nothing, not even a token
    read_only = _token(admin_client, ["read"])
    r = anonymous_client.post("/api/v1/tokens", json={"name": "r", "scopes": ["read"]}, headers=_bearer(read_only))
    assert r.status_code == 403 and "read-only" in r.json()["detail"]
    # admin alone includes write and read: it may do what a write token may (and mint a write token)
    admin_only = _token(admin_client, ["admin"])
    assert anonymous_client.get("/admin/audit", headers=_bearer(admin_only)).status_code == 200
    assert (
        anonymous_client.post(
            "/api/v1/tokens", json={"name": "w", "scopes": ["write"]}, headers=_bearer(admin_only)
        ).status_code
        == 201
    )
    assert anonymous_client.get("/api/v1/me", headers=_bearer(admin_only)).status_code == 200


def test_an_analyst_cannot_hold_an_admin_token(analyst_client):
    r = analyst_client.post("/api/v1/tokens", json={"name": "x", "scopes": ["admin"]})
    assert r.status_code == 403


# -- sign-in ---------------------------------------------------------------------------------------------------


def test_wrong_passwords_lock_the_account_with_retry_after_and_are_audited(app, database):
    with TestClient(app) as client:
        for _ in range(5):
            r = client.post("/login", data={"username": "analyst", "password": "wrong-password"})
            assert r.status_code == 401
        r = client.post("/login", data={"username": "analyst", "password": PASSWORDS["analyst"]})
        assert r.status_code == 429 and int(r.headers["Retry-After"]) > 60
        assert "too many wrong passwords" in r.text
        assert "anomaloop_session" not in client.cookies  # even the right password waits
        # another account from the same address is not locked by these five
        r = client.post("/login", data={"username": "admin", "password": PASSWORDS["admin"]}, follow_redirects=False)
        assert r.status_code == 303
    with database.session_scope() as session:
        actions = [e.action for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id))]
        assert actions.count("login.failure") == 5 and actions.count("login.success") == 1


def test_many_failures_from_one_address_are_refused(database, tmp_path):
    settings = Settings(database_url=database.url, data_dir=tmp_path, login_max_failures_per_address=3)
    with TestClient(create_app(settings, database)) as client:
        for i in range(3):
            assert client.post("/login", data={"username": f"nobody{i}", "password": "x" * 8}).status_code == 401
        r = client.post("/login", data={"username": "nobody9", "password": "x" * 8})
        assert r.status_code == 429 and "from your address" in r.text and r.headers["Retry-After"].isdigit()


def test_a_browser_sign_in_needs_the_form_token(app):
    with TestClient(app) as client:
        browser = {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"}
        # an auto-submitting form on another page: no token (and no nonce cookie) -> refused, nobody signed in
        r = client.post("/login", data={"username": "admin", "password": PASSWORDS["admin"]}, headers=browser)
        assert r.status_code == 403 and "anomaloop_session" not in client.cookies
        page = client.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        r = client.post(
            "/login",
            data={"username": "admin", "password": PASSWORDS["admin"], "csrf_token": "0" * 64},
            headers=browser,
        )
        assert r.status_code == 403
        r = client.post(
            "/login",
            data={"username": "admin", "password": PASSWORDS["admin"], "csrf_token": token},
            headers=browser,
            follow_redirects=False,
        )
        assert r.status_code == 303 and "anomaloop_session" in client.cookies


# -- headers ---------------------------------------------------------------------------------------------------


def test_security_headers_on_every_response(admin_client, anonymous_client, database, tmp_path):
    for client, path in [
        (anonymous_client, "/login"),
        (anonymous_client, "/healthz"),
        (admin_client, "/"),
        (anonymous_client, "/api/v1/me"),
        (anonymous_client, "/static/app.css"),
        (admin_client, "/api/v1/series/999"),
    ]:
        r = client.get(path)
        assert r.headers["x-content-type-options"] == "nosniff", path
        assert r.headers["referrer-policy"] == "same-origin"
        csp = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self';" in csp, path
        assert "strict-transport-security" not in r.headers  # development: plain HTTP
    production = Settings(database_url=database.url, data_dir=tmp_path, environment="production", secret_key="k" * 40)
    with TestClient(create_app(production, database)) as client:
        assert "max-age" in client.get("/login").headers["strict-transport-security"]


def test_production_refuses_a_short_secret_key():
    with pytest.raises(ValueError, match="at least 32 characters"):
        Settings(environment="production", secret_key="short-but-not-the-default")


# -- oversized and odd inputs ----------------------------------------------------------------------------------


def test_bodies_over_the_limit_are_refused_before_reading(database, tmp_path, admin_client):
    settings = Settings(database_url=database.url, data_dir=tmp_path, max_json_kb=4, max_upload_mb=1)
    with TestClient(create_app(settings, database)) as client:
        client.cookies, client.headers = admin_client.cookies, admin_client.headers
        r = client.post(
            "/api/v1/tokens",
            content=b'{"name": "' + b"x" * 10_000 + b'"}',
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 413 and "KB limit" in r.json()["detail"]

        def chunks():  # no Content-Length: counted as it arrives
            yield b'{"name": "'
            for _ in range(10):
                yield b"x" * 1000
            yield b'"}'

        r = client.post("/api/v1/tokens", content=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413
        big = {"file": ("big.csv", io.BytesIO(b"value\n" + b"1\n" * 700_000))}
        r = client.post("/api/v1/datasets/import", files=big, data={"dataset": "x"})
        assert r.status_code == 413 and "1 MB" in r.json()["detail"]
        # a gzip that expands past the upload limit is refused, not stored
        bomb = gzip.compress(b"value\n" + b"1\n" * 1_000_000)
        assert len(bomb) < 100_000
        r = client.post(
            "/api/v1/datasets/import", files={"file": ("bomb.csv.gz", io.BytesIO(bomb))}, data={"dataset": "x"}
        )
        assert r.status_code == 413 and "expands to more than" in r.json()["detail"]
        assert client.get("/api/v1/datasets").json() == []
        assert not any((tmp_path / "uploads").glob("upload-*/*"))


def test_odd_inputs_get_4xx_never_500(admin_client, database):
    project_id, queries = open_round(database, n_queries=1)
    huge = 2**64
    for path in [
        f"/api/v1/series/{huge}",
        f"/api/v1/projects/{huge}",
        f"/api/v1/queries/{huge}/undo",
        f"/api/v1/series/{2**40}/view",
        f"/api/v1/jobs/{huge}",
        f"/api/v1/projects/{huge}/next-query",
    ]:
        method = admin_client.post if path.endswith("/undo") else admin_client.get
        r = method(path)
        assert 400 <= r.status_code < 500, (path, r.status_code, r.text[:200])
    r = admin_client.post(
        f"/api/v1/queries/{queries[0]}/answer", json={"value": "anomaly", "anomaly_start": 0, "anomaly_end": huge}
    )
    assert 400 <= r.status_code < 500
    with database.session_scope() as session:
        from app.projects.service import get_project

        series_id = get_project(session, project_id).series[0].id
    r = admin_client.get(f"/api/v1/series/{series_id}/view", params={"start": 10**30})
    assert r.status_code == 422
    r = admin_client.get(f"/api/v1/series/{series_id}/view", params={"channels": ",".join(["0"] * 5000)})
    assert r.status_code == 422  # the parameter itself is bounded
    r = admin_client.get(f"/api/v1/series/{series_id}/view", params={"channels": ",".join(["0"] * 800)})
    assert r.status_code != 500 and (r.status_code != 200 or len(r.json()["channels"]) == 1)
    r = admin_client.post("/api/v1/projects", json={"name": "p" * 300, "dataset_id": 1})
    assert r.status_code == 422
    long_name = "n" * 300 + ".csv"
    r = admin_client.post("/api/v1/datasets/import", files={"file": (long_name, io.BytesIO(b"value\n1\n2\n"))})
    assert r.status_code == 422 and "at most 200" in r.json()["detail"]
    r = admin_client.post("/api/v1/datasets/import", files={"file": ("d.csv", io.BytesIO(b"v,v\n1,2\n"))})
    assert r.status_code == 400 and "more than once" in r.json()["detail"]
    r = admin_client.post("/api/v1/datasets/import", files={"file": ("f.csv", io.BytesIO(b"v\n1\n1e39\n"))})
    assert r.status_code == 400 and "out-of-range" in r.json()["detail"]
    r = admin_client.post(
        "/api/v1/datasets/import", files={"file": ("f.csv", io.BytesIO(b"v\n1\n-1e39\n"))}, data={"fill": "zero"}
    )
    assert r.status_code == 201  # a fill policy applies to them like to inf
