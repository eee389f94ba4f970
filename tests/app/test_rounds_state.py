"""The round's state machine: legal moves only, exactly one mover, and the database refuses unknown states."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from app.projects import rounds
from app.projects.rounds import TRANSITIONS, RoundStatus


def test_the_table_names_every_state_and_done_is_final():
    assert set(TRANSITIONS) == set(RoundStatus)
    assert TRANSITIONS[RoundStatus.DONE] == frozenset()
    assert RoundStatus.COMPLETE in TRANSITIONS[RoundStatus.OPEN]


def test_an_illegal_move_is_refused_before_touching_the_database():
    with pytest.raises(ValueError, match="cannot move from done to open"):
        rounds.move(None, 1, (RoundStatus.DONE,), RoundStatus.OPEN)  # type: ignore[arg-type]


def test_the_database_refuses_a_status_outside_the_machine(database):
    from app.datasets.models import Dataset
    from app.projects.models import Project

    with database.session_scope() as session:
        ds = Dataset(name="ck")
        session.add(ds)
        session.flush()
        project = Project(
            name="ck", dataset_id=ds.id, detector="iforest", window=25, strategy="top_k", round_size=5, budget=10
        )
        session.add(project)
        session.flush()
        project_id = project.id
    with database.engine.connect() as conn:
        insert = text(
            "INSERT INTO round (project_id, number, strategy, k, status, created_at) "
            "VALUES (:p, :n, 'top_k', 5, :s, CURRENT_TIMESTAMP)"
        )
        conn.execute(insert, {"p": project_id, "n": 1, "s": "training"})
        with pytest.raises(IntegrityError):
            conn.execute(insert, {"p": project_id, "n": 2, "s": "paused"})
        conn.rollback()
