"""Safe adoption through the real services and jobs: a worse candidate is stored but not served, a better one
serves, the threshold guard raises an alarm storm's threshold to its limit, and an admin's pick sticks until the
project follows again."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from app.core.detectors import registry
from app.projects.models import Project
from app.versions import repository as versions_repo
from app.versions import service as versions
from app.versions.models import ModelVersion
from tests.app.loop_helpers import create, executor, import_series, run_rounds


@pytest.fixture
def flip_detector(monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setitem(registry._REGISTRY, "test_flip", "tests.app.adoption_detectors:FlipDetector")


def _project(database, tmp_path, mode: str, **spec):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(3)
    x = rng.standard_normal(2000) * 0.1
    y = np.zeros(2000, dtype=int)
    for s in range(60, 1200, 97):  # spikes all over the pool, so every round's answers hold some
        x[s : s + 3] += 6.0
        y[s : s + 3] = 1
    x[1500:1503] += 6.0
    y[1500:1503] = 1
    csv = tmp_path / f"flip-{mode}.csv"
    pd.DataFrame({"value": x, "label": y}).to_csv(csv, index=False)
    dataset_id = import_series(database, csv, f"flip-{mode}")
    params = dict(
        detector="test_flip",
        detector_params={"mode": mode},
        window=20,
        strategy="top_k",
        round_size=8,
        budget=40,
        oracle="ground_truth",
        holdout_fraction=0.3,
        max_flag_share=1.0,
    )
    params.update(spec)
    return create(database, dataset_id, name=f"flip-{mode}", **params)


def _serving(database, project_id: int) -> int:  # type: ignore[no-untyped-def]
    with database.session_scope() as s:
        return versions_repo.serving_or_latest(s, s.get(Project, project_id)).id


def test_a_worse_candidate_is_stored_not_served_and_a_better_one_serves(database, tmp_path, flip_detector):
    for mode, served in (("worse", False), ("better", True)):
        project_id, job_id = _project(database, tmp_path, mode)
        ex = executor(database, tmp_path)
        ex.enqueue(job_id)
        v0, v1 = run_rounds(database, ex.enqueue, project_id, rounds=1, timeout=120)
        ex.shutdown()
        assert v1["adoption"]["serve"] is served, v1["adoption"]
        assert v1["adoption"]["held_out"] and v1["adoption"]["n_validation"] == 8
        assert _serving(database, project_id) == (v1["id"] if served else v0["id"])
        if not served:
            assert "worse on the 8 newest answers" in v1["adoption"]["reason"]
            assert v1["adoption"]["candidate_figure"] < v1["adoption"]["serving_figure"]


def test_the_threshold_guard_raises_a_storms_threshold_to_its_limit(database, tmp_path, flip_detector):
    # "worse" ranks the spikes last: the threshold its labels choose must then flag nearly every point
    project_id, job_id = _project(database, tmp_path, "worse", max_flag_share=0.05)
    ex = executor(database, tmp_path)
    ex.enqueue(job_id)
    v0, v1 = run_rounds(database, ex.enqueue, project_id, rounds=1, timeout=120)
    ex.shutdown()
    adoption = v1["adoption"]
    assert "its threshold was raised from" in adoption["reason"] and adoption["raised_from"] < adoption["threshold"]
    with database.session_scope() as s:  # the version stores the raised one
        assert s.get(ModelVersion, v1["id"]).threshold == pytest.approx(adoption["threshold"], rel=1e-5)
    assert v1["threshold"] == pytest.approx(adoption["threshold"], rel=1e-5)
    assert v1["flag_share"] == adoption["flag_share"] <= adoption["flag_limit"] < 0.5
    # its ranking is still judged: the spikes last is worse on the answers, so v0 keeps serving
    assert not adoption["serve"] and "worse on the" in adoption["reason"]
    assert _serving(database, project_id) == v0["id"]


def test_an_admins_pick_sticks_until_the_project_follows_again(database, tmp_path, flip_detector):
    project_id, job_id = _project(database, tmp_path, "better")
    ex = executor(database, tmp_path)
    ex.enqueue(job_id)
    v0, v1 = run_rounds(database, ex.enqueue, project_id, rounds=1, timeout=120)
    assert _serving(database, project_id) == v1["id"]
    with database.session_scope() as s:
        versions.promote(s, None, v0["id"])  # roll back to the initial fit
    with database.session_scope() as s:
        from app.projects import service as projects

        started = projects.start_round(s, None, project_id)
        job_ids = started.job_ids
    for j in job_ids:
        ex.enqueue(j)
    from tests.app.loop_helpers import wait_version

    v2 = wait_version(database, project_id, 2, timeout=120)
    assert v2["adoption"]["serve"] and v2["adoption"]["pinned"], v2["adoption"]  # passed, but pinned
    assert _serving(database, project_id) == v0["id"]
    with database.session_scope() as s:
        versions.follow_new_versions(s, None, project_id, True)
    assert _serving(database, project_id) == v2["id"]
    ex.shutdown()


def test_answered_false_alarms_only_take_alarms_away() -> None:
    """A version trained (``versions.train``, the worker's pure step) on answers that earn the ensemble false-alarm
    exemplars keeps the threshold the same version without them chooses, so the exemplars flag fewer points, never
    more: answering "normal" cannot raise new alarms elsewhere."""
    from app.core.detectors.ensemble import EnsembleDetector
    from app.core.loop import PoolState, SeriesPool
    from tests.core.test_ensemble import _answer, bumpy_series

    x = bumpy_series()
    ranges = [_answer(c, 0) for c in (400, 800, 2000, 2400)] + [_answer(c, 1) for c in (1004, 1404, 2204)]

    def trained(suppress: float) -> versions.TrainingOutput:
        base = EnsembleDetector(seed=0, device="cpu", suppress=suppress).fit(x[:1000])
        state = PoolState([SeriesPool(7, len(x), len(x))], base.window, budget=20, labels=[list(ranges)])
        state.answers = len(ranges)
        series = [versions.SeriesData(7, x, None, len(x), 0)]
        inp = versions.TrainingInput(1, 1, "ensemble", {}, base.to_bytes(), x, state, series, "percentile", 4096, 7)
        return versions.train(inp, "cpu")

    with_exemplars, without = trained(10.0), trained(0.0)
    assert with_exemplars.metrics["ensemble_combination"]["false_alarm_exemplars"] > 0
    assert with_exemplars.threshold == pytest.approx(without.threshold)
    flagged = {
        k: float(np.mean(o.scores[7]["point"] > o.threshold)) for k, o in (("on", with_exemplars), ("off", without))
    }
    assert flagged["on"] < flagged["off"]
