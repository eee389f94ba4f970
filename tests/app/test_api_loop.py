"""The REST loop as a client sees it: create a project, wait for its model, start a round, answer (retrying safely),
pull scores and predictions, roll back, export labels; analysts and read-only tokens are held to their role."""

from __future__ import annotations

import time
import uuid

from tests.app.loop_helpers import import_series


def _wait(client, path: str, ok, timeout: float = 120):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(path).json()
        if ok(body):
            return body
        time.sleep(0.2)
    raise TimeoutError(path)


def test_rest_loop(admin_client, analyst_client, database, shared_data):
    dataset_id = import_series(database, shared_data / "nab" / "realKnownCause__nyc_taxi.csv.gz", "taxi")
    r = admin_client.post(
        "/api/v1/projects",
        json={
            "name": "api",
            "dataset_id": dataset_id,
            "detector": "iforest",
            "window": 25,
            "strategy": "top_k",
            "round_size": 3,
            "budget": 6,
            "threshold_method": "best_f1",  # the best F1 on the labeled points (expected_f1 is the default)
        },
    )
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    assert admin_client.get(f"/api/v1/projects/{pid}").json()["threshold_method"] == "best_f1"
    bad = admin_client.post("/api/v1/projects", json={"name": "x", "dataset_id": dataset_id, "detector": "nope"})
    assert bad.status_code == 400 and "unknown detector 'nope'" in bad.json()["detail"]
    bad = admin_client.post(
        "/api/v1/projects", json={"name": "x", "dataset_id": dataset_id, "threshold_method": "otsu"}
    )
    assert bad.status_code == 422 and "expected_f1" in bad.text
    versions = _wait(admin_client, f"/api/v1/projects/{pid}/versions", lambda v: len(v) == 1)
    assert versions[0]["serving"] and versions[0]["round_number"] == 0
    assert analyst_client.post(f"/api/v1/projects/{pid}/rounds", json={}).status_code == 403
    rnd = admin_client.post(f"/api/v1/projects/{pid}/rounds", json={}).json()
    again = admin_client.post(f"/api/v1/projects/{pid}/rounds", json={})
    assert again.status_code == 409 and "still open" in again.json()["detail"]
    queries = analyst_client.get(f"/api/v1/rounds/{rnd['id']}/queries").json()
    assert len(queries) == 3 and all(q["reason"].startswith("top-k") for q in queries)
    key = uuid.uuid4().hex
    first = analyst_client.post(
        f"/api/v1/queries/{queries[0]['id']}/answer", json={"value": "anomaly", "idempotency_key": key}
    ).json()
    retry = analyst_client.post(
        f"/api/v1/queries/{queries[0]['id']}/answer", json={"value": "anomaly", "idempotency_key": key}
    ).json()
    assert not first["duplicate"] and retry["duplicate"] and retry["labels"] == first["labels"]
    past_end = analyst_client.post(
        f"/api/v1/queries/{queries[1]['id']}/answer",
        json={"value": "anomaly", "anomaly_start": 0, "anomaly_end": 10**9},
    )
    assert past_end.status_code == 400 and "inside the window" in past_end.json()["detail"]
    for q in queries[1:]:
        last = analyst_client.post(f"/api/v1/queries/{q['id']}/answer", json={"value": "normal"}).json()
    # every window answered: the round waits for review (the default grace period) until an analyst submits it
    assert last["round_status"] == "open" and last["round_answered"] == 3 and last["next_query_id"] is None
    submitted = analyst_client.post(f"/api/v1/rounds/{rnd['id']}/submit")
    assert submitted.status_code == 200 and submitted.json()["status"] == "complete", submitted.text
    versions = _wait(admin_client, f"/api/v1/projects/{pid}/versions", lambda v: len(v) == 2)
    newest = max(versions, key=lambda v: v["round_number"])
    assert newest["serving"] and newest["labels_used"] == 3, versions
    series_id = queries[0]["series_id"]
    scores = analyst_client.get(
        f"/api/v1/projects/{pid}/scores", params={"series_id": series_id, "start": 100, "end": 200}
    ).json()
    assert scores["version_id"] == newest["id"] and len(scores["scores"]) == 100
    assert scores["predictions"] == [int(s >= scores["threshold"]) for s in scores["scores"]]
    oldest = min(versions, key=lambda v: v["round_number"])
    assert analyst_client.post(f"/api/v1/versions/{oldest['id']}/promote").status_code == 403
    assert admin_client.post(f"/api/v1/versions/{oldest['id']}/promote").json()["serving"]
    rolled = analyst_client.get(f"/api/v1/projects/{pid}/scores", params={"series_id": series_id, "end": 10}).json()
    assert rolled["version_id"] == oldest["id"]
    exported = analyst_client.get(f"/api/v1/projects/{pid}/labels").json()
    assert {(e["value"], e["author"]) for e in exported} == {("anomaly", "analyst"), ("normal", "analyst")}
    csv = analyst_client.get(f"/api/v1/projects/{pid}/labels", params={"format": "csv"}).text.splitlines()
    assert csv[0].startswith("series_id,series,start,end,value") and len(csv) == 4
    points = analyst_client.get(
        f"/api/v1/projects/{pid}/labels", params={"format": "points_csv", "series_id": series_id}
    ).text.splitlines()
    assert points[0] == "index,timestamp,label,label_type,comment" and len(points) == 10_321
    assert sum(line.split(",")[2] == "1" for line in points[1:]) == 25  # one anomalous window of 25 points
