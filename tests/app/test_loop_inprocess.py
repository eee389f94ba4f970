"""The whole loop on SQLite with the in-process executor: fit, three ground-truth rounds, retrain, rescore."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.db import Database
from app.projects.models import Label
from tests.app.loop_helpers import create, executor, import_series, run_rounds
from tests.worker.loop_config import LOOP_CASES, LOOP_SERIES, assert_labels_paid


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(LOOP_CASES))
def test_three_rounds_pay_on_the_held_back_part(case, sqlite_url, shared_data, tmp_path):
    db = Database(sqlite_url)
    try:
        path, limit = LOOP_SERIES
        dataset_id = import_series(db, shared_data / path, f"loop-{case}", limit_points=limit)
        project_id, job_id = create(db, dataset_id, name=f"loop-{case}", **LOOP_CASES[case])
        ex = executor(db, tmp_path)
        ex.enqueue(job_id)
        versions = run_rounds(db, ex.enqueue, project_id, rounds=3, timeout=900)
        ex.shutdown()
        assert [v["labels_used"] for v in versions] == _expected_labels(case)
        assert all("serve" in v["adoption"] and "reason" in v["adoption"] for v in versions[1:]), versions
        assert_labels_paid(case, versions)
        with db.session_scope() as s:  # every oracle answer is stored as labels
            assert s.scalar(select(func.count()).select_from(Label).where(Label.source == "oracle")) > 0
    finally:
        from tests.conftest import _wipe

        _wipe(db)
        db.dispose()


def _expected_labels(case: str) -> list[int]:
    k = LOOP_CASES[case]["round_size"]
    return [0, k, 2 * k, 3 * k]  # RLAD's warm-up round asks the round's size too
