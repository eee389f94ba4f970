"""Every bad input gets one clear message and leaves the database unchanged (CLI and web)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from app.cli import cli
from app.datasets.models import Dataset, Series, SeriesChunk

GOOD = "timestamp,value,label\n2024-01-01T00:00:00,1.0,0\n2024-01-01T00:01:00,2.0,1\n2024-01-01T00:02:00,3.0,0\n"

BAD_FILES = {
    "not_csv.csv": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\xff\xfe\x00binary", "not a CSV"),
    "empty.csv": (b"", "empty"),
    "header_only.csv": (b"timestamp,value,label\n", "no data rows"),
    "no_numeric.csv": (b"timestamp,name\n2024-01-01T00:00:00,a\n2024-01-01T00:01:00,b\n", "no numeric column"),
    "bad_label.csv": (b"timestamp,value,label\n2024-01-01T00:00:00,1,0\n2024-01-01T00:01:00,2,2\n", "must be 0 or 1"),
    "backwards.csv": (b"timestamp,value\n2024-01-01T00:02:00,1\n2024-01-01T00:01:00,2\n", "non-increasing"),
    "duplicate_ts.csv": (b"timestamp,value\n2024-01-01T00:01:00,1\n2024-01-01T00:01:00,2\n", "duplicate"),
    "nan.csv": (
        b"timestamp,value\n2024-01-01T00:00:00,1\n2024-01-01T00:01:00,\n2024-01-01T00:02:00,inf\n",
        "line(s) 3, 4;",
    ),
    "bad_time.csv": (b"timestamp,value\nyesterday,1\ntoday,2\n", "not ISO-8601"),
    "text_in_values.csv": (
        b"timestamp,value\n2024-01-01T00:00:00,1\n2024-01-01T00:01:00,1\n2024-01-01T00:02:00,x\n"
        + b"2024-01-01T00:03:00,4\n",
        "non-numeric values at line(s) 4",
    ),
}


def _counts(db) -> tuple[int, int, int]:
    with db.session_scope() as s:
        return tuple(s.scalar(select(func.count()).select_from(t)) for t in (Dataset, Series, SeriesChunk))


@pytest.fixture
def cli_env(database, tmp_path, monkeypatch):
    monkeypatch.setenv("ANOMALOOP_DATABASE_URL", database.url)
    monkeypatch.setenv("ANOMALOOP_DATA_DIR", str(tmp_path))
    return database


def _run(*args: str):
    return CliRunner().invoke(cli, list(args))


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_file_one_line_nonzero_exit_nothing_written(cli_env, tmp_path, name):
    content, expected = BAD_FILES[name]
    good = tmp_path / "good.csv"
    good.write_text(GOOD)
    bad = tmp_path / name
    bad.write_bytes(content)
    before = _counts(cli_env)
    # the good file comes first: the whole run is one transaction, so it must not stay behind either
    result = _run("import", str(good), str(bad), "--dataset", "d")
    assert result.exit_code == 1
    assert expected in result.output, result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
    assert _counts(cli_env) == before


def test_missing_file(cli_env, tmp_path):
    result = _run("import", str(tmp_path / "nope.csv"))
    assert result.exit_code == 1 and "no such file" in result.output


def test_fill_policies_import_what_reject_refuses(cli_env, tmp_path):
    path = tmp_path / "gaps.csv"
    path.write_bytes(BAD_FILES["nan.csv"][0])
    assert _run("import", str(path), "--dataset", "a", "--fill", "ffill").exit_code == 0
    from app.datasets import service

    with cli_env.session_scope() as s:
        series = s.scalars(select(Series)).one()
        assert service.read_values(s, series)[:, 0].tolist() == [1.0, 1.0, 1.0]
        assert series.n_missing_values == 2
    result = _run("import", str(path), "--dataset", "b", "--fill", "keep")
    assert result.exit_code == 0, result.output


def test_channel_count_must_match_the_data_set_and_names_are_unique(cli_env, tmp_path):
    one = tmp_path / "one.csv"
    one.write_text(GOOD)
    two = tmp_path / "two.csv"
    two.write_text("timestamp,a,b\n1,1,2\n2,3,4\n")
    assert _run("import", str(one), "--dataset", "d").exit_code == 0
    before = _counts(cli_env)
    result = _run("import", str(two), "--dataset", "d")
    assert result.exit_code == 1 and "2 channel(s) but data set 'd' has 1" in result.output
    result = _run("import", str(one), "--dataset", "d")
    assert result.exit_code == 1 and "already has a series named 'one'" in result.output
    assert _counts(cli_env) == before


def test_formats_timestamps_and_label_column(cli_env, tmp_path):
    import pandas as pd

    frame = pd.DataFrame(
        {"t": [1700000000, 1700000060, 1700000120], "x": [1.0, 2.0, 3.0], "y": [0.5, 0.1, 0.2], "flag": [0, 1, 1]}
    )
    frame.to_parquet(tmp_path / "p.parquet")
    with gzip.open(tmp_path / "g.csv.gz", "wt") as fh:
        fh.write("x,y\n1,2\n3,4\n")
    result = _run(
        "import", str(tmp_path / "p.parquet"), "--dataset", "m", "--timestamp-column", "t", "--label-column", "flag"
    )
    assert result.exit_code == 0, result.output
    assert "2 anomalous points" in result.output
    result = _run("import", str(tmp_path / "g.csv.gz"), "--dataset", "m")  # no timestamp, no label column
    assert result.exit_code == 0, result.output
    with cli_env.session_scope() as s:
        p, g = s.scalars(select(Series).order_by(Series.id)).all()
        assert p.timestamp_kind == "datetime" and p.first_timestamp.startswith("2023-11-14 22:13:20")
        assert g.timestamp_kind == "index" and not g.has_ground_truth
    result = _run("import", str(tmp_path / "p.parquet"), "--dataset", "z", "--label-column", "missing")
    assert result.exit_code == 1 and "no label column 'missing'" in result.output


def test_large_series_streams_in_chunks(cli_env, tmp_path):
    n = 300_000
    path = tmp_path / "big.csv"
    import numpy as np

    rng = np.random.default_rng(0)
    with path.open("w") as fh:
        fh.write("value\n")
        np.savetxt(fh, rng.normal(size=n), fmt="%.6f")
    result = _run("import", str(path), "--dataset", "big")
    assert result.exit_code == 0, result.output
    with cli_env.session_scope() as s:
        chunks = s.scalar(select(func.count()).select_from(SeriesChunk))
    assert chunks == -(-n // 65_536)
    assert Path(path).exists()
