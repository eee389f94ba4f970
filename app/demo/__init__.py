"""The shipped demo series (NAB, MIT) and the loader ``make run`` uses on an empty database."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from app.datasets import repository as datasets_repo
from app.datasets.reader import ImportOptions
from app.datasets.service import ImportedSeries, data_files, import_files

DEMO_DIR = Path(__file__).resolve().parent
DEMO_DATASET = "nab-demo"


def load_demo(session: Session) -> list[ImportedSeries]:
    """Import the demo series if the database has no data set yet; returns what was imported (maybe nothing)."""
    if datasets_repo.count_datasets(session) > 0:
        return []
    return import_files(session, data_files(DEMO_DIR), DEMO_DATASET, ImportOptions())
