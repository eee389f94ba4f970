"""Editing and deleting a label over the API: append-only underneath (a new row supersedes the old one, which
stays), reflected in the labels in force and the exports; only the author or an admin, with a write scope; a label
already changed answers 409."""

from __future__ import annotations

import csv
import io
import threading

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.accounts import repository as accounts_repo
from app.accounts.models import User
from app.accounts.service import create_api_token, create_user
from app.datasets import repository as datasets_repo
from app.datasets.reader import ImportOptions
from app.datasets.service import import_files
from app.errors import Conflict
from app.projects import labels
from app.projects import service as projects
from app.projects.models import Label
from app.projects.schemas import ProjectCreate
from tests.app.loop_helpers import create, executor, import_series

N_POINTS = 400


@pytest.fixture
def labeled(app, database, tmp_path) -> dict:
    """A project with anomaly types spike and drift over one 400-point series (no model needed to label)."""
    path = tmp_path / "cpu.csv"
    x = np.arange(N_POINTS)
    pd.DataFrame({"value": np.sin(x / 9.0)}).to_csv(path, index=False)
    with database.session_scope() as session:
        [item] = import_files(session, [path], "machines", ImportOptions(timestamps="index"))
        dataset_id = datasets_repo.get_dataset_by_name(session, item.dataset).id
        project, _ = projects.create_project(
            session, None, ProjectCreate(name="edits", dataset_id=dataset_id, detector="iforest", window=25)
        )
        project.anomaly_types = ["spike", "drift"]
        create_user(session, "bob", "analyst", "bob-password-1")
        return {"project_id": project.id, "series_id": item.series_id}


def sign_in_as(client: TestClient, username: str, password: str) -> TestClient:
    response = client.post("/login", data={"username": username, "password": password, "next": "/"})
    assert response.status_code == 200, response.text
    client.headers["X-CSRF-Token"] = response.text.split('name="csrf-token" content="')[1].split('"')[0]
    return client


def add_label(client: TestClient, ids: dict, start: int, end: int, value: str = "anomaly") -> dict:
    response = client.post(
        f"/api/v1/projects/{ids['project_id']}/labels",
        json={"series_id": ids["series_id"], "start": start, "end": end, "value": value},
    )
    assert response.status_code == 201, response.text
    return response.json()


def in_force(client: TestClient, ids: dict) -> list[dict]:
    response = client.get("/api/v1/labels", params={"project_id": ids["project_id"], "series_id": ids["series_id"]})
    assert response.status_code == 200, response.text
    return response.json()


def test_edit_then_delete_write_superseding_rows_and_the_exports_follow(analyst_client, labeled, database):
    ids = labeled
    first = add_label(analyst_client, ids, 100, 120)
    other = add_label(analyst_client, ids, 300, 310, "normal")

    edited = analyst_client.patch(
        f"/api/v1/labels/{first['id']}",
        json={"start": 95, "end": 125, "label_type": "spike", "comment": "fan failure, see ticket 12"},
    )
    assert edited.status_code == 200, edited.text
    new = edited.json()
    assert new["id"] != first["id"] and new["supersedes_id"] == first["id"]
    assert (new["start"], new["end"], new["value"], new["label_type"], new["comment"], new["author"]) == (
        95,
        125,
        "anomaly",
        "spike",
        "fan failure, see ticket 12",
        "analyst",
    )
    listed = in_force(analyst_client, ids)
    assert [(r["id"], r["start"], r["end"]) for r in listed] == [(other["id"], 300, 310), (new["id"], 95, 125)]

    exported = analyst_client.get(f"/api/v1/projects/{ids['project_id']}/labels").json()
    assert sorted((r["label_id"], r["start"], r["end"]) for r in exported) == [
        (other["id"], 300, 310),
        (new["id"], 95, 125),
    ]
    points = analyst_client.get(
        f"/api/v1/projects/{ids['project_id']}/labels", params={"format": "points_csv", "series_id": ids["series_id"]}
    ).text
    anomalous = [int(row["index"]) for row in csv.DictReader(io.StringIO(points)) if row["label"] == "1"]
    assert anomalous == list(range(95, 125)), "the per-point export follows the edited range"

    # Changing the value away from anomaly drops the type; the comment stays.
    renamed = analyst_client.patch(f"/api/v1/labels/{new['id']}", json={"value": "unsure"}).json()
    assert (renamed["value"], renamed["label_type"], renamed["comment"]) == ("unsure", None, new["comment"])

    deleted = analyst_client.delete(f"/api/v1/labels/{renamed['id']}")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["value"] == "retracted" and deleted.json()["supersedes_id"] == renamed["id"]
    assert [r["id"] for r in in_force(analyst_client, ids)] == [other["id"]]
    exported = analyst_client.get(f"/api/v1/projects/{ids['project_id']}/labels").json()
    assert [r["label_id"] for r in exported] == [other["id"]]

    # Nothing was updated in place: every row is still there, and the history links them.
    with database.session_scope() as session:
        rows = session.scalars(select(Label).where(Label.project_id == ids["project_id"]).order_by(Label.id)).all()
        chain = [(r.start, r.end, r.value, r.label_type) for r in rows if r.id != other["id"]]
    assert chain == [
        (100, 120, "anomaly", None),
        (95, 125, "anomaly", "spike"),
        (95, 125, "unsure", None),
        (95, 125, "retracted", None),
    ]
    history = analyst_client.get(f"/api/v1/labels/{new['id']}/history").json()
    assert [r["value"] for r in history] == ["anomaly", "anomaly", "unsure", "retracted"]

    # A label already replaced or deleted cannot change again: 409, saying what to do.
    for old in (first["id"], renamed["id"]):
        again = analyst_client.patch(f"/api/v1/labels/{old}", json={"comment": "late"})
        assert again.status_code == 409 and "reload" in again.json()["detail"], again.text
        assert analyst_client.delete(f"/api/v1/labels/{old}").status_code == 409
    gone = analyst_client.patch(f"/api/v1/labels/{renamed['id']}", json={"value": "normal"}).json()["detail"]
    assert "already deleted" in gone
    assert analyst_client.delete(f"/api/v1/labels/{deleted.json()['id']}").status_code == 409


def test_only_the_author_or_an_admin_with_a_write_scope(app, analyst_client, admin_client, labeled, database):
    ids = labeled
    label = add_label(analyst_client, ids, 10, 20)
    with TestClient(app) as bob:
        sign_in_as(bob, "bob", "bob-password-1")
        refused = bob.patch(f"/api/v1/labels/{label['id']}", json={"value": "normal"})
        assert refused.status_code == 403 and "its author (analyst)" in refused.json()["detail"], refused.text
        assert bob.delete(f"/api/v1/labels/{label['id']}").status_code == 403
        assert [r["id"] for r in in_force(bob, ids)] == [label["id"]], "anyone may read them"

    with database.session_scope() as session:
        analyst = accounts_repo.get_user_by_name(session, "analyst")
        _, read_token = create_api_token(session, analyst, "reader", ["read"])
        _, write_token = create_api_token(session, analyst, "writer", ["write"])
    with TestClient(app) as api:
        read = api.patch(
            f"/api/v1/labels/{label['id']}", json={"value": "normal"}, headers={"Authorization": f"Bearer {read_token}"}
        )
        assert read.status_code == 403, read.text
        write = api.patch(
            f"/api/v1/labels/{label['id']}", json={"end": 22}, headers={"Authorization": f"Bearer {write_token}"}
        )
        assert write.status_code == 200 and write.json()["end"] == 22, write.text
        label = write.json()

    by_admin = admin_client.patch(f"/api/v1/labels/{label['id']}", json={"comment": "checked by admin"})
    assert by_admin.status_code == 200 and by_admin.json()["author"] == "admin", by_admin.text
    assert admin_client.delete(f"/api/v1/labels/{by_admin.json()['id']}").status_code == 200
    assert in_force(admin_client, ids) == []
    assert admin_client.patch("/api/v1/labels/999999", json={"value": "normal"}).status_code == 404


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({}, "nothing to change"),
        ({"label_type": "outage"}, "'outage' is not an anomaly type of this project; choose one of spike, drift"),
        ({"value": "normal", "label_type": "spike"}, "only an anomaly range carries a type"),
        ({"start": 390, "end": 401}, "not inside the series"),
        ({"start": 30, "end": 30}, "start < end"),
    ],
)
def test_bad_edits_are_refused_with_what_to_fix(analyst_client, labeled, body, says):
    label = add_label(analyst_client, labeled, 10, 20)
    response = analyst_client.patch(f"/api/v1/labels/{label['id']}", json=body)
    assert response.status_code == 422 and says in response.json()["detail"], response.text
    assert [r["id"] for r in in_force(analyst_client, labeled)] == [label["id"]], "nothing was written"


def test_two_concurrent_edits_of_one_label_give_one_new_row_and_a_409(labeled, database):
    with database.session_scope() as session:
        analyst = accounts_repo.get_user_by_name(session, "analyst")
        analyst_id = analyst.id
        label_id = projects.add_free_label(
            session, analyst, labeled["project_id"], labeled["series_id"], 40, 60, "anomaly"
        ).id
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def edit(comment: str) -> None:
        barrier.wait()
        try:
            with database.session_scope() as session:
                actor = session.get(User, analyst_id)
                labels.edit_label(session, actor, label_id, labels.LabelEdit(comment=comment), is_admin=False)
            outcomes.append("saved")
        except Conflict as exc:
            outcomes.append(f"409: {exc.message}")

    threads = [threading.Thread(target=edit, args=(f"edit {k}",)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(o.split(":")[0] for o in outcomes) == ["409", "saved"], outcomes
    with database.session_scope() as session:
        successors = session.scalars(select(Label).where(Label.supersedes_id == label_id)).all()
        assert len(successors) == 1
        assert [lab.id for lab in projects.effective_labels(session, labeled["project_id"])] == [successors[0].id]


def test_an_answer_edited_in_the_explorer_stays_its_query_answer(app, database, shared_data, tmp_path):
    """The new row keeps the round and query, so a later answer to that query supersedes it: one answer in force."""
    taxi = shared_data / "nab" / "realKnownCause__nyc_taxi.csv.gz"
    dataset_id = import_series(database, taxi, "taxi-edits", limit_points=1_500)
    project_id, job_id = create(
        database, dataset_id, name="q", detector="iforest", window=25, strategy="top_k", round_size=3, budget=30
    )
    ex = executor(database, tmp_path)
    ex.enqueue(job_id)
    assert ex.wait_idle(120)
    ex.shutdown()
    with database.session_scope() as session:
        started = projects.start_round(session, None, project_id)
        round_id = started.round.id
        query_id = projects.list_queries(session, round_id)[0].id
        analyst = accounts_repo.get_user_by_name(session, "analyst")
        [answer] = projects.answer_query(session, analyst, query_id, "anomaly", None, "first-answer-key").labels
        answer_id = answer.id
    with database.session_scope() as session:
        analyst = accounts_repo.get_user_by_name(session, "analyst")
        edited = labels.edit_label(
            session, analyst, answer_id, labels.LabelEdit(comment="seen in the explorer"), is_admin=False
        )
        assert (edited.round_id, edited.query_id, edited.supersedes_id) == (round_id, query_id, answer_id)
        assert [q.status for q in projects.list_queries(session, round_id)][0] == "answered"
    with database.session_scope() as session:
        analyst = accounts_repo.get_user_by_name(session, "analyst")
        projects.answer_query(session, analyst, query_id, "normal", None, "second-answer-key")
    with database.session_scope() as session:
        in_force = [lab for lab in projects.effective_labels(session, project_id) if lab.query_id == query_id]
        assert [(lab.value, lab.supersedes_id) for lab in in_force] == [("normal", edited.id)]
