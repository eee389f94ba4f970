"""Soak the server over loopback: analysts answering, clients reading scores, an admin importing, for a bounded time.

    python scripts/soak.py --duration 120                       # SQLite file in a temporary folder
    python scripts/soak.py --duration 120 --database-url postgresql+psycopg://postgres@127.0.0.1:5432/soak

Starts ``uvicorn app.web:create_app`` on a free loopback port (in-process worker) against a fresh database (the
PostgreSQL database is created and dropped), signs in 20 analysts with API tokens, imports the shipped NAB demo
series and creates an iforest project, then for ``--duration`` seconds:

- each analyst asks for the next query of the open round and answers it (anomaly or normal, a fresh idempotency
  key per answer; a 409 for a round that just completed is expected and counted apart). With one answer per window
  each is handed a window no other analyst holds (docs/ANNOTATORS.md), so a 409 "already answered" means two
  analysts were given the same window;
- each reader fetches scores of a random 1,000-point range and a chart view of the series;
- the importer uploads a generated 5,000-point CSV, submits the open round once every window is answered (the
  review grace period would otherwise keep it open for 10 minutes), and starts a new round whenever the last one is
  done.

It prints p50/p99 latency per endpoint, every status other than the expected ones, and checks in the database that
every acknowledged answer is stored exactly once and that each query has exactly one answer in force. Loopback only;
it stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEMO = ROOT / "app" / "demo" / "realKnownCause__nyc_taxi.csv.gz"


class Stats:
    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.status: dict[str, Counter] = defaultdict(Counter)
        self.errors: list[str] = []

    def add(self, name: str, seconds: float, status: int) -> None:
        self.latency[name].append(seconds)
        self.status[name][status] += 1

    def table(self) -> str:
        lines = ["| endpoint | requests | p50 ms | p99 ms | max ms | statuses |", "|---|---|---|---|---|---|"]
        for name in sorted(self.latency):
            values = sorted(self.latency[name])
            p99 = values[min(len(values) - 1, int(0.99 * len(values)))] * 1000
            codes = ", ".join(f"{k}: {v}" for k, v in sorted(self.status[name].items()))
            lines.append(f"| {name} | {len(values)} | {statistics.median(values) * 1000:.0f} | {p99:.0f} | "
                         f"{values[-1] * 1000:.0f} | {codes} |")
        return "\n".join(lines)


async def timed(stats: Stats, name: str, coro) -> httpx.Response | None:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    try:
        response = await coro
    except httpx.HTTPError as exc:
        stats.add(name, time.monotonic() - started, 0)
        stats.errors.append(f"{name}: {type(exc).__name__} {exc}")
        return None
    stats.add(name, time.monotonic() - started, response.status_code)
    if response.status_code >= 500:
        stats.errors.append(f"{name}: {response.status_code} {response.text[:200]}")
    return response


async def analyst(url: str, token: str, project_id: int, stop: float, stats: Stats, acked: list) -> None:
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as c:
        while time.monotonic() < stop:
            r = await timed(stats, "GET next-query", c.get(f"/api/v1/projects/{project_id}/next-query"))
            if r is None or r.status_code != 200 or r.json() is None:
                await asyncio.sleep(0.2)
                continue
            query_id, key = r.json()["id"], uuid.uuid4().hex
            body = {"value": random.choice(["anomaly", "normal"]), "idempotency_key": key}
            r = await timed(stats, "POST answer", c.post(f"/api/v1/queries/{query_id}/answer", json=body))
            if r is not None and r.status_code == 200:
                acked.append((token, query_id, key, [lab["id"] for lab in r.json()["labels"]]))


async def reader(url: str, token: str, project_id: int, series_id: int, n: int, stop: float, stats: Stats) -> None:
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as c:
        while time.monotonic() < stop:
            start = random.randrange(0, n - 1000)
            await timed(stats, "GET scores", c.get(f"/api/v1/projects/{project_id}/scores",
                                                   params={"series_id": series_id, "start": start,
                                                           "end": start + 1000}))
            await timed(stats, "GET series view", c.get(f"/api/v1/series/{series_id}/view",
                                                        params={"start": start, "end": start + 2000, "width": 800}))


async def admin(url: str, token: str, project_id: int, stop: float, stats: Stats) -> None:
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as c:
        i = 0
        while time.monotonic() < stop:
            i += 1
            rows = "\n".join(f"{j},{random.gauss(0, 1):.4f}" for j in range(5000))
            files = {"file": (f"soak-{i}.csv", io.BytesIO(f"timestamp,value\n{rows}\n".encode()))}
            await timed(stats, "POST import", c.post("/api/v1/datasets/import", files=files,
                                                     data={"dataset": "soak-imports"}))
            rounds = await timed(stats, "GET rounds", c.get(f"/api/v1/projects/{project_id}/rounds"))
            if rounds is not None and rounds.status_code == 200:
                last = rounds.json()[-1] if rounds.json() else None
                if last is not None and last["status"] == "open" and last["review_until"] is not None:
                    # every window answered: submit it for retraining, as an analyst does, instead of waiting out
                    # the review grace period (10 minutes by default: the whole soak)
                    await timed(stats, "POST submit", c.post(f"/api/v1/rounds/{last['id']}/submit"))
                elif last is None or last["status"] in ("done", "failed"):
                    await timed(stats, "POST round", c.post(f"/api/v1/projects/{project_id}/rounds",
                                                            json={"k": 50}))
            await asyncio.sleep(1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of load (at most 3600)")
    parser.add_argument("--database-url", default=None, help="PostgreSQL server URL; default a temporary SQLite file")
    parser.add_argument("--analysts", type=int, default=20)
    parser.add_argument("--readers", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--setting", action="append", default=[], type=lambda text: tuple(text.split("=", 1)),
                        metavar="NAME=VALUE", help="a server setting (e.g. web_workers=2); repeatable")
    args = parser.parse_args()
    duration = min(max(args.duration, 1.0), 3600.0)

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from app.accounts.service import create_api_token, create_user
    from app.db import Database
    from app.migrate import upgrade

    work = Path(tempfile.mkdtemp(prefix="anomaloop-soak-"))
    admin_engine, pg_name = None, None
    if args.database_url:
        base = make_url(args.database_url)
        pg_name = f"anomaloop_soak_{uuid.uuid4().hex[:8]}"
        admin_engine = create_engine(base, isolation_level="AUTOCOMMIT")
        with admin_engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{pg_name}"'))
        url = base.set(database=pg_name).render_as_string(hide_password=False)
    else:
        url = f"sqlite:///{work / 'soak.db'}"
    upgrade(url)
    db = Database(url)
    tokens = []
    with db.session_scope() as session:
        boss = create_user(session, "admin", "admin", "soak-password-1")
        admin_token = create_api_token(session, boss, "soak", ["admin"])[1]
        for i in range(args.analysts):
            user = create_user(session, f"analyst{i}", "analyst", "soak-password-1")
            tokens.append(create_api_token(session, user, "soak", ["write"])[1])

    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANOMALOOP_")}
    env.update(ANOMALOOP_DATABASE_URL=url, ANOMALOOP_DATA_DIR=str(work), ANOMALOOP_DEVICE="cpu")
    log = (work / "server.log").open("wb")
    env.update({f"ANOMALOOP_{name.upper()}": value for name, value in args.setting})
    server = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--no-demo", "--no-migrate", "--host",
                               "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                              cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(base_url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        auth = {"Authorization": f"Bearer {admin_token}"}
        with httpx.Client(base_url=base_url, headers=auth, timeout=120) as c:
            r = c.post("/api/v1/datasets/import", files={"file": (DEMO.name, DEMO.read_bytes())},
                       data={"dataset": "soak"})
            r.raise_for_status()
            series_id, n_points = r.json()[0]["series_id"], r.json()[0]["n_points"]
            dataset_id = c.get("/api/v1/datasets").json()[0]["id"]
            r = c.post("/api/v1/projects", json={"name": "soak", "dataset_id": dataset_id, "detector": "iforest",
                                                 "window": 25, "strategy": "top_k", "round_size": 50,
                                                 "budget": 1_000_000})
            r.raise_for_status()
            project_id = r.json()["id"]
            for _ in range(600):
                if c.get(f"/api/v1/projects/{project_id}/versions").json():
                    break
                time.sleep(0.5)
            c.post(f"/api/v1/projects/{project_id}/rounds", json={"k": 50}).raise_for_status()

        stats, acked = Stats(), []
        stop = time.monotonic() + duration

        async def run() -> None:
            await asyncio.gather(
                *(analyst(base_url, t, project_id, stop, stats, acked) for t in tokens),
                *(reader(base_url, tokens[i % len(tokens)], project_id, series_id, n_points, stop, stats)
                  for i in range(args.readers)),
                admin(base_url, admin_token, project_id, stop, stats),
            )

        asyncio.run(run())
        health = httpx.get(base_url + "/healthz", timeout=5).status_code
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()

    # exactly once: every acknowledged answer's labels are stored (once: ids are keys), and each answered query has
    # exactly one answer in force
    from sqlalchemy import select

    from app.projects import service as projects
    from app.projects.models import Label

    with db.session_scope() as session:
        stored = set(session.scalars(select(Label.id).where(Label.project_id == project_id)))
        acked_ids = [i for *_, ids in acked for i in ids]
        missing = [i for i in acked_ids if i not in stored]
        in_force = Counter(lab.query_id for lab in projects.effective_labels(session, project_id)
                           if lab.query_id is not None)
        answered_queries = {q for _, q, _, _ in acked}
        not_one = {q: in_force.get(q, 0) for q in answered_queries if in_force.get(q, 0) != 1}
    db.dispose()
    if admin_engine is not None:
        with admin_engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'))
    server_log = (work / "server.log").read_text(errors="replace")
    report = {
        "database": "postgresql" if args.database_url else "sqlite",
        "duration_s": duration,
        "clients": {"analysts": args.analysts, "readers": args.readers, "importers": 1},
        "settings": dict(args.setting),
        "acknowledged_answers": len(acked),
        "acknowledged_labels": len(acked_ids),
        "acknowledged_labels_missing": len(missing),
        "acknowledged_labels_stored_exactly_once": len(acked_ids) - len(missing),
        "answered_queries_without_exactly_one_answer_in_force": len(not_one),
        "errors": len(stats.errors),
        "unhandled_server_errors": server_log.count("unhandled error"),
        "healthz_after": health,
    }
    print(stats.table())
    print(json.dumps(report, indent=2))
    for line in stats.errors[:20]:
        print("error:", line)
    if args.json:
        args.json.write_text(json.dumps({**report, "table": stats.table(), "errors_sample": stats.errors[:50]},
                                        indent=2))


if __name__ == "__main__":
    main()
