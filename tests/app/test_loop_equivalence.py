"""One loop: the bench's experiment and the product's services, same seed, give the same queries and scores.

The product path is what a ground-truth project does on SQLite with the in-process executor (fit job, rounds
started through ``projects.start_round``, answers from the stored ground truth, retraining jobs with safe
adoption); the bench path is ``app.core.loop.run_experiment`` as ``anomaloop bench run`` calls it. Both read the same
float32 values, so every query of every round and the served model's final scores and threshold must agree.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from app.core.detectors import detector_class, make_detector
from app.core.loop import GroundTruthOracle, Split, run_experiment
from app.datasets import service as datasets
from app.datasets.models import Series
from app.db import Database
from app.projects import repository as projects_repo
from app.projects.models import Project
from app.versions import repository as versions_repo
from tests.app.loop_helpers import create, executor, import_series, run_rounds

N_POINTS, HOLDOUT, ROUNDS, K, SEED = 3000, 0.4, 3, 6, 5
CASES = {
    "ensemble": {},
    "iforest": {"n_estimators": 50},
    "rlad": {"episodes": 2, "steps_per_episode": 60, "n_pseudo": 20, "propagation_nodes": 300},
}


def _series_csv(path) -> None:  # type: ignore[no-untyped-def]
    """A sine with noise, level shifts and spikes: anomalies in the pool and in the held-back tail."""
    rng = np.random.default_rng(11)
    t = np.arange(N_POINTS)
    x = np.sin(2 * np.pi * t / 60) + 0.1 * rng.standard_normal(N_POINTS)
    y = np.zeros(N_POINTS, dtype=int)
    for s in rng.choice(np.arange(100, N_POINTS - 100), 14, replace=False):
        x[s : s + 4] += rng.choice([-3.0, 3.0])
        y[s : s + 4] = 1
    x[1000:1040] += 2.0
    y[1000:1040] = 1
    pd.DataFrame({"value": x, "label": y}).to_csv(path, index=False)


@pytest.mark.parametrize("detector", sorted(CASES))
def test_bench_and_product_run_the_same_loop(detector, sqlite_url, tmp_path):
    db = Database(sqlite_url)
    csv = tmp_path / f"equivalence-{detector}.csv"
    _series_csv(csv)
    cls = detector_class(detector)
    try:
        dataset_id = import_series(db, csv, f"equivalence-{detector}")
        project_id, job_id = create(
            db,
            dataset_id,
            name=f"equivalence-{detector}",
            detector=detector,
            detector_params=CASES[detector],
            round_size=K,
            budget=K * ROUNDS,
            oracle="ground_truth",
            holdout_fraction=HOLDOUT,
            seed=SEED,
        )
        ex = executor(db, tmp_path)
        ex.enqueue(job_id)
        run_rounds(db, ex.enqueue, project_id, rounds=ROUNDS, timeout=600)
        ex.shutdown()
        with db.session_scope() as s:
            project = s.get(Project, project_id)
            [series] = project.series
            series = s.get(Series, series.id)
            X = datasets.read_values(s, series).astype(np.float32)
            y = datasets.read_truth(s, series)
            product_queries = [
                [(q.start, q.end) for q in projects_repo.list_queries(s, r.id)]
                for r in projects_repo.list_rounds(s, project_id)
            ]
            served = versions_repo.serving_or_latest(s, project)
            product_scores = versions_repo.read_scores(
                s, served.id, series.id, "point", 0, N_POINTS, series.chunk_points
            )
            verdicts = [v.adoption.get("serve") for v in versions_repo.list_for_project(s, project_id)]
            product_threshold = served.threshold
            window, strategy, pool_end = project.window, project.strategy, int(round(N_POINTS * (1 - HOLDOUT)))

        det = make_detector(detector, window=window, stride=1, seed=SEED, device="cpu", **CASES[detector])
        split = Split(X_fit=X[:pool_end], X=X, y=y, pool=(0, pool_end), evaluation=(pool_end, N_POINTS))
        oracle = GroundTruthOracle(y, split.pool, answer=cls.answer_mode)
        res = run_experiment(det, split, strategy, oracle, K, K * ROUNDS, SEED)
        bench_queries = _by_round(res)

        assert len(product_queries) == ROUNDS and all(len(r) == K for r in product_queries)
        assert bench_queries == product_queries
        assert [r.served for r in res.rounds[1:]] == verdicts[1:]
        np.testing.assert_allclose(product_scores, res.scores.astype(np.float32), rtol=1e-5, atol=1e-6)
        assert product_threshold == pytest.approx(res.threshold, rel=1e-5, abs=1e-6)  # the alarms a client gets
    finally:
        from tests.conftest import _wipe

        _wipe(db)
        db.dispose()


def _by_round(res) -> list[list[tuple[int, int]]]:  # type: ignore[no-untyped-def]
    """The experiment's queries grouped by round, in rank order."""
    out: list[list[tuple[int, int]]] = []
    for q in res.queries:
        if q.rank == 0:
            out.append([])
        out[-1].append((q.start, q.end))
    return out
