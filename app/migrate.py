"""Run Alembic migrations programmatically (``anomaloop migrate``, ``make run``, tests)."""

from __future__ import annotations

import os
from pathlib import Path

from alembic import command
from alembic.config import Config

ROOT = Path(__file__).resolve().parent.parent


def alembic_config(url: str) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision``; creates the SQLite file's folder if needed."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if path.name and path.name != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
            # The database holds password hashes and labels: readable by its owner only. SQLite gives its -wal
            # and -shm files the database file's permissions.
            if not path.exists():
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    command.upgrade(alembic_config(url), revision)
