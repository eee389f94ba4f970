"""The explorer as a labeling place, in a real browser: brush a range with a type and a comment, see it in the events
list, jump to it, edit it, pick it on the chart, delete it (append-only underneath); and the dark theme."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.accounts import repository as accounts_repo
from app.datasets import repository as datasets_repo
from app.jobs.executor import InProcessExecutor
from app.projects import service as projects
from app.projects.models import Label
from app.projects.schemas import ProjectCreate
from app.settings import Settings
from tests.app.loop_helpers import wait_version
from tests.browser.conftest import VIEWPORT, login, shot
from tests.browser.test_labeling import import_small_series

pytestmark = pytest.mark.browser
N_POINTS = 1_200


@pytest.fixture(scope="module")
def typed_project(live_server, tmp_path_factory) -> dict:
    """A project with anomaly types spike and level shift over a 1,200-point, two-channel, timestamped series, with
    its initial model fitted (so the events list has the model's segments)."""
    db = live_server.database
    folder = tmp_path_factory.mktemp("explorer-labels")
    dataset_id = import_small_series(db, folder, "servers-events")
    with db.session_scope() as s:
        admin = accounts_repo.get_user_by_name(s, "admin")
        project, job_id = projects.create_project(
            s,
            admin,
            ProjectCreate(
                name="events",
                dataset_id=dataset_id,
                detector="iforest",
                window=25,
                anomaly_types=["spike", "level shift"],
            ),
        )
        project_id = project.id
        series_id = datasets_repo.list_series(s, dataset_id)[0].id
    executor = InProcessExecutor(Settings(database_url=db.url, data_dir=folder, device="cpu"), db, sweep=False)
    executor.enqueue(job_id)
    wait_version(db, project_id, 0, 120)
    executor.shutdown()
    return {"project_id": project_id, "series_id": series_id}


def wait_drawn(page, condition: str = "true") -> None:  # type: ignore[no-untyped-def]
    page.wait_for_function(
        "() => { const v = window.explorerStats && window.explorerStats.views.at(-1); return !!v && ("
        + condition
        + "); }",
        timeout=20_000,
    )


def chart_x(page, point: float) -> float:  # type: ignore[no-untyped-def]
    """The page x (pixels) where point ``point`` is drawn on the chart."""
    return page.evaluate(
        """(i) => { const el = document.getElementById('chart'), full = el._fullLayout, x = window.explorer.toX(i);
                    return el.getBoundingClientRect().left + full._size.l + full.xaxis.l2p(x); }""",
        point,
    )


def labels_in_force(page, ids: dict) -> list[dict]:  # type: ignore[no-untyped-def]
    response = page.request.get(f"/api/v1/labels?project_id={ids['project_id']}&series_id={ids['series_id']}")
    assert response.ok, response.text()
    return response.json()


def test_brush_type_comment_events_jump_edit_pick_delete(page, live_server, typed_project) -> None:
    ids = typed_project
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url))
    login(page, "analyst")
    page.goto(f"/series/{ids['series_id']}")
    wait_drawn(page)
    page.locator("#ev-list li.segment").first.wait_for()
    assert any(f"/api/v1/projects/{ids['project_id']}/events?" in url for url in asked), "the model's segments"
    page.wait_for_function("() => document.querySelector('#ev-type').options.length === 4")  # any, none, 2 types
    assert page.locator("#ov-type option").all_text_contents() == ["(no type)", "spike", "level shift"]

    # Brush: "Drag labels", then a drag over about points 480-600 of the whole 1,200.
    page.click("#mode-label")
    box = page.locator("#chart .nsewdrag").first.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(chart_x(page, 480), y)
    page.mouse.down()
    page.mouse.move(chart_x(page, 540), y, steps=4)
    page.mouse.move(chart_x(page, 600), y, steps=4)
    page.mouse.up()
    start, end = int(page.input_value("#ov-start")), int(page.input_value("#ov-end"))
    assert abs(start - 480) <= 3 and abs(end - 601) <= 3, (start, end)
    assert page.evaluate("() => window.explorerStats.views.at(-1).end - window.explorerStats.views.at(-1).start") == (
        N_POINTS
    ), "in label mode a drag marks a range: it does not zoom"
    page.select_option("#ov-type", "spike")
    page.fill("#ov-comment", "fan failure, ticket 12")
    page.click("#ov-new-actions button[data-value=anomaly]")
    page.wait_for_function("() => document.querySelector('#ov-status').textContent.startsWith('saved')")
    [label] = labels_in_force(page, ids)
    assert (label["start"], label["end"], label["value"], label["label_type"], label["comment"], label["author"]) == (
        start,
        end,
        "anomaly",
        "spike",
        "fan failure, ticket 12",
        "analyst",
    )
    # It is in the events list, with its type, analyst and comment; the search finds it.
    item = page.locator("#ev-list li.label")
    item.wait_for()
    assert item.count() == 1
    text = item.text_content()
    assert "anomaly · spike" in text and "analyst" in text and "fan failure, ticket 12" in text, text
    page.fill("#ev-search", "ticket 12")
    assert page.locator("#ev-list li").count() == 1
    page.fill("#ev-search", "no such words")
    assert page.locator("#ev-list li").count() == 0
    page.fill("#ev-search", "")
    page.select_option("#ev-kind", "label")
    assert page.locator("#ev-list li.segment").count() == 0
    page.select_option("#ev-kind", "")
    shot(page, "explorer-labels-brushed-light")

    # Click the event: the chart zooms to it (the label in the middle third) and the label is selected.
    span = end - start
    page.locator("#ev-list li.label button").click()
    wait_drawn(page, f"v.start === {max(0, start - span)} && v.end === {min(N_POINTS, end + span)}")
    assert page.get_attribute("#ov-label", "data-mode") == "edit"
    assert page.text_content("#ov-title") == f"Label #{label['id']}"
    assert "selected" in (page.get_attribute("#ev-list li.label", "class") or "")

    # Edit it: another type, a longer comment, a shorter range.
    page.select_option("#ov-type", "level shift")
    page.fill("#ov-comment", "fan failure, ticket 12 — confirmed")
    page.fill("#ov-end", str(end - 10))
    page.click("#ov-save")
    page.wait_for_function("() => document.querySelector('#ov-status').textContent.includes('is now #')")
    [edited] = labels_in_force(page, ids)
    assert edited["id"] != label["id"] and edited["supersedes_id"] == label["id"]
    assert (edited["end"], edited["label_type"], edited["comment"]) == (
        end - 10,
        "level shift",
        "fan failure, ticket 12 — confirmed",
    )
    assert "anomaly · level shift" in page.locator("#ev-list li.label").text_content()
    shot(page, "explorer-labels-edited-light")

    # Pick it on the chart: Esc leaves it, a click on its range selects it again.
    page.keyboard.press("Escape")
    assert page.get_attribute("#ov-label", "data-mode") == "new"
    page.evaluate("() => window.scrollTo(0, 0)")  # Save scrolled the form into view
    box = page.locator("#chart .nsewdrag").first.bounding_box()
    page.mouse.click(chart_x(page, (edited["start"] + edited["end"]) / 2), box["y"] + box["height"] / 2)
    page.wait_for_function(
        "(id) => document.querySelector('#ov-title').textContent === `Label #${id}`", arg=edited["id"]
    )

    # Delete it: gone from the chart's labels and the list; every row is kept underneath.
    page.click("#ov-delete")
    page.wait_for_function("() => document.querySelector('#ov-status').textContent.startsWith('deleted')")
    assert labels_in_force(page, ids) == []
    assert page.locator("#ev-list li.label").count() == 0
    with live_server.database.session_scope() as s:
        rows = s.scalars(select(Label).where(Label.project_id == ids["project_id"]).order_by(Label.id)).all()
        assert [(r.value, r.label_type) for r in rows] == [
            ("anomaly", "spike"),
            ("anomaly", "level shift"),
            ("retracted", None),
        ]
        assert rows[1].supersedes_id == rows[0].id and rows[2].supersedes_id == rows[1].id


def test_dark_theme_follows_the_system(browser, live_server, typed_project) -> None:
    ids = typed_project
    with live_server.database.session_scope() as s:
        analyst = accounts_repo.get_user_by_name(s, "analyst")
        projects.add_free_label(
            s, analyst, ids["project_id"], ids["series_id"], 598, 620, "anomaly", label_type="spike", comment="dark"
        )
        projects.add_free_label(s, analyst, ids["project_id"], ids["series_id"], 200, 320, "normal")
    for scheme in ("dark", "light"):
        context = browser.new_context(viewport=VIEWPORT, base_url=live_server.url, color_scheme=scheme)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc, errors=errors: errors.append(str(exc)))
        try:
            login(page, "analyst")
            page.goto(f"/series/{ids['series_id']}")
            wait_drawn(page)
            page.wait_for_function("() => document.querySelectorAll('#ev-list li.label').length === 2")
            page.wait_for_function(
                "() => document.querySelector('#chart').data.some(t => (t.name || '').startsWith('score v'))"
            )
            colours = page.evaluate(
                """() => ({ body: getComputedStyle(document.body).backgroundColor,
                           plot: document.getElementById('chart').layout.plot_bgcolor,
                           font: document.getElementById('chart').layout.font.color })"""
            )
            if scheme == "dark":
                assert colours == {"body": "rgb(15, 19, 26)", "plot": "#171c26", "font": "#e6e9ef"}, colours
            else:
                assert colours == {"body": "rgb(245, 246, 248)", "plot": "#ffffff", "font": "#1d2330"}, colours
            shot(page, f"explorer-labels-{scheme}")
            if scheme == "dark":  # the other pages follow the same variables
                for path, name in (("/", "home"), ("/projects", "projects"), ("/label", "label-home")):
                    page.goto(path, wait_until="networkidle")
                    shot(page, f"dark-{name}")
            assert not errors, errors
        finally:
            context.close()
