"""Several labeled ranges per window in the labeling queue: the analyst brushes two ranges (one reaching into the
context), gives them types and a comment, saves them with Enter, and the export and the API show both; the x axis is
in the series' time with its gap drawn as a gap; the answer keys work after the Context select and the range list's
controls, but not while typing a comment.

An iforest project keeps the model fits to about a second, so these tests spend their time in the browser. Every
``wait_for_function`` takes a function, not an expression string (the app's Content-Security-Policy forbids eval).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app.datasets.reader import ImportOptions
from app.datasets.service import get_series, import_files
from app.projects.schemas import ProjectCreate
from tests.browser.conftest import VIEWPORT, login, open_first_round, shot

pytestmark = pytest.mark.browser
CURRENT = "#lq[data-query]:not([data-query=''])"
N_POINTS = 2_000
WINDOW = 50
GAP_AT = 1_000  # the stamps jump by 40 minutes between points 999 and 1000


def import_series(database, folder: Path) -> int:
    """2,000 one-minute points from 22:00 (the view crosses midnight), a 40-minute gap before point 1,000 and the
    largest spike right after it (so the first window shown has the gap in its context); returns the data set id."""
    rng = np.random.default_rng(5)
    t = np.arange(N_POINTS)
    cpu = np.sin(t / 25) + 0.1 * rng.standard_normal(t.size)
    cpu[GAP_AT + 5 : GAP_AT + 15] += 6.0
    cpu[400:410] += 3.0
    stamps = pd.Timestamp("2024-05-01 22:00") + pd.to_timedelta(t, unit="min")
    stamps = stamps.where(t < GAP_AT, stamps + pd.Timedelta(minutes=40))
    path = folder / "ranges.csv"
    pd.DataFrame({"timestamp": stamps.strftime("%Y-%m-%dT%H:%M:%S"), "cpu": cpu}).to_csv(path, index=False)
    with database.session_scope() as session:
        [item] = import_files(session, [path], "label-ranges", ImportOptions())
        return get_series(session, item.series_id).dataset_id


@pytest.fixture(scope="module")
def ranges_project(live_server, tmp_path_factory) -> dict:
    database = live_server.database
    dataset_id = import_series(database, tmp_path_factory.mktemp("label-ranges"))
    opened = open_first_round(
        database,
        ProjectCreate(
            name="label-ranges",
            dataset_id=dataset_id,
            detector="iforest",
            window=WINDOW,
            stride=10,
            strategy="top_k",
            round_size=4,
            budget=12,
            detector_params={"n_estimators": 30},
            anomaly_types=["spike", "level shift", "drift"],
        ),
    )
    return {"id": opened["id"], "queries": {qid: (start, end) for qid, start, end in opened["queries"]}}


def brush(page, a: int, b: int) -> None:  # type: ignore[no-untyped-def]
    """Drag across points ``a .. b`` on the first channel's row (the pointer on each end point)."""
    box = page.evaluate(
        """([a, b]) => {
        const el = document.getElementById('lq-chart'), L = el._fullLayout, r = el.getBoundingClientRect();
        const px = (i) => r.left + L.xaxis._offset + L.xaxis.l2p(window.__lq.xOf(i));
        return {x0: px(a), x1: px(b), y: r.top + L.yaxis._offset + L.yaxis._length / 2};
    }""",
        [a, b],
    )
    before = page.locator("#lq-range-list li").count()
    page.mouse.move(box["x0"], box["y"])
    page.mouse.down()
    page.mouse.move((box["x0"] + box["x1"]) / 2, box["y"], steps=6)
    page.mouse.move(box["x1"], box["y"], steps=6)
    page.mouse.up()
    page.wait_for_function("(n) => document.querySelectorAll('#lq-range-list li').length > n", arg=before)


def fetch_text(page, path: str) -> str:  # type: ignore[no-untyped-def]
    return page.evaluate("(p) => fetch(p).then((r) => r.text())", path)


def test_two_brushed_ranges_with_types_and_a_comment_reach_the_export_and_the_api(page, ranges_project) -> None:
    refused: list[str] = []
    console: list[str] = []
    page.on("response", lambda r: refused.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    pid = ranges_project["id"]
    login(page, "analyst")
    page.goto(f"/projects/{pid}/label")
    page.wait_for_selector(CURRENT)
    qid = int(page.get_attribute("#lq", "data-query"))
    start, end = ranges_project["queries"][qid]

    # the x axis is the series' time; the 40-minute gap is a break in the line, not a straight segment across
    chart = page.evaluate("""() => { const el = document.getElementById('lq-chart');
        return {type: el._fullLayout.xaxis.type, y: el.data[0].y, x: el.data[0].x}; }""")
    assert chart["type"] == "date"
    view = page.evaluate("window.__lq.view")
    if view["start"] < GAP_AT <= view["end"] - 1:
        k = chart["y"].index(None)
        assert chart["x"][k - 1] < chart["x"][k] < chart["x"][k + 1]
        assert chart["x"][k + 1] - chart["x"][k - 1] > 40 * 60 * 1000
    assert "2024-05-0" in page.inner_text("#lq-range")  # the stamps of the view, with their date

    # two ranges: the first from 10 points before the window (the context) into it, the second inside
    brush(page, start - 10, start + 4)
    assert "Marked points" in page.inner_text("#lq-selection")
    brush(page, start + 20, start + 29)
    rows = page.locator("#lq-range-list li")
    assert rows.count() == 2
    assert "reaches into the context" in rows.nth(0).inner_text()
    rows.nth(0).locator(".r-type").select_option("spike")
    rows.nth(1).locator(".r-type").select_option("level shift")
    rows.nth(0).locator(".r-comment").fill("ramp starts before the window, see cpu")
    page.keyboard.press("n")  # typing: a letter in a comment is text, not an answer
    assert rows.nth(0).locator(".r-comment").input_value().endswith("cpun")
    rows.nth(0).locator(".r-comment").press("Backspace")
    shot(page, "label-ranges-brushed")
    page.keyboard.press("Escape")  # leaves the comment field; the ranges stay
    assert page.locator("#lq-range-list li").count() == 2
    assert page.evaluate("document.activeElement.tagName") == "BODY"
    page.keyboard.press("Enter")
    page.wait_for_function("(q) => document.getElementById('lq').dataset.query !== String(q)", arg=qid)
    page.wait_for_function("() => document.getElementById('lq-sync').dataset.pending === '0'", timeout=15_000)

    stored = [
        (x["start"], x["end"], x["value"], x["label_type"], x["comment"])
        for x in page.evaluate(f"fetch('/api/v1/projects/{pid}/labels').then((r) => r.json())")
        if x["query_id"] == qid
    ]
    assert stored == [
        (start - 10, start + 5, "anomaly", "spike", "ramp starts before the window, see cpu"),
        (start + 5, start + 20, "normal", "", ""),
        (start + 20, start + 30, "anomaly", "level shift", ""),
        (start + 30, end, "normal", "", ""),
    ]
    exported = list(csv.DictReader(io.StringIO(fetch_text(page, f"/api/v1/projects/{pid}/labels?format=csv"))))
    assert [(int(r["start"]), r["label_type"], r["comment"]) for r in exported if r["value"] == "anomaly"] == [
        (start - 10, "spike", "ramp starts before the window, see cpu"),
        (start + 20, "level shift", ""),
    ]
    state = page.evaluate(f"fetch('/api/v1/projects/{pid}/labeling').then((r) => r.json())")
    answered = next(q for q in state["queries"] if q["id"] == qid)
    assert [a["label_type"] for a in answered["answer"]] == ["spike", None, "level shift", None]
    assert "anomaly ×2 (spike, level shift)" in page.get_attribute(f"#lq-queue li[data-query='{qid}']", "title")

    # a whole-window anomaly with a type, after using the Context select and a range list's controls
    second = int(page.get_attribute(CURRENT, "data-query"))
    page.select_option("#lq-context", "5")
    page.focus("#lq-context")
    page.select_option("#lq-type", "drift")
    page.keyboard.press("a")
    page.wait_for_function("(q) => document.getElementById('lq').dataset.query !== String(q)", arg=second)
    page.wait_for_function("() => document.getElementById('lq-sync').dataset.pending === '0'", timeout=15_000)
    labels = page.evaluate(f"fetch('/api/v1/projects/{pid}/labels').then((r) => r.json())")
    assert [(x["value"], x["label_type"]) for x in labels if x["query_id"] == second] == [("anomaly", "drift")]
    shot(page, "label-ranges-after-answers")
    assert refused == [], refused[:5]
    assert console == [], console[:5]


def test_ranges_can_be_edited_and_removed_before_saving_and_esc_clears_them(page, ranges_project) -> None:
    login(page, "analyst")
    page.goto(f"/projects/{ranges_project['id']}/label")
    page.wait_for_selector(CURRENT)
    qid = int(page.get_attribute("#lq", "data-query"))
    start, _ = ranges_project["queries"][qid]
    brush(page, start + 2, start + 10)
    brush(page, start + 6, start + 20)  # over the first: the newer wins, the first is trimmed
    rows = page.locator("#lq-range-list li")
    assert rows.count() == 2
    assert f"points {start + 2:,}–{start + 6:,}" in rows.nth(0).inner_text()
    rows.nth(1).locator(".r-value").select_option("unsure")
    assert rows.nth(1).locator(".r-type").is_disabled()  # only anomalies carry a type
    page.keyboard.press("ArrowLeft")  # keys still work with focus on the list's select
    rows.nth(0).locator(".r-remove").click()
    assert page.locator("#lq-range-list li").count() == 1
    page.keyboard.press("Escape")
    assert page.locator("#lq-range-list li").count() == 0
    assert page.locator("#lq-ranges").is_hidden()
    assert page.get_attribute("#lq", "data-query") == str(qid)  # nothing was answered

    # zoomed out to the start of the series, the view crosses midnight: the axis names both days
    before = page.evaluate("window.__lq.draws")
    page.select_option("#lq-context", "10")
    page.wait_for_function("(n) => window.__lq.draws > n", arg=before)
    for _ in range(6):
        before = page.evaluate("window.__lq.draws")
        page.keyboard.press("ArrowLeft")
        page.wait_for_function("(n) => window.__lq.draws > n", arg=before)
    assert page.evaluate("window.__lq.view")["start"] == 0  # 22:00; midnight is point 120
    ticks = page.evaluate(
        "() => [...document.querySelectorAll('#lq-chart .xtick text')].map((t) => t.textContent).join(' | ')"
    )
    assert "May 1" in ticks and "May 2" in ticks, ticks
    shot(page, "label-ranges-axis-crosses-midnight")


def test_labeling_chart_follows_a_dark_system_theme(browser, live_server, ranges_project) -> None:
    """With the system in dark mode the chart is drawn on the dark plot colour with light text, as the page around
    it, and a brushed range keeps its caption readable (test-artifacts/screenshots/label-dark.png); the project
    page's charts likewise (project-dark.png)."""
    context = browser.new_context(viewport=VIEWPORT, base_url=live_server.url, color_scheme="dark")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        login(page, "analyst")
        page.goto(f"/projects/{ranges_project['id']}/label")
        page.wait_for_selector(CURRENT)
        qid = int(page.get_attribute("#lq", "data-query"))
        start, _ = ranges_project["queries"][qid]
        brush(page, start + 5, start + 15)
        colours = page.evaluate(
            """() => { const L = document.getElementById('lq-chart').layout;
                return { body: getComputedStyle(document.body).backgroundColor, plot: L.plot_bgcolor,
                         paper: L.paper_bgcolor, font: L.font.color, grid: L.xaxis.gridcolor }; }"""
        )
        assert colours == {
            "body": "rgb(15, 19, 26)",
            "plot": "#171c26",
            "paper": "#171c26",
            "font": "#e6e9ef",
            "grid": "#2a3140",
        }, colours
        shot(page, "label-dark")
        assert not errors, errors
    finally:
        context.close()

    # the project page's charts (static/admin.js) follow the same theme
    context = browser.new_context(viewport=VIEWPORT, base_url=live_server.url, color_scheme="dark")
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        login(page, "admin")
        page.goto(f"/projects/{ranges_project['id']}")
        page.wait_for_selector("#per-round .main-svg")
        plot = page.evaluate(
            """() => { const L = document.getElementById('per-round').layout;
                return { plot: L.plot_bgcolor, paper: L.paper_bgcolor, font: L.font.color }; }"""
        )
        assert plot == {"plot": "#171c26", "paper": "#171c26", "font": "#e6e9ef"}, plot
        shot(page, "project-dark")
        assert not errors, errors
    finally:
        context.close()
