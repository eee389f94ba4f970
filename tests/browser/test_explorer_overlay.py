"""The explorer overlays a chosen model version's score and threshold and the analysts' labels, and an analyst
labels a range from the explorer."""

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
from tests.browser.conftest import login, shot
from tests.browser.test_labeling import import_small_series

pytestmark = pytest.mark.browser


def test_score_threshold_and_labels_overlaid_and_a_range_labeled(page, live_server, tmp_path):
    db = live_server.database
    dataset_id = import_small_series(db, tmp_path, "servers-overlay")
    with db.session_scope() as s:
        admin = accounts_repo.get_user_by_name(s, "admin")
        project, job_id = projects.create_project(
            s,
            admin,
            ProjectCreate(
                name="overlay",
                dataset_id=dataset_id,
                detector="iforest",
                window=25,
                strategy="top_k",
                round_size=3,
                budget=9,
                oracle="ground_truth",
            ),
        )
        project_id = project.id
        series_id = datasets_repo.list_series(s, dataset_id)[0].id
    executor = InProcessExecutor(Settings(database_url=db.url, data_dir=tmp_path, device="cpu"), db, sweep=False)
    executor.enqueue(job_id)
    wait_version(db, project_id, 0, 120)
    with db.session_scope() as s:
        started = projects.start_round(s, None, project_id)  # the oracle labels 3 windows at once
    executor.enqueue(started.job_ids[0])  # after the commit
    wait_version(db, project_id, 1, 120)
    executor.shutdown()

    login(page, "analyst")
    page.goto(f"{live_server.url}/series/{series_id}")
    page.wait_for_function("() => window.explorerStats && window.explorerStats.firstChartMs !== null")
    assert page.locator("#ov-version option").count() == 2  # v0 and v1 of the project
    # the score trace and the threshold line are drawn, and the oracle's labels shaded
    page.wait_for_function(
        "() => document.querySelector('#chart').data.some(t => (t.name || '').startsWith('score v'))"
    )
    shapes = page.evaluate("document.querySelector('#chart').layout.shapes.length")
    assert shapes >= 4  # threshold + 3 labeled windows (at least)
    shot(page, "explorer-overlay-score-labels")
    page.fill("#ov-start", "100")
    page.fill("#ov-end", "130")
    page.click("#ov-label button[data-value=anomaly]")
    page.wait_for_function("() => document.querySelector('#ov-status').textContent.startsWith('saved')")
    with db.session_scope() as s:
        rows = s.scalars(select(Label).where(Label.project_id == project_id, Label.start == 100)).all()
        assert [(r.end, r.value, r.source) for r in rows] == [(130, "anomaly", "analyst")]
    shot(page, "explorer-overlay-labeled")
