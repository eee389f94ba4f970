"""Transactions hold together on SQLite as on PostgreSQL: what one scope writes becomes visible at once, at commit."""

from __future__ import annotations

from sqlalchemy import text

from app.datasets.models import Dataset


def test_a_savepoint_opened_first_does_not_commit_early(database):
    """Storing a model version opens a savepoint before anything else is written; its release must not publish the
    version ahead of the round status and serving pick written after it (pysqlite committed it at once)."""
    count = text("SELECT count(*) FROM dataset WHERE name = 'savepoint-first'")
    with database.session_scope() as session:
        with session.begin_nested():
            session.add(Dataset(name="savepoint-first"))
        with database.engine.connect() as other:
            assert other.execute(count).scalar() == 0  # not visible to anyone else yet
        session.add(Dataset(name="savepoint-second"))
    with database.engine.connect() as other:
        assert other.execute(count).scalar() == 1
