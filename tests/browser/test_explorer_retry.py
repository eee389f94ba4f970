"""The series explorer after a failed view: one message with a Retry button and no retry loop; zoom keys keep
working after using a select on the page; every view request asks for whole points inside the series."""

from __future__ import annotations

import re
import time
from urllib.parse import parse_qs, urlparse

import pytest

from tests.browser.conftest import login, shot

pytestmark = pytest.mark.browser
VIEW = re.compile(r".*/api/v1/series/\d+/view\?.*")


def views_drawn(page) -> int:  # type: ignore[no-untyped-def]
    return int(page.evaluate("() => window.explorerStats.views.length"))


def test_a_failing_view_shows_one_message_and_retry_then_keys_zoom_with_whole_points(page, live_server) -> None:
    n = 5_000  # the gappy series of conftest.py
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url) if VIEW.match(r.url) else None)
    login(page, "analyst")
    page.goto(f"/series/{live_server.series['gappy']}")
    page.wait_for_function("() => window.explorerStats && window.explorerStats.views.length === 1")

    calls: list[str] = []

    def refuse(route) -> None:  # type: ignore[no-untyped-def]
        calls.append(route.request.url)
        route.fulfill(status=503, content_type="application/json", body='{"detail": "the server is busy"}')

    page.route(VIEW, refuse)
    page.click("#zoom-in")
    page.wait_for_selector("#ex-status.failed #ex-retry")
    time.sleep(3)
    assert len(calls) == 1, calls  # nothing retried by itself
    assert "the server is busy" in page.inner_text("#ex-status")
    shot(page, "explorer-view-failed-retry")

    page.unroute(VIEW)
    before = views_drawn(page)
    page.click("#ex-retry")
    page.wait_for_function("(k) => window.explorerStats.views.length > k", arg=before)
    assert "failed" not in (page.get_attribute("#ex-status", "class") or "")

    # keys after using a control: a channel checkbox, then the focused "Whole series" button
    page.click("#channels input[value='1']")
    page.wait_for_function("(k) => window.explorerStats.views.length > k", arg=before + 1)
    page.focus("#reset-zoom")
    for key in ["+", "+", "ArrowRight", "-", "ArrowLeft", "+"]:
        before = views_drawn(page)
        page.keyboard.press(key)
        page.wait_for_function("(k) => window.explorerStats.views.length > k", arg=before)
    for url in requested:
        query = parse_qs(urlparse(url).query)
        assert query["start"][0].isdigit() and query["end"][0].isdigit(), url
        assert 0 <= int(query["start"][0]) < int(query["end"][0]) <= n, url
