"""Admin pages in a real browser: create a project through the form, watch its first model train live, start a round
(answered by the ground-truth oracle), see the retrained version appear, roll back, cancel and retry a job, read the
audit trail; and an analyst refused all of it by the server."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.db import utcnow
from app.jobs import service as jobs
from tests.browser.conftest import login, shot, visit
from tests.browser.test_labeling import import_small_series

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def admin_dataset(live_server, tmp_path_factory) -> int:
    return import_small_series(live_server.database, tmp_path_factory.mktemp("admin"), "servers-admin")


def version_rows(page) -> list[str]:  # type: ignore[no-untyped-def]
    return page.locator("#versions tr[data-version]").all_inner_texts()


def test_admin_creates_a_project_watches_training_starts_a_round_and_rolls_back(page, live_server, admin_dataset):
    login(page, "admin")
    visit(page, "/projects", "projects")
    page.click("text=New project")
    page.wait_for_url("**/projects/new")
    page.fill("input[name=name]", "admin-browser")
    page.select_option("#dataset_id", str(admin_dataset))
    page.select_option("#detector", "iforest")
    assert "Isolation Forest" in page.inner_text("#detector-help")
    assert '"n_estimators": 100' in page.input_value("#detector_params")  # the detector's defaults, filled in
    page.fill("#detector_params", '{"n_estimators": 30}')
    page.fill("input[name=window]", "25")
    page.fill("input[name=stride]", "5")
    page.fill("input[name=round_size]", "4")
    page.fill("input[name=budget]", "8")
    page.fill("input[name=holdout_fraction]", "0.2")
    page.select_option("select[name=oracle]", "ground_truth")
    shot(page, "project-new")
    with page.expect_navigation():
        page.click("#new-project button[type=submit]")
    assert page.url.rsplit("/", 1)[1].isdigit(), page.url
    pid = int(page.url.rsplit("/", 1)[1])

    # the fit job appears, finishes, and its version shows up without a reload
    page.wait_for_selector("#jobs tbody tr[data-status]")
    page.wait_for_function("() => document.querySelectorAll('#versions tr[data-version]').length === 1", timeout=60_000)
    assert page.locator("#jobs tbody tr", has_text="fit").get_attribute("data-status") == "done"
    assert page.is_enabled("#start-round button")
    shot(page, "project-first-version")

    # start a round: the oracle answers it at once, the retraining job runs, a second version appears
    page.fill("#start-round input[name=k]", "4")
    page.click("#start-round button")
    page.wait_for_function(
        "() => { const rows = document.querySelectorAll('#versions tr[data-version]');"
        " return rows.length === 2 && rows[0].innerText.includes('serving'); }",
        timeout=60_000,
    )
    page.wait_for_selector("#rounds details.round >> text=Round 1")
    assert "4 / 4 answered" in page.inner_text("#rounds")
    rows = version_rows(page)
    assert "serving" in rows[0] and "serving" not in rows[1]
    # the threshold guard's figures beside the check: the share flagged, its limit, the anomaly rate the labels estimate
    assert "% of points (limit " in rows[0] and "% anomalous by the labels)" in rows[0]
    shot(page, "project-two-versions")

    # roll back to the first version
    first_id = page.locator("#versions tr[data-version]").nth(1).get_attribute("data-version")
    page.click(f"button.promote[data-version='{first_id}']")
    page.wait_for_function(
        f"() => document.querySelector(\"#versions tr[data-version='{first_id}']\").innerText.includes('serving')"
    )
    served = page.evaluate(f"fetch('/api/v1/projects/{pid}/versions').then(r => r.json())")
    assert [v["id"] for v in served if v["serving"]] == [int(first_id)]
    assert page.locator("#curve .scatterlayer").count() == 1 and page.locator("#per-round .barlayer").count() == 1
    assert "passed" in rows[0] or "held back" in rows[0]  # every retrained version shows its adoption check
    page.wait_for_selector("#follow-versions >> text=Pinned")  # the roll-back pins: new versions will not serve
    shot(page, "project-rolled-back")
    page.click("#follow-versions button.follow-toggle")  # follow again: the newest version that passed serves
    page.wait_for_selector("#follow-versions >> text=Following new versions")
    served = page.evaluate(f"fetch('/api/v1/projects/{pid}/versions').then(r => r.json())")
    passed = [v["id"] for v in served if v["adoption"].get("serve", True)]
    assert [v["id"] for v in served if v["serving"]] == [max(passed)]

    # cancel a running job (held by a worker elsewhere, so the sweeper leaves it alone); retry a failed one and
    # see it fail again with its message
    with live_server.database.session_scope() as session:
        running = jobs.create_job(session, "retrain", project_id=pid)
        running.status, running.worker, running.progress, running.phase = "running", "elsewhere:1", 42.0, "training"
        running.message, running.lease_until = "episode 3/10 · reward 4.5", utcnow() + timedelta(hours=1)
        failed = jobs.create_job(session, "retrain", project_id=pid)
        failed.status, failed.error, failed.phase = "failed", "RuntimeError: a planted failure", "failed"
        running_id, failed_id = running.id, failed.id
    visit(page, "/admin/jobs", "jobs")
    row = page.locator(f"#jobs tbody tr[data-job='{running_id}']")
    assert "42%" in row.inner_text() and "episode 3/10" in row.inner_text()
    assert "a planted failure" in page.locator(f"#jobs tbody tr[data-job='{failed_id}'] .job-error").inner_text()
    row.locator("button.job-cancel").click()
    page.wait_for_selector(f"#jobs tbody tr[data-job='{running_id}'] >> text=cancelling")
    page.locator(f"#jobs tbody tr[data-job='{failed_id}'] button.job-retry").click()
    page.wait_for_function(
        f"""() => {{ const r = document.querySelector("#jobs tbody tr[data-job='{failed_id}']");
        return r && r.dataset.status === 'failed' && r.innerText.includes('missing round'); }}""",
        timeout=30_000,
    )
    assert "admin-browser" in page.inner_text("#jobs")
    shot(page, "jobs-with-failure")
    with live_server.database.session_scope() as session:
        assert jobs.get_job(session, running_id).cancel_requested is True

    visit(page, "/admin/audit", "audit")
    audit = page.inner_text("table")
    for action in ("project.create", "round.start", "version.promote", "job.cancel", "job.retry"):
        assert action in audit, action


def test_analyst_cannot_reach_admin_pages_or_actions(page, live_server) -> None:
    login(page, "analyst")
    visit(page, "/projects", "projects-analyst")
    assert page.locator("text=New project").count() == 0
    for path in ("/projects/new", "/admin/jobs", "/admin/audit"):
        response = visit(page, path, "forbidden-" + path.strip("/").replace("/", "-"))
        assert response.status == 403, path
        assert page.locator("h1").inner_text() == "Not allowed"
    page.goto("/projects")
    statuses = page.evaluate("""async () => {
        const headers = {'Content-Type': 'application/json',
                         'X-CSRF-Token': document.querySelector('meta[name=csrf-token]').content};
        const post = (url) => fetch(url, {method: 'POST', headers, body: '{}'}).then((r) => r.status);
        const projects = await fetch('/api/v1/projects').then((r) => r.json());
        const page = projects.length ? await fetch(`/projects/${projects[0].id}`).then((r) => r.status) : 403;
        return [page, await post('/api/v1/projects/1/rounds'), await post('/api/v1/versions/1/promote'),
                await post('/api/v1/jobs/1/cancel'), await post('/api/v1/jobs/1/retry')];
    }""")
    assert statuses == [403, 403, 403, 403, 403]
