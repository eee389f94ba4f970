"""API tokens and users: list, create, expire and revoke tokens; disable and enable users, set and change passwords;
every refusal a REST client can meet (none, wrong, revoked, expired, wrong scope, disabled user) with a message that
says why; the admin pages; and the `anomaloop user` / `anomaloop token` commands against a real database."""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from app.accounts import service as accounts
from app.accounts.models import ApiToken, AuditEvent, User, UserSession
from app.cli import cli
from app.db import utcnow
from app.errors import Conflict
from app.web import create_app
from tests.app.conftest import PASSWORDS, sign_in


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _create(client: TestClient, name: str = "t", scopes: list[str] | None = None, **extra: object) -> dict:
    r = client.post("/api/v1/tokens", json={"name": name, "scopes": scopes or ["read"], **extra})
    assert r.status_code == 201, r.text
    return r.json()


def _user_id(client: TestClient, username: str) -> int:
    return next(u["id"] for u in client.get("/api/v1/users").json() if u["username"] == username)


def _audit(database, action: str) -> list[AuditEvent]:
    with database.session_scope() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


# -- tokens over the API ---------------------------------------------------------------------------------------


def test_tokens_are_listed_without_secrets_and_revoked_by_their_owner_or_an_admin(
    admin_client, analyst_client, anonymous_client, database
):
    grafana = _create(admin_client, "grafana", ["read", "write"], expires_in_days=30)
    assert grafana["token"].startswith("alp_") and grafana["scopes"] == ["read", "write"]
    expires = grafana["expires_at"]
    assert expires is not None and expires > (utcnow() + timedelta(days=29)).isoformat()
    notebook = _create(analyst_client, "notebook", ["read"])
    assert notebook["expires_at"] is None
    assert anonymous_client.get("/api/v1/me", headers=_bearer(notebook["token"])).json()["username"] == "analyst"

    listed = admin_client.get("/api/v1/tokens").json()
    assert [t["name"] for t in listed] == ["grafana", "notebook"]
    row = listed[1]
    assert row["username"] == "analyst" and row["scopes"] == ["read"] and row["status"] == "active"
    assert row["prefix"] == notebook["prefix"] and row["expires_at"] is None and row["revoked_at"] is None
    assert set(row) == {
        "id", "name", "prefix", "user_id", "username", "scopes", "created_at", "last_used_at", "expires_at",
        "revoked_at", "status",
    }  # fmt: skip
    text = json.dumps(listed)
    assert grafana["token"] not in text and notebook["token"] not in text
    deadline = time.monotonic() + 10  # last_used_at is written after the response, in the background
    while admin_client.get("/api/v1/tokens").json()[1]["last_used_at"] is None:
        assert time.monotonic() < deadline, "the token's use was never recorded"
        time.sleep(0.1)

    # others see their own tokens only, and cannot revoke the admin's (nor learn that it exists)
    assert [t["name"] for t in analyst_client.get("/api/v1/tokens").json()] == ["notebook"]
    assert analyst_client.get("/api/v1/tokens", params={"user_id": 1}).json()[0]["name"] == "notebook"
    r = analyst_client.delete(f"/api/v1/tokens/{grafana['id']}")
    assert r.status_code == 404 and r.json()["detail"] == f"no API token with id {grafana['id']}"
    assert anonymous_client.get("/api/v1/me", headers=_bearer(grafana["token"])).status_code == 200

    # the owner revokes its own; revoking again is no error; the token is refused at once
    assert analyst_client.delete(f"/api/v1/tokens/{notebook['id']}").status_code == 204
    assert analyst_client.delete(f"/api/v1/tokens/{notebook['id']}").status_code == 204
    r = anonymous_client.get("/api/v1/me", headers=_bearer(notebook["token"]))
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    # an admin revokes anybody's, with the token itself as credential too
    r = anonymous_client.delete(f"/api/v1/tokens/{grafana['id']}", headers=_bearer(grafana["token"]))
    assert r.status_code == 204
    states = {t["name"]: t for t in admin_client.get("/api/v1/tokens").json()}
    assert states["grafana"]["status"] == states["notebook"]["status"] == "revoked"
    assert states["grafana"]["revoked_at"] is not None
    assert admin_client.get("/api/v1/tokens", params={"user_id": row["user_id"]}).json()[0]["name"] == "notebook"
    assert admin_client.delete("/api/v1/tokens/999999").status_code == 404
    assert [e.object_id for e in _audit(database, "token.revoke")] == [notebook["id"], grafana["id"]]
    assert len(_audit(database, "token.create")) == 2


def test_token_creation_limits(admin_client, analyst_client, anonymous_client):
    for bad in ({"expires_in_days": 0}, {"expires_in_days": 4000}, {"scopes": ["root"]}, {"scopes": []}):
        r = admin_client.post("/api/v1/tokens", json={"name": "x", **bad})
        assert r.status_code == 422, (bad, r.text)
    analyst_id = _user_id(admin_client, "analyst")
    # an admin creates a token for another user; that user cannot hold the admin scope
    made = _create(admin_client, "for-analyst", ["read", "write"], user_id=analyst_id)
    assert made["user_id"] == analyst_id
    assert anonymous_client.get("/api/v1/me", headers=_bearer(made["token"])).json()["username"] == "analyst"
    r = admin_client.post("/api/v1/tokens", json={"name": "x", "scopes": ["admin"], "user_id": analyst_id})
    assert r.status_code == 403 and "only admins can hold admin-scoped tokens" in r.json()["detail"]
    r = analyst_client.post("/api/v1/tokens", json={"name": "x", "scopes": ["read"], "user_id": 1})
    assert r.status_code == 403 and "only admins create tokens for other users" in r.json()["detail"]
    # a token never mints a broader one, not even for another user
    write = _create(admin_client, "w", ["write"])
    r = anonymous_client.post(
        "/api/v1/tokens", json={"name": "x", "scopes": ["admin"], "user_id": 1}, headers=_bearer(write["token"])
    )
    assert r.status_code == 403
    assert admin_client.post(f"/api/v1/users/{analyst_id}/disable").status_code == 200
    r = admin_client.post("/api/v1/tokens", json={"name": "x", "scopes": ["read"], "user_id": analyst_id})
    assert r.status_code == 409 and "disabled" in r.json()["detail"]


def test_every_refusal_says_why(admin_client, analyst_client, anonymous_client, database):
    """401 for a missing, wrong, revoked or expired token or a disabled user; 403 naming the scope needed. Checked on
    a read (answered by the route) and on a write (answered before the body is read)."""

    def refused(token: str | None, status: int) -> list[str]:
        headers = _bearer(token) if token is not None else {}
        read = anonymous_client.get("/api/v1/me", headers=headers)
        write = anonymous_client.post("/api/v1/tokens", json={"name": "x"}, headers=headers)
        assert read.status_code == status, read.text
        assert write.status_code == status, write.text
        return [read.json()["detail"], write.json()["detail"]]

    assert refused(None, 401) == ["sign in first"] * 2
    assert refused("alp_made-up", 401) == ["invalid or revoked API token"] * 2
    r = anonymous_client.post("/api/v1/tokens", json={}, headers=_bearer("alp_made-up"))
    assert r.json()["code"] == "invalid_token" and r.headers["www-authenticate"] == 'Bearer error="invalid_token"'

    revoked = _create(admin_client, "revoked")
    admin_client.delete(f"/api/v1/tokens/{revoked['id']}")
    assert refused(revoked["token"], 401) == ["this API token was revoked; create a new one"] * 2
    assert anonymous_client.get("/api/v1/me", headers=_bearer(revoked["token"])).json()["code"] == "token_revoked"

    expired = _create(admin_client, "expired", expires_in_days=1)
    with database.session_scope() as s:
        s.get(ApiToken, expired["id"]).expires_at = utcnow() - timedelta(minutes=1)
    for detail in refused(expired["token"], 401):
        assert detail.startswith("this API token expired at ") and detail.endswith("UTC; create a new one")
    assert admin_client.get("/api/v1/tokens").json()[1]["status"] == "expired"

    # scopes: read < write < admin, and the message names what the token has and what the request needs
    read = _create(admin_client, "read", ["read"])["token"]
    r = anonymous_client.post("/api/v1/tokens", json={"name": "x"}, headers=_bearer(read))
    assert r.status_code == 403
    assert r.json()["detail"] == "this API token has scopes read (read-only); this request needs write"
    assert r.json()["code"] == "insufficient_scope"
    read_write = _create(admin_client, "rw", ["read", "write"])["token"]
    r = anonymous_client.get("/api/v1/users", headers=_bearer(read_write))
    assert (
        r.status_code == 403 and r.json()["detail"] == "this API token has scopes read, write; this request needs admin"
    )
    admin_only = _create(admin_client, "admin", ["admin"])["token"]
    assert anonymous_client.get("/api/v1/users", headers=_bearer(admin_only)).status_code == 200
    assert anonymous_client.post("/api/v1/tokens", json={"name": "x"}, headers=_bearer(admin_only)).status_code == 201

    # an analyst's token is refused admin routes as "admins only"; an admin-scoped token of an admin who was made an
    # analyst says why its admin scope no longer counts
    analyst_token = _create(analyst_client, "analyst", ["read", "write"])["token"]
    r = anonymous_client.get("/api/v1/users", headers=_bearer(analyst_token))
    assert r.status_code == 403 and r.json()["detail"] == "admins only"
    ops = admin_client.post("/api/v1/users", json={"username": "ops", "role": "admin", "password": "ops-password-1"})
    ops_token = _create(admin_client, "ops", ["read", "write", "admin"], user_id=ops.json()["id"])["token"]
    assert anonymous_client.get("/api/v1/users", headers=_bearer(ops_token)).status_code == 200
    with database.session_scope() as s:
        s.get(User, ops.json()["id"]).role = "analyst"
    r = anonymous_client.get("/api/v1/users", headers=_bearer(ops_token))
    assert r.status_code == 403 and "has the admin scope, but its user is an analyst" in r.json()["detail"]
    r = anonymous_client.post(
        "/api/v1/datasets/import", files={"file": ("a.csv", b"value\n1\n")}, headers=_bearer(ops_token)
    )
    assert r.status_code == 403 and "its user is an analyst" in r.json()["detail"]
    assert r.json()["code"] == "admins_only"
    assert anonymous_client.get("/api/v1/me", headers=_bearer(ops_token)).status_code == 200  # read and write stay

    # a disabled user's tokens are refused
    admin_client.post(f"/api/v1/users/{_user_id(admin_client, 'analyst')}/disable")
    assert refused(analyst_token, 401) == ["the user of this API token is disabled; an admin can enable it"] * 2


# -- users -----------------------------------------------------------------------------------------------------


def test_disabling_a_user_ends_its_sessions_and_revokes_its_tokens(app, admin_client, analyst_client, database):
    token = _create(analyst_client, "mine", ["read", "write"])
    second = _create(analyst_client, "second", ["read"])
    analyst_id = analyst_client.get("/api/v1/me").json()["id"]
    users = {u["username"]: u for u in admin_client.get("/api/v1/users").json()}
    assert (
        users["analyst"]["active"] and users["analyst"]["role"] == "analyst" and "password_hash" not in users["analyst"]
    )

    r = admin_client.post(f"/api/v1/users/{analyst_id}/disable")
    assert r.status_code == 200 and r.json()["active"] is False
    assert analyst_client.get("/api/v1/me").status_code == 401
    assert analyst_client.get("/", follow_redirects=False).headers["location"] == "/login?next=/"
    for t in (token, second):
        assert analyst_client.get("/api/v1/me", headers=_bearer(t["token"])).status_code == 401
    with database.session_scope() as s:
        assert s.scalars(select(UserSession).where(UserSession.user_id == analyst_id)).all() == []
        assert all(t.revoked_at is not None for t in s.scalars(select(ApiToken)))
    [event] = _audit(database, "user.disable")
    assert event.object_id == analyst_id and event.detail["tokens_revoked"] == [token["id"], second["id"]]
    assert event.detail["sessions_ended"] == 1
    with TestClient(app) as other:
        r = other.post("/login", data={"username": "analyst", "password": PASSWORDS["analyst"]})
        assert r.status_code == 401
    assert admin_client.post(f"/api/v1/users/{analyst_id}/disable").status_code == 200  # again: no change

    r = admin_client.post(f"/api/v1/users/{analyst_id}/enable")
    assert r.status_code == 200 and r.json()["active"] is True
    with TestClient(app) as other:
        sign_in(other, "analyst")
        assert other.get("/api/v1/me").json()["username"] == "analyst"
        r = other.get("/api/v1/me", headers=_bearer(token["token"]))
        assert r.status_code == 401 and "revoked" in r.json()["detail"]  # tokens stay revoked
    assert [e.object_id for e in _audit(database, "user.enable")] == [analyst_id]
    assert admin_client.post("/api/v1/users/99999/disable").status_code == 404
    assert analyst_client.post(f"/api/v1/users/{analyst_id}/enable").status_code == 401  # its session is gone


def test_the_last_active_admin_cannot_be_disabled(admin_client, analyst_client):
    admin_id = admin_client.get("/api/v1/me").json()["id"]
    r = admin_client.post(f"/api/v1/users/{admin_id}/disable")
    assert r.status_code == 409
    assert r.json()["detail"] == "'admin' is the last active admin; enable or create another admin first"
    assert admin_client.get("/api/v1/me").status_code == 200  # nothing happened: still signed in
    ops = admin_client.post("/api/v1/users", json={"username": "ops", "role": "admin", "password": "ops-password-1"})
    assert ops.status_code == 201 and ops.json()["active"] is True
    assert admin_client.post(f"/api/v1/users/{ops.json()['id']}/disable").status_code == 200
    assert admin_client.post(f"/api/v1/users/{admin_id}/disable").status_code == 409
    assert admin_client.post(f"/api/v1/users/{ops.json()['id']}/enable").status_code == 200
    analyst_id = analyst_client.get("/api/v1/me").json()["id"]
    assert analyst_client.post(f"/api/v1/users/{analyst_id}/disable").json()["detail"] == "admins only"
    assert admin_client.post(f"/api/v1/users/{admin_id}/disable").status_code == 200  # ops is left: allowed
    assert admin_client.get("/api/v1/me").status_code == 401


def test_two_admins_disabling_each_other_at_once_leave_one(database):
    with database.session_scope() as s:
        ids = [accounts.create_user(s, name, "admin", "admin-password-1").id for name in ("ann", "bob")]
    barrier, outcome = threading.Barrier(2), {}

    def disable(actor_id: int, target_id: int) -> None:
        barrier.wait()
        try:
            with database.session_scope() as s:
                accounts.disable_user(s, s.get(User, actor_id), target_id)
            outcome[target_id] = "disabled"
        except Conflict:
            outcome[target_id] = "refused"

    threads = [threading.Thread(target=disable, args=pair) for pair in ((ids[0], ids[1]), (ids[1], ids[0]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(outcome.values()) == ["disabled", "refused"]
    with database.session_scope() as s:
        assert [u.username for u in accounts.list_users(s) if u.is_active] == [
            "ann" if outcome[ids[1]] == "disabled" else "bob"
        ]


def test_passwords_set_by_an_admin_and_changed_by_their_owner(app, admin_client, analyst_client, database):
    analyst_id = analyst_client.get("/api/v1/me").json()["id"]
    r = admin_client.post(f"/api/v1/users/{analyst_id}/password", json={"password": "short"})
    assert r.status_code == 422
    assert (
        admin_client.post(f"/api/v1/users/{analyst_id}/password", json={"password": "new-analyst-pw-1"}).status_code
        == 204
    )
    assert analyst_client.get("/api/v1/me").status_code == 401  # the analyst's session ended
    with TestClient(app) as a, TestClient(app) as b:
        assert a.post("/login", data={"username": "analyst", "password": PASSWORDS["analyst"]}).status_code == 401
        for client in (a, b):
            r = client.post("/login", data={"username": "analyst", "password": "new-analyst-pw-1"})
            assert r.status_code == 200
            client.headers["X-CSRF-Token"] = re.search(r'name="csrf-token" content="([^"]+)"', r.text).group(1)
        # the owner changes it with the current one; a wrong current password is refused and counted
        r = a.post("/api/v1/me/password", json={"current_password": "wrong-one", "new_password": "newer-pw-12"})
        assert r.status_code == 403 and r.json()["detail"] == "the current password is wrong"
        assert [e.detail["username"] for e in _audit(database, "login.failure")][-1] == "analyst"
        r = a.post("/api/v1/me/password", json={"current_password": "new-analyst-pw-1", "new_password": "x"})
        assert r.status_code == 422
        r = a.post("/api/v1/me/password", json={"current_password": "new-analyst-pw-1", "new_password": "newer-pw-12"})
        assert r.status_code == 204
        assert a.get("/api/v1/me").status_code == 200  # this session stays
        assert b.get("/api/v1/me").status_code == 401  # the other one ended
    # an admin setting its own password stays signed in
    admin_id = admin_client.get("/api/v1/me").json()["id"]
    assert (
        admin_client.post(f"/api/v1/users/{admin_id}/password", json={"password": "admin-pw-new-1"}).status_code == 204
    )
    assert admin_client.get("/api/v1/me").status_code == 200
    assert [e.object_id for e in _audit(database, "user.password")] == [analyst_id, analyst_id, admin_id]
    with database.session_scope() as s:
        accounts.authenticate(s, "analyst", "newer-pw-12")


def test_users_are_created_by_admins_only_with_valid_names(admin_client, analyst_client):
    r = admin_client.post("/api/v1/users", json={"username": "carol", "role": "analyst", "password": "carol-pw-123"})
    assert r.status_code == 201 and r.json()["username"] == "carol"
    r = admin_client.post("/api/v1/users", json={"username": "carol", "role": "analyst", "password": "carol-pw-123"})
    assert r.status_code == 409 and r.json()["detail"] == "user 'carol' already exists"
    r = admin_client.post("/api/v1/users", json={"username": "c d", "role": "analyst", "password": "carol-pw-123"})
    assert r.status_code == 422
    r = admin_client.post("/api/v1/users", json={"username": "dave", "role": "root", "password": "carol-pw-123"})
    assert r.status_code == 422
    r = analyst_client.post("/api/v1/users", json={"username": "eve", "role": "admin", "password": "eve-pw-1234"})
    assert r.status_code == 403
    assert analyst_client.get("/api/v1/users").status_code == 403


# -- admin pages -----------------------------------------------------------------------------------------------


def test_admin_token_page_shows_a_new_secret_once_and_revokes_with_csrf(admin_client, analyst_client, anonymous_client):
    page = admin_client.get("/admin/tokens")
    assert page.status_code == 200 and 'action="/admin/tokens"' in page.text and "No tokens yet" in page.text
    assert 'href="/admin/tokens"' in page.text and 'href="/admin/users"' in page.text  # in the nav
    assert 'href="/admin/tokens"' not in analyst_client.get("/").text
    assert analyst_client.get("/admin/tokens").status_code == 403
    csrf = admin_client.headers.pop("X-CSRF-Token")  # a plain form: the token travels as a field
    form = {"name": "grafana", "user_id": "1", "scope": "write", "expires_in_days": "", "csrf_token": csrf}
    assert admin_client.post("/admin/tokens", data={**form, "csrf_token": "wrong"}).status_code == 403
    r = admin_client.post("/admin/tokens", data=form)
    assert r.status_code == 201 and r.headers["cache-control"] == "no-store"
    secret = re.search(r'id="token-secret">(alp_[^<]+)<', r.text).group(1)
    assert anonymous_client.get("/api/v1/me", headers=_bearer(secret)).json()["username"] == "admin"
    listing = admin_client.get("/admin/tokens").text
    assert secret not in listing and "grafana" in listing and "read, write" in listing
    r = admin_client.post("/admin/tokens", data={**form, "expires_in_days": "soon"})
    assert r.status_code == 400 and "whole number of days" in r.text
    token_id = re.search(r'data-token="(\d+)"', listing).group(1)
    r = admin_client.post(f"/admin/tokens/{token_id}/revoke", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/admin/tokens"
    assert 'data-status="revoked"' in admin_client.get("/admin/tokens").text
    assert anonymous_client.get("/api/v1/me", headers=_bearer(secret)).status_code == 401


def test_admin_users_page_creates_disables_enables_and_sets_passwords(app, admin_client):
    csrf = admin_client.headers.pop("X-CSRF-Token")
    page = admin_client.get("/admin/users")
    assert page.status_code == 200 and 'action="/admin/users"' in page.text
    new = {"username": "carol", "role": "analyst", "password": "carol-pw-123", "csrf_token": csrf}
    r = admin_client.post("/admin/users", data=new)
    assert r.status_code == 200 and "carol created." in r.text  # after the redirect
    r = admin_client.post("/admin/users", data=new)
    assert r.status_code == 409 and "user &#39;carol&#39; already exists" in r.text
    carol = int(re.search(r'data-user="(\d+)" data-active="true">\s*<td>carol', r.text).group(1))
    r = admin_client.post(f"/admin/users/{carol}/disable", data={"csrf_token": csrf})
    assert "carol disabled: its sessions ended and its tokens were revoked." in r.text
    assert f'data-user="{carol}" data-active="false"' in r.text
    r = admin_client.post(f"/admin/users/{carol}/enable", data={"csrf_token": csrf})
    assert f'data-user="{carol}" data-active="true"' in r.text
    r = admin_client.post(f"/admin/users/{carol}/password", data={"password": "short", "csrf_token": csrf})
    assert r.status_code == 400 and "at least 8 characters" in r.text
    r = admin_client.post(f"/admin/users/{carol}/password", data={"password": "carol-new-pw-1", "csrf_token": csrf})
    assert "carol has a new password" in r.text
    with TestClient(app) as c:
        assert c.post("/login", data={"username": "carol", "password": "carol-new-pw-1"}).status_code == 200
    r = admin_client.post("/admin/users/1/disable", data={"csrf_token": csrf})
    assert r.status_code == 409 and "last active admin" in r.text
    assert admin_client.post(f"/admin/users/{carol}/disable").status_code == 403  # no CSRF token


# -- the command line ------------------------------------------------------------------------------------------


@pytest.fixture
def cli_env(database, tmp_path, monkeypatch):
    monkeypatch.setenv("ANOMALOOP_DATABASE_URL", database.url)
    monkeypatch.setenv("ANOMALOOP_DATA_DIR", str(tmp_path))
    return database


def _run(*args: str, input: str | None = None):  # noqa: A002 - CliRunner's name
    return CliRunner().invoke(cli, list(args), input=input)


def test_cli_user_commands(cli_env):
    r = _run("user", "create", "ops", "--role", "admin", "--password-stdin", input="ops-password-1\n")
    assert r.exit_code == 0 and "created admin 'ops'" in r.stdout and "ops-password-1" not in r.output
    r = _run("user", "create", "bob", "--role", "analyst", input="bob-password-1\nbob-password-1\n")
    assert r.exit_code == 0, r.output
    assert "bob-password-1" not in r.output  # prompted without echo
    r = _run("user", "create", "eve", "--role", "analyst", input="eve-password-1\nsomething-else\n")
    assert r.exit_code == 1 and "the passwords differ" in r.output
    r = _run("user", "create", "bob", "--role", "analyst", "--password-stdin", input="bob-password-1\n")
    assert r.exit_code == 1 and "error: user 'bob' already exists" in r.output
    r = _run("create-user", "legacy", "--role", "analyst", "--password-stdin", input="legacy-pw-12\n")
    assert r.exit_code == 0, r.output
    lines = _run("user", "list").stdout.splitlines()
    assert [line.split()[1:4] for line in lines] == [
        ["ops", "admin", "active"], ["bob", "analyst", "active"], ["legacy", "analyst", "active"]
    ]  # fmt: skip

    r = _run("user", "disable", "ops")
    assert r.exit_code == 1 and "'ops' is the last active admin" in r.output
    assert _run("user", "disable", "bob").exit_code == 0
    assert "bob      " in _run("user", "list").stdout and "disabled" in _run("user", "list").stdout
    assert _run("user", "enable", "bob").exit_code == 0
    assert "disabled" not in _run("user", "list").stdout
    r = _run("user", "set-password", "bob", "--password-stdin", input="bob-password-2\n")
    assert r.exit_code == 0 and "bob-password-2" not in r.output
    with cli_env.session_scope() as s:
        accounts.authenticate(s, "bob", "bob-password-2")
    r = _run("user", "disable", "nobody")
    assert r.exit_code == 1 and "no user named 'nobody'" in r.output
    with cli_env.session_scope() as s:
        actions = [e.action for e in s.scalars(select(AuditEvent).order_by(AuditEvent.id))]
    assert actions == ["user.create"] * 3 + ["user.disable", "user.enable", "user.password"]


def test_cli_token_commands(cli_env, settings):
    with cli_env.session_scope() as s:
        accounts.create_user(s, "ops", "admin", "ops-password-1")
        accounts.create_user(s, "bob", "analyst", "bob-password-1")
    r = _run("token", "create", "--user", "ops", "--name", "ci", "--scopes", "read,write", "--expires-days", "7")
    assert r.exit_code == 0, r.output
    secret = r.stdout.strip()
    assert secret.startswith("alp_") and "\n" not in secret  # the secret alone on stdout
    assert "created token 1 'ci' for 'ops': read, write, expires" in r.stderr
    r = _run("token", "create", "--user", "bob", "--name", "x", "--scopes", "admin")
    assert r.exit_code == 1 and "only admins can hold admin-scoped tokens" in r.output
    r = _run("token", "create", "--user", "bob", "--name", "nb")
    assert r.exit_code == 0
    listing = _run("token", "list").stdout
    assert secret not in listing and secret[:12] in listing
    rows = listing.splitlines()[1:]
    assert [row.split()[1] for row in rows] == ["ci", "nb"] and all(row.endswith("active") for row in rows)
    assert [row.split()[1] for row in _run("token", "list", "--user", "bob").stdout.splitlines()[1:]] == ["nb"]

    with TestClient(create_app(settings, cli_env)) as api:
        assert api.get("/api/v1/me", headers=_bearer(secret)).json()["username"] == "ops"
        r = _run("token", "revoke", "1")
        assert r.exit_code == 0 and "revoked token 1 'ci'" in r.stdout
        assert api.get("/api/v1/me", headers=_bearer(secret)).status_code == 401
    assert _run("token", "list").stdout.splitlines()[1].endswith("revoked")
    r = _run("token", "revoke", "99")
    assert r.exit_code == 1 and "no API token with id 99" in r.output
    r = _run("token", "create", "--user", "ops", "--name", "x", "--scopes", "read,root")
    assert r.exit_code == 1 and "scopes must be a non-empty subset" in r.output
