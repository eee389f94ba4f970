"""Review before retraining: a fully answered round stays open (answers can be undone and changed) until an analyst
submits it or its grace period is over; a grace of 0 and the ground-truth oracle close it at its last answer."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select

from app.accounts.models import AuditEvent
from app.db import utcnow
from app.jobs.models import Job
from app.projects import repository as repo
from app.projects import service as projects
from app.projects.models import Project, Round
from tests.app.loop_helpers import executor
from tests.app.test_annotators import make_round


def round_row(database, round_id: int) -> Round:  # type: ignore[no-untyped-def]
    with database.session_scope() as session:
        rnd = session.get(Round, round_id)
        session.expunge(rnd)
        return rnd


def retrain_jobs(database, round_id: int) -> list[Job]:  # type: ignore[no-untyped-def]
    with database.session_scope() as session:
        jobs = list(session.scalars(select(Job).where(Job.round_id == round_id, Job.kind == "retrain")))
        session.expunge_all()
        return jobs


def test_a_fully_answered_round_waits_for_review_until_it_is_submitted(database, analyst_client):
    project_id, round_id = make_round(database, "review", answers_per_window=1, n_queries=3, grace=10)
    queries = [q["id"] for q in analyst_client.get(f"/api/v1/rounds/{round_id}/queries").json()]
    for q in queries:
        last = analyst_client.post(f"/api/v1/queries/{q}/answer", json={"value": "normal"}).json()
    assert last["round_status"] == "open" and last["round_answered"] == 3 and last["next_query_id"] is None
    rnd = round_row(database, round_id)
    assert timedelta(minutes=9) < rnd.review_until - utcnow() <= timedelta(minutes=10)
    assert retrain_jobs(database, round_id) == []  # nothing retrains yet
    state = analyst_client.get(f"/api/v1/projects/{project_id}/labeling").json()
    assert state["round"]["status"] == "open" and state["round"]["review_until"] and state["round"]["open_windows"] == 0

    # still open: the last answer can be undone, which stops the review clock, and the round cannot be submitted
    assert analyst_client.post(f"/api/v1/queries/{queries[-1]}/undo").status_code == 200
    assert round_row(database, round_id).review_until is None
    early = analyst_client.post(f"/api/v1/rounds/{round_id}/submit")
    assert early.status_code == 409
    assert early.json()["detail"] == "1 window of round 1 still needs answers; answer or skip it first"
    # answered again, and an earlier answer edited: both allowed while the round is in review
    assert analyst_client.post(f"/api/v1/queries/{queries[-1]}/answer", json={"value": "anomaly"}).status_code == 200
    edit = analyst_client.post(f"/api/v1/queries/{queries[0]}/answer", json={"value": "unsure"})
    assert edit.status_code == 200 and edit.json()["round_status"] == "open"
    assert round_row(database, round_id).review_until is not None

    submitted = analyst_client.post(f"/api/v1/rounds/{round_id}/submit")
    assert submitted.status_code == 200, submitted.text
    assert submitted.json()["status"] == "complete" and submitted.json()["review_until"] is None
    assert submitted.json()["submitted_by"] is not None and submitted.json()["completed_at"]
    assert len(retrain_jobs(database, round_id)) == 1
    with database.session_scope() as session:
        labels = {lab.query_id: lab.value for lab in projects.effective_labels(session, project_id)}
    assert [labels[q] for q in queries] == ["unsure", "normal", "anomaly"]  # the edits are what retrains
    late = analyst_client.post(f"/api/v1/queries/{queries[0]}/answer", json={"value": "normal"})
    assert late.status_code == 409 and "can no longer change" in late.json()["detail"]
    again = analyst_client.post(f"/api/v1/rounds/{round_id}/submit")
    assert again.status_code == 409 and re.search(r"round 1 is already \w+; nothing to submit", again.json()["detail"])


def test_the_grace_period_closes_a_round_on_the_next_request_and_in_the_sweeper(database, analyst_client, tmp_path):
    rounds = {}
    for name in ("by-request", "by-next-query", "by-sweeper"):
        project_id, round_id = make_round(database, name, answers_per_window=1, n_queries=2, grace=10)
        for q in analyst_client.get(f"/api/v1/rounds/{round_id}/queries").json():
            analyst_client.post(f"/api/v1/queries/{q['id']}/answer", json={"value": "normal"})
        with database.session_scope() as session:  # ten minutes later
            session.get(Round, round_id).review_until = utcnow() - timedelta(seconds=1)
        rounds[name] = (project_id, round_id)

    project_id, round_id = rounds["by-request"]
    state = analyst_client.get(f"/api/v1/projects/{project_id}/labeling").json()
    assert state["round"]["status"] != "open"
    assert round_row(database, round_id).completed_at is not None and len(retrain_jobs(database, round_id)) == 1

    project_id, round_id = rounds["by-next-query"]  # the analysts' most frequent request closes it too
    assert analyst_client.get(f"/api/v1/projects/{project_id}/next-query").json() is None
    assert round_row(database, round_id).completed_at is not None and len(retrain_jobs(database, round_id)) == 1

    project_id, round_id = rounds["by-sweeper"]
    assert round_row(database, round_id).status == "open"  # the requests above closed only their own project's round
    ex = executor(database, tmp_path)  # the sweeper's pass: close overdue rounds, then send the queued jobs
    try:
        ex.sweep()
        assert ex.wait_idle(60)
    finally:
        ex.shutdown()
    assert round_row(database, round_id).status != "open" and len(retrain_jobs(database, round_id)) == 1
    with database.session_scope() as session:
        closed = session.scalars(select(AuditEvent).where(AuditEvent.action == "round.close")).all()
        assert sorted(e.object_id for e in closed) == sorted(r for _, r in rounds.values())


def test_a_grace_of_zero_and_the_ground_truth_close_at_the_last_answer(database, analyst_client):
    project_id, round_id = make_round(database, "no-review", answers_per_window=1, n_queries=2, grace=0)
    queries = [q["id"] for q in analyst_client.get(f"/api/v1/rounds/{round_id}/queries").json()]
    analyst_client.post(f"/api/v1/queries/{queries[0]}/answer", json={"value": "normal"})
    last = analyst_client.post(f"/api/v1/queries/{queries[1]}/answer", json={"value": "normal"}).json()
    assert last["round_status"] in ("complete", "training", "failed") and len(retrain_jobs(database, round_id)) == 1

    project_id, round_id = make_round(database, "oracle", answers_per_window=1, n_queries=2, grace=10)
    with database.session_scope() as session:
        session.get(Project, project_id).oracle = "ground_truth"
        for q in repo.list_queries(session, round_id):
            repo.set_query_status(session, q.id, "pending", "answered")
        job_ids = projects.complete_round_if_done(session, round_id)
        assert job_ids and session.get(Round, round_id).status == "complete"


def test_an_admin_changes_the_review_time_of_a_project(database, admin_client, analyst_client):
    project_id, round_id = make_round(database, "grace-setting", answers_per_window=1, n_queries=1, grace=10)
    assert analyst_client.patch(f"/api/v1/projects/{project_id}", json={"review_grace_minutes": 0}).status_code == 403
    r = admin_client.patch(f"/api/v1/projects/{project_id}", json={"review_grace_minutes": 0})
    assert r.status_code == 200 and r.json()["review_grace_minutes"] == 0 and r.json()["answers_per_window"] == 1
    assert admin_client.patch(f"/api/v1/projects/{project_id}", json={"review_grace_minutes": -1}).status_code == 422
    query = analyst_client.get(f"/api/v1/rounds/{round_id}/queries").json()[0]
    last = analyst_client.post(f"/api/v1/queries/{query['id']}/answer", json={"value": "normal"}).json()
    assert last["round_status"] != "open"  # no review any more: it closed at its last answer


def test_a_queue_answer_deleted_in_the_explorer_is_asked_again_while_its_round_is_open(database, analyst_client):
    project_id, round_id = make_round(database, "delete-answer", answers_per_window=1, n_queries=2, grace=10)
    queries = [q["id"] for q in analyst_client.get(f"/api/v1/rounds/{round_id}/queries").json()]
    for q in queries:
        analyst_client.post(f"/api/v1/queries/{q}/answer", json={"value": "anomaly"})
    assert round_row(database, round_id).review_until is not None  # fully answered, in review
    with database.session_scope() as session:
        series_id = session.get(Project, project_id).series[0].id
    rows = analyst_client.get("/api/v1/labels", params={"project_id": project_id, "series_id": series_id}).json()
    first = next(r for r in rows if r["query_id"] == queries[0])
    assert analyst_client.delete(f"/api/v1/labels/{first['id']}").status_code == 200

    # the window is asked again, the review clock stops, and the round cannot be submitted with it unanswered
    statuses = {q["id"]: q["status"] for q in analyst_client.get(f"/api/v1/rounds/{round_id}/queries").json()}
    assert statuses == {queries[0]: "pending", queries[1]: "answered"}
    assert round_row(database, round_id).review_until is None
    assert analyst_client.post(f"/api/v1/rounds/{round_id}/submit").status_code == 409
    again = analyst_client.post(f"/api/v1/queries/{queries[0]}/answer", json={"value": "normal"}).json()
    assert again["round_status"] == "open" and again["round_answered"] == 2
    assert analyst_client.post(f"/api/v1/rounds/{round_id}/submit").status_code == 200

    # once the round is closed, a deletion takes the label out of training but the answer stays counted
    rows = analyst_client.get("/api/v1/labels", params={"project_id": project_id, "series_id": series_id}).json()
    second = next(r for r in rows if r["query_id"] == queries[1])
    assert analyst_client.delete(f"/api/v1/labels/{second['id']}").status_code == 200
    statuses = {q["id"]: q["status"] for q in analyst_client.get(f"/api/v1/rounds/{round_id}/queries").json()}
    assert statuses == {queries[0]: "answered", queries[1]: "answered"}
    with database.session_scope() as session:
        in_force = {lab.query_id: lab.value for lab in projects.effective_labels(session, project_id)}
    assert in_force == {queries[0]: "normal"}


def test_an_admin_changes_the_answers_per_window_between_rounds(database, admin_client, analyst_client):
    project_id, round_id = make_round(database, "answers-setting", answers_per_window=1, n_queries=1, grace=0)
    url = f"/api/v1/projects/{project_id}"
    assert analyst_client.patch(url, json={"answers_per_window": 3}).status_code == 403
    assert {admin_client.patch(url, json={"answers_per_window": n}).status_code for n in (0, 6)} == {422}
    busy = admin_client.patch(url, json={"answers_per_window": 3})
    assert busy.status_code == 409 and "round 1 is open with 1 answer(s) per window" in busy.json()["detail"]
    query = analyst_client.get(f"/api/v1/rounds/{round_id}/queries").json()[0]
    assert (
        analyst_client.post(f"/api/v1/queries/{query['id']}/answer", json={"value": "normal"}).json()["round_status"]
        != "open"
    )
    changed = admin_client.patch(url, json={"answers_per_window": 3})
    assert changed.status_code == 200 and changed.json()["answers_per_window"] == 3
    with database.session_scope() as session:
        assert session.get(Project, project_id).answers_per_window == 3
        [event] = session.scalars(select(AuditEvent).where(AuditEvent.action == "project.answers_per_window")).all()
        assert (event.object_id, event.detail) == (project_id, {"before": 1, "after": 3})
