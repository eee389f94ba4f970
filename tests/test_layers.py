"""The layer rules of docs/ARCHITECTURE.md as tests: the import-linter contracts in pyproject.toml, proof that they
catch what they forbid, and the one rule imports cannot show (services leave SQL to the repositories)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def _contracts() -> dict[str, dict]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {c["id"]: c for c in config["contracts"]}


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    # In its own process from the tree's root: import-linter puts the working directory first on sys.path, so a copy
    # of the tree is linted as itself. No cache: nothing written into the repository.
    assert LINT.exists(), f"{LINT} is missing: install the dev extra (pip install -e '.[dev]')"
    return subprocess.run(
        [str(LINT), "--no-cache", "--no-logo", str(root / "pyproject.toml")],
        cwd=root,  # noqa: S603
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_contracts_hold():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(_contracts())} kept, 0 broken." in result.stdout, result.stdout


def test_the_core_contract_names_every_other_package_of_app():
    """The core's contract lists what it may not import; a new module or package of app must join that list."""
    forbidden = set(_contracts()["core"]["forbidden_modules"])
    children = {f"app.{p.stem}" for p in (ROOT / "app").glob("*.py") if p.name != "__init__.py"}
    children |= {f"app.{p.parent.name}" for p in (ROOT / "app").glob("*/__init__.py")}
    assert children - {"app.core"} <= forbidden, sorted(children - {"app.core"} - forbidden)


def test_the_contracts_catch_what_they_forbid(tmp_path):
    """A copy of the tree with one forbidden import per rule: each contract must report itself broken (so none of
    them is vacuous, e.g. through a wildcard that matches no module)."""
    for package in ("app", "worker"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "*.gz"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    offences = {
        "core": ("app/core/windows.py", "import sqlalchemy"),
        "edges-use-services": ("app/versions/router.py", "from app.projects import repository"),
        "thin-routers": ("app/jobs/router.py", "import csv"),
        "services-without-web": ("app/jobs/service.py", "from app.rendering import render"),
        "domain-layers": ("app/datasets/repository.py", "from app.datasets import service"),
        "no-worker": ("app/jobs/executor.py", "import worker.tasks"),
        "acyclic": ("app/datasets/service.py", "from app.projects import service"),
    }
    assert set(offences) == set(_contracts()), "every contract needs an offence here"
    for path, line in offences.values():
        target = tmp_path / path
        target.write_text(target.read_text() + f"\n{line}  # noqa\n")
    result = _lint(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    broken = {cid for cid, c in _contracts().items() if f"{c['name']} BROKEN" in " ".join(result.stdout.split())}
    assert broken == set(offences), result.stdout


SQL_CALLS = {"execute", "scalar", "scalars", "query", "get"}  # Session methods that run a query
SQL_NAMES = {"select", "update", "delete", "insert", "func", "text", "exists"}  # SQLAlchemy statement builders


def _sql_outside_repositories(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in SQL_CALLS
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "session"
        ):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} session.{node.func.attr}(...)")
        elif isinstance(node, ast.Attribute) and node.attr == "__table__":
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} .__table__")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sqlalchemy":
            found += [
                f"{path.relative_to(ROOT)}:{node.lineno} imports sqlalchemy's {a.name}"
                for a in node.names
                if a.name in SQL_NAMES
            ]
    return found


def test_every_query_lives_in_a_repository():
    """Services, views, the job runner, routes, the CLI and the tasks ask repositories; they run no SQL themselves
    (adding, flushing and refreshing objects is the unit of work, not a query)."""
    callers = [
        *ROOT.glob("app/*/service.py"),
        *ROOT.glob("app/*/router.py"),
        ROOT / "app/projects/pages.py",
        ROOT / "app/projects/views.py",
        ROOT / "app/projects/rounds.py",
        ROOT / "app/jobs/runner.py",
        ROOT / "app/jobs/executor.py",
        ROOT / "app/cli.py",
        ROOT / "app/web.py",
        *ROOT.glob("worker/*.py"),
    ]
    assert len(callers) >= 15
    found = [hit for path in callers for hit in _sql_outside_repositories(path)]
    assert not found, found
