"""Project, labeling-queue and jobs pages through the real app (TestClient) on SQLite and PostgreSQL: they render
what the services hold, admin pages and actions refuse analysts on the server, and form posts need the CSRF token."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app.core.thresholds import THRESHOLD_METHODS
from app.datasets import service as datasets
from app.datasets.reader import ImportOptions


def make_series(path: Path, n: int = 1200) -> Path:
    """Two channels of seasonal noise with two obvious spikes marked in the label column: one in the pool (points
    600-614) and one in the held-back tail of a 0.2 hold-out (1100-1109), so ground-truth PR-AUC is defined."""
    rng = np.random.default_rng(0)
    t = np.arange(n)
    a = np.sin(t / 20) + 0.1 * rng.standard_normal(n)
    b = np.cos(t / 35) + 0.1 * rng.standard_normal(n)
    label = np.zeros(n, dtype=int)
    a[600:615] += 3.0
    label[600:615] = 1
    b[1100:1110] -= 3.0
    label[1100:1110] = 1
    stamps = pd.date_range("2024-01-01", periods=n, freq="min").strftime("%Y-%m-%dT%H:%M:%S")
    pd.DataFrame({"timestamp": stamps, "cpu": a, "mem": b, "label": label}).to_csv(path, index=False)
    return path


def import_series(database, tmp_path: Path) -> int:
    """Import the synthetic series; returns the data set id."""
    with database.session_scope() as session:
        [item] = datasets.import_files(session, [make_series(tmp_path / "svc.csv")], "servers", ImportOptions())
        return datasets.get_series(session, item.series_id).dataset_id


def csrf_of(client) -> str:
    return client.headers["X-CSRF-Token"]


def create_project_by_form(client, dataset_id: int, **overrides) -> int:
    form = {
        "csrf_token": csrf_of(client),
        "name": "servers",
        "dataset_id": str(dataset_id),
        "detector": "iforest",
        "detector_params": '{"n_estimators": 30}',
        "window": "25",
        "stride": "5",
        "strategy": "hybrid",
        "round_size": "5",
        "budget": "20",
        "oracle": "human",
        "threshold_method": "best_f1",
        "holdout_fraction": "0.2",
        "seed": "0",
        **overrides,
    }
    r = client.post("/projects/new", data=form, follow_redirects=False)
    assert r.status_code == 303, r.text[:2000]
    return int(r.headers["location"].rsplit("/", 1)[1])


def wait_jobs(app) -> None:
    assert app.state.executor.wait_idle(120), "the in-process job did not finish in 2 minutes"


@pytest.fixture
def project(app, admin_client, database, tmp_path) -> dict:
    """A project created through the form, its first model trained, round 1 open (5 windows)."""
    dataset_id = import_series(database, tmp_path)
    project_id = create_project_by_form(admin_client, dataset_id)
    wait_jobs(app)
    r = admin_client.post(f"/api/v1/projects/{project_id}/rounds", json={})
    assert r.status_code == 201, r.text
    queries = admin_client.get(f"/api/v1/rounds/{r.json()['id']}/queries").json()
    versions = admin_client.get(f"/api/v1/projects/{project_id}/versions").json()
    return {"id": project_id, "dataset_id": dataset_id, "round": r.json(), "queries": queries, "versions": versions}


def test_new_project_form_shows_help_and_defaults_and_reports_bad_input(admin_client, database, tmp_path):
    dataset_id = import_series(database, tmp_path)
    page = admin_client.get("/projects/new")
    assert page.status_code == 200
    assert "Isolation Forest on windows" in page.text and "masked minimax" in page.text  # one line of help each
    assert '"epochs": 10' in page.text  # the default detector's parameters are filled in
    # the threshold over every pool point is the default, the best F1 on the labeled points a choice; every
    # method the core knows is offered
    assert '<option value="expected_f1" selected>' in page.text and '<option value="best_f1" >' in page.text
    assert all(f'<option value="{m}"' in page.text for m in THRESHOLD_METHODS)
    assert 'name="csrf_token"' in page.text
    bad_json = create_form_error(admin_client, dataset_id, detector_params="{epochs: 3")
    assert bad_json.status_code == 400 and "not valid JSON" in bad_json.text and "<form" in bad_json.text
    unknown = create_form_error(admin_client, dataset_id, detector_params='{"bogus": 1}')
    assert unknown.status_code == 400 and "detector parameters" in unknown.text and "bogus" in unknown.text
    not_a_number = create_form_error(admin_client, dataset_id, detector="ensemble", detector_params='{"attract": "x"}')
    assert not_a_number.status_code == 400 and "attract must be a number" in not_a_number.text
    out_of_range = create_form_error(admin_client, dataset_id, detector="knn", detector_params='{"k": 0}')
    assert out_of_range.status_code == 400 and "k must be a whole number in [1, inf), not 0" in out_of_range.text
    stride = create_form_error(admin_client, dataset_id, stride="30")
    assert stride.status_code == 422 and "stride must not exceed the window" in stride.text
    assert 'value="servers"' in stride.text  # what the admin typed is kept
    assert admin_client.get("/api/v1/projects").json() == []  # nothing half-created
    chooser = admin_client.get("/label")
    assert chooser.status_code == 200 and "Nothing to label right now" in chooser.text


def create_form_error(client, dataset_id: int, **overrides):
    form = {
        "csrf_token": csrf_of(client),
        "name": "servers",
        "dataset_id": str(dataset_id),
        "detector": "iforest",
        "detector_params": "{}",
        "window": "25",
        "stride": "5",
        **overrides,
    }
    return client.post("/projects/new", data=form, follow_redirects=False)


def test_project_page_shows_rounds_answers_versions_jobs_and_exports(app, admin_client, project):
    pid = project["id"]
    q0, q1 = project["queries"][:2]
    r = admin_client.post(
        f"/api/v1/queries/{q0['id']}/answer",
        json={
            "value": "anomaly",
            "anomaly_start": q0["start"] + 5,
            "anomaly_end": q0["start"] + 15,
            "idempotency_key": "page-test-0001",
        },
    )
    assert r.status_code == 200
    assert admin_client.post(f"/api/v1/queries/{q1['id']}/answer", json={"value": "unsure"}).status_code == 200

    page = admin_client.get(f"/projects/{pid}")
    assert page.status_code == 200
    text = page.text
    assert "Round 1" in text and 'class="pill open"' in text and "2 / 5 answered" in text
    assert "1 anomaly" in text and "2 normal" in text and "1 unsure" in text  # label counts per round
    assert q0["reason"] in text and ">admin <" in text  # why it was picked, who answered
    [version] = project["versions"]
    assert f"<b>v{version['id']}</b>" in text and "serving" in text
    assert "held-back tail" in text  # ground-truth PR-AUC says which part it was measured on
    assert "threshold: best F1 on the labeled points" in text  # how its alarms are set (the fixture's choice)
    # the adoption rule as the project's training applies it (its flag share, the core's rate factor)
    assert "its threshold is raised where need be so it flags at most 5% of points, or 3 times the share" in text
    # an iforest version learns from the answers it is judged on: the page does not call them held out
    assert "this detector cannot hold labels out, so the check can only refuse" in text and "held out, that" not in text
    charts = json.loads(re.search(r'<script type="application/json" id="charts-data">(.*?)</script>', text, re.S)[1])
    assert charts["curve"][0]["labels_used"] == 0 and 0.0 <= charts["curve"][0]["pr_auc"] <= 1.0
    assert charts["per_round"] == [{"round": 1, "anomaly": 1, "normal": 2, "unsure": 1}]
    jobs = json.loads(re.search(r'<script type="application/json" id="jobs-data">(.*?)</script>', text, re.S)[1])
    assert [(j["kind"], j["status"]) for j in jobs] == [("fit", "done")]
    for fmt in ("format=csv", "format=json", "format=points_csv&amp;series_id="):
        assert f"/api/v1/projects/{pid}/labels?{fmt}" in text
    assert '<script src="/static/vendor/plotly-basic.min.js?v=' in text and "/static/admin.js?v=" in text

    listing = admin_client.get("/projects").text
    assert "servers" in listing and "2 / 20" in listing and "New project" in listing
    jobs_page = admin_client.get("/admin/jobs")
    assert jobs_page.status_code == 200 and '"kind": "fit"' in jobs_page.text


def test_labeling_queue_state_labels_by_range_and_progress(admin_client, analyst_client, project):
    pid = project["id"]
    r = analyst_client.get("/label", follow_redirects=False)  # the one project waiting for answers
    assert r.status_code == 303 and r.headers["location"] == f"/projects/{pid}/label"
    page = analyst_client.get(f"/projects/{pid}/label")
    assert page.status_code == 200 and 'id="lq-chart"' in page.text and "/static/label.js" in page.text
    state = json.loads(re.search(r'<script type="application/json" id="lq-state">(.*?)</script>', page.text, re.S)[1])
    assert state["round"]["status"] == "open" and state["round"]["total"] == 5 and state["round"]["answered"] == 0
    assert state["round"]["version"]["id"] == project["versions"][0]["id"]
    assert [q["rank"] for q in state["queries"]] == list(range(5))
    q = state["queries"][0]
    assert q["reason"] and q["score"] is not None and str(q["series_id"]) in state["series"]
    assert state["series"][str(q["series_id"])]["channel_names"] == ["cpu", "mem"]

    body = {
        "value": "anomaly",
        "anomaly_start": q["start"] + 2,
        "anomaly_end": q["start"] + 9,
        "idempotency_key": "0d5c8a9e-1f2b-4c3d-9e8f-aabbccddeeff",
    }
    first = analyst_client.post(f"/api/v1/queries/{q['id']}/answer", json=body).json()
    again = analyst_client.post(f"/api/v1/queries/{q['id']}/answer", json=body).json()
    assert again["duplicate"] is True and first["round_answered"] == again["round_answered"] == 1

    labels = analyst_client.get(
        f"/api/v1/projects/{pid}/series/{q['series_id']}/labels",
        params={"start": q["start"] - 50, "end": q["end"] + 50},
    ).json()
    assert [(x["start"] - q["start"], x["end"] - q["start"], x["value"]) for x in labels] == [
        (0, 2, "normal"),
        (2, 9, "anomaly"),
        (9, 25, "normal"),
    ]
    outside = analyst_client.get(
        f"/api/v1/projects/{pid}/series/{q['series_id']}/labels", params={"start": q["end"], "end": q["end"] + 1}
    ).json()
    assert outside == [] or all(x["query_id"] != q["id"] for x in outside)
    state = analyst_client.get(f"/api/v1/projects/{pid}/labeling").json()
    assert state["round"]["answered"] == 1
    assert [a["value"] for a in state["queries"][0]["answer"]] == ["normal", "anomaly", "normal"]
    assert state["queries"][0]["answer"][1]["author"] == "analyst"

    assert analyst_client.post(f"/api/v1/queries/{q['id']}/undo").status_code == 200
    after = analyst_client.get(
        f"/api/v1/projects/{pid}/series/{q['series_id']}/labels", params={"start": q["start"], "end": q["end"]}
    ).json()
    assert all(x["query_id"] != q["id"] for x in after)  # undone labels are no longer shaded


def test_analyst_is_refused_admin_pages_and_actions(admin_client, analyst_client, project):
    pid, vid = project["id"], project["versions"][0]["id"]
    assert analyst_client.get("/projects").status_code == 200
    assert "New project" not in analyst_client.get("/projects").text
    for url in ("/projects/new", f"/projects/{pid}", "/admin/jobs", "/admin/audit", "/admin/import"):
        r = analyst_client.get(url)
        assert r.status_code == 403, url
        assert "Not allowed" in r.text
    token = csrf_of(analyst_client)
    form = {"csrf_token": token, "name": "mine", "dataset_id": str(project["dataset_id"]), "detector": "iforest"}
    assert analyst_client.post("/projects/new", data=form).status_code == 403
    assert analyst_client.post(f"/api/v1/projects/{pid}/rounds", json={}).status_code == 403
    assert analyst_client.post(f"/api/v1/versions/{vid}/promote").status_code == 403
    jobs_page = admin_client.get("/admin/jobs").text
    job_id = json.loads(re.search(r'id="jobs-data">(.*?)</script>', jobs_page, re.S)[1])[0]["id"]
    assert analyst_client.post(f"/api/v1/jobs/{job_id}/cancel").status_code == 403
    assert analyst_client.post(f"/api/v1/jobs/{job_id}/retry").status_code == 403
    assert [p["name"] for p in admin_client.get("/api/v1/projects").json()] == ["servers"]
    # what an analyst may do: the queue
    assert analyst_client.get(f"/projects/{pid}/label").status_code == 200
    q = project["queries"][0]
    assert analyst_client.post(f"/api/v1/queries/{q['id']}/answer", json={"value": "normal"}).status_code == 200


def test_form_posts_need_the_csrf_token(admin_client, database, tmp_path):
    dataset_id = import_series(database, tmp_path)
    token = admin_client.headers.pop("X-CSRF-Token")
    form = {
        "name": "servers",
        "dataset_id": str(dataset_id),
        "detector": "iforest",
        "detector_params": "{}",
        "window": "25",
        "stride": "5",
    }
    r = admin_client.post("/projects/new", data=form, follow_redirects=False)
    assert r.status_code == 403 and "CSRF" in r.text
    r = admin_client.post("/projects/new", data={**form, "csrf_token": "wrong-token"}, follow_redirects=False)
    assert r.status_code == 403
    r = admin_client.post("/api/v1/projects/1/rounds", json={})
    assert r.status_code == 403 and "CSRF" in r.json()["detail"]
    admin_client.headers["X-CSRF-Token"] = token
    assert admin_client.get("/api/v1/projects").json() == []
    r = admin_client.post("/projects/new", data={**form, "csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303


def test_audit_trail_shows_label_undo_round_start_and_promotion(app, admin_client, analyst_client, project):
    q = project["queries"][0]
    assert analyst_client.post(f"/api/v1/queries/{q['id']}/answer", json={"value": "anomaly"}).status_code == 200
    assert analyst_client.post(f"/api/v1/queries/{q['id']}/undo").status_code == 200
    assert admin_client.post(f"/api/v1/versions/{project['versions'][0]['id']}/promote").status_code == 200
    page = admin_client.get("/admin/audit").text
    rows = re.findall(r"<tr><td>[^<]+</td><td>([^<]+)</td>\s*<td>([^<]+)</td>", page)
    seen = {(who, what) for who, what in rows}
    assert {
        ("analyst", "label.anomaly"),
        ("analyst", "label.undo"),
        ("admin", "round.start"),
        ("admin", "version.promote"),
        ("admin", "project.create"),
    } <= seen


def test_a_round_dealt_to_named_analysts(app, admin_client, analyst_client, database, tmp_path):
    """The admin ticks two analysts: the round's five windows are dealt round-robin in rank order (ranks 1, 3, 5 to
    the first, 2, 4 to the second); each queue holds its own windows, an analyst is refused another's window with
    whose it is, one the round does not name has nothing to do and is told why, and an admin may answer any."""
    from fastapi.testclient import TestClient

    from app.accounts.service import create_user
    from app.projects.assignment import deal

    assert deal([7, 8], 5, 1) == [[7], [8], [7], [8], [7]]
    assert deal([7, 8, 9], 3, 2) == [[7, 8], [9, 7], [8, 9]]  # two per window, distinct, evenly spread
    assert deal([7], 2, 3) == [[7], [7]]  # never more analysts per window than are named
    with database.session_scope() as session:
        for name in ("alice", "carol"):
            create_user(session, name, "analyst", "assign-password-1")
    dataset_id = import_series(database, tmp_path)
    project_id = create_project_by_form(admin_client, dataset_id)
    wait_jobs(app)
    page = admin_client.get(f"/projects/{project_id}").text
    assert 'name="assignees" value="alice"' in page and 'name="assignees" value="carol"' in page
    unknown = admin_client.post(f"/api/v1/projects/{project_id}/rounds", json={"assignees": ["analyst", "nobody"]})
    assert unknown.status_code == 422 and "'nobody'" in unknown.json()["detail"]
    started = admin_client.post(f"/api/v1/projects/{project_id}/rounds", json={"assignees": ["analyst", "alice"]})
    assert started.status_code == 201, started.text
    queries = admin_client.get(f"/api/v1/rounds/{started.json()['id']}/queries").json()
    assert len(queries) == 5 and len(started.json()["assignee_ids"]) == 2

    def signed_in(name: str) -> TestClient:
        client = TestClient(app)
        r = client.post("/login", data={"username": name, "password": "assign-password-1", "next": "/"})
        client.headers["X-CSRF-Token"] = re.search(r'name="csrf-token" content="([^"]+)"', r.text).group(1)
        return client

    alice, carol = signed_in("alice"), signed_in("carol")
    state = {who: c.get(f"/api/v1/projects/{project_id}/labeling").json() for who, c in
             (("analyst", analyst_client), ("alice", alice), ("carol", carol), ("admin", admin_client))}  # fmt: skip
    assert [q["rank"] for q in state["analyst"]["queries"]] == [0, 2, 4]
    assert [q["rank"] for q in state["alice"]["queries"]] == [1, 3]
    assert state["carol"]["queries"] == [] and state["carol"]["round"]["yours"] == 0
    assert state["carol"]["round"]["assignees"] == ["analyst", "alice"]
    assert len(state["admin"]["queries"]) == 5 and state["admin"]["round"]["yours"] is None
    assert [q["assignees"] for q in state["admin"]["queries"]][:2] == [["analyst"], ["alice"]]
    assert carol.get(f"/api/v1/projects/{project_id}/next-query").json() is None
    assert alice.get(f"/api/v1/projects/{project_id}/next-query").json()["rank"] == 1
    # the analyst's first window is rank 0; alice's rank 1 is not his to answer
    assert analyst_client.get(f"/api/v1/projects/{project_id}/next-query").json()["rank"] == 0
    refused = analyst_client.post(f"/api/v1/queries/{queries[1]['id']}/answer", json={"value": "anomaly"})
    assert refused.status_code == 403 and "assigned to alice" in refused.json()["detail"]
    assert carol.post(f"/api/v1/queries/{queries[0]['id']}/answer", json={"value": "normal"}).status_code == 403
    # an admin stands in for an absent analyst
    assert admin_client.post(f"/api/v1/queries/{queries[1]['id']}/answer", json={"value": "normal"}).status_code == 200
    assert alice.get(f"/api/v1/projects/{project_id}/next-query").json()["rank"] == 3
    # the labeling home counts each one's own windows: alice is taken straight to hers, carol has none waiting
    assert alice.get("/label", follow_redirects=False).headers["location"] == f"/projects/{project_id}/label"
    home = carol.get("/label", follow_redirects=False)
    assert home.status_code == 200 and "Nothing to label right now" in home.text, home.text
    for client in (alice, carol):
        client.close()
