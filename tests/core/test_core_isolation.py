"""The core is usable from a notebook: importing every core module pulls in no web, database or queue package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_core_imports_no_framework():
    modules = sorted(
        "app.core." + ".".join(p.relative_to(ROOT / "app" / "core").with_suffix("").parts)
        for p in (ROOT / "app" / "core").rglob("*.py")
        if p.name != "__init__.py"
    )
    assert "app.core.rlad.detector" in modules and "app.core.feedback" in modules
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "from app.core.detectors import available_detectors, detector_class\n"
        "for name in available_detectors(): detector_class(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'fastapi', 'starlette', 'sqlalchemy', 'alembic', 'celery', 'kombu', 'pydantic', 'jinja2', 'redis'})\n"
        "outside = sorted(m for m in sys.modules if m.startswith('app.') and not m.startswith('app.core'))\n"
        "print(bad, outside)\n"
        "assert not bad and not outside, (bad, outside)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)  # noqa: S603
    assert result.returncode == 0, result.stdout + result.stderr
