"""Latency from the last label of a round to the new scores being readable, on a 100,000-point series, on the
in-process path (SQLite) and the Celery path (PostgreSQL + Redis + one worker); and rounds per hour with 2 workers.

Usage: .venv/bin/python scripts/measure_loop.py [--detector lstm_ae] [--points 100000] [--celery]
The Celery path needs PostgreSQL at 127.0.0.1:5432 and Redis at 127.0.0.1:6379 (database 14 is flushed).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.datasets.reader import ImportOptions  # noqa: E402
from app.datasets.service import import_files  # noqa: E402
from app.db import Database  # noqa: E402
from app.jobs.executor import CeleryExecutor, InProcessExecutor  # noqa: E402
from app.migrate import upgrade  # noqa: E402
from app.projects import repository as projects_repo  # noqa: E402
from app.projects import service as projects  # noqa: E402
from app.projects.schemas import ProjectCreate  # noqa: E402
from app.settings import Settings  # noqa: E402
from app.versions import repository as versions_repo  # noqa: E402
from app.versions import service as versions  # noqa: E402

PARAMS = {
    "lstm_ae": {"epochs": 5},
    "rlad": {},
}


def make_series(path: Path, n: int) -> None:
    """A real KPI series cut or tiled to ``n`` points (labels kept), so the model sees real structure."""
    src = ROOT.parent / "shared" / "data" / "kpi"
    frame = pd.read_csv(sorted(src.glob("*.csv.gz"))[0])
    reps = -(-n // len(frame))
    values = np.tile(frame["value"].to_numpy(), reps)[:n]
    labels = np.tile(frame["label"].to_numpy(), reps)[:n]
    pd.DataFrame({"value": values, "label": labels}).to_csv(path, index=False)


def setup(db: Database, csv: Path, detector: str, name: str) -> tuple[int, int]:
    with db.session_scope() as s:
        [item] = import_files(s, [csv], name, ImportOptions())
        ds = item.dataset
    with db.session_scope() as s:
        from app.datasets import repository

        spec = ProjectCreate(
            name=name,
            dataset_id=repository.get_dataset_by_name(s, ds).id,
            detector=detector,
            window=50 if detector != "rlad" else 25,
            strategy="margin" if detector == "rlad" else "hybrid",
            round_size=10,
            budget=1000,
            oracle="human",
            detector_params=PARAMS[detector],
        )
        project, job = projects.create_project(s, None, spec)
        return project.id, job


def wait(db: Database, project_id: int, number: int, timeout: float = 1800) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.session_scope() as s:
            v = versions_repo.get_for_round(s, project_id, number)
            if v is not None and versions_repo.has_scores(s, v.id, projects.get_project(s, project_id).series[0].id):
                return
        time.sleep(0.05)
    raise TimeoutError(number)


def one_round_latency(db: Database, enqueue, project_id: int, number: int) -> float:  # type: ignore[no-untyped-def]
    with db.session_scope() as s:
        started = projects.start_round(s, None, project_id)
        queries = [q.id for q in projects_repo.list_queries(s, started.round.id)]
    for q in queries[:-1]:
        with db.session_scope() as s:
            projects.answer_query(s, None, q, "normal", None, uuid.uuid4().hex)
    t0 = time.perf_counter()
    with db.session_scope() as s:  # the last label of the round
        result = projects.answer_query(s, None, queries[-1], "anomaly", None, uuid.uuid4().hex)
        jobs = result.job_ids
    for j in jobs:
        enqueue(j)
    wait(db, project_id, number)
    with db.session_scope() as s:  # new scores readable through the same service the API uses
        project = projects.get_project(s, project_id)
        versions.read_scores(s, versions.serving_version(s, project), project.series[0].id, 0, 1000)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--detector", default="lstm_ae")
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--celery", action="store_true")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    csv = tmp / "series.csv"
    make_series(csv, args.points)
    rows = []
    # in-process on SQLite
    url = f"sqlite:///{tmp / 'a.db'}"
    upgrade(url)
    db = Database(url)
    settings = Settings(database_url=url, data_dir=tmp, device="cpu")
    ex = InProcessExecutor(settings, db, sweep=False)
    pid, job = setup(db, csv, args.detector, "inproc")
    t = time.perf_counter()
    ex.enqueue(job)
    wait(db, pid, 0)
    fit_s = time.perf_counter() - t
    lat = [one_round_latency(db, ex.enqueue, pid, r) for r in range(1, args.rounds + 1)]
    ex.shutdown()
    rows.append(("in-process + SQLite", fit_s, lat))
    if args.celery:
        admin = create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/test", isolation_level="AUTOCOMMIT")
        name = f"anomaloop_measure_{uuid.uuid4().hex[:8]}"
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        pg_url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        broker = "redis://127.0.0.1:6379/14"
        upgrade(pg_url)
        pg = Database(pg_url)
        env = dict(
            os.environ,
            ANOMALOOP_DATABASE_URL=pg_url,
            ANOMALOOP_BROKER_URL=broker,
            ANOMALOOP_DEVICE="cpu",
            ANOMALOOP_DATA_DIR=str(tmp),
        )
        workers = [
            subprocess.Popen(
                [sys.executable, "-m", "app.cli", "worker", "--loglevel", "warning"],
                cwd=ROOT,
                env=env,
                start_new_session=True,
            )
            for _ in range(2)
        ]
        try:
            time.sleep(8)
            cel = CeleryExecutor(Settings(database_url=pg_url, broker_url=broker, device="cpu", data_dir=tmp))
            pid, job = setup(pg, csv, args.detector, "celery")
            t = time.perf_counter()
            cel.enqueue(job)
            wait(pg, pid, 0)
            fit_s = time.perf_counter() - t
            lat = [one_round_latency(pg, cel.enqueue, pid, r) for r in range(1, args.rounds + 1)]
            rows.append(("Celery + PostgreSQL + Redis", fit_s, lat))
            # throughput: two projects' rounds in parallel on 2 workers
            pids = [setup(pg, csv, args.detector, f"tp{i}") for i in range(2)]
            for _, j in pids:
                cel.enqueue(j)
            for p, _ in pids:
                wait(pg, p, 0)
            t = time.perf_counter()
            import threading

            threads = [
                threading.Thread(target=lambda p=p: [one_round_latency(pg, cel.enqueue, p, r) for r in (1, 2)])
                for p, _ in pids
            ]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            rounds_per_hour = 4 / (time.perf_counter() - t) * 3600
            cel.shutdown()
        finally:
            for w in workers:
                os.killpg(w.pid, 15)
            pg.dispose()
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    print(
        f"| path ({args.detector}, {args.points:,} points) | initial fit s | last label -> new scores, s (per round) |"
    )
    print("|---|---:|---|")
    for name, fit_s, lat in rows:
        print(f"| {name} | {fit_s:.1f} | {', '.join(f'{x:.1f}' for x in lat)} |")
    if args.celery:
        print(f"\nrounds per hour with 2 workers, 2 projects (2 rounds each): {rounds_per_hour:.0f}")


if __name__ == "__main__":
    main()
