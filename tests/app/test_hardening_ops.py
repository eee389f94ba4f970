"""Operations: stale uploads are cleaned at start, demo passwords are written privately and printed once."""

from __future__ import annotations

import json
import os
import stat
import time

from fastapi.testclient import TestClient

from app.cli import _prepare_demo
from app.settings import Settings
from app.web import clean_stale_uploads, create_app


def test_startup_removes_only_stale_upload_folders(database, tmp_path):
    uploads = tmp_path / "uploads"
    stale, fresh = uploads / "upload-stale", uploads / "upload-fresh"
    for folder in (stale, fresh):
        folder.mkdir(parents=True)
        (folder / "big.csv").write_bytes(b"value\n1\n")
    old = time.time() - 2 * 3600
    for p in (stale / "big.csv", stale):
        os.utime(p, (old, old))
    with TestClient(create_app(Settings(database_url=database.url, data_dir=tmp_path), database)):
        assert not stale.exists() and (fresh / "big.csv").exists()
    assert clean_stale_uploads(Settings(data_dir=tmp_path / "none")) == 0


def test_demo_credentials_are_private_and_printed_once(database, tmp_path, capsys):
    settings = Settings(database_url=database.url, data_dir=tmp_path)
    _prepare_demo(settings, database)
    first = capsys.readouterr().out
    creds_file = tmp_path / "demo-credentials.json"
    creds = json.loads(creds_file.read_text())
    assert stat.S_IMODE(creds_file.stat().st_mode) == 0o600
    assert creds["admin"] in first and "printed once" in first
    assert not list(tmp_path.glob(".demo-credentials*"))  # no temporary file left behind
    _prepare_demo(settings, database)
    second = capsys.readouterr().out
    assert creds["admin"] not in second and creds["analyst"] not in second and str(creds_file) in second
