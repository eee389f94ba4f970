"""The labels in force come from one SQL query; it must agree with the definition on any append-only label log."""

from __future__ import annotations

import random

from app.datasets import service as datasets
from app.projects import service as projects
from app.projects.models import Label
from tests.app.loop_helpers import create, import_series


def in_force(
    rows: list[Label], project_id: int, series_id: int | None = None, start: int | None = None, end: int | None = None
) -> list[int]:
    """The definition, in Python: rows no later row supersedes, less retracted ones, oldest first."""
    mine = [r for r in rows if r.project_id == project_id]
    superseded = {r.supersedes_id for r in mine if r.supersedes_id is not None}
    return [
        r.id
        for r in sorted(mine, key=lambda r: r.id)
        if r.id not in superseded
        and r.value != "retracted"
        and (series_id is None or r.series_id == series_id)
        and (end is None or r.start < end)
        and (start is None or r.end > start)
    ]


def test_effective_labels_match_the_definition(database, shared_data):
    for name in ("realKnownCause__nyc_taxi", "realKnownCause__ambient_temperature_system_failure"):
        dataset_id = import_series(database, shared_data / "nab" / f"{name}.csv.gz", "log", limit_points=300)
    with database.session_scope() as session:
        series_ids = [s.id for s in datasets.list_datasets(session)[0].series]
    assert len(series_ids) == 2
    first, _ = create(database, dataset_id, name="a", detector="iforest", window=25)
    second, _ = create(database, dataset_id, name="b", detector="iforest", window=25)
    rng = random.Random(0)
    with database.session_scope() as session:
        rows: list[Label] = []
        for _ in range(300):  # new ranges, edits, undos (retractions), chains of them, in two projects
            older = rng.choice(rows) if rows and rng.random() < 0.5 else None
            project_id = older.project_id if older else rng.choice((first, second))
            series_id = older.series_id if older else rng.choice(series_ids)
            start = rng.randrange(0, 280)
            label = Label(
                project_id=project_id,
                series_id=series_id,
                start=start,
                end=start + rng.randrange(1, 20),
                value=rng.choice(("anomaly", "normal", "unsure", "retracted")),
                source="analyst",
                supersedes_id=older.id if older else None,
            )
            session.add(label)
            session.flush()
            rows.append(label)
        for project_id in (first, second):
            assert len(in_force(rows, project_id)) > 20
            assert [r.id for r in projects.effective_labels(session, project_id)] == in_force(rows, project_id)
            for series_id in series_ids:
                got = projects.effective_labels(session, project_id, series_id=series_id)
                assert [r.id for r in got] == in_force(rows, project_id, series_id)
                for start, end in ((0, 300), (100, 101), (50, 120), (299, 300), (0, 1)):
                    got = projects.labels_in_range(session, project_id, series_id, start, end)
                    assert [r.id for r in got] == in_force(rows, project_id, series_id, start, end)
