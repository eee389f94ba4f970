"""Several labeled ranges per window, anomaly types and comments, as a REST client sees them: an answer with two
typed ranges (one reaching into the context) shows in the API, the labeling state and every export; overlapping
ranges, a type the project does not define and ranges out of reach are refused with a 422 that says why, and
nothing is stored then; the plain whole-window answers keep working; admins edit the project's types."""

from __future__ import annotations

import csv
import io
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app.core.loop import window_label
from app.core.windows import LabeledRange
from app.datasets.reader import ImportOptions
from app.datasets.service import get_series, import_files
from app.jobs.runner import run_job
from app.projects import service as projects
from app.projects.schemas import ProjectCreate
from app.settings import Settings

N_POINTS = 1_200
WINDOW = 50


@pytest.fixture
def open_round(database, tmp_path: Path) -> dict:
    """An iforest project (types spike, level shift) on 1,200 one-minute points with round 1 open (4 windows)."""
    t = np.arange(N_POINTS)
    values = np.sin(t / 30) + 0.05 * np.random.default_rng(1).standard_normal(t.size)
    values[300:310] += 3.0
    values[900:912] -= 3.0
    path = tmp_path / "ranges.csv"
    stamps = pd.date_range("2024-02-01", periods=t.size, freq="min").strftime("%Y-%m-%dT%H:%M:%S")
    pd.DataFrame({"timestamp": stamps, "value": values}).to_csv(path, index=False)
    with database.session_scope() as session:
        [item] = import_files(session, [path], "ranges", ImportOptions())
        series_id = item.series_id
        project, job_id = projects.create_project(
            session,
            None,
            ProjectCreate(
                name="ranges",
                dataset_id=get_series(session, series_id).dataset_id,
                detector="iforest",
                window=WINDOW,
                stride=10,
                strategy="top_k",
                round_size=4,
                budget=12,
                detector_params={"n_estimators": 20},
                anomaly_types=["spike", "level shift"],
            ),
        )
        project_id = project.id
    assert run_job(database, Settings(database_url=database.url, broker_url=None), job_id, lambda _: None) == "done"
    with database.session_scope() as session:
        started = projects.start_round(session, None, project_id)
        queries = [
            {"id": q.id, "start": q.start, "end": q.end} for q in projects.repo.list_queries(session, started.round.id)
        ]
    # a window with room for context on both sides
    queries.sort(key=lambda q: abs(q["start"] - N_POINTS / 2))
    return {"id": project_id, "series_id": series_id, "queries": queries}


def labeling_answers(client, project_id: int) -> dict[int, list[tuple]]:  # type: ignore[no-untyped-def]
    state = client.get(f"/api/v1/projects/{project_id}/labeling").json()
    return {
        q["id"]: [(a["start"], a["end"], a["value"], a["label_type"], a["comment"]) for a in q["answer"]]
        for q in state["queries"]
    }


def test_two_typed_ranges_with_a_comment_show_in_the_api_the_queue_and_every_export(analyst_client, open_round):
    pid, q = open_round["id"], open_round["queries"][0]
    s = q["start"]
    body = {
        "ranges": [
            # the second range first: the server orders them
            {"start": s + 30, "end": s + 40, "value": "anomaly", "label_type": "level shift"},
            {"start": s - 15, "end": s + 5, "value": "anomaly", "label_type": "spike", "comment": "starts early, ramp"},
        ],
        "idempotency_key": uuid.uuid4().hex,
    }
    r = analyst_client.post(f"/api/v1/queries/{q['id']}/answer", json=body)
    assert r.status_code == 200, r.text
    stored = [(x["start"], x["end"], x["value"], x["label_type"], x["comment"]) for x in r.json()["labels"]]
    expected = [
        (s - 15, s + 5, "anomaly", "spike", "starts early, ramp"),  # reaches 15 points into the context
        (s + 5, s + 30, "normal", None, None),  # the rest of the window: normal
        (s + 30, s + 40, "anomaly", "level shift", None),
        (s + 40, q["end"], "normal", None, None),
    ]
    assert stored == expected
    # a retry with the same key writes nothing new
    again = analyst_client.post(f"/api/v1/queries/{q['id']}/answer", json=body).json()
    assert again["duplicate"] and [x["id"] for x in again["labels"]] == [x["id"] for x in r.json()["labels"]]
    changed = dict(body, ranges=[dict(body["ranges"][0], comment="another note"), body["ranges"][1]])
    assert analyst_client.post(f"/api/v1/queries/{q['id']}/answer", json=changed).status_code == 422

    assert labeling_answers(analyst_client, pid)[q["id"]] == expected
    exported = analyst_client.get(f"/api/v1/projects/{pid}/labels").json()
    assert [(e["start"], e["end"], e["value"], e["label_type"], e["comment"]) for e in exported] == [
        (a, b, v, t or "", c or "") for a, b, v, t, c in expected
    ]
    rows = list(csv.DictReader(io.StringIO(analyst_client.get(f"/api/v1/projects/{pid}/labels?format=csv").text)))
    assert [(int(x["start"]), x["label_type"], x["comment"]) for x in rows if x["value"] == "anomaly"] == [
        (s - 15, "spike", "starts early, ramp"),
        (s + 30, "level shift", ""),
    ]
    points = analyst_client.get(
        f"/api/v1/projects/{pid}/labels", params={"format": "points_csv", "series_id": open_round["series_id"]}
    ).text
    per_point = {int(x["index"]): x for x in csv.DictReader(io.StringIO(points))}
    assert len(per_point) == N_POINTS
    assert (per_point[s - 15]["label"], per_point[s - 15]["label_type"]) == ("1", "spike")
    assert per_point[s - 15]["comment"] == "starts early, ramp"  # quoted: it has a comma
    assert per_point[s - 15]["timestamp"].startswith("2024-02-01")
    assert (per_point[s + 10]["label"], per_point[s + 10]["label_type"]) == ("0", "")
    assert (per_point[s + 35]["label"], per_point[s + 35]["label_type"]) == ("1", "level shift")
    assert per_point[s - 16]["label"] == ""
    shading = analyst_client.get(
        f"/api/v1/projects/{pid}/series/{open_round['series_id']}/labels", params={"start": s - 20, "end": s}
    ).json()
    assert [(x["start"], x["label_type"], x["comment"]) for x in shading] == [(s - 15, "spike", "starts early, ramp")]
    # training sees anomaly vs normal only: the window is anomalous, the types play no part
    window = [LabeledRange(a, b, int(v == "anomaly")) for a, b, v, *_ in expected]
    assert window_label(window, s, q["end"]) == 1


def test_overlapping_ranges_are_refused_and_nothing_is_stored(analyst_client, open_round):
    pid, q = open_round["id"], open_round["queries"][0]
    s = q["start"]
    r = analyst_client.post(
        f"/api/v1/queries/{q['id']}/answer",
        json={"ranges": [{"start": s, "end": s + 20}, {"start": s + 10, "end": s + 30, "value": "normal"}]},
    )
    assert r.status_code == 422, r.text
    assert "overlap" in r.json()["detail"] and f"[{s}, {s + 20})" in r.json()["detail"]
    assert labeling_answers(analyst_client, pid)[q["id"]] == []
    # touching ranges do not overlap
    ok = analyst_client.post(
        f"/api/v1/queries/{q['id']}/answer",
        json={"ranges": [{"start": s, "end": s + 20}, {"start": s + 20, "end": s + 30, "value": "unsure"}]},
    )
    assert ok.status_code == 200, ok.text
    assert [(x["start"], x["end"], x["value"]) for x in ok.json()["labels"]] == [
        (s, s + 20, "anomaly"),
        (s + 20, s + 30, "unsure"),
        (s + 30, q["end"], "normal"),
    ]


def test_a_type_the_project_does_not_define_is_refused_with_its_types(analyst_client, open_round):
    q = open_round["queries"][0]
    s = q["start"]
    r = analyst_client.post(
        f"/api/v1/queries/{q['id']}/answer",
        json={"ranges": [{"start": s, "end": s + 5, "label_type": "drift"}]},
    )
    assert r.status_code == 422
    assert "'drift' is not an anomaly type" in r.json()["detail"] and "spike, level shift" in r.json()["detail"]
    normal_typed = analyst_client.post(
        f"/api/v1/queries/{q['id']}/answer",
        json={"ranges": [{"start": s, "end": s + 5, "value": "normal", "label_type": "spike"}]},
    )
    assert normal_typed.status_code == 422 and "only an anomaly range" in normal_typed.text
    whole = analyst_client.post(f"/api/v1/queries/{q['id']}/answer", json={"value": "anomaly", "label_type": "outage"})
    assert whole.status_code == 422
    long_comment = analyst_client.post(
        f"/api/v1/queries/{q['id']}/answer", json={"value": "normal", "comment": "x" * 1001}
    )
    assert long_comment.status_code == 422
    assert labeling_answers(analyst_client, open_round["id"])[q["id"]] == []


def test_ranges_are_clamped_to_the_series_and_kept_near_the_window(analyst_client, open_round):
    last = max(open_round["queries"], key=lambda q: q["end"])
    past_end = analyst_client.post(
        f"/api/v1/queries/{last['id']}/answer",
        json={"ranges": [{"start": last["end"] - 5, "end": N_POINTS + 500, "label_type": "spike"}]},
    )
    assert past_end.status_code == 200, past_end.text
    assert past_end.json()["labels"][-1]["end"] == min(N_POINTS, last["end"] + 20_000)
    other = next(q for q in open_round["queries"] if q["id"] != last["id"])
    beyond = analyst_client.post(
        f"/api/v1/queries/{other['id']}/answer", json={"ranges": [{"start": N_POINTS, "end": N_POINTS + 5}]}
    )
    assert beyond.status_code == 422 and "past the end of the series" in beyond.json()["detail"]
    empty = analyst_client.post(f"/api/v1/queries/{other['id']}/answer", json={"ranges": [{"start": 10, "end": 10}]})
    assert empty.status_code == 422
    skip_with_ranges = analyst_client.post(
        f"/api/v1/queries/{other['id']}/answer", json={"value": "skip", "ranges": [{"start": 10, "end": 12}]}
    )
    assert skip_with_ranges.status_code == 422


def test_whole_window_answers_keep_working_with_an_optional_type_and_comment(analyst_client, open_round):
    pid = open_round["id"]
    q1, q2, q3, q4 = open_round["queries"]
    typed = analyst_client.post(
        f"/api/v1/queries/{q1['id']}/answer",
        json={"value": "anomaly", "label_type": "spike", "comment": "  a clear spike  "},
    )
    assert typed.status_code == 200, typed.text
    assert [(x["value"], x["label_type"], x["comment"]) for x in typed.json()["labels"]] == [
        ("anomaly", "spike", "a clear spike")
    ]
    dragged = analyst_client.post(
        f"/api/v1/queries/{q2['id']}/answer",
        json={"value": "anomaly", "anomaly_start": q2["start"] + 5, "anomaly_end": q2["start"] + 9},
    )
    assert [(x["start"] - q2["start"], x["value"]) for x in dragged.json()["labels"]] == [
        (0, "normal"),
        (5, "anomaly"),
        (9, "normal"),
    ]
    assert analyst_client.post(f"/api/v1/queries/{q3['id']}/answer", json={"value": "unsure"}).status_code == 200
    assert analyst_client.post(f"/api/v1/queries/{q4['id']}/answer", json={}).status_code == 422  # no value
    last = analyst_client.post(f"/api/v1/queries/{q4['id']}/answer", json={"value": "normal"}).json()
    assert last["round_answered"] == 4
    answers = labeling_answers(analyst_client, pid)
    assert answers[q1["id"]] == [(q1["start"], q1["end"], "anomaly", "spike", "a clear spike")]
    assert answers[q4["id"]] == [(q4["start"], q4["end"], "normal", None, None)]


def test_admins_set_the_project_anomaly_types(admin_client, analyst_client, open_round):
    pid = open_round["id"]
    assert admin_client.get(f"/api/v1/projects/{pid}").json()["anomaly_types"] == ["spike", "level shift"]
    assert analyst_client.patch(f"/api/v1/projects/{pid}", json={"anomaly_types": ["drift"]}).status_code == 403
    dup = admin_client.patch(f"/api/v1/projects/{pid}", json={"anomaly_types": ["drift", "Drift"]})
    assert dup.status_code == 422 and "distinct" in dup.text
    assert admin_client.patch(f"/api/v1/projects/{pid}", json={"anomaly_types": []}).status_code == 422
    r = admin_client.patch(f"/api/v1/projects/{pid}", json={"anomaly_types": ["spike", " drift ", "outage"]})
    assert r.status_code == 200 and r.json()["anomaly_types"] == ["spike", "drift", "outage"]
    q = open_round["queries"][0]
    drift = analyst_client.post(f"/api/v1/queries/{q['id']}/answer", json={"value": "anomaly", "label_type": "drift"})
    assert drift.status_code == 200 and drift.json()["labels"][0]["label_type"] == "drift"
    state = analyst_client.get(f"/api/v1/projects/{pid}/labeling").json()
    assert state["project"]["anomaly_types"] == ["spike", "drift", "outage"]
    # the project page's form does the same
    page = admin_client.get(f"/projects/{pid}")
    assert 'value="spike, drift, outage"' in page.text
    token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    posted = admin_client.post(
        f"/projects/{pid}/anomaly-types",
        data={"csrf_token": token, "anomaly_types": "spike, level shift"},
        follow_redirects=False,
    )
    assert posted.status_code == 303
    assert admin_client.get(f"/api/v1/projects/{pid}").json()["anomaly_types"] == ["spike", "level shift"]


def test_a_new_project_has_the_default_type(admin_client, open_round, database):
    with database.session_scope() as session:
        dataset_id = projects.get_project(session, open_round["id"]).dataset_id
        project, _ = projects.create_project(
            session, None, ProjectCreate(name="plain", dataset_id=dataset_id, detector="iforest")
        )
        project_id = project.id
    assert admin_client.get(f"/api/v1/projects/{project_id}").json()["anomaly_types"] == ["anomaly"]
