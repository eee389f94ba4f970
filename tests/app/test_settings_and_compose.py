"""Settings refuse an unsafe production config; docker-compose.yml matches the settings and the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from app.cli import cli
from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_default_secret_refused_outside_development(monkeypatch):
    monkeypatch.setenv("ANOMALOOP_ENVIRONMENT", "production")
    with pytest.raises(ValidationError, match="ANOMALOOP_SECRET_KEY must be set"):
        Settings()
    monkeypatch.setenv("ANOMALOOP_SECRET_KEY", "x" * 40)
    assert Settings().environment == "production"


def test_env_vars_reach_the_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("ANOMALOOP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ANOMALOOP_DEVICE", "cpu")
    monkeypatch.setenv("ANOMALOOP_BROKER_URL", "redis://127.0.0.1:6379/0")
    s = Settings()
    assert s.sqlalchemy_url == f"sqlite:///{tmp_path}/anomaloop.db" and s.device == "cpu" and s.broker_url
    monkeypatch.setenv("ANOMALOOP_DEVICE", "tpu")
    with pytest.raises(ValidationError):
        Settings()


def test_compose_services_env_and_commands_match_settings_and_cli():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "web", "worker"} <= set(services)
    fields = {f"ANOMALOOP_{name.upper()}" for name in Settings.model_fields}
    commands = set(typer.main.get_command(cli).commands)
    for name in ("web", "worker"):
        env = services[name]["environment"]
        assert set(env) <= fields, set(env) - fields
        assert env["ANOMALOOP_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert env["ANOMALOOP_BROKER_URL"].startswith("redis://redis:6379")
        cmd = " ".join(services[name]["command"])
        calls = [part.split("&&")[0].split() for part in cmd.split("anomaloop ")[1:]]
        assert calls and {c[0] for c in calls} <= commands, (name, calls, commands)
        for call in calls:  # every flag the compose file passes is one the command documents
            helptext = CliRunner().invoke(cli, [call[0], "--help"], terminal_width=200).output
            for flag in (a for a in call[1:] if a.startswith("--")):
                assert flag in helptext, (call, flag)
    assert "anomaloop migrate" in " ".join(services["web"]["command"])  # migrations run first
    assert "nvidia" in (ROOT / "docker-compose.yml").read_text()  # the GPU reservation is documented
