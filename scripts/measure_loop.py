"""Latency from the last label of a round to the new scores being readable, on a 100,000-point series, on the
in-process path (SQLite) and the Celery path (PostgreSQL + Redis + one worker); and rounds per hour with 2 workers.

Usage: .venv/bin/python scripts/measure_loop.py [--detector lstm_ae] [--points 100000] [--rounds 3] [--celery]
    [--throughput-rounds 3] [--train-threads N]
The Celery path needs PostgreSQL at 127.0.0.1:5432 (database ``test``, trust auth; a scratch database is created and
dropped) and Redis at 127.0.0.1:6379 (database 14 is flushed). Latency there is measured with one ``anomaloop worker``
process; throughput with two workers, two projects running rounds at once. Each figure is printed with the 1-minute
load average before and after it, since other work on the machine changes the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import threading
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
    "ensemble": {},
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
            window=None,  # the detector's default window and strategy
            strategy=None,
            round_size=10,
            budget=1000,
            oracle="human",
            detector_params=PARAMS[detector],
            review_grace_minutes=0,  # timed from the last label: the round closes there, no review period
        )
        project, job = projects.create_project(s, None, spec)
        return project.id, job


def wait(db: Database, project_id: int, number: int, timeout: float = 3600) -> None:
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


def load() -> str:
    return f"{os.getloadavg()[0]:.2f}"


def start_workers(n: int, env: dict, cel: CeleryExecutor) -> list[subprocess.Popen]:
    """Start ``n`` ``anomaloop worker`` processes and wait until all of them answer a ping."""
    procs = [
        subprocess.Popen([sys.executable, "-m", "app.cli", "worker", "--loglevel", "warning"], cwd=ROOT, env=env,
                         start_new_session=True)
        for _ in range(n)
    ]
    names = {f"anomaloop-cpu-{p.pid}" for p in procs}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        replies = cel.app.control.ping(timeout=1.0) or []
        if names <= {name.split("@")[0] for r in replies for name in r}:
            return procs
    raise TimeoutError("workers did not answer a ping")


def stop_workers(procs: list[subprocess.Popen]) -> None:
    for w in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(w.pid, 15)
    for w in procs:
        try:
            w.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(w.pid, 9)


def timed_fit(db: Database, enqueue, pid: int, job: int) -> tuple[float, str]:  # type: ignore[no-untyped-def]
    before, t = load(), time.perf_counter()
    enqueue(job)
    wait(db, pid, 0)
    return time.perf_counter() - t, f"{before} -> {load()}"


def timed_rounds(db: Database, enqueue, pid: int, rounds: int) -> list[tuple[float, str]]:  # type: ignore[no-untyped-def]
    out = []
    for r in range(1, rounds + 1):
        before = load()
        out.append((one_round_latency(db, enqueue, pid, r), f"{before} -> {load()}"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--detector", default="lstm_ae")
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3, help="rounds timed on each path (10 labels each)")
    parser.add_argument("--celery", action="store_true")
    parser.add_argument("--skip-inprocess", action="store_true")
    parser.add_argument("--throughput-rounds", type=int, default=3, help="rounds per project in the 2-worker run")
    parser.add_argument("--train-threads", type=int, default=None,
                        help="ANOMALOOP_TRAIN_THREADS for the jobs (default: the setting's default)")
    args = parser.parse_args()
    extra = {} if args.train_threads is None else {"train_threads": args.train_threads}
    tmp = Path(tempfile.mkdtemp())
    csv = tmp / "series.csv"
    make_series(csv, args.points)
    rows = []
    throughput = None
    threads = Settings(**extra).train_threads
    print(f"load average at start: {', '.join(f'{x:.2f}' for x in os.getloadavg())}; train_threads {threads}",
          flush=True)
    if not args.skip_inprocess:
        url = f"sqlite:///{tmp / 'a.db'}"
        upgrade(url)
        db = Database(url)
        settings = Settings(database_url=url, data_dir=tmp, device="cpu", **extra)
        ex = InProcessExecutor(settings, db, sweep=False)
        pid, job = setup(db, csv, args.detector, "inproc")
        fit = timed_fit(db, ex.enqueue, pid, job)
        rows.append(("in-process + SQLite", fit, timed_rounds(db, ex.enqueue, pid, args.rounds)))
        print(rows[-1], flush=True)
        ex.shutdown()
        db.dispose()
    if args.celery:
        import redis

        admin = create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/test", isolation_level="AUTOCOMMIT")
        name = f"anomaloop_measure_{uuid.uuid4().hex[:8]}"
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        pg_url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        broker = "redis://127.0.0.1:6379/14"
        redis.Redis.from_url(broker).flushdb()
        upgrade(pg_url)
        pg = Database(pg_url)
        env = dict(os.environ, ANOMALOOP_DATABASE_URL=pg_url, ANOMALOOP_BROKER_URL=broker, ANOMALOOP_DEVICE="cpu",
                   ANOMALOOP_DATA_DIR=str(tmp))
        if args.train_threads is not None:
            env["ANOMALOOP_TRAIN_THREADS"] = str(args.train_threads)
        cel = CeleryExecutor(Settings(database_url=pg_url, broker_url=broker, device="cpu", data_dir=tmp), pg)
        workers: list[subprocess.Popen] = []
        try:
            workers += start_workers(1, env, cel)
            pid, job = setup(pg, csv, args.detector, "celery")
            fit = timed_fit(pg, cel.enqueue, pid, job)
            rows.append(("Celery + PostgreSQL + Redis, 1 worker", fit, timed_rounds(pg, cel.enqueue, pid, args.rounds)))
            print(rows[-1], flush=True)
            # throughput: two projects' rounds at once on 2 workers (their fits first, also at once)
            workers += start_workers(1, env, cel)
            pids = [setup(pg, csv, args.detector, f"tp{i}") for i in range(2)]
            for _, j in pids:
                cel.enqueue(j)
            for p, _ in pids:
                wait(pg, p, 0)
            before, t = load(), time.perf_counter()
            per_round: list[float] = []
            threads_ = [
                threading.Thread(target=lambda p=p: per_round.extend(
                    one_round_latency(pg, cel.enqueue, p, r) for r in range(1, args.throughput_rounds + 1)))
                for p, _ in pids
            ]
            for th in threads_:
                th.start()
            for th in threads_:
                th.join()
            elapsed = time.perf_counter() - t
            n_rounds = 2 * args.throughput_rounds
            throughput = (n_rounds / elapsed * 3600, n_rounds, elapsed, per_round, f"{before} -> {load()}")
            cel.shutdown()
        finally:
            stop_workers(workers)
            pg.dispose()
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    print()
    print(f"| path ({args.detector}, {args.points:,} points, train_threads {threads}) | initial fit s (load 1 min) "
          "| last label -> new scores readable, s, per round (load 1 min before -> after) |")
    print("|---|---:|---|")
    for label, (fit_s, fit_load), lat in rows:
        print(f"| {label} | {fit_s:.1f} ({fit_load}) | {'; '.join(f'{x:.1f} ({ld})' for x, ld in lat)} |")
    if throughput is not None:
        rate, n_rounds, elapsed, per_round, ld = throughput
        print(f"\nrounds per hour with 2 workers, 2 projects ({args.throughput_rounds} rounds each, {n_rounds} in "
              f"{elapsed:.1f} s; per-round latency {', '.join(f'{x:.1f}' for x in per_round)} s; load {ld}): "
              f"{rate:.0f}")


if __name__ == "__main__":
    main()
