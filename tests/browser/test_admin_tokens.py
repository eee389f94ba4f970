"""An admin manages API tokens in a real browser: creates one on /admin/tokens, sees its secret once, revokes it,
and the token is then refused by the API."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from tests.browser.conftest import login, shot, visit

pytestmark = pytest.mark.browser


def api_me(base: str, token: str) -> tuple[int, dict]:
    """``GET /api/v1/me`` with a bearer token, as a REST client would: (status, JSON body)."""
    request = urllib.request.Request(base + "/api/v1/me", headers={"Authorization": f"Bearer {token}"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - our own server
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_admin_creates_a_token_sees_it_once_and_revokes_it(page, live_server) -> None:
    login(page, "admin")
    visit(page, "/", "home-admin-nav")
    page.click("nav >> text=Tokens")
    page.wait_for_url("**/admin/tokens")
    page.fill("#create-token input[name=name]", "browser-ci")
    page.select_option("#create-token select[name=scope]", "read")
    page.fill("#create-token input[name=expires_in_days]", "30")
    with page.expect_navigation():
        page.click("#create-token button[type=submit]")
    secret = page.inner_text("#token-secret").strip()
    shot(page, "admin-token-created")
    assert secret.startswith("alp_")
    assert "only time it is shown" in page.inner_text("#new-token")
    assert api_me(live_server.url, secret) == (200, {"id": 1, "username": "admin", "role": "admin"})

    # shown once: the list afterwards has the token, never its secret
    visit(page, "/admin/tokens", "admin-tokens-list")
    assert page.locator("#token-secret").count() == 0 and secret not in page.content()
    row = page.locator("#tokens tbody tr", has_text="browser-ci")
    assert row.get_attribute("data-status") == "active"
    assert secret[:12] in row.inner_text() and "read" in row.inner_text()

    with page.expect_navigation():
        row.get_by_role("button", name="Revoke").click()
    row = page.locator("#tokens tbody tr", has_text="browser-ci")
    assert row.get_attribute("data-status") == "revoked" and row.get_by_role("button", name="Revoke").count() == 0
    shot(page, "admin-token-revoked")
    status, body = api_me(live_server.url, secret)
    assert status == 401 and body["detail"] == "this API token was revoked; create a new one"

    # the users page lists both accounts, each with its actions
    visit(page, "/admin/users", "admin-users")
    assert page.locator("#users tbody tr").count() >= 2
    assert page.locator("#users tr", has_text="analyst").get_by_role("button", name="Disable").count() == 1
