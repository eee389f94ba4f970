"""The labeling queue's chart never asks for an invalid view: zoom, pan and every Context setting request whole-point
ranges inside the series; a failing view shows one message with a Retry button (no retry loop); the answer keys work
after using the Context select (not in a text field); the "retraining" message gives way to the new version.

An iforest project keeps the model fits to about a second, so these tests spend their time in the browser. Every
``wait_for_function`` takes a function, not an expression string: the app's Content-Security-Policy (script-src
'self') forbids the eval that Playwright needs for a string.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import pandas as pd
import pytest

from app.datasets.reader import ImportOptions
from app.datasets.service import get_series, import_files
from app.projects import service as projects
from app.projects.schemas import ProjectCreate
from tests.browser.conftest import login, open_first_round, shot

pytestmark = pytest.mark.browser
CURRENT = "#lq[data-query]:not([data-query=''])"
N_POINTS = 3_000
WINDOW = 50
CONTEXTS = ["0.5", "1", "2", "5", "10"]  # the Context select's options, in windows


def import_series(database, folder: Path, name: str) -> tuple[int, int]:
    """3,000 one-minute points, channels ``cpu`` and ``mem``, spikes near both ends and in the middle (so the top
    windows sit where the context must be clamped); returns (data set id, series id)."""
    rng = np.random.default_rng(3)
    t = np.arange(N_POINTS)
    cpu = np.sin(t / 25) + 0.1 * rng.standard_normal(t.size)
    mem = np.cos(t / 40) + 0.1 * rng.standard_normal(t.size)
    for at in (20, 1_500, N_POINTS - 40):
        cpu[at : at + 12] += 4.0
    path = folder / f"{name}.csv"
    pd.DataFrame(
        {
            "timestamp": pd.date_range("2024-05-01", periods=t.size, freq="min").strftime("%Y-%m-%dT%H:%M:%S"),
            "cpu": cpu,
            "mem": mem,
        }
    ).to_csv(path, index=False)
    with database.session_scope() as session:
        [item] = import_files(session, [path], name, ImportOptions())
        return get_series(session, item.series_id).dataset_id, item.series_id


def open_project(database, folder: Path, name: str, round_size: int) -> dict:
    """An iforest project on a fresh series with its first model trained and round 1 open."""
    dataset_id, series_id = import_series(database, folder, name)
    opened = open_first_round(
        database,
        ProjectCreate(
            name=name,
            dataset_id=dataset_id,
            detector="iforest",
            window=WINDOW,
            stride=10,
            strategy="top_k",
            round_size=round_size,
            budget=round_size * 3,
            auto_next=False,
            detector_params={"n_estimators": 30},
            review_grace_minutes=0,  # the last answer closes the round (tests/browser/test_annotators.py reviews)
        ),
    )
    return {**opened, "series_id": series_id}


@pytest.fixture(scope="module")
def queue_project(live_server, tmp_path_factory) -> dict:
    return open_project(live_server.database, tmp_path_factory.mktemp("labeling-view"), "view-queue", 8)


def draws(page) -> int:  # type: ignore[no-untyped-def]
    return int(page.evaluate("window.__lq.draws"))


def press_and_wait_draw(page, key: str, seen: dict[str, list[str]] | None = None) -> None:  # type: ignore[no-untyped-def]
    """Press a key that redraws the chart (zoom, pan, Esc) and wait for the chart drawn."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    before = draws(page)
    page.keyboard.press(key)
    try:
        page.wait_for_function("(n) => window.__lq.draws > n", arg=before, timeout=10_000)
    except PlaywrightTimeout:
        refused = (seen or {}).get("refused", [])[:3]
        pytest.fail(f"no chart drawn within 10 s after {key!r}; requests refused: {refused}")


def wait_query_other_than(page, query: str) -> None:  # type: ignore[no-untyped-def]
    """Wait until another query's chart is drawn."""
    page.wait_for_function(
        "(q) => { const now = document.getElementById('lq').dataset.query; return now !== '' && now !== q; }", arg=query
    )


def watch(page) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    """Every response answered 4xx/5xx, every console error, every view request URL from here on."""
    seen: dict[str, list[str]] = {"refused": [], "console": [], "views": []}
    page.on("response", lambda r: seen["refused"].append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.on("console", lambda m: seen["console"].append(m.text) if m.type == "error" else None)
    view = re.compile(r"/api/v1/series/\d+/view\?")
    page.on("request", lambda r: seen["views"].append(r.url) if view.search(r.url) else None)
    return seen


def test_zoom_and_pan_at_every_context_never_ask_for_an_invalid_view(page, queue_project) -> None:
    seen = watch(page)
    login(page, "analyst")
    page.goto(f"/projects/{queue_project['id']}/label")
    page.wait_for_selector(CURRENT)
    for context in CONTEXTS:
        before = draws(page)
        page.select_option("#lq-context", context)
        page.wait_for_function("(n) => window.__lq.draws > n", arg=before)
        for _ in range(10):
            press_and_wait_draw(page, "+", seen)
            shown = page.evaluate("window.__lq.view")
            # zooming keeps the queried window on screen (pans may move it away; zooms never do)
            assert shown["start"] <= shown["query"][0] and shown["query"][1] <= shown["end"], (context, shown)
        assert shown["end"] - shown["start"] <= WINDOW + 4  # zoomed in as far as it goes
        shot(page, f"label-zoomed-in-context-{context}")
        for _ in range(10):
            press_and_wait_draw(page, "-", seen)
            shown = page.evaluate("window.__lq.view")
            assert shown["start"] <= shown["query"][0] and shown["query"][1] <= shown["end"], (context, shown)
        for key in ["ArrowLeft"] * 4 + ["ArrowRight"] * 8:  # past both ends of the series on the edge windows
            press_and_wait_draw(page, key, seen)
        # the next window (another place in the series) at this context
        q = page.get_attribute("#lq", "data-query")
        page.keyboard.press("s")
        wait_query_other_than(page, q)
    shot(page, "label-zoom-pan-every-context")
    assert seen["refused"] == [], seen["refused"][:5]
    assert seen["console"] == [], seen["console"][:5]
    assert len(seen["views"]) > 20
    for url in seen["views"]:
        query = parse_qs(urlparse(url).query)
        start, end = query["start"][0], query["end"][0]
        assert start.isdigit() and end.isdigit(), url  # whole points, never 10200.666…
        assert 0 <= int(start) < int(end) <= N_POINTS, url
    assert page.evaluate("window.__lq.viewErrors") == 0


def test_a_failing_view_shows_one_message_and_a_retry_button_not_a_loop(page, queue_project) -> None:
    login(page, "analyst")
    page.goto(f"/projects/{queue_project['id']}/label")
    page.wait_for_selector(CURRENT)
    calls: list[str] = []

    def refuse(route) -> None:  # type: ignore[no-untyped-def]
        calls.append(route.request.url)
        route.fulfill(status=503, content_type="application/json", body='{"detail": "the server is busy"}')

    page.route(re.compile(r".*/api/v1/series/\d+/view\?.*"), refuse)
    page.keyboard.press("+")  # a view not in the page's cache
    page.wait_for_selector("#lq-chart .chart-error #lq-retry")
    time.sleep(4)  # the old page retried every 2 s, forever
    assert len(calls) == 1, calls
    assert page.locator("#lq-chart [role=alert]").count() == 1
    assert "the server is busy" in page.inner_text("#lq-chart")
    shot(page, "label-view-failed-retry")

    page.unroute(re.compile(r".*/api/v1/series/\d+/view\?.*"))
    before = draws(page)
    page.click("#lq-retry")
    page.wait_for_function("(n) => window.__lq.draws > n", arg=before)
    assert page.locator("#lq-chart .chart-error").count() == 0
    assert page.locator("#lq-chart .main-svg").count() > 0
    assert len(calls) == 1


def test_answer_keys_work_after_using_the_context_select_but_not_in_a_text_field(page, queue_project) -> None:
    login(page, "analyst")
    page.goto(f"/projects/{queue_project['id']}/label")
    first = int(page.get_attribute(CURRENT, "data-query"))

    page.select_option("#lq-context", "5")
    page.focus("#lq-context")
    page.keyboard.press("ArrowDown")  # the select's own key: 5 -> 10 windows
    assert page.evaluate("document.activeElement.id") == "lq-context"
    page.wait_for_function("() => document.getElementById('lq-context').value === '10'")

    press_and_wait_draw(page, "+")  # zoom while the select has focus
    assert page.evaluate("document.getElementById('lq-context').value") == "10"  # + did not type-ahead
    page.keyboard.press("n")  # answer while the select has focus
    wait_query_other_than(page, str(first))
    page.wait_for_function("() => document.getElementById('lq-sync').dataset.pending === '0'")
    state = page.evaluate(f"fetch('/api/v1/projects/{queue_project['id']}/labeling').then(r => r.json())")
    answered = {q["id"]: [a["value"] for a in q["answer"]] for q in state["queries"]}
    assert answered[first] == ["normal"]
    shot(page, "label-keys-after-context-select")

    # in a text field the same key is text, not an answer
    second = page.get_attribute("#lq", "data-query")
    page.evaluate("""() => { const i = document.createElement('input'); i.type = 'text'; i.id = 'probe';
        document.querySelector('.lq-tools').appendChild(i); }""")
    page.focus("#probe")
    page.keyboard.type("nau")
    time.sleep(0.5)
    assert page.input_value("#probe") == "nau"
    assert page.get_attribute("#lq", "data-query") == second
    assert page.evaluate("JSON.parse(localStorage.getItem('anomaloop.outbox.v1') || '[]').length") == 0
    # and back on the page (focus on the select again) `z` undoes the answer
    page.focus("#lq-context")
    page.keyboard.press("z")
    page.wait_for_function("(q) => document.getElementById('lq').dataset.query === q", arg=str(first))


def test_the_round_complete_message_follows_the_retraining_to_the_new_version(
    page, live_server, tmp_path_factory
) -> None:
    project = open_project(live_server.database, tmp_path_factory.mktemp("labeling-retrain"), "view-retrain", 2)
    login(page, "analyst")
    page.goto(f"/projects/{project['id']}/label")
    for _ in range(2):
        q = page.get_attribute(CURRENT, "data-query")
        page.keyboard.press("n")
        page.wait_for_function("(q) => document.getElementById('lq').dataset.query !== q", arg=q)
    page.wait_for_selector("#lq-complete")
    first_title = page.inner_text("#lq-complete")
    assert first_title.startswith("Round 1 complete")
    # the page polls the retrain job and the serving version; the iforest retrain takes about a second
    page.wait_for_function(
        "() => document.getElementById('lq-complete').textContent.includes('now serves')", timeout=45_000
    )
    title = page.inner_text("#lq-complete")
    with live_server.database.session_scope() as session:
        serving = projects.get_project(session, project["id"]).serving_version_id
    assert title == f"Round 1 complete — model v{serving} now serves", title
    assert page.get_attribute("#lq-complete", "data-retrain") == "done"
    shot(page, "label-round-complete-new-version")
