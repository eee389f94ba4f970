"""Alembic builds the whole schema on SQLite and PostgreSQL, and the models match the migrations."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from app.models import metadata


def test_head_has_every_table_and_no_pending_autogenerate_diff(database):
    with database.engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
        assert set(metadata.tables) <= tables
        assert "alembic_version" in tables
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert diff == [], f"models and migrations differ; run alembic revision --autogenerate: {diff}"
