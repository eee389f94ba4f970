"""Scores and events out, as a REST client sees them: score reads by index and by time range as JSON or CSV (the
same numbers either way), ETags and 304s, ranges refused with the valid range named, anomaly events with their
labels, filters and cursor pagination, and a 3,000,000-point read streamed."""

from __future__ import annotations

import csv
import io
import json
import tracemalloc
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from app.accounts import service as accounts
from app.accounts.models import User
from app.datasets import repository as datasets_repo
from app.datasets.models import Series
from app.projects import service as projects
from app.projects.models import Project
from app.projects.schemas import ProjectCreate
from app.versions import events, reads
from app.versions import repository as versions_repo
from app.versions.models import ModelVersion

T0 = datetime(2024, 1, 1, tzinfo=UTC)
STEP_S = 60
THRESHOLD = 0.5
CHUNK = 128  # small chunks: reads and event scans cross chunk boundaries
# The anomalies of series A (points [start, end), peak): two runs 3 points apart at [200, 210) are one event with
# the default merge gap (5), two with merge_gap=0; [760, 780) crosses the chunk boundary at 768.
EVENTS_A = [(100, 110, 0.95), (200, 203, 0.7), (206, 210, 0.9), (500, 501, 0.8), (760, 780, 0.99)]
N_A, N_B = 1_000, 300
EVENTS_B = [(10, 20, 0.6), (250, 300, 0.75)]  # the last one runs to the series' end


def _iso(i: int) -> str:
    return (T0 + timedelta(seconds=STEP_S * i)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _scores(n: int, anomalies: list[tuple[int, int, float]], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scores = rng.uniform(0.0, 0.4, n).astype(np.float32)
    for start, end, peak in anomalies:
        scores[start:end] = 0.6
        scores[start + (end - start) // 2] = peak
    return scores


def _add_series(session, dataset_id: int, name: str, n: int, chunk: int = CHUNK) -> Series:  # type: ignore[no-untyped-def]
    """A one-channel series with one point a minute from 2024-01-01, stored in ``chunk``-point chunks."""
    ts = np.datetime64("2024-01-01T00:00:00", "ns").astype(np.int64) + np.arange(n, dtype=np.int64) * STEP_S * 10**9
    values = np.sin(np.arange(n) / 10.0).astype(np.float32).reshape(-1, 1)
    series = datasets_repo.add_series(
        session,
        Series(
            dataset_id=dataset_id,
            name=name,
            n_channels=1,
            channel_names=["value"],
            timestamp_kind="datetime",
            chunk_points=chunk,
            n_points=n,
            first_timestamp=_iso(0),
            last_timestamp=_iso(n - 1),
        ),
    )
    for index, lo in enumerate(range(0, n, chunk)):
        datasets_repo.write_chunk(session, series.id, "values", index, lo, values[lo : lo + chunk])
        datasets_repo.write_chunk(session, series.id, "ts_ns", index, lo, ts[lo : lo + chunk])
    return series


def _add_version(session, project_id: int, round_number: int, scores: dict[int, np.ndarray], chunk: int) -> int:  # type: ignore[no-untyped-def]
    """A model version with the given point scores (no weights are ever loaded: every point has a score)."""
    version = versions_repo.add(
        session,
        ModelVersion(
            project_id=project_id,
            round_number=round_number,
            method="test",
            params={},
            weights=b"",
            metrics={},
            threshold=THRESHOLD,
        ),
    )
    for series_id, arr in scores.items():
        versions_repo.write_scores(session, version.id, series_id, "point", arr, chunk)
    return version.id


@pytest.fixture
def known(database):  # type: ignore[no-untyped-def]
    """A project over two series with known anomalies and a serving version 0 that scores them."""
    with database.session_scope() as session:
        dataset = datasets_repo.add_dataset(session, "known")
        dataset.n_channels = 1
        a = _add_series(session, dataset.id, "a", N_A)
        b = _add_series(session, dataset.id, "b", N_B)
        project, _job = projects.create_project(
            session, None, ProjectCreate(name="known", dataset_id=dataset.id, detector="iforest", window=10)
        )
        scores = {a.id: _scores(N_A, EVENTS_A, 1), b.id: _scores(N_B, EVENTS_B, 2)}
        scores[a.id][300] = np.nan  # a gap in the scores: null in JSON, empty in CSV, never an event
        version_id = _add_version(session, project.id, 0, scores, CHUNK)
        project.serving_version_id = version_id
        return {"project": project.id, "a": a.id, "b": b.id, "version": version_id, "scores": scores}


def _token(database, username: str, scopes: list[str]) -> dict[str, str]:  # type: ignore[no-untyped-def]
    with database.session_scope() as session:
        user = session.query(User).filter_by(username=username).one()
        _row, plain = accounts.create_api_token(session, user, f"{username}-{'-'.join(scopes)}", scopes)
    return {"Authorization": f"Bearer {plain}"}


# -- scores -----------------------------------------------------------------------------------------------------


def test_index_and_time_ranges_agree_as_json_and_csv(analyst_client, known):
    url = f"/api/v1/projects/{known['project']}/scores"
    by_index = analyst_client.get(url, params={"series_id": known["a"], "start": 95, "end": 215})
    assert by_index.status_code == 200, by_index.text
    body = by_index.json()
    assert (body["version_id"], body["start"], body["end"], body["threshold"]) == (known["version"], 95, 215, 0.5)
    assert body["timestamp_kind"] == "datetime" and body["timestamps"][0] == _iso(95)
    assert len(body["timestamps"]) == len(body["scores"]) == len(body["predictions"]) == 120
    expected = np.round(known["scores"][known["a"]][95:215].astype(np.float64), 6)
    assert body["scores"] == pytest.approx(expected.tolist())
    assert body["predictions"] == [int(s >= 0.5) for s in expected]
    assert sum(body["predictions"]) == 10 + 3 + 4  # [95, 215) holds the events at [100, 110) and [200, 210)

    # the same points by time (ISO 8601 and unix seconds, to exclusive): the same bytes, the same ETag
    by_time = analyst_client.get(url, params={"series_id": known["a"], "from": _iso(95), "to": _iso(215)})
    epoch = int(T0.timestamp())
    by_epoch = analyst_client.get(
        url, params={"series_id": known["a"], "from": epoch + 95 * STEP_S, "to": epoch + 215 * STEP_S - 30}
    )
    assert by_time.content == by_index.content == by_epoch.content
    assert by_time.headers["etag"] == by_index.headers["etag"] == by_epoch.headers["etag"]

    as_csv = analyst_client.get(url, params={"series_id": known["a"], "start": 95, "end": 215, "format": "csv"})
    assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith("text/csv")
    assert as_csv.headers["etag"] != by_index.headers["etag"]  # another representation, another ETag
    assert "attachment" in as_csv.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [int(r["index"]) for r in rows] == list(range(95, 215))
    assert [r["timestamp"] for r in rows] == body["timestamps"]
    assert [float(r["score"]) for r in rows] == body["scores"]
    assert [int(r["prediction"]) for r in rows] == body["predictions"]


def test_default_range_gaps_and_backward_compatible_fields(analyst_client, known):
    url = f"/api/v1/projects/{known['project']}/scores"
    whole = analyst_client.get(url, params={"series_id": known["a"]}).json()
    assert (whole["start"], whole["end"], len(whole["scores"])) == (0, N_A, N_A)
    assert whole["scores"][300] is None and whole["predictions"][300] == 0  # a missing score predicts nothing
    assert whole["timestamps"][-1] == _iso(N_A - 1)
    rows = analyst_client.get(url, params={"series_id": known["a"], "start": 299, "end": 302, "format": "csv"}).text
    assert rows.splitlines()[2] == f"300,{_iso(300)},,0"
    # the fields the earlier, unstreamed endpoint had are all still there
    old = analyst_client.get(url, params={"series_id": known["b"], "end": 10}).json()
    assert {"version_id", "series_id", "start", "end", "threshold", "scores", "predictions"} <= old.keys()
    assert old["start"] == 0 and old["end"] == 10 and len(old["scores"]) == 10


def test_bad_ranges_say_what_is_valid(analyst_client, known):
    url = f"/api/v1/projects/{known['project']}/scores"
    a = known["a"]
    inverted = analyst_client.get(url, params={"series_id": a, "start": 50, "end": 40})
    assert inverted.status_code == 422 and "0 <= start < end <= 1000" in inverted.json()["detail"]
    beyond = analyst_client.get(url, params={"series_id": a, "start": 990, "end": 1010})
    assert beyond.status_code == 416 and "has 1,000 points" in beyond.json()["detail"]
    past = analyst_client.get(url, params={"series_id": a, "start": 1000})
    assert past.status_code == 416
    late = analyst_client.get(url, params={"series_id": a, "from": "2030-01-01T00:00:00Z"})
    assert late.status_code == 416 and _iso(N_A - 1) in late.json()["detail"]
    backwards = analyst_client.get(url, params={"series_id": a, "from": _iso(20), "to": _iso(10)})
    assert backwards.status_code == 422 and "must be after" in backwards.json()["detail"]
    between = analyst_client.get(
        url, params={"series_id": a, "from": "2024-01-01T00:00:10Z", "to": "2024-01-01T00:00:50Z"}
    )
    assert between.status_code == 416 and "no point" in between.json()["detail"]  # no sample in those 40 s
    garbage = analyst_client.get(url, params={"series_id": a, "from": "yesterday"})
    assert garbage.status_code == 422 and "ISO 8601" in garbage.json()["detail"]
    both = analyst_client.get(url, params={"series_id": a, "start": 0, "from": _iso(0)})
    assert both.status_code == 422 and "not both" in both.json()["detail"]
    assert analyst_client.get(url, params={"series_id": a, "format": "xml"}).status_code == 422
    assert analyst_client.get(url, params={"series_id": 10**6}).status_code == 404


def test_etag_304_and_a_new_etag_when_a_new_version_serves(admin_client, analyst_client, known, database):
    url = f"/api/v1/projects/{known['project']}/scores"
    params = {"series_id": known["a"], "start": 0, "end": 100}
    first = analyst_client.get(url, params=params)
    etag = first.headers["etag"]
    again = analyst_client.get(url, params=params, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    other_range = analyst_client.get(url, params={**params, "end": 101}, headers={"If-None-Match": etag})
    assert other_range.status_code == 200 and other_range.headers["etag"] != etag

    with database.session_scope() as session:
        newer = {s: np.clip(arr * 0.5, 0, 1) for s, arr in known["scores"].items()}
        new_version = _add_version(session, known["project"], 1, newer, CHUNK)
    assert admin_client.post(f"/api/v1/versions/{new_version}/promote").status_code == 200
    changed = analyst_client.get(url, params=params, headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.json()["version_id"] == new_version
    assert changed.headers["etag"] != etag
    # the old version is still readable by id, under its old ETag
    pinned = analyst_client.get(url, params={**params, "version_id": known["version"]}, headers={"If-None-Match": etag})
    assert pinned.status_code == 304


def test_read_only_token_reads_and_no_token_is_401(app, anonymous_client, known, database):
    headers = _token(database, "analyst", ["read"])
    url = f"/api/v1/projects/{known['project']}/scores"
    ok = anonymous_client.get(url, params={"series_id": known["a"], "end": 5}, headers=headers)
    assert ok.status_code == 200 and len(ok.json()["scores"]) == 5
    page = anonymous_client.get(f"/api/v1/projects/{known['project']}/events", headers=headers)
    assert page.status_code == 200 and page.json()["events"]
    for path in (url, f"/api/v1/projects/{known['project']}/events"):
        refused = anonymous_client.get(path, params={"series_id": known["a"]}, headers={"Accept": "application/json"})
        assert refused.status_code == 401
    wrong = anonymous_client.get(url, params={"series_id": known["a"]}, headers={"Authorization": "Bearer alp_nope"})
    assert wrong.status_code == 401


def test_scores_view_still_works(analyst_client, known):
    view = analyst_client.get(
        f"/api/v1/projects/{known['project']}/scores/view", params={"series_id": known["a"], "width": 100}
    ).json()
    assert (
        view["version_id"] == known["version"]
        and view["end"] == N_A
        and max(y for y in view["y"] if y is not None) == 0.99
    )


def test_streamed_body_equals_the_inline_one(database, known):
    """The blocks of a stream (here 7 points at a time, across stored chunks) join into the bytes of one read."""
    with database.session_scope() as session:
        for fmt in ("json", "csv"):
            read = reads.plan_score_read(session, known["project"], known["a"], start=3, end=400, fmt=fmt)
            whole = b"".join(reads.render(session, read))
            streamed = b"".join(reads.stream(database.session_scope, read, block_points=7))
            assert streamed == whole
            if fmt == "json":
                assert len(json.loads(whole)["scores"]) == 397


def test_the_fast_json_items_are_the_texts_of_the_csv_and_the_earlier_format():
    """orjson writes the JSON arrays; timestamps come out byte for byte as the text formatter writes them (whole
    seconds by orjson, finer ones by the text path), scores and predictions as the same numbers (null where not
    finite)."""
    seconds = np.array(["1900-01-01T00:00:00", "1970-01-01T00:00:00", "2024-02-29T23:59:59", "2262-04-11T00:00:00"])
    whole = seconds.astype("datetime64[ns]").view(np.int64)
    finer = whole + np.array([0, 500_000_000, 1_000_000, 7])  # ms, µs and ns parts: the text path keeps every digit
    for ts, kind in ((whole, "datetime"), (finer, "datetime"), (np.array([0.5, 2.0, 1e20]), "number"),
                     (np.arange(5, 9), "index")):  # fmt: skip
        assert reads._json_timestamps(ts, kind) == ",".join(reads._timestamp_texts(ts, kind)).encode()
    scores = np.array([0.1234567, 1e-5, -3.0, np.nan, np.inf, 12345.6789], dtype=np.float32)
    texts = reads._score_texts(scores)
    assert json.loads(b"[" + reads._json_scores(scores) + b"]") == [None if t == "null" else float(t) for t in texts]
    assert texts[3] == texts[4] == "null"
    assert (
        reads._json_predictions(scores, 0.5)
        == ",".join(reads._prediction_texts(scores, 0.5)).encode()
        == b"0,0,0,0,1,1"
    )


# -- events -----------------------------------------------------------------------------------------------------


def _all_events(client, project_id: int, **params) -> tuple[list[dict], int]:  # type: ignore[no-untyped-def]
    """Every event by following next_cursor; also how many pages it took."""
    url = f"/api/v1/projects/{project_id}/events"
    out, pages, cursor = [], 0, None
    while True:
        r = client.get(url, params={**params, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        page = r.json()
        out += page["events"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            return out, pages


def test_events_are_the_known_segments(analyst_client, known):
    page = analyst_client.get(f"/api/v1/projects/{known['project']}/events").json()
    assert page["version_id"] == known["version"] and page["threshold"] == 0.5 and page["merge_gap"] == 5
    assert page["next_cursor"] is None
    got = [(e["series_id"], e["start"], e["end"], e["peak_score"]) for e in page["events"]]
    a, b = known["a"], known["b"]
    assert got == [
        (a, 100, 110, 0.95),
        (a, 200, 210, 0.9),  # two runs 3 points apart: one event
        (a, 500, 501, 0.8),
        (a, 760, 780, 0.99),  # across a stored chunk boundary
        (b, 10, 20, 0.6),
        (b, 250, 300, 0.75),  # up to the series' last point
    ]
    first = page["events"][0]
    assert (first["start_time"], first["end_time"], first["peak_index"], first["peak_time"]) == (
        _iso(100),
        _iso(109),
        105,
        _iso(105),
    )
    assert first["n_points"] == 10 and first["label"] is None and first["labels"] == []
    raw = analyst_client.get(f"/api/v1/projects/{known['project']}/events", params={"merge_gap": 0}).json()
    assert [(e["start"], e["end"]) for e in raw["events"] if e["series_id"] == a][1:3] == [(200, 203), (206, 210)]


def test_event_filters(analyst_client, known):
    url = f"/api/v1/projects/{known['project']}/events"
    only_b = analyst_client.get(url, params={"series_id": known["b"]}).json()["events"]
    assert [(e["start"], e["end"]) for e in only_b] == [(10, 20), (250, 300)]
    strong = analyst_client.get(url, params={"min_score": 0.9}).json()["events"]
    assert [e["peak_score"] for e in strong] == [0.95, 0.9, 0.99]
    # events overlapping [from, to): the one at [200, 210) is cut by from = point 205 but returned whole
    window = analyst_client.get(url, params={"series_id": known["a"], "from": _iso(205), "to": _iso(760)}).json()
    assert [(e["start"], e["end"]) for e in window["events"]] == [(200, 210), (500, 501)]
    epoch = int(T0.timestamp())
    late = analyst_client.get(url, params={"from": epoch + 700 * STEP_S}).json()["events"]
    assert [(e["series_id"], e["start"]) for e in late] == [(known["a"], 760)]
    assert analyst_client.get(url, params={"from": "2030-01-01"}).json()["events"] == []
    assert analyst_client.get(url, params={"from": _iso(20), "to": _iso(10)}).status_code == 422
    assert analyst_client.get(url, params={"series_id": 10**6}).status_code == 404
    assert analyst_client.get(url, params={"limit": 1001}).status_code == 422


def test_event_pages_reach_every_event_once(analyst_client, known):
    everything = analyst_client.get(f"/api/v1/projects/{known['project']}/events").json()["events"]
    for limit in (1, 2, 4, 5):
        paged, pages = _all_events(analyst_client, known["project"], limit=limit)
        assert paged == everything
        assert pages == -(-len(everything) // limit)
    filtered, _ = _all_events(analyst_client, known["project"], limit=1, min_score=0.9, merge_gap=0)
    assert [(e["start"], e["peak_score"]) for e in filtered] == [(100, 0.95), (206, 0.9), (760, 0.99)]
    url = f"/api/v1/projects/{known['project']}/events"
    cursor = analyst_client.get(url, params={"limit": 2}).json()["next_cursor"]
    mismatch = analyst_client.get(url, params={"limit": 2, "cursor": cursor, "min_score": 0.1})
    assert mismatch.status_code == 422 and "other filters" in mismatch.json()["detail"]
    forged = analyst_client.get(url, params={"cursor": "not-a-cursor"})
    assert forged.status_code == 422 and "next_cursor" in forged.json()["detail"]


def test_pages_stay_on_their_version_when_another_serves(admin_client, analyst_client, known, database):
    url = f"/api/v1/projects/{known['project']}/events"
    first = analyst_client.get(url, params={"limit": 3}).json()
    with database.session_scope() as session:
        quiet = {s: np.zeros_like(arr) for s, arr in known["scores"].items()}
        new_version = _add_version(session, known["project"], 1, quiet, CHUNK)
    assert admin_client.post(f"/api/v1/versions/{new_version}/promote").status_code == 200
    rest = analyst_client.get(url, params={"limit": 3, "cursor": first["next_cursor"]}).json()
    assert rest["version_id"] == known["version"] and len(first["events"]) + len(rest["events"]) == 6
    assert analyst_client.get(url).json() == {
        "project_id": known["project"],
        "version_id": new_version,
        "threshold": 0.5,
        "merge_gap": 5,
        "events": [],
        "next_cursor": None,
    }


def test_a_label_overlapping_an_event_appears_on_it(analyst_client, known):
    labels = f"/api/v1/projects/{known['project']}/labels"
    r = analyst_client.post(labels, json={"series_id": known["a"], "start": 105, "end": 120, "value": "anomaly"})
    assert r.status_code == 201, r.text
    label_id = r.json()["id"]
    analyst_client.post(
        labels, json={"series_id": known["a"], "start": 495, "end": 498, "value": "normal"}
    )  # no overlap
    analyst_client.post(labels, json={"series_id": known["a"], "start": 760, "end": 765, "value": "anomaly"})
    analyst_client.post(labels, json={"series_id": known["a"], "start": 770, "end": 775, "value": "normal"})
    page = analyst_client.get(f"/api/v1/projects/{known['project']}/events", params={"series_id": known["a"]}).json()
    by_start = {e["start"]: e for e in page["events"]}
    assert by_start[100]["label"] == "anomaly"
    assert [(lab["id"], lab["start"], lab["end"]) for lab in by_start[100]["labels"]] == [(label_id, 105, 120)]
    assert by_start[200]["label"] is None and by_start[500]["label"] is None
    assert by_start[760]["label"] == "mixed" and len(by_start[760]["labels"]) == 2


def test_runs_are_the_same_whatever_the_blocks():
    """The vectorised scan gives the same events as a plain loop, whatever block size cuts the series."""
    rng = np.random.default_rng(5)
    scores = rng.uniform(0, 1, 5_000).astype(np.float32)
    scores[rng.integers(0, 5_000, 50)] = np.nan
    for gap in (0, 1, 3):
        expected = _runs_by_loop(scores, 0.8, gap)
        for block in (1, 7, 64, 5_000):
            blocks = ((lo, scores[lo : lo + block]) for lo in range(0, len(scores), block))
            got = [(r.start, r.end, r.peak_score, r.peak_index) for r in events.runs(blocks, 0.8, gap)]
            assert got == expected, (gap, block)


def _runs_by_loop(scores: np.ndarray, threshold: float, gap: int) -> list[tuple[int, int, float, int]]:
    out: list[list] = []
    for i, s in enumerate(scores.tolist()):
        if not s >= threshold:
            continue
        if out and i - out[-1][1] <= gap:
            out[-1][1] = i + 1
            if s > out[-1][2]:
                out[-1][2:] = [s, i]
        else:
            out.append([i, i + 1, s, i])
    return [tuple(r) for r in out]  # type: ignore[misc]


# -- a large read -----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_three_million_points_stream(analyst_client, database):
    """A 3,000,000-point range streams as CSV and as JSON with every point once, in blocks."""
    n = 3_000_000
    with database.session_scope() as session:
        dataset = datasets_repo.add_dataset(session, "big")
        dataset.n_channels = 1
        series = _add_series(session, dataset.id, "big", n, chunk=65_536)
        project, _job = projects.create_project(
            session, None, ProjectCreate(name="big", dataset_id=dataset.id, detector="iforest", window=10)
        )
        scores = np.zeros(n, dtype=np.float32)
        scores[::1000] = 0.75  # every 1000th point flagged
        version_id = _add_version(session, project.id, 0, {series.id: scores}, 65_536)
        session.get(Project, project.id).serving_version_id = version_id
        project_id, series_id = project.id, series.id
    url = f"/api/v1/projects/{project_id}/scores"
    plain = {"Accept-Encoding": "identity"}  # count the bytes the server writes (gzip is the middleware's business)
    with analyst_client.stream("GET", url, params={"series_id": series_id, "format": "csv"}, headers=plain) as r:
        assert r.status_code == 200 and "content-length" not in r.headers  # streamed, not built whole
        lines = flagged = size = largest = 0
        carry = b""  # the last 2 bytes of the previous piece: a ",1\n" split between pieces is counted once
        for piece in r.iter_bytes():
            size += len(piece)
            largest = max(largest, len(piece))
            lines += piece.count(b"\n")
            flagged += (carry + piece).count(b",1\n")
            carry = piece[-2:]
    assert lines == n + 1 and flagged == n // 1000
    # every byte accounted for: "index,2024-..-..T..:..:..Z,score,prediction\n" with scores 0.0 or 0.75
    assert size == len(reads.CSV_HEADER) + _digits(n) + n * (1 + 20 + 1 + 3 + 1 + 1 + 1) + n // 1000
    assert largest < 4 * 2**20  # written block by block (a 65,536-point block is about 2.4 MB), never whole
    with analyst_client.stream("GET", url, params={"series_id": series_id, "start": 1, "end": n}, headers=plain) as r:
        assert r.status_code == 200
        size = commas = 0
        for piece in r.iter_bytes():
            size += len(piece)
            commas += piece.count(b",")
    # three arrays of n - 1 values: n - 2 commas in each, plus the 8 between the 9 fields of the object
    assert commas == 3 * (n - 2) + 8 and size > 3 * n

    # the server's memory while writing 8 blocks (524,288 points) stays a fraction of the body it writes
    with database.session_scope() as session:
        read = reads.plan_score_read(session, project_id, series_id, start=0, end=8 * 65_536, fmt="csv")
    tracemalloc.start()
    try:
        written = sum(len(piece) for piece in reads.stream(database.session_scope, read))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # about 6 MB (one 65,536-point chunk read, formatted 16,384 points at a time) for 17 MB written
    assert written > 16 * 2**20 and peak < written / 2, (written, peak)


def _digits(n: int) -> int:
    """Characters of ``str(i)`` summed over ``i`` in ``range(n)``."""
    return sum(d * (min(n, 10**d) - (10 ** (d - 1) if d > 1 else 0)) for d in range(1, len(str(n)) + 1))
