"""The front end's pure functions (view clamping, the label outbox, the API client's errors, the stacked rows):
``node --test tests/js`` on the real modules under ``static/js/``, run here so ``make test`` and ``make test-fast``
run them. Without ``node`` (v20 or later) the test is skipped loudly, and fails under
``ANOMALOOP_REQUIRE_SERVICES=1`` (CI)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from tests.conftest import service_unavailable

ROOT = Path(__file__).resolve().parents[1]
JS_TESTS = ROOT / "tests" / "js"


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        service_unavailable("node", "no `node` on PATH: the front end's unit tests (tests/js) did not run")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=False).stdout.strip()
    found = re.match(r"v(\d+)\.", version)
    if not found or int(found.group(1)) < 20:
        service_unavailable("node", f"node {version or '?'} is older than v20 (needed by `node --test` on ES modules)")
    return str(node)


def test_js_unit_tests_pass() -> None:
    files = sorted(str(p.relative_to(ROOT)) for p in JS_TESTS.glob("*.test.mjs"))
    assert files, "no tests/js/*.test.mjs"
    done = subprocess.run(
        [_node(), "--test", *files], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"node --test failed (exit {done.returncode}):\n{output}"
    passed = re.search(r"^# pass (\d+)$", output, flags=re.MULTILINE)
    assert passed and int(passed.group(1)) >= len(files), output  # the files ran and their tests were counted


STATIC = ROOT / "static"
IMPORT = re.compile(r"""^\s*import\s[^;]*?\sfrom\s+["']([^"']+)["']""", flags=re.MULTILINE | re.DOTALL)


def test_every_module_import_is_a_relative_file_of_static_without_eval() -> None:
    """A mistyped import would only show in a browser; the modules under static/js are also held to the rules
    tests/browser/test_static_assets.py applies to static/*.js (no eval, no inline handler)."""
    modules = sorted(STATIC.glob("*.js")) + sorted((STATIC / "js").glob("*.js"))
    imported = 0
    for module in modules:
        code = module.read_text()
        assert not re.search(r"\beval\(|new Function\(|setTimeout\(\s*[\"'`]", code), module.name
        for spec in IMPORT.findall(code):
            # relative: the browser resolves it against the importing module's URL (see static/js/README.md)
            assert spec.startswith("./") and spec.endswith(".js"), f"{module.name}: import {spec!r}"
            assert (module.parent / spec).resolve().is_file(), f"{module.name}: import {spec!r} is no file"
            imported += 1
    assert imported >= 10, "the pages' modules import the shared ones"


def _page(environment: str, tmp_path: Path) -> tuple[str, str, str]:
    from fastapi.testclient import TestClient

    from app.db import Database
    from app.migrate import upgrade
    from app.settings import Settings
    from app.web import create_app

    url = f"sqlite:///{tmp_path / f'{environment}.db'}"
    upgrade(url)
    database = Database(url)
    settings = Settings(
        database_url=url, data_dir=tmp_path, broker_url=None, environment=environment, secret_key="k" * 40
    )
    try:
        with TestClient(create_app(settings, database)) as client:
            module = client.get("/static/js/api.js")
            return client.get("/login").text, module.headers["content-type"], module.headers["cache-control"]
    finally:
        database.dispose()


def test_test_hooks_flag_is_set_outside_production_only(tmp_path: Path) -> None:
    page, content_type, cache = _page("development", tmp_path)
    assert re.search(r"<html [^>]*\bdata-test-hooks\b", page)
    # a shared module, imported by a relative URL without ?v=, is JavaScript and revalidated (never stale)
    assert content_type.startswith("text/javascript") and cache == "no-cache"
    page, _, _ = _page("production", tmp_path)
    assert "<html" in page and "data-test-hooks" not in page
