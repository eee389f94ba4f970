"""Static assets: every page passes a Content-Security-Policy of ``script-src 'self'`` (no inline script, no inline
event handler, no javascript: URL, no eval), loads the vendored partial Plotly bundle (not the 4.8 MB full one)
through a versioned URL with long-lived cache headers, and has a favicon.

The first tests read the templates and the vendored files; the second group asks the app (TestClient); the last
opens every page in chromium with the policy enforced and fails on any violation.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from pathlib import Path

import plotly
import pytest
from fastapi.testclient import TestClient

from app.static_files import IMMUTABLE, StaticURLs
from tests.browser.conftest import login, shot

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "templates"
STATIC = ROOT / "static"
VENDOR = STATIC / "vendor"
CSP = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:"
# Trace types the pages may use: the ones in plotly.js-basic-dist-min (anything else fails to draw).
BASIC_TRACES = {"scatter", "bar", "pie"}


def _templates() -> list[Path]:
    return sorted(TEMPLATES.glob("*.html"))


@pytest.mark.parametrize("template", _templates(), ids=lambda p: p.name)
def test_templates_have_no_inline_script_handler_or_javascript_url(template: Path) -> None:
    text = template.read_text()
    for tag in re.findall(r"<script\b[^>]*>", text, flags=re.IGNORECASE):
        # a script either comes from a file of ours or is a JSON data block (never executed)
        ours = re.search(r'\bsrc="\{\{ static_url\(', tag)
        assert ours or 'type="application/json"' in tag, f"{template.name}: {tag}"
    assert not re.search(r"\son[a-z]+\s*=", text, flags=re.IGNORECASE), f"{template.name}: inline event handler"
    assert "javascript:" not in text.lower(), f"{template.name}: javascript: URL"
    assert "/vendor/plotly.min.js" not in text, f"{template.name}: the full Plotly bundle"
    assert not re.search(r'(?:src|href)="/static/', text), f"{template.name}: an unversioned static URL"


def test_scripts_use_no_eval_and_only_trace_types_of_the_basic_bundle() -> None:
    for script in sorted(STATIC.glob("*.js")):
        code = script.read_text()
        assert not re.search(r"\beval\(|new Function\(|setTimeout\(\s*[\"'`]|setInterval\(\s*[\"'`]", code), script.name
        assert not re.search(r"\son[a-z]+=\\?[\"']", code), f"{script.name}: an inline handler written into HTML"
        used = set(
            re.findall(
                r'\btype:\s*"(scatter\w*|bar\w*|pie|heatmap\w*|histogram\w*|box|violin|candlestick|'
                r'ohlc|contour\w*|surface|mesh3d|splom|parcoords|sankey)"',
                code,
            )
        )
        assert used <= BASIC_TRACES, f"{script.name} draws {used - BASIC_TRACES}, not in the basic bundle"


def test_vendored_plotly_bundle_is_the_basic_one_with_its_licence_at_the_installed_version() -> None:
    bundle = (VENDOR / "plotly-basic.min.js").read_text(errors="ignore")[:400]
    version = (VENDOR / "plotly-basic.VERSION").read_text().strip()
    assert f"plotly.js (basic - minified) v{version}" in bundle
    assert "MIT" in (VENDOR / "plotly-basic.LICENSE").read_text()
    installed = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    found = re.search(r"plotly\.js v([0-9][0-9A-Za-z.+-]*)", installed.read_text(errors="ignore")[:500])
    assert found, "no version in the installed plotly package's bundle"
    # the same major version as the Python package's plotly.js (same API); `make vendor-plotly` matches it exactly
    assert version.split(".")[0] == found.group(1).split(".")[0], (version, found.group(1), "run make vendor-plotly")
    assert (VENDOR / "plotly-basic.min.js").stat().st_size < 1_600_000  # the full bundle is 4.8 MB


def test_static_url_changes_with_the_content_and_refuses_paths_outside(tmp_path: Path) -> None:
    (tmp_path / "a.js").write_text("one")
    urls = StaticURLs(tmp_path)
    first = urls("a.js")
    assert re.fullmatch(r"/static/a\.js\?v=[0-9a-f]{10}", first)
    assert urls("a.js") == first
    (tmp_path / "a.js").write_text("two, longer")
    assert urls("a.js") != first
    with pytest.raises(ValueError):
        urls("../outside.js")
    with pytest.raises(FileNotFoundError):
        urls("missing.js")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    from app.db import Database
    from app.migrate import upgrade
    from app.settings import Settings
    from app.web import create_app

    folder = tmp_path_factory.mktemp("static")
    url = f"sqlite:///{folder / 'static.db'}"
    upgrade(url)
    database = Database(url)
    with TestClient(create_app(Settings(database_url=url, data_dir=folder, broker_url=None), database)) as test_client:
        yield test_client
    database.dispose()


def test_versioned_assets_are_cached_for_a_year_and_unversioned_ones_revalidated(client: TestClient) -> None:
    page = client.get("/login").text
    css = re.search(r'href="(/static/app\.css\?v=[0-9a-f]{10})"', page)
    icon = re.search(r'<link rel="icon" href="(/static/favicon\.svg\?v=[0-9a-f]{10})"', page)
    assert css and icon
    for url in (css.group(1), icon.group(1)):
        response = client.get(url)
        assert response.status_code == 200 and response.headers["cache-control"] == IMMUTABLE
    assert client.get("/static/app.css").headers["cache-control"] == "no-cache"


def test_the_bundle_is_gzipped_once_and_answers_conditional_requests(client: TestClient) -> None:
    url = StaticURLs(STATIC)("vendor/plotly-basic.min.js")
    raw = (VENDOR / "plotly-basic.min.js").read_bytes()
    response = client.get(url, headers={"Accept-Encoding": "gzip"})
    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip" and response.headers["vary"] == "Accept-Encoding"
    assert response.headers["content-type"].startswith("text/javascript")
    assert int(response.headers["content-length"]) < len(raw) / 2
    assert response.content == raw  # httpx decompressed it
    again = client.get(url, headers={"Accept-Encoding": "gzip", "If-None-Match": response.headers["etag"]})
    assert again.status_code == 304
    plain = client.get(url, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.content == raw
    assert gzip.decompress(gzip.compress(raw)) == raw


# -- in chromium, with the policy enforced -----------------------------------------------------------------------

PROBE = """window.__csp = [];
document.addEventListener('securitypolicyviolation',
  (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile || ''}:${e.lineNumber || ''}`));"""


@pytest.mark.browser
def test_every_page_passes_a_strict_script_policy_and_draws_its_charts(page, live_server, tmp_path_factory) -> None:
    from tests.browser.test_labeling_view import open_project

    project = open_project(live_server.database, tmp_path_factory.mktemp("csp"), "csp-pages", 4)

    def enforce(route) -> None:  # type: ignore[no-untyped-def]
        # The app sends its own policy (app/web.py); this one is enforced as well, so the test does not depend on it.
        response = route.fetch(max_redirects=0)  # the browser follows redirects itself (and through this route)
        route.fulfill(response=response, headers={**response.headers, "content-security-policy": CSP})

    page.add_init_script(PROBE)
    page.route(lambda url: not re.search(r"/(static|api|login|logout)\b", url), enforce)
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    scripts: list[str] = []
    page.on(
        "response", lambda r: scripts.append(f"{r.status} {r.url}") if r.request.resource_type == "script" else None
    )
    login(page, "admin")
    pid, sid = project["id"], project["series_id"]
    pages = {
        "/": None,
        "/projects": None,
        f"/projects/{pid}": "#curve .main-svg",
        "/projects/new": None,
        "/label": None,
        f"/projects/{pid}/label": "#lq[data-query]:not([data-query=''])",
        f"/series/{sid}": "#chart .main-svg",
        f"/series/{live_server.series['gappy']}": "#chart .main-svg",
        "/admin/jobs": "#jobs tbody tr",
        "/admin/import": None,
        "/admin/audit": None,
        "/series/999999": None,
    }
    for path, drawn in pages.items():
        page.goto(path, wait_until="networkidle")
        if drawn:
            page.wait_for_selector(drawn)
        assert page.evaluate("window.__csp") == [], (path, page.evaluate("window.__csp"))
        assert page.evaluate("() => !!document.querySelector('link[rel=icon]')"), path
    # the error page's "Go back" (was a javascript: URL) goes back by script
    page.click("a[data-back]")
    page.wait_for_url(lambda url: "/series/999999" not in url)
    shot(page, "csp-error-page-went-back")
    page.goto(f"/series/{sid}", wait_until="networkidle")
    assert page.evaluate("() => Plotly.version") == (VENDOR / "plotly-basic.VERSION").read_text().strip()
    # the explorer's score overlay is drawn with plain scatter (the basic bundle has no scattergl)
    page.wait_for_function(
        "() => document.getElementById('chart').data.some((t) => (t.name || '').startsWith('score'))"
    )
    shot(page, "csp-explorer-with-score-overlay")
    assert not [c for c in console if "Content Security Policy" in c or "Refused to" in c], console
    assert not [s for s in scripts if "plotly.min.js" in s], "the full Plotly bundle was loaded"
    assert all(s.startswith(("200 ", "304 ")) for s in scripts), scripts
