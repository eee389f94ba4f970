"""Sign-in through the real form, and roles enforced by the server (not by hidden buttons)."""

from __future__ import annotations

import pytest

from tests.browser.conftest import login, shot, visit

pytestmark = pytest.mark.browser


def test_sign_in_page_and_wrong_password(page) -> None:
    visit(page, "/", "login-redirect")
    assert "/login" in page.url, "an anonymous visitor is sent to the sign-in page"
    page.fill("input[name=username]", "analyst")
    page.fill("input[name=password]", "not-the-password")
    page.get_by_role("button", name="Sign in").click()
    alert = page.locator("[role=alert]")
    alert.wait_for()
    shot(page, "login-wrong-password")
    assert alert.inner_text().strip(), "a wrong password says why on the page"
    assert page.input_value("input[name=username]") == "analyst", "the user name is kept"


def test_analyst_signs_in_and_is_refused_admin_pages_and_actions(page, live_server) -> None:
    login(page, "analyst")
    visit(page, "/", "home-analyst")
    assert page.locator(".who .badge").inner_text() == "analyst"
    assert page.locator("a[href='/admin/import']").count() == 0, "analysts get no Import link"
    assert page.get_by_role("link", name="walk3m").count() == 1, "analysts see the data"

    response = visit(page, "/admin/import", "admin-import-as-analyst")
    assert response.status == 403
    assert page.locator("h1").inner_text() == "Not allowed"
    assert page.locator("input[type=file]").count() == 0

    # The server refuses the action itself, even with a valid session and CSRF token.
    page.goto("/")
    status = page.evaluate(
        """async () => {
            const form = new FormData();
            form.append("file", new Blob(["value\\n1\\n2\\n"], {type: "text/csv"}), "x.csv");
            const token = document.querySelector("meta[name=csrf-token]").content;
            const res = await fetch("/api/v1/datasets/import", {method: "POST", body: form,
                                                             headers: {"X-CSRF-Token": token}});
            return res.status;
        }"""
    )
    assert status == 403


def test_admin_signs_in_imports_through_the_form_and_lands_on_the_explorer(page, live_server, tmp_path) -> None:
    login(page, "admin")
    visit(page, "/", "home-admin")
    assert page.locator(".who .badge").inner_text() == "admin"
    assert page.get_by_role("row", name="walk3m").inner_text().find("3,000,000") >= 0
    visit(page, "/admin/import", "admin-import")
    csv = tmp_path / "upload_small.csv"
    csv.write_text(
        "timestamp,value,label\n"
        + "".join(
            f"2024-01-01 00:{i // 60:02d}:{i % 60:02d},{(i % 17) * 0.5},{int(40 <= i < 45)}\n" for i in range(300)
        )
    )
    page.set_input_files("input[type=file]", str(csv))
    page.fill("input[name=dataset]", "uploads")
    with page.expect_navigation():
        page.get_by_role("button", name="Import", exact=True).click()
    assert "/series/" in page.url, f"an import lands on its explorer, not {page.url}"
    page.wait_for_function("() => window.explorerStats && window.explorerStats.views.length >= 1")
    shot(page, "explorer-after-upload")
    assert "300" in page.locator(".facts").inner_text()


def test_session_cookie_is_http_only_and_sign_out_works(page) -> None:
    login(page, "analyst")
    cookies = page.context.cookies()
    session = [c for c in cookies if c["name"] == "anomaloop_session"]
    assert session and session[0]["httpOnly"], "the session cookie is not readable by scripts"
    with page.expect_navigation():
        page.click("text=Sign out")
    assert "/login" in page.url
    assert page.goto("/").url.endswith("/login?next=/"), "after sign-out the session no longer works"
