"""Bounded load on the REST API over loopback: score reads, point appends, a streamed 3,000,000-point range, and the
time from an append to its anomaly event. The figures behind BENCHMARKS.md's "REST API under load" table.

    python scripts/load_api.py                                  # starts a server on a temporary SQLite file
    python scripts/load_api.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres
    python scripts/load_api.py --url http://127.0.0.1:8000 --token alp_...   # a server you started (admin token)

Without ``--url`` it starts ``uvicorn app.web:create_app`` (one process, in-process worker) on a free loopback port
against a fresh database (a PostgreSQL database is created next to the one ``--database-url`` names and dropped at
the end), creates an admin with an API token, and stops everything when done. With ``--url`` it starts nothing and
seeds its own data set (``load-<random>``) through the API with the admin token you give; server memory is then read
from ``/metrics`` (``process_resident_memory_bytes``) instead of ``/proc``.

Seeding (through the API, as a client would): one data set with a 20,000-point series (``base``) and one 2,000-point
series per append client (``live-<i>``), timestamps a minute apart; an ``iforest`` project (window 25) over all of
them, waited for until its first model serves. Then, in this order:

1. **reads**: ``--clients`` concurrent clients each send ``--requests`` ``GET /api/v1/projects/{id}/scores`` for a
   random ``--range``-point (10,000) index range of ``base`` (JSON);
2. **appends**: ``--clients`` concurrent clients each append ``--requests`` batches of ``--batch`` (100) points to
   their own series with ``POST /api/v1/series/{id}/points`` (JSON, an ``Idempotency-Key`` each) — each batch is
   scored synchronously by the project's serving version;
3. **stream**: a ``--stream-points`` (3,000,000) point series is imported as a data set of its own with a
   ``rollingz`` project (a cheap statistical detector: its initial fit scores every point), then its whole range is
   read as one streamed JSON response while the server's resident memory is sampled every 20 ms: peak minus the idle
   level before the request;
4. **append to event**: ``--event-batches`` (5) batches of 100 points whose last 30 points jump far above the
   series' range; for each, the time from sending the batch until ``GET /api/v1/projects/{id}/events`` lists an
   event covering the jump (polled every 20 ms).

Every phase is bounded (clients, requests per client, a 60 s timeout per request, ``--max-seconds`` per phase);
the script prints a markdown table and, with ``--json``, writes the figures. Loopback only; it stops by itself.
``--skip-stream`` leaves phase 3 out (it needs ~1 GB of disk and a few minutes on a 2-core machine); ``--phases
reads,appends`` runs only those; ``--setting max_concurrent_requests=4`` (repeatable; ``web_workers=2`` for two web
processes) sets a setting of the server it starts (``anomaloop serve``).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

START = datetime(2024, 1, 1, tzinfo=UTC)
STEP = timedelta(minutes=1)
REQUEST_TIMEOUT_S = 60.0
MAX_CLIENTS = 200
MAX_REQUESTS = 1_000
SPIKE = 30
"""Points at the end of an event batch that jump far above the series: more than a window (25), so that every
window over the last ones is wholly anomalous and the detector's score clears its threshold."""


# -- figures ------------------------------------------------------------------------------------------------------


@dataclass
class Phase:
    """Latencies (seconds) and statuses of one phase's requests."""

    name: str
    latency: list[float] = field(default_factory=list)
    status: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, seconds: float, status: int, error: str | None = None) -> None:
        self.latency.append(seconds)
        self.status[status] += 1
        if error:
            self.errors.append(error)

    def summary(self) -> dict[str, Any]:
        values = sorted(self.latency)
        out: dict[str, Any] = {"phase": self.name, "requests": len(values), "statuses": dict(self.status)}
        if values:
            out.update(
                p50_ms=round(statistics.median(values) * 1000, 1),
                p99_ms=round(values[min(len(values) - 1, int(0.99 * len(values)))] * 1000, 1),
                max_ms=round(values[-1] * 1000, 1),
                throughput_per_s=round(len(values) / self.wall_s, 1) if self.wall_s else None,
            )
        return {**out, **self.extra, "errors": len(self.errors)}


def table(phases: list[Phase]) -> str:
    lines = [
        "| phase | requests | p50 ms | p99 ms | max ms | req/s | statuses |",
        "|---|---|---|---|---|---|---|",
    ]
    for phase in phases:
        s = phase.summary()
        codes = ", ".join(f"{k}: {v}" for k, v in sorted(s["statuses"].items()))
        lines.append(
            f"| {phase.name} | {s['requests']} | {s.get('p50_ms', '-')} | {s.get('p99_ms', '-')} | "
            f"{s.get('max_ms', '-')} | {s.get('throughput_per_s', '-')} | {codes} |"
        )
    return "\n".join(lines)


# -- data ---------------------------------------------------------------------------------------------------------


def series_csv(n: int, seed: int, start: datetime = START) -> bytes:
    """``n`` points a minute apart from ``start``: a daily sine, noise, two short bumps (ground truth in ``label``)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    values = np.sin(t * 2 * np.pi / 1440) + 0.1 * rng.normal(size=n)
    label = np.zeros(n, dtype=int)
    for at in (n // 3, 2 * n // 3):
        values[at : at + 15] += 3.0
        label[at : at + 15] = 1
    stamps = [(start + i * STEP).strftime("%Y-%m-%dT%H:%M:%S") for i in range(n)]
    out = io.StringIO()
    out.write("timestamp,value,label\n")
    for stamp, value, flag in zip(stamps, values, label, strict=True):
        out.write(f"{stamp},{value:.5f},{flag}\n")
    return out.getvalue().encode()


def big_parquet(path: Path, n: int) -> None:
    """A ``n``-point random walk a minute apart (Parquet: written in seconds where the CSV takes minutes)."""
    import pandas as pd

    rng = np.random.default_rng(11)
    values = np.cumsum(rng.normal(size=n)).astype(np.float32)
    stamps = pd.date_range(START.replace(tzinfo=None), periods=n, freq="min")
    pd.DataFrame({"timestamp": stamps, "value": values}).to_parquet(path, index=False)


def batch(first: datetime, n: int, seed: int, spike: int = 0) -> dict[str, Any]:
    """A JSON append body of ``n`` points from ``first``; the last ``spike`` points jump far above the series."""
    rng = np.random.default_rng(seed)
    values = np.sin(np.arange(n) / 50.0) + 0.1 * rng.normal(size=n)
    if spike:
        values[-spike:] += 50.0
    return {
        "timestamps": [(first + i * STEP).strftime("%Y-%m-%dT%H:%M:%SZ") for i in range(n)],
        "values": [round(float(v), 5) for v in values],
    }


# -- server -------------------------------------------------------------------------------------------------------


@dataclass
class Target:
    url: str
    token: str
    pid: int | None = None  # the server process, when this script started it (memory read from /proc)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    database_url: str | None, work: Path, settings: dict[str, str]
) -> tuple[Target, subprocess.Popen, Any]:
    """A fresh database (SQLite file, or a new PostgreSQL database), an admin token, uvicorn on a free port."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from app.accounts.service import create_api_token, create_user
    from app.db import Database
    from app.migrate import upgrade

    cleanup = None
    if database_url:
        base = make_url(database_url)
        name = f"anomaloop_load_{uuid.uuid4().hex[:8]}"
        admin = create_engine(base, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = base.set(database=name).render_as_string(hide_password=False)

        def cleanup() -> None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()

    else:
        url = f"sqlite:///{work / 'load.db'}"
    upgrade(url)
    db = Database(url)
    with db.session_scope() as session:
        user = create_user(session, "loadadmin", "admin", "load-password-1")
        token = create_api_token(session, user, "load", ["admin"])[1]
    db.dispose()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANOMALOOP_")}
    env.update(ANOMALOOP_DATABASE_URL=url, ANOMALOOP_DATA_DIR=str(work), ANOMALOOP_DEVICE="cpu")
    env.update({f"ANOMALOOP_{name.upper()}": value for name, value in settings.items()})
    log = (work / "server.log").open("wb")
    server = subprocess.Popen(  # noqa: S603 - our own server on loopback
        [sys.executable, "-m", "app.cli", "serve", "--no-demo", "--no-migrate", "--host", "127.0.0.1", "--port",
         str(port), "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    target = Target(f"http://127.0.0.1:{port}", token, server.pid)
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(target.url + "/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the server did not start; see " + str(work / "server.log"))
        time.sleep(0.2)
    return target, server, cleanup


def rss_bytes(target: Target, client: httpx.Client) -> int:
    """The server's resident memory: /proc for a server this script started, else its /metrics."""
    if target.pid is not None:
        return sum(_rss_of(pid) for pid in _process_tree(target.pid))
    text = client.get("/metrics").text
    found = re.search(r"^process_resident_memory_bytes (\S+)$", text, flags=re.M)
    return int(float(found.group(1))) if found else 0


def _process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (several web processes: uvicorn's supervisor and its workers)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            todo.extend(int(c) for c in task.read_text().split())
    return found


def _rss_of(pid: int) -> int:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except FileNotFoundError:
        return 0
    return next((int(line.split()[1]) * 1024 for line in lines if line.startswith("VmRSS:")), 0)


# -- seeding ------------------------------------------------------------------------------------------------------


@dataclass
class Seeded:
    dataset: str
    project_id: int
    base_id: int
    base_points: int
    live: list[tuple[int, datetime]]  # (series id, next timestamp)


def wait_for(what: str, check: Any, timeout: float, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    raise TimeoutError(f"{what} did not happen within {timeout:.0f} s")


def seed(client: httpx.Client, clients: int, base_points: int) -> Seeded:
    dataset = f"load-{uuid.uuid4().hex[:6]}"

    def upload(name: str, content: bytes) -> dict[str, Any]:
        r = client.post("/api/v1/datasets/import", files={"file": (name, content)}, data={"dataset": dataset})
        r.raise_for_status()
        return dict(r.json()[0])

    base = upload("base.csv", series_csv(base_points, seed=1))
    live = []
    for i in range(clients):
        imported = upload(f"live-{i}.csv", series_csv(2_000, seed=100 + i))
        live.append((int(imported["series_id"]), START + 2_000 * STEP))
    dataset_id = next(d["id"] for d in client.get("/api/v1/datasets").json() if d["name"] == dataset)
    r = client.post(
        "/api/v1/projects",
        json={"name": dataset, "dataset_id": dataset_id, "detector": "iforest", "window": 25, "strategy": "top_k",
              "round_size": 10, "budget": 1_000},
    )  # fmt: skip
    r.raise_for_status()
    project_id = int(r.json()["id"])
    wait_for("the first model", lambda: client.get(f"/api/v1/projects/{project_id}/versions").json(), 600)
    return Seeded(dataset, project_id, int(base["series_id"]), base_points, live)


# -- phases -------------------------------------------------------------------------------------------------------


async def run_reads(target: Target, seeded: Seeded, clients: int, requests: int, span: int, limit_s: float) -> Phase:
    phase = Phase(f"GET scores, {span:,} points, {clients} clients")
    headers = {"Authorization": f"Bearer {target.token}"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    stop = time.monotonic() + limit_s
    path = f"/api/v1/projects/{seeded.project_id}/scores"
    async with httpx.AsyncClient(base_url=target.url, headers=headers, limits=limits, timeout=REQUEST_TIMEOUT_S) as c:
        await c.get(path, params={"series_id": seeded.base_id, "start": 0, "end": span})  # warm the caches once

        async def one_client(seed: int) -> None:
            rng = random.Random(seed)
            for _ in range(requests):
                if time.monotonic() > stop:
                    return
                start = rng.randrange(0, max(1, seeded.base_points - span))
                params = {"series_id": seeded.base_id, "start": start, "end": start + span}
                began = time.perf_counter()
                try:
                    r = await c.get(path, params=params)
                    ok = r.status_code == 200 and len(r.json()["scores"]) == span
                    phase.add(time.perf_counter() - began, r.status_code, None if ok else r.text[:200])
                except httpx.HTTPError as exc:
                    phase.add(time.perf_counter() - began, 0, f"{type(exc).__name__}: {exc}")

        began = time.perf_counter()
        await asyncio.gather(*(one_client(i) for i in range(clients)))
        phase.wall_s = time.perf_counter() - began
    return phase


async def run_appends(target: Target, seeded: Seeded, requests: int, size: int, limit_s: float) -> Phase:
    clients = len(seeded.live)
    phase = Phase(f"POST points, {size} points, {clients} clients")
    headers = {"Authorization": f"Bearer {target.token}"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    stop = time.monotonic() + limit_s
    scored = Counter()
    async with httpx.AsyncClient(base_url=target.url, headers=headers, limits=limits, timeout=REQUEST_TIMEOUT_S) as c:

        async def one_client(index: int) -> None:
            series_id, first = seeded.live[index]
            for k in range(requests):
                if time.monotonic() > stop:
                    break
                body = batch(first, size, seed=index * 10_000 + k)
                began = time.perf_counter()
                try:
                    r = await c.post(
                        f"/api/v1/series/{series_id}/points", json=body, headers={"Idempotency-Key": uuid.uuid4().hex}
                    )
                    phase.add(
                        time.perf_counter() - began, r.status_code, None if r.status_code == 201 else r.text[:200]
                    )
                    if r.status_code == 201:
                        first += size * STEP
                        for item in r.json().get("scoring", []):
                            scored[item.get("status", "?")] += 1
                except httpx.HTTPError as exc:
                    phase.add(time.perf_counter() - began, 0, f"{type(exc).__name__}: {exc}")
            seeded.live[index] = (series_id, first)

        began = time.perf_counter()
        await asyncio.gather(*(one_client(i) for i in range(clients)))
        phase.wall_s = time.perf_counter() - began
    phase.extra["scoring"] = dict(scored)
    return phase


def run_stream(target: Target, client: httpx.Client, seeded: Seeded, points: int, work: Path) -> Phase:
    phase = Phase(f"GET scores, streamed, {points:,} points")
    path = work / "big.parquet"
    big_parquet(path, points)
    big = f"{seeded.dataset}-big"
    r = client.post(
        "/api/v1/datasets/import",
        files={"file": ("big.parquet", path.read_bytes())},
        data={"dataset": big},
        timeout=1800,
    )
    r.raise_for_status()
    series_id = int(r.json()[0]["series_id"])
    path.unlink()
    # A project of its own with a cheap statistical detector: its initial fit scores all the points once; what is
    # measured is the read, not the model.
    dataset_id = next(d["id"] for d in client.get("/api/v1/datasets").json() if d["name"] == big)
    r = client.post(
        "/api/v1/projects",
        json={"name": big, "dataset_id": dataset_id, "detector": "rollingz", "round_size": 10, "budget": 100},
    )
    r.raise_for_status()
    project_id = int(r.json()["id"])
    wait_for("the big series' model", lambda: client.get(f"/api/v1/projects/{project_id}/versions").json(), 1800, 2)
    scores = f"/api/v1/projects/{project_id}/scores"

    def scored() -> bool:  # 409 scores_pending while a scoring job runs; 200 once every point has a score
        r = client.get(scores, params={"series_id": series_id, "start": 0, "end": 10})
        if r.status_code not in (200, 409):
            raise RuntimeError(f"scores of the big series: {r.status_code} {r.text[:300]}")
        return r.status_code == 200

    wait_for("scoring the big series", scored, 1800, every=2.0)
    with httpx.Client(base_url=target.url, headers=client.headers, timeout=60) as probe:
        idle = statistics.median(rss_bytes(target, probe) for _ in range(10))
        peak, done = idle, threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, rss_bytes(target, probe))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        began = time.perf_counter()
        received = 0
        try:
            with client.stream("GET", scores, params={"series_id": series_id}, timeout=600) as response:
                for chunk in response.iter_bytes():
                    received += len(chunk)
                status = response.status_code
        finally:
            done.set()
            sampler.join()
    phase.add(time.perf_counter() - began, status)
    phase.wall_s = time.perf_counter() - began
    phase.extra.update(
        bytes_received=received,
        server_rss_idle_mb=round(idle / 2**20, 1),
        server_rss_peak_mb=round(peak / 2**20, 1),
        server_rss_above_idle_mb=round((peak - idle) / 2**20, 1),
    )
    return phase


def run_events(target: Target, client: httpx.Client, seeded: Seeded, batches: int, size: int) -> Phase:
    phase = Phase(f"append {size} points -> event listed")
    series_id, first = seeded.live[0]
    in_response = 0
    for k in range(batches):
        body = batch(first, size, seed=777 + k, spike=SPIKE)
        spike_at = first + (size - SPIKE) * STEP
        began = time.perf_counter()
        r = client.post(f"/api/v1/series/{series_id}/points", json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
        if r.status_code != 201:
            phase.add(time.perf_counter() - began, r.status_code, r.text[:300])
            break
        in_response += any(item.get("anomalies") for item in r.json().get("scoring", []))
        spike_start, spike_end = int(r.json()["end"]) - SPIKE, int(r.json()["end"])
        first += size * STEP
        params = {"series_id": series_id, "from": spike_at.strftime("%Y-%m-%dT%H:%M:%SZ"), "limit": 50}

        def listed(params: dict[str, Any] = params, lo: int = spike_start, hi: int = spike_end) -> bool:
            got = client.get(f"/api/v1/projects/{seeded.project_id}/events", params=params)
            return got.status_code == 200 and any(e["end"] > lo and e["start"] < hi for e in got.json()["events"])

        try:
            wait_for("the anomaly event", listed, 30, every=0.02)
            phase.add(time.perf_counter() - began, 200)
        except TimeoutError as exc:
            phase.add(time.perf_counter() - began, 0, str(exc))
        # the next batch must not continue the spike's run (a run that began before a batch is not a new event)
        calm = batch(first, size, seed=900 + k)
        client.post(f"/api/v1/series/{series_id}/points", json=calm, headers={"Idempotency-Key": uuid.uuid4().hex})
        first += size * STEP
    seeded.live[0] = (series_id, first)
    phase.wall_s = sum(phase.latency)
    phase.extra["anomaly_in_append_answer"] = in_response
    return phase


# -- main ---------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running server (starts none); needs --token of an admin")
    parser.add_argument("--token", help="an admin's API token for --url")
    parser.add_argument("--database-url", help="PostgreSQL server URL for the started server; default: SQLite")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients (reads and appends)")
    parser.add_argument("--requests", type=int, default=20, help="requests per client per phase")
    parser.add_argument("--range", type=int, default=10_000, help="points per score read")
    parser.add_argument("--batch", type=int, default=100, help="points per append")
    parser.add_argument("--base-points", type=int, default=20_000, help="length of the series the reads hit")
    parser.add_argument("--stream-points", type=int, default=3_000_000)
    parser.add_argument("--skip-stream", action="store_true", help="leave out the streamed-range memory phase")
    parser.add_argument("--event-batches", type=int, default=5)
    parser.add_argument("--max-seconds", type=float, default=300.0, help="upper bound of each load phase")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        type=lambda text: tuple(text.split("=", 1)),
        metavar="NAME=VALUE",
        help="a server setting for the started server (e.g. max_concurrent_requests=4); repeatable",
    )
    parser.add_argument(
        "--phases", default="reads,appends,stream,events", help="which phases to run, comma-separated (in this order)"
    )
    args = parser.parse_args()
    clients = min(max(args.clients, 1), MAX_CLIENTS)
    requests = min(max(args.requests, 1), MAX_REQUESTS)
    if args.url and not args.token:
        parser.error("--url needs --token (an admin's API token)")
    wanted = {p.strip() for p in args.phases.split(",") if p.strip()}
    if not wanted or wanted - {"reads", "appends", "stream", "events"}:
        parser.error("--phases takes reads, appends, stream, events")
    if args.skip_stream:
        wanted.discard("stream")
    if args.range >= args.base_points:
        parser.error("--range must be below --base-points")

    work = Path(tempfile.mkdtemp(prefix="anomaloop-load-"))
    server, cleanup = None, None
    if args.url:
        target = Target(args.url.rstrip("/"), args.token)
    else:
        target, server, cleanup = start_server(args.database_url, work, dict(args.setting))
    phases: list[Phase] = []
    try:
        headers = {"Authorization": f"Bearer {target.token}"}
        with httpx.Client(base_url=target.url, headers=headers, timeout=REQUEST_TIMEOUT_S) as client:
            seeded = seed(client, clients, args.base_points)
            if "reads" in wanted:
                phases.append(asyncio.run(run_reads(target, seeded, clients, requests, args.range, args.max_seconds)))
            if "appends" in wanted:
                phases.append(asyncio.run(run_appends(target, seeded, requests, args.batch, args.max_seconds)))
            if "stream" in wanted:
                phases.append(run_stream(target, client, seeded, args.stream_points, work))
            if "events" in wanted:
                phases.append(run_events(target, client, seeded, args.event_batches, args.batch))
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
        if cleanup is not None:
            cleanup()
    log = work / "server.log"
    unhandled = log.read_text(errors="replace").count("unhandled error") if log.exists() else None
    report = {
        "database": "external" if args.url else ("postgresql" if args.database_url else "sqlite"),
        "clients": clients,
        "requests_per_client": requests,
        "settings": dict(args.setting),
        "phases": [p.summary() for p in phases],
        "unhandled_server_errors": unhandled,
    }
    print(table(phases))
    print(json.dumps(report, indent=2))
    for phase in phases:
        for line in phase.errors[:5]:
            print(f"error ({phase.name}): {line}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
