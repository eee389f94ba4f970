"""Live data as a REST client sees it: points appended as JSON or CSV are stored once (idempotency key), refused
with what to fix when invalid (storing nothing), scored by the serving model exactly as scoring the whole longer
series offline would score them (in the request, or by a job for a large batch), series asked for before they were
scored get scores on first request, and uploaded arrays are scored without being stored."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from app.accounts import service as accounts
from app.accounts.models import User
from app.core.detectors.registry import load_detector, make_detector
from app.datasets import repository as datasets_repo
from app.datasets import service as datasets
from app.datasets.models import SeriesAppend
from app.datasets.reader import ImportOptions
from app.projects import service as projects
from app.projects.models import Project
from app.projects.schemas import ProjectCreate
from app.versions import repository as versions_repo
from app.versions import scoring
from app.versions import service as versions
from app.webhooks import service as webhooks

T0 = datetime(2024, 1, 1, tzinfo=UTC)
N0 = 1_200
CHUNK = 256  # small chunks: appends fill a partial chunk and open new ones


def _iso(i: int) -> str:
    return (T0 + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _unix(i: int) -> int:
    return int((T0 + timedelta(minutes=i)).timestamp())


def _values(start: int, n: int, spikes: tuple[int, ...] = ()) -> np.ndarray:
    """A noisy daily-ish wave with spikes at the given absolute points."""
    t = np.arange(start, start + n)
    rng = np.random.default_rng(start)
    y = np.sin(t / 30.0) + 0.05 * rng.standard_normal(n)
    for s in spikes:
        if start <= s < start + n:
            y[s - start] += 6.0
    return np.round(y, 5)


def _import(database, tmp_path: Path, name: str, n: int, dataset: str = "live") -> int:  # type: ignore[no-untyped-def]
    path = tmp_path / f"{name}.csv"
    y = _values(0, n, spikes=(300, 900))
    path.write_text("timestamp,value\n" + "".join(f"{_iso(i)},{y[i]}\n" for i in range(n)))
    with database.session_scope() as session:
        [item] = datasets.import_files(session, [path], dataset, ImportOptions(chunk_points=CHUNK))
        return item.series_id


@pytest.fixture
def trained(app, admin_client, database, tmp_path):  # type: ignore[no-untyped-def]
    """A project (the default ensemble: |Δx|, rolling z-score, level, iForest) fitted on one series."""
    series_id = _import(database, tmp_path, "metric", N0)
    with database.session_scope() as session:
        dataset_id = datasets.get_series(session, series_id).dataset_id
        project, job_id = projects.create_project(
            session,
            None,
            ProjectCreate(name="live", dataset_id=dataset_id, detector="ensemble", window=20, round_size=2, budget=4),
        )
        project_id = project.id
    app.state.executor.enqueue(job_id)
    assert app.state.executor.wait_idle(120)
    with database.session_scope() as session:
        version = versions_repo.serving_or_latest(session, session.get(Project, project_id))
        assert version is not None, "the initial fit stored a version"
        version_id = version.id
    return {"series_id": series_id, "project_id": project_id, "version_id": version_id}


def _offline(database, version_id: int, series_id: int) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    """Point and window scores of the whole stored series by the version, computed from scratch."""
    with database.session_scope() as session:
        detector = load_detector(versions_repo.weights_of(session, version_id))
        values = projects.model_input(session, datasets.get_series(session, series_id))
    return detector.point_and_window_scores(values)


def _stored(database, version_id: int, series_id: int, kind: str = "point") -> np.ndarray:  # type: ignore[no-untyped-def]
    with database.session_scope() as session:
        series = datasets.get_series(session, series_id)
        n = versions_repo.scored_length(session, version_id, series_id, kind)
        return versions_repo.read_scores(session, version_id, series_id, kind, 0, n, series.chunk_points)


def _assert_matches_offline(database, version_id: int, series_id: int) -> None:  # type: ignore[no-untyped-def]
    points, windows = _offline(database, version_id, series_id)
    stored = _stored(database, version_id, series_id)
    assert len(stored) == len(points)
    np.testing.assert_allclose(stored, points.astype(np.float32), rtol=1e-5, atol=1e-5)
    stored_windows = _stored(database, version_id, series_id, "window")
    assert len(stored_windows) == len(windows)
    np.testing.assert_allclose(stored_windows, windows.astype(np.float32), rtol=1e-5, atol=1e-5)


def _series(client, series_id: int) -> dict:  # type: ignore[no-untyped-def]
    return client.get(f"/api/v1/series/{series_id}").json()


def _token(database, username: str, scopes: list[str]) -> dict:  # type: ignore[no-untyped-def]
    with database.session_scope() as session:
        user = session.query(User).filter_by(username=username).one()
        _, plain = accounts.create_api_token(session, user, f"{username}-{'-'.join(scopes)}", scopes)
    return {"Authorization": f"Bearer {plain}"}


def test_appended_points_are_scored_as_the_whole_series_offline(admin_client, database, trained):
    sid, vid = trained["series_id"], trained["version_id"]
    head = _stored(database, vid, sid)
    with database.session_scope() as session:  # a receiver that refuses: only the queued deliveries matter here
        webhooks.create_subscription(session, None, "http://127.0.0.1:9/hook", ["anomaly.detected"])
    values = _values(N0, 100, spikes=(N0 + 60,))
    r = admin_client.post(
        f"/api/v1/series/{sid}/points",
        json={"timestamps": [_iso(N0 + i) for i in range(100)], "values": [[v] for v in values]},
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["start"], body["end"], body["n_points"]) == (N0, N0 + 100, 100)
    [scored] = body["scoring"]
    assert scored["status"] == "scored" and scored["scored_points"] == 100 and scored["version_id"] == vid
    assert any(a["start"] <= N0 + 60 < a["end"] for a in scored["anomalies"]), "the spike is a new anomaly"
    with database.session_scope() as session:
        deliveries, _ = webhooks.list_deliveries(session, None)
        sent = sorted((d.payload["start"], d.payload["end"]) for d in deliveries if d.event == "anomaly.detected")
        assert sent == sorted((a["start"], a["end"]) for a in scored["anomalies"])
        event = next(d.payload for d in deliveries if d.payload["start"] <= N0 + 60 < d.payload["end"])
        assert event["series_id"] == sid and event["version_id"] == vid and event["peak_score"] >= event["threshold"]
        assert event["start_timestamp"].startswith(_iso(event["start"])[:16])
    series = _series(admin_client, sid)
    assert series["n_points"] == N0 + 100 and series["last_timestamp"].startswith("2024-01-01T21:39:00")
    _assert_matches_offline(database, vid, sid)
    np.testing.assert_array_equal(_stored(database, vid, sid)[: N0 - 40], head[: N0 - 40])  # old scores kept

    # CSV, bare one-channel rows, across the next chunk boundary
    more = _values(N0 + 100, 150)
    csv_body = "timestamp,value\n" + "".join(f"{_iso(N0 + 100 + i)},{v}\n" for i, v in enumerate(more))
    r = admin_client.post(f"/api/v1/series/{sid}/points", content=csv_body, headers={"Content-Type": "text/csv"})
    assert r.status_code == 201, r.text
    assert r.json()["scoring"][0]["scored_points"] == 150
    r = admin_client.post(
        f"/api/v1/series/{sid}/points",
        json={"timestamps": [_unix(N0 + 250 + i) for i in range(5)], "values": list(_values(N0 + 250, 5))},
    )
    assert r.status_code == 201, r.text
    _assert_matches_offline(database, vid, sid)
    with database.session_scope() as session:
        series = datasets.get_series(session, sid)
        stamps = datasets.read_timestamps(session, series)
        assert len(datasets.read_values(session, series)) == len(stamps) == N0 + 255
        assert (np.diff(stamps.astype(np.int64)) == 60 * 10**9).all()
    scores = admin_client.get(
        f"/api/v1/projects/{trained['project_id']}/scores", params={"series_id": sid, "start": N0, "end": N0 + 255}
    )
    assert scores.status_code == 200 and len(scores.json()["scores"]) == 255


@pytest.mark.parametrize(
    ("body", "content_type", "fix"),
    [
        ({"timestamps": [_iso(N0 + 1), _iso(N0)], "values": [1.0, 2.0]}, None, "strictly increase"),
        ({"timestamps": [_iso(N0 - 1)], "values": [1.0]}, None, "is not after the series' last one"),
        ('{"timestamps": ["' + _iso(N0) + '"], "values": [NaN]}', "application/json", "NaN"),
        ({"timestamps": [_iso(N0)], "values": [1e39]}, None, "out-of-range"),
        ({"timestamps": [_iso(N0)], "values": [None]}, None, "NaN, empty"),
        ({"timestamps": [_iso(N0)], "values": [[1.0, 2.0]]}, None, "1 channel(s)"),
        ({"timestamps": [], "values": []}, None, "no points"),
        ({"values": [1.0]}, None, "one timestamp per point"),
        ({"timestamps": ["yesterday"], "values": [1.0]}, None, "not ISO-8601"),
        (f"timestamp,other\n{_iso(N0)},1.0\n", "text/csv", "missing ['value']"),
        ("", "text/csv", "no points"),
        ({"timestamps": [10**400], "values": [1.0]}, None, "too large"),
        ({"timestamps": [_iso(N0)], "values": [[[1.0]]]}, None, "values must be numbers"),
        ({"timestamps": [_iso(N0)], "values": [1.0], "labels": [2]}, None, "labels must be 0 or 1"),
        ("not json", "application/json", "not JSON"),
        ("<a/>", "application/xml", "application/json or text/csv"),
    ],
)
def test_invalid_batches_say_what_to_fix_and_store_nothing(admin_client, database, tmp_path, body, content_type, fix):
    sid = _import(database, tmp_path, "metric", N0)
    if isinstance(body, dict):
        r = admin_client.post(f"/api/v1/series/{sid}/points", json=body, headers={"Idempotency-Key": "k1"})
    else:
        r = admin_client.post(
            f"/api/v1/series/{sid}/points",
            content=body,
            headers={"Content-Type": content_type, "Idempotency-Key": "k1"},
        )
    assert 400 <= r.status_code < 500 and fix in r.json()["detail"], r.text
    assert _series(admin_client, sid)["n_points"] == N0
    with database.session_scope() as session:
        assert session.query(SeriesAppend).count() == 0
        assert len(datasets.read_values(session, datasets.get_series(session, sid))) == N0


def test_a_retried_batch_is_stored_once(admin_client, database, tmp_path):
    sid = _import(database, tmp_path, "metric", N0)
    batch = {"timestamps": [_iso(N0 + i) for i in range(10)], "values": list(_values(N0, 10))}
    first = admin_client.post(f"/api/v1/series/{sid}/points", json=batch, headers={"Idempotency-Key": "batch-1"})
    # the same batch formatted differently is the same batch
    again = admin_client.post(
        f"/api/v1/series/{sid}/points",
        content=json.dumps(batch, indent=2),
        headers={"Idempotency-Key": "batch-1", "Content-Type": "application/json"},
    )
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    assert _series(admin_client, sid)["n_points"] == N0 + 10
    other = {"timestamps": [_iso(N0 + 10)], "values": [1.0]}
    clash = admin_client.post(f"/api/v1/series/{sid}/points", json=other, headers={"Idempotency-Key": "batch-1"})
    assert clash.status_code == 409 and "different batch" in clash.json()["detail"]
    fresh = admin_client.post(f"/api/v1/series/{sid}/points", json=other, headers={"Idempotency-Key": "batch-2"})
    assert fresh.status_code == 201 and fresh.json()["start"] == N0 + 10
    assert _series(admin_client, sid)["n_points"] == N0 + 11


def test_appending_needs_write_scope(anonymous_client, database, tmp_path):
    sid = _import(database, tmp_path, "metric", N0)
    batch = {"timestamps": [_iso(N0)], "values": [1.0]}
    assert anonymous_client.post(f"/api/v1/series/{sid}/points", json=batch).status_code == 401
    read_only = anonymous_client.post(
        f"/api/v1/series/{sid}/points", json=batch, headers=_token(database, "analyst", ["read"])
    )
    assert read_only.status_code == 403 and "write" in read_only.json()["detail"]
    writer = anonymous_client.post(
        f"/api/v1/series/{sid}/points", json=batch, headers=_token(database, "analyst", ["write"])
    )
    assert writer.status_code == 201, writer.text
    missing = anonymous_client.post(
        "/api/v1/series/999999/points", json=batch, headers=_token(database, "analyst", ["write"])
    )
    assert missing.status_code == 404


def test_a_large_batch_is_scored_by_a_job(app, admin_client, database, trained):
    sid, vid = trained["series_id"], trained["version_id"]
    n = scoring.SYNC_POINTS + 500
    values = _values(N0, n)
    r = admin_client.post(
        f"/api/v1/series/{sid}/points",
        json={"timestamps": [_unix(N0 + i) for i in range(n)], "values": [round(float(v), 4) for v in values]},
    )
    assert r.status_code == 201, r.text
    [queued] = r.json()["scoring"]
    assert queued["status"] == "queued" and queued["job_id"]
    assert app.state.executor.wait_idle(120)
    job = admin_client.get(f"/api/v1/jobs/{queued['job_id']}").json()
    assert job["status"] == "done", job
    _assert_matches_offline(database, vid, sid)


def test_scores_asked_for_before_they_exist(app, admin_client, database, tmp_path, trained, monkeypatch):
    pid, sid, vid = trained["project_id"], trained["series_id"], trained["version_id"]
    # a series imported after the version trained: scored on first request, as offline
    new_id = _import(database, tmp_path, "later", 400)
    with database.session_scope() as session:
        version = versions_repo.get(session, vid)
        scores = versions.read_scores(session, version, new_id, 0, 400)
    assert len(scores) == 400
    _assert_matches_offline(database, vid, new_id)
    # points stored but not scored, more than a request scores: 409 naming the job that scores them
    monkeypatch.setattr(scoring, "SYNC_POINTS", 50)
    with database.session_scope() as session:
        series = datasets.get_series(session, sid)
        batch = datasets.parse_points(
            series,
            json.dumps({"timestamps": [_iso(N0 + i) for i in range(80)], "values": list(_values(N0, 80))}).encode(),
            "application/json",
        )
        datasets.append_points(session, None, sid, batch)
    old_points = admin_client.get(f"/api/v1/projects/{pid}/scores", params={"series_id": sid, "end": 10})
    assert old_points.status_code == 200, old_points.text  # points scored before need nothing new
    new_points = {"series_id": sid, "start": N0, "end": N0 + 80}
    pending = admin_client.get(f"/api/v1/projects/{pid}/scores", params=new_points)
    assert pending.status_code == 409, pending.text
    body = pending.json()
    assert body["code"] == "scores_pending" and f"job {body['job_id']}" in body["detail"]
    assert app.state.executor.wait_idle(120)
    done = admin_client.get(f"/api/v1/projects/{pid}/scores", params=new_points)
    assert done.status_code == 200 and len(done.json()["scores"]) == 80
    _assert_matches_offline(database, vid, sid)


def test_score_an_uploaded_array_without_storing_it(anonymous_client, database, trained):
    pid, vid = trained["project_id"], trained["version_id"]
    values = _values(5_000, 300, spikes=(5_100,))
    with database.session_scope() as session:
        detector = load_detector(versions_repo.weights_of(session, vid))
        threshold = versions_repo.get(session, vid).threshold
        n_appends = session.query(SeriesAppend).count()
    expected = detector.score(values.astype(np.float32).reshape(-1, 1)).astype(np.float32)
    reader = _token(database, "analyst", ["read"])
    r = anonymous_client.post(f"/api/v1/projects/{pid}/score", json={"values": list(values)}, headers=reader)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["version_id"] == vid and body["n_points"] == 300 and body["threshold"] == threshold
    np.testing.assert_allclose(body["scores"], expected, rtol=1e-5, atol=1e-5)
    assert body["predictions"] == [int(s >= threshold) for s in body["scores"]] and body["predictions"][100] == 1
    as_csv = anonymous_client.post(
        f"/api/v1/projects/{pid}/score",
        content="value\n" + "".join(f"{v}\n" for v in values),
        headers={**reader, "Content-Type": "text/csv"},
    )
    assert as_csv.status_code == 200 and as_csv.json()["scores"] == body["scores"]
    short = anonymous_client.post(f"/api/v1/projects/{pid}/score", json={"values": [1.0, 2.0]}, headers=reader)
    assert short.status_code == 422 and "at least 20 points" in short.json()["detail"]
    nan = anonymous_client.post(
        f"/api/v1/projects/{pid}/score",
        content='{"values": [1.0, NaN]}',
        headers={**reader, "Content-Type": "application/json"},
    )
    assert nan.status_code == 422 and "NaN" in nan.json()["detail"]
    assert anonymous_client.post(f"/api/v1/projects/{pid}/score", json={"values": list(values)}).status_code == 401
    with database.session_scope() as session:
        assert session.query(SeriesAppend).count() == n_appends  # nothing stored
        assert datasets_repo.get_series(session, trained["series_id"]).n_points == N0


def test_a_version_asked_for_by_many_requests_at_once_is_loaded_once():
    """Eight requests scoring with a version not yet in the cache share one load (an ensemble takes ~0.5 s to
    rebuild); each gets the same detector and its scoring lock."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    cache = scoring.DetectorCache(4)
    loads, start = [], threading.Barrier(8)
    model = make_detector("iforest", window=10)  # what the cache holds; it never scores here

    def slow_load():
        loads.append(1)
        threading.Event().wait(0.2)  # long enough for every thread to arrive during the load
        return model

    def ask(_: int):
        start.wait()
        return cache.get(("version", 1), slow_load)

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(ask, range(8)))
    assert len(loads) == 1
    assert all(detector is model and lock is got[0][1] for detector, lock in got)
    assert cache.get(("version", 2), lambda: model)[1] is not got[0][1]  # another version, another lock
