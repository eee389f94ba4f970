"""Webhooks as an admin and a receiver see them: register (secret shown once), signed deliveries to a real local
receiver, retries with backoff when it fails, the delivery log, events from real actions, and who may do what."""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.jobs import service as jobs
from app.settings import Settings
from app.webhooks import service as webhooks
from app.webhooks.models import WebhookDelivery
from tests.app.loop_helpers import create, import_series

BACKOFF_S = [0.2, 0.2]
"""Fast retries for the tests (production: 10 s, 1 min, 5 min, 30 min); one attempt plus one per entry."""


@pytest.fixture
def settings(database, tmp_path) -> Settings:
    return Settings(
        database_url=database.url, data_dir=tmp_path, broker_url=None, webhook_backoff_s=BACKOFF_S, webhook_timeout_s=20
    )


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1: answers each POST with the next status of ``answers`` (then 200)."""

    url: str
    answers: list[int] = field(default_factory=list)
    requests: queue.Queue = field(default_factory=queue.Queue)
    gate: threading.Event = field(default_factory=threading.Event)
    """Cleared: the receiver holds each request unanswered until it is set (a slow receiver)."""

    def __post_init__(self) -> None:
        self.gate.set()

    def next(self, timeout: float = 20.0) -> Received:
        return self.requests.get(timeout=timeout)

    def events(self) -> list[str]:
        out = []
        while not self.requests.empty():
            out.append(self.requests.get_nowait().headers["X-Anomaloop-Event"])
        return out


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            state.requests.put(Received(dict(self.headers.items()), body))
            state.gate.wait(30)
            status = state.answers.pop(0) if state.answers else 200
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b"receiver says no" if status >= 400 else b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def verify(secret: str, headers: dict[str, str], body: bytes, tolerance_s: float = 300) -> bool:
    """What a receiver does (docs/WEBHOOKS.md): HMAC-SHA256 of ``<timestamp>.<body>``, compared in constant time,
    and a timestamp no older than the tolerance."""
    timestamp = headers["X-Anomaloop-Timestamp"]
    expected = "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    fresh = abs(time.time() - int(timestamp)) <= tolerance_s
    return fresh and hmac.compare_digest(expected, headers["X-Anomaloop-Signature"])


def register(client, url: str, events: list[str], **extra) -> dict:  # type: ignore[no-untyped-def]
    r = client.post("/api/v1/webhooks", json={"url": url, "events": events, **extra})
    assert r.status_code == 201, r.text
    return r.json()


def wait_delivery(client, webhook_id: int, done, timeout: float = 30.0) -> list[dict]:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = client.get(f"/api/v1/webhooks/{webhook_id}/deliveries").json()["items"]
        if items and done(items):
            return items
        time.sleep(0.1)
    raise TimeoutError(f"deliveries of webhook {webhook_id}: {items}")


def _wait(client, path: str, ok, timeout: float = 30.0) -> dict:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(path).json()
        if ok(body):
            return body
        time.sleep(0.1)
    raise TimeoutError(f"{path}: {body}")


def test_a_ping_arrives_signed_and_is_logged(admin_client, receiver):
    created = register(admin_client, receiver.url, ["version.served", "job.failed"])
    secret = created["secret"]
    assert secret.startswith("whsec_") and len(secret) > 30
    listed = admin_client.get("/api/v1/webhooks").json()
    assert [w["url"] for w in listed] == [receiver.url] and "secret" not in listed[0]  # shown once, at creation

    r = admin_client.post(f"/api/v1/webhooks/{created['id']}/test")
    assert r.status_code == 202 and r.json()["event"] == "ping"
    got = receiver.next()
    assert verify(secret, got.headers, got.body)
    assert not verify("whsec_another", got.headers, got.body)
    document = json.loads(got.body)
    assert document["event"] == "ping" and document["id"] == r.json()["id"]
    assert document["data"]["webhook_id"] == created["id"] and document["created_at"].endswith("Z")
    assert got.headers["X-Anomaloop-Event"] == "ping"
    assert got.headers["X-Anomaloop-Delivery"] == str(document["id"])
    assert got.headers["Content-Type"] == "application/json"

    [delivery] = wait_delivery(admin_client, created["id"], lambda d: d[0]["status"] == "delivered")
    assert delivery["attempts"] == 1 and delivery["http_status"] == 200 and delivery["error"] is None
    assert delivery["response_ms"] >= 0 and delivery["delivered_at"] is not None
    assert [a["http_status"] for a in delivery["attempt_log"]] == [200]


def test_a_failing_receiver_is_retried_until_it_answers(admin_client, receiver, database):
    receiver.answers = [500]  # the first attempt fails, the retry succeeds
    created = register(admin_client, receiver.url, ["job.failed"])
    admin_client.post(f"/api/v1/webhooks/{created['id']}/test")
    first, second = receiver.next(), receiver.next()
    assert first.body == second.body and first.headers["X-Anomaloop-Delivery"] == second.headers["X-Anomaloop-Delivery"]
    assert verify(created["secret"], second.headers, second.body)

    [delivery] = wait_delivery(admin_client, created["id"], lambda d: d[0]["status"] == "delivered")
    assert delivery["attempts"] == 2 and delivery["http_status"] == 200
    log = delivery["attempt_log"]
    assert [a["http_status"] for a in log] == [500, 200]
    assert "HTTP 500" in log[0]["error"] and "receiver says no" in log[0]["error"] and log[1]["error"] is None
    assert all(a["ms"] >= 0 and a["at"].endswith("Z") for a in log)
    with database.session_scope() as session:  # one job made both attempts, re-queued in between
        job = jobs.get_job(session, session.get(WebhookDelivery, delivery["id"]).job_id)
        assert job.kind == "webhook" and job.status == "done" and job.attempts == 2


def test_a_receiver_that_keeps_failing_is_given_up_without_a_job_failed_storm(admin_client, receiver, database):
    receiver.answers = [503] * 10
    created = register(admin_client, receiver.url, ["job.failed"])
    admin_client.post(f"/api/v1/webhooks/{created['id']}/test")
    [delivery] = wait_delivery(admin_client, created["id"], lambda d: d[0]["status"] == "failed")
    assert delivery["attempts"] == 1 + len(BACKOFF_S) and delivery["http_status"] == 503
    assert delivery["next_attempt_at"] is None and delivery["delivered_at"] is None
    with database.session_scope() as session:
        job_id = session.get(WebhookDelivery, delivery["id"]).job_id
    job = _wait(admin_client, f"/api/v1/jobs/{job_id}", lambda j: j["status"] == "failed")
    assert "after 3 attempt(s)" in job["error"] and "HTTP 503" in job["error"]
    # the job failed in the same transaction that would have queued a job.failed about it: none was
    items = admin_client.get(f"/api/v1/webhooks/{created['id']}/deliveries").json()["items"]
    assert [d["event"] for d in items] == ["ping"]  # the delivery's own job failing is not announced to itself


def test_an_unreachable_receiver_is_logged_without_status(admin_client, receiver):
    created = register(admin_client, "http://127.0.0.1:9/nothing-listens-here", ["job.failed"])
    admin_client.post(f"/api/v1/webhooks/{created['id']}/test")
    [delivery] = wait_delivery(admin_client, created["id"], lambda d: d[0]["status"] == "failed")
    assert delivery["http_status"] is None and "Connect" in delivery["error"]
    assert len(delivery["attempt_log"]) == 1 + len(BACKOFF_S)


@pytest.mark.slow  # trains a model while the receiver hangs
def test_a_receiver_that_hangs_does_not_hold_up_training(admin_client, receiver, database, shared_data):
    receiver.gate.clear()  # the receiver takes the ping and does not answer until told
    created = register(admin_client, receiver.url, ["job.failed"])
    admin_client.post(f"/api/v1/webhooks/{created['id']}/test")
    receiver.next()  # the delivery is in flight now
    dataset_id = import_series(database, shared_data / "nab" / "realKnownCause__nyc_taxi.csv.gz", "slow", 1000)
    r = admin_client.post("/api/v1/projects", json={"name": "p", "dataset_id": dataset_id, "detector": "iforest"})
    assert r.status_code == 201, r.text
    deadline = time.monotonic() + 60
    while not admin_client.get(f"/api/v1/projects/{r.json()['id']}/versions").json():
        assert time.monotonic() < deadline, "the initial fit did not finish while a receiver hung"
        time.sleep(0.1)
    [delivery] = admin_client.get(f"/api/v1/webhooks/{created['id']}/deliveries").json()["items"]
    assert delivery["status"] == "pending" and delivery["attempts"] == 0  # still waiting for the receiver
    receiver.gate.set()
    wait_delivery(admin_client, created["id"], lambda d: d[0]["status"] == "delivered")


def test_job_failed_reaches_subscribers(database, receiver):
    """A failing job emits job.failed (service level: the runner enqueues what fail() returns)."""
    with database.session_scope() as session:
        webhooks.create_subscription(session, None, receiver.url, ["job.failed"])
        job = jobs.create_job(session, "fit")
        assert jobs.claim(session, job.id, "test-worker", 30)
        job_ids = jobs.fail(session, job.id, "test-worker", "RuntimeError: out of memory")
        assert len(job_ids) == 1
        [delivery] = session.query(WebhookDelivery).all()
        assert delivery.event == "job.failed" and delivery.job_id == job_ids[0]
        assert delivery.payload == {
            "job_id": job.id,
            "kind": "fit",
            "project_id": None,
            "round_id": None,
            "error": "RuntimeError: out of memory",
        }


@pytest.mark.slow  # trains two iforest versions (about 13 s on a loaded 2-core machine)
def test_real_actions_emit_round_version_and_served_events(admin_client, receiver, database, shared_data):
    """A ground-truth project: the initial fit (version.created, version.served), a round that the oracle completes
    (round.completed, then its retrained version), and an admin's roll-back (version.served by promote)."""
    everything = register(admin_client, receiver.url, ["round.completed", "version.created", "version.served"])
    only_rounds = register(admin_client, receiver.url, ["round.completed"])
    dataset_id = import_series(database, shared_data / "nab" / "realKnownCause__nyc_taxi.csv.gz", "taxi", 3000)
    r = admin_client.post(
        "/api/v1/projects",
        json={
            "name": "hooks",
            "dataset_id": dataset_id,
            "detector": "iforest",
            "window": 25,
            "strategy": "top_k",
            "round_size": 2,
            "budget": 4,
            "oracle": "ground_truth",
            "adoption_policy": "always",
        },
    )
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    fit = wait_delivery(
        admin_client, everything["id"], lambda d: len(d) >= 2 and all(x["status"] == "delivered" for x in d)
    )
    assert sorted(d["event"] for d in fit) == ["version.created", "version.served"]
    created = next(d for d in fit if d["event"] == "version.created")["payload"]
    assert created["project_id"] == pid and created["round_number"] == 0 and created["served"] is True
    v0 = created["version_id"]

    rnd = admin_client.post(f"/api/v1/projects/{pid}/rounds", json={})
    assert rnd.status_code == 201, rnd.text
    after = wait_delivery(
        admin_client, everything["id"], lambda d: len(d) >= 5 and all(x["status"] == "delivered" for x in d), 120
    )
    events = [d["event"] for d in reversed(after)]
    assert events[2] == "round.completed" and sorted(events[3:]) == ["version.created", "version.served"], events
    completed = next(d for d in after if d["event"] == "round.completed")["payload"]
    assert completed["project_id"] == pid and completed["number"] == 1 and completed["retrain_job_id"] > 0
    [rounds_only] = wait_delivery(admin_client, only_rounds["id"], lambda d: d[0]["status"] == "delivered")
    assert rounds_only["event"] == "round.completed"  # subscribed to rounds only: no version events

    assert admin_client.post(f"/api/v1/versions/{v0}/promote").status_code == 200  # roll back to the fit
    latest = wait_delivery(admin_client, everything["id"], lambda d: len(d) >= 6 and d[0]["status"] == "delivered")
    served = latest[0]
    assert served["event"] == "version.served"
    assert served["payload"]["version_id"] == v0 and served["payload"]["by"] == "promote"
    assert served["payload"]["previous_version_id"] != v0


def test_project_filter_and_inactive_subscriptions(database, shared_data):
    dataset_id = import_series(database, shared_data / "nab" / "realKnownCause__nyc_taxi.csv.gz", "filter", 500)
    p1, _ = create(database, dataset_id, name="one", detector="iforest")
    p2, _ = create(database, dataset_id, name="two", detector="iforest")
    with database.session_scope() as session:
        every, _ = webhooks.create_subscription(session, None, "https://a.example/h", ["version.served"])
        mine, _ = webhooks.create_subscription(session, None, "https://b.example/h", ["version.served"], p1)
        webhooks.create_subscription(session, None, "https://c.example/h", ["version.served"], p2)
        off, _ = webhooks.create_subscription(session, None, "https://d.example/h", ["version.served"])
        off.active = False
        session.flush()
        job_ids = webhooks.emit(session, "version.served", {"project_id": p1, "version_id": 1})
        assert len(job_ids) == 2
        told = {d.subscription_id for d in session.query(WebhookDelivery).all()}
        assert told == {every.id, mine.id}  # not project two's, not the inactive one
        assert webhooks.emit(session, "round.completed", {"project_id": p1}) == []
        with pytest.raises(ValueError, match="unknown webhook event"):
            webhooks.emit(session, "version.deleted", {})


def test_deliveries_are_paginated(admin_client, receiver):
    created = register(admin_client, receiver.url, ["job.failed"])
    ids = [admin_client.post(f"/api/v1/webhooks/{created['id']}/test").json()["id"] for _ in range(3)]
    first = admin_client.get(f"/api/v1/webhooks/{created['id']}/deliveries", params={"limit": 2}).json()
    assert [d["id"] for d in first["items"]] == sorted(ids, reverse=True)[:2] and first["next_cursor"]
    second = admin_client.get(
        f"/api/v1/webhooks/{created['id']}/deliveries", params={"limit": 2, "cursor": first["next_cursor"]}
    ).json()
    assert [d["id"] for d in second["items"]] == [min(ids)] and second["next_cursor"] is None


def test_bad_input_is_refused_with_what_to_fix(admin_client):
    for url in ("ftp://example.com/hook", "example.com/hook", "http://", "javascript:alert(1)", "http://h:99999/"):
        r = admin_client.post("/api/v1/webhooks", json={"url": url, "events": ["job.failed"]})
        assert r.status_code == 422, (url, r.text)
        assert "URL" in r.json()["detail"]
    r = admin_client.post("/api/v1/webhooks", json={"url": "https://example.com/h", "events": ["job.exploded"]})
    assert r.status_code == 422 and "job.exploded" in r.json()["detail"] and "job.failed" in r.json()["detail"]
    assert admin_client.post("/api/v1/webhooks", json={"url": "https://example.com/h", "events": []}).status_code == 422
    r = admin_client.post(
        "/api/v1/webhooks", json={"url": "https://example.com/h", "events": ["job.failed"], "project_id": 424242}
    )
    assert r.status_code == 404 and "424242" in r.json()["detail"]
    assert admin_client.get("/api/v1/webhooks").json() == []  # nothing half-written
    assert admin_client.delete("/api/v1/webhooks/12345").status_code == 404
    assert admin_client.post("/api/v1/webhooks/12345/test").status_code == 404


def test_only_admins_manage_webhooks(admin_client, analyst_client, anonymous_client):
    created = register(admin_client, "https://example.com/h", ["job.failed"])
    wid = created["id"]
    for method, path in (
        ("get", "/api/v1/webhooks"),
        ("post", "/api/v1/webhooks"),
        ("delete", f"/api/v1/webhooks/{wid}"),
        ("get", f"/api/v1/webhooks/{wid}/deliveries"),
        ("post", f"/api/v1/webhooks/{wid}/test"),
    ):
        kwargs = {"json": {"url": "https://example.com/x", "events": ["job.failed"]}} if method == "post" else {}
        assert getattr(analyst_client, method)(path, **kwargs).status_code == 403, path
        assert getattr(anonymous_client, method)(path, **kwargs).status_code == 401, path
    assert analyst_client.get("/admin/webhooks").status_code == 403
    assert admin_client.delete(f"/api/v1/webhooks/{wid}").status_code == 204
    assert admin_client.get("/api/v1/webhooks").json() == []
    assert admin_client.get(f"/api/v1/webhooks/{wid}/deliveries").status_code == 404


def test_admin_page_registers_shows_the_secret_once_and_deletes(admin_client, receiver):
    page = admin_client.get("/admin/webhooks")
    assert page.status_code == 200 and "No webhook yet" in page.text and 'href="/admin/webhooks"' in page.text
    csrf = admin_client.headers["X-CSRF-Token"]
    bad = admin_client.post("/admin/webhooks", data={"csrf_token": csrf, "url": "ftp://x", "events": ["job.failed"]})
    assert bad.status_code == 422 and "http:// or https://" in bad.text
    made = admin_client.post(
        "/admin/webhooks", data={"csrf_token": csrf, "url": receiver.url, "events": ["job.failed", "version.served"]}
    )
    assert made.status_code == 201 and "shown <strong>only now</strong>" in made.text
    secret = made.text.split('id="secret">')[1].split("<")[0]
    assert secret.startswith("whsec_")
    again = admin_client.get("/admin/webhooks")
    assert receiver.url in again.text and secret not in again.text
    [webhook] = admin_client.get("/api/v1/webhooks").json()
    tested = admin_client.post(f"/admin/webhooks/{webhook['id']}/test", data={"csrf_token": csrf})
    assert tested.status_code == 200 and "test delivery" in tested.text  # followed the redirect
    assert verify(secret, *(lambda r: (r.headers, r.body))(receiver.next()))
    wait_delivery(admin_client, webhook["id"], lambda d: d[0]["status"] == "delivered")
    shown = admin_client.get("/admin/webhooks").text
    assert 'class="pill done">delivered' in shown and ">200<" in shown
    gone = admin_client.post(f"/admin/webhooks/{webhook['id']}/delete", data={"csrf_token": csrf})
    assert gone.status_code == 200 and "No webhook yet" in gone.text


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.slow  # starts a real `anomaloop worker` process
def test_celery_worker_retries_with_a_countdown(postgres_url, receiver, tmp_path):
    """At scale the retry is a Celery countdown on the same job: the worker is free in between."""
    import redis as redis_lib

    from app.db import Database
    from app.jobs.executor import CeleryExecutor
    from tests.conftest import REDIS_URL, _wipe, service_unavailable
    from tests.worker.conftest import WorkerProcess, celery_settings, worker_env

    if not postgres_url:
        service_unavailable("PostgreSQL", "cannot connect")
    try:
        redis_lib.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as exc:  # noqa: BLE001
        service_unavailable("Redis", f"{REDIS_URL}: {exc.__class__.__name__}")
    db = Database(postgres_url)
    env = {**worker_env(postgres_url, REDIS_URL, tmp_path), "ANOMALOOP_WEBHOOK_BACKOFF_S": "[1.0]"}
    worker = WorkerProcess(env, tmp_path / "worker.log")
    executor = CeleryExecutor(celery_settings(db, REDIS_URL, tmp_path), db)
    try:
        worker.wait_ready()
        receiver.answers = [500]
        with db.session_scope() as session:
            subscription, secret = webhooks.create_subscription(session, None, receiver.url, ["job.failed"])
            delivery, job_ids = webhooks.send_test(session, None, subscription.id)
            delivery_id = delivery.id
        for job_id in job_ids:
            executor.enqueue(job_id)
        first, second = receiver.next(60), receiver.next(60)
        assert verify(secret, second.headers, second.body) and first.body == second.body
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with db.session_scope() as session:
                row = session.get(WebhookDelivery, delivery_id)
                if row.status == "delivered":
                    assert [a["http_status"] for a in row.attempt_log] == [500, 200]
                    break
            time.sleep(0.2)
        else:
            raise AssertionError(f"not delivered: {worker.log.read_text()[-2000:]}")
    finally:
        worker.stop()
        executor.shutdown()
        _wipe(db)
        db.dispose()


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.slow  # starts a real `anomaloop worker` process
def test_a_webhooks_only_worker_delivers_while_training_waits_on_its_own_queue(postgres_url, receiver, tmp_path):
    """Deliveries travel on the webhook queue: a worker started with `--queues webhooks` delivers one, and a
    training job sent beside it stays in the training queue for a training worker (this one never takes it)."""
    import redis as redis_lib

    from app.db import Database
    from app.jobs.executor import CeleryExecutor
    from tests.conftest import REDIS_URL, _wipe, service_unavailable
    from tests.worker.conftest import WorkerProcess, celery_settings, worker_env

    if not postgres_url:
        service_unavailable("PostgreSQL", "cannot connect")
    try:
        broker = redis_lib.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        broker.ping()
    except Exception as exc:  # noqa: BLE001
        service_unavailable("Redis", f"{REDIS_URL}: {exc.__class__.__name__}")
    broker.flushdb()
    db = Database(postgres_url)
    settings = celery_settings(db, REDIS_URL, tmp_path)
    worker = WorkerProcess(
        worker_env(postgres_url, REDIS_URL, tmp_path), tmp_path / "worker.log", "--queues", "webhooks"
    )
    executor = CeleryExecutor(settings, db)
    try:
        worker.wait_ready()
        with db.session_scope() as session:
            fit_id = jobs.create_job(session, "fit").id
            subscription, secret = webhooks.create_subscription(session, None, receiver.url, ["job.failed"])
            delivery, job_ids = webhooks.send_test(session, None, subscription.id)
            delivery_id = delivery.id
        executor.enqueue(fit_id)
        for job_id in job_ids:
            executor.enqueue(job_id)
        got = receiver.next(60)
        assert verify(secret, got.headers, got.body)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with db.session_scope() as session:
                if session.get(WebhookDelivery, delivery_id).status == "delivered":
                    break
            time.sleep(0.2)
        else:
            raise AssertionError(f"not delivered: {worker.log.read_text()[-2000:]}")
        with db.session_scope() as session:
            assert jobs.get_job(session, fit_id).status == "queued"
        assert broker.llen(settings.job_queue) == 1  # the training job's message, waiting for a training worker
    finally:
        worker.stop()
        executor.shutdown()
        broker.flushdb()
        _wipe(db)
        db.dispose()


def test_the_jobs_page_lists_deliveries_only_when_asked(admin_client, database):
    """A receiver that is down makes a delivery job per event: the jobs monitor shows trainings, and the deliveries
    (listed with their attempts on the webhooks page) only on request; the API filters the same way."""
    import re

    with database.session_scope() as session:
        fit_id = jobs.create_job(session, "fit").id
        subscription, _ = webhooks.create_subscription(session, None, "http://127.0.0.1:9/hook", ["job.failed"])
        _, [delivery_job] = webhooks.send_test(session, None, subscription.id)

    def listed(url: str) -> list[int]:
        page = admin_client.get(url)
        assert page.status_code == 200
        return [j["id"] for j in json.loads(re.search(r'id="jobs-data">(.*?)</script>', page.text, re.S)[1])]

    assert listed("/admin/jobs") == [fit_id]
    assert listed("/admin/jobs?webhooks=true") == [delivery_job, fit_id]
    assert "Show them here too" in admin_client.get("/admin/jobs").text
    assert [j["id"] for j in admin_client.get("/api/v1/jobs", params={"webhooks": "false"}).json()] == [fit_id]
    assert [j["id"] for j in admin_client.get("/api/v1/jobs").json()] == [delivery_job, fit_id]


def test_cancelling_a_waiting_retry_marks_the_delivery_failed_and_a_retry_reopens_it(database):
    with database.session_scope() as session:
        subscription, _ = webhooks.create_subscription(session, None, "http://127.0.0.1:9/hook", ["job.failed"])
        delivery, [job_id] = webhooks.send_test(session, None, subscription.id)
        delivery_id = delivery.id
        # its first attempt failed; the retry waits in the queue for a minute
        outcome = webhooks.record_attempt(session, delivery_id, webhooks.AttemptResult(None, 3.0, "refused"), [60.0])
        assert outcome.status == "retrying"
    with database.session_scope() as session:
        jobs.request_cancel(session, None, job_id)
    with database.session_scope() as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        assert (delivery.status, delivery.error, delivery.next_attempt_at) == ("failed", "cancelled by an admin", None)
        assert jobs.get_job(session, job_id).status == "cancelled"
    with database.session_scope() as session:
        jobs.retry(session, None, job_id)
    with database.session_scope() as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        assert delivery.status == "retrying" and delivery.next_attempt_at is not None and delivery.attempts == 1
