"""Measure the series explorer on a long series: server time and bytes per view, and in headless chromium the time
to the first chart, per zoom and pan, the longest main-thread task and the JS heap.

Usage::

    python scripts/measure_explorer.py                  # 3,000,000 points, 3 page loads
    python scripts/measure_explorer.py --points 1000000 --loads 5 --csv

It builds its own world in a temporary folder: a migrated SQLite file, an admin, a random-walk series with 12
ground-truth segments imported through ``app.datasets.service.import_files`` (Parquet by default, ``--csv`` for a
CSV), and ``anomaloop serve`` in a separate process (so the browser driver does not share the server's GIL). The
browser is Debian's chromium, driven by Playwright (never a downloaded browser). Prints markdown tables.
The figures to compare against are in ANCHORS.md (Label Studio on the same kind of series).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.accounts.service import create_user  # noqa: E402
from app.datasets.reader import ImportOptions  # noqa: E402
from app.datasets.service import import_files  # noqa: E402
from app.db import Database  # noqa: E402
from app.migrate import upgrade  # noqa: E402

PASSWORD = "measure-password-1"  # noqa: S105 - a throwaway user in a throwaway database
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# Records long main-thread tasks (>50 ms) from the very start of each page.
# Also stamps the last key press / pointer release, the start of "input -> chart".
PAGE_PROBES = """
window.__longtasks = [];
new PerformanceObserver((list) => { for (const e of list.getEntries()) window.__longtasks.push(e.duration); })
  .observe({ type: "longtask", buffered: true });
window.__lastInput = 0;
for (const kind of ["keydown", "pointerup"])
  window.addEventListener(kind, () => { window.__lastInput = performance.now(); }, true);
"""


def make_series(folder: Path, points: int, csv: bool) -> Path:
    rng = np.random.default_rng(0)
    values = np.cumsum(rng.normal(size=points)).astype(np.float32)
    label = np.zeros(points, dtype=np.int8)
    for start in np.linspace(points // 30, points - points // 30, 12).astype(int):
        label[start:start + points // 600] = 1
        values[start:start + points // 600] += 150
    frame = pd.DataFrame({"value": values, "label": label})
    path = folder / ("walk.csv" if csv else "walk.parquet")
    if csv:
        frame.to_csv(path, index=False, float_format="%.4f")
    else:
        frame.to_parquet(path, index=False)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(folder: Path, url: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "ANOMALOOP_DATABASE_URL": url, "ANOMALOOP_DATA_DIR": str(folder)}
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-c", "from app.cli import main; main()", "serve", "--no-demo", "--no-migrate",
         "--port", str(port)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=2):  # noqa: S310 - localhost
                return proc, base
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(proc.stderr.read().decode() if proc.stderr else "server exited") from None
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the server did not start")


def measure_server(base: str, series_id: int, points: int, width: int, repeats: int) -> list[dict]:
    """Wall time of GET /view per range (first call, then the median of ``repeats``) and the body size."""
    import httpx

    rows = []
    with httpx.Client(base_url=base, timeout=60) as client:
        client.post("/login", data={"username": "admin", "password": PASSWORD, "next": "/"})
        spans = sorted({points, points // 2, points // 4, points // 10, points // 30, points // 300, 1_000},
                       reverse=True)
        for span in spans:
            start = (points - span) // 2
            params = {"start": start, "end": start + span, "width": width, "channels": "0"}
            times, size = [], 0
            for _ in range(repeats + 1):
                t0 = time.perf_counter()
                response = client.get(f"/api/v1/series/{series_id}/view", params=params)
                times.append((time.perf_counter() - t0) * 1000)
                response.raise_for_status()
                size = len(response.content)
            n_drawn = len(response.json()["channels"][0]["y"])
            rows.append({"span": span, "first_ms": times[0], "median_ms": statistics.median(times[1:]),
                         "max_ms": max(times[1:]), "bytes": size, "drawn": n_drawn})
    return rows


def measure_browser(base: str, series_id: int, loads: int) -> tuple[list[dict], list[dict]]:
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium")
    if executable is None:
        raise SystemExit("chromium not found on PATH (Debian: apt-get install chromium)")
    load_rows, action_rows = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        for k in range(loads):
            context = browser.new_context(viewport={"width": 1440, "height": 900}, base_url=base)  # empty cache
            page = context.new_page()
            page.add_init_script(PAGE_PROBES)
            page.goto("/login")
            page.fill("input[name=username]", "admin")
            page.fill("input[name=password]", PASSWORD)
            with page.expect_navigation():
                page.get_by_role("button", name="Sign in").click()
            for cache in ("empty", "warm"):  # a first visit, then the same page again with Plotly in the cache
                page.goto(f"/series/{series_id}")
                load_rows.append({"load": k + 1, "cache": cache, **_page_load(context, page)})
            if k == loads - 1:
                action_rows = _actions(page)
            context.close()
        browser.close()
    return load_rows, action_rows


def _page_load(context, page) -> dict:  # type: ignore[no-untyped-def]
    page.wait_for_function("() => window.explorerStats && window.explorerStats.firstChartMs !== null", timeout=60_000)
    page.wait_for_timeout(2000)
    cdp = context.new_cdp_session(page)
    cdp.send("Performance.enable")
    metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    cdp.detach()
    stats = page.evaluate("() => window.explorerStats")
    first = stats["views"][0]
    scripts = page.evaluate("""performance.getEntriesByType('resource')
        .filter((e) => e.initiatorType === 'script').reduce((s, e) => s + e.transferSize, 0)""")
    return {"first_chart_ms": stats["firstChartMs"], "fetch_ms": first["fetchMs"], "draw_ms": first["drawMs"],
            "script_bytes": scripts,
            "bytes": first["bytes"], "longest_task_ms": max(page.evaluate("() => window.__longtasks") or [0]),
            "heap_mb": metrics.get("JSHeapUsedSize", 0) / 1e6}


def _actions(page) -> list[dict]:  # type: ignore[no-untyped-def]
    """Zoom in with '+' six times, drag-zoom, pan with the arrows, back to the whole series: time from the key
    press or pointer release to the chart drawn, in the page's own clock."""
    rows = []

    def act(name: str, do) -> None:  # type: ignore[no-untyped-def]
        before = page.evaluate("() => window.explorerStats.views.length")
        page.evaluate("() => { window.__longtasks = []; }")
        do()
        page.wait_for_function(f"() => window.explorerStats.views.length > {before}", timeout=30_000)
        view = page.evaluate("() => window.explorerStats.views.at(-1)")
        t0 = page.evaluate("() => window.__lastInput")
        longest = max(page.evaluate("() => window.__longtasks") or [0])
        rows.append({"action": name, "span": view["end"] - view["start"], "input_to_chart_ms": view["at"] - t0,
                     "fetch_ms": view["fetchMs"], "draw_ms": view["drawMs"], "bytes": view["bytes"],
                     "cached": view["cached"], "longest_task_ms": longest})

    for _ in range(6):
        act("key +", lambda: page.keyboard.press("+"))

    def drag() -> None:
        box = page.locator("#chart .nsewdrag").first.bounding_box()
        y = box["y"] + box["height"] / 2
        page.mouse.move(box["x"] + box["width"] * 0.3, y)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.5, y, steps=4)
        page.mouse.move(box["x"] + box["width"] * 0.7, y, steps=4)
        page.mouse.up()

    act("drag zoom", drag)
    for _ in range(3):
        act("key →", lambda: page.keyboard.press("ArrowRight"))
    act("key ←", lambda: page.keyboard.press("ArrowLeft"))
    for _ in range(3):
        act("key −", lambda: page.keyboard.press("-"))
    act("key 0 (whole series)", lambda: page.keyboard.press("0"))
    return rows


def table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    head = "| " + " | ".join(title for _, title, _ in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(format(row[key], fmt) if fmt else str(row[key]) for key, _, fmt in columns) + " |"
            for row in rows]
    return "\n".join([head, rule, *body])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=3_000_000)
    parser.add_argument("--loads", type=int, default=3, help="page loads, each in a fresh browser context")
    parser.add_argument("--repeats", type=int, default=5, help="server calls per range after the first")
    parser.add_argument("--width", type=int, default=1358, help="plot width in pixels for the server figures")
    parser.add_argument("--csv", action="store_true", help="import a CSV instead of Parquet (slower to write)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="measure-explorer-"))
    url = f"sqlite:///{folder / 'measure.db'}"
    proc = None
    try:
        t0 = time.perf_counter()
        path = make_series(folder, args.points, args.csv)
        t_write = time.perf_counter() - t0
        upgrade(url)
        database = Database(url)
        t0 = time.perf_counter()
        with database.session_scope() as session:
            create_user(session, "admin", "admin", PASSWORD)
            series_id = import_files(session, [path], "measure", ImportOptions())[0].series_id
        t_import = time.perf_counter() - t0
        database.dispose()
        proc, base = start_server(folder, url)
        # Browser first, so its first page load meets a server that has not built the series' summary yet.
        load_rows, action_rows = measure_browser(base, series_id, args.loads)
        server_rows = measure_server(base, series_id, args.points, args.width, args.repeats)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=20)
        shutil.rmtree(folder, ignore_errors=True)

    print(f"## Series explorer, {args.points:,} points (random walk, 1 channel, 12 ground-truth segments)\n")
    print(f"Wrote the {'CSV' if args.csv else 'Parquet'} file in {t_write:.1f} s, imported it in {t_import:.1f} s. "
          f"Machine: {os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f} at the end), headless Debian "
          f"chromium, server in its own process.\n")
    print("### Page loads\n")
    print("Each load is a fresh browser context: first the page with an empty cache (Plotly's bundle fetched and "
          "compiled: the partial basic bundle, 1.2 MB, 0.39 MB gzipped), then the same page again (Plotly cached, as "
          "for any returning user). Load 1 meets a server that has not summarised the series yet.\n")
    print(table(load_rows, [("load", "load", ""), ("cache", "browser cache", ""),
                            ("first_chart_ms", "navigation → chart drawn (ms)", ".0f"),
                            ("fetch_ms", "view fetch (ms)", ".0f"), ("draw_ms", "draw (ms)", ".0f"),
                            ("bytes", "bytes", ","), ("longest_task_ms", "longest main-thread task (ms)", ".0f"),
                            ("heap_mb", "JS heap after 2 s (MB)", ".1f"),
                            ("script_bytes", "script bytes transferred", ",")]))
    print("\n### Zoom and pan (last page load; input → chart drawn, in the page's clock)\n")
    print(table(action_rows, [("action", "action", ""), ("span", "points shown", ","),
                              ("input_to_chart_ms", "input → chart (ms)", ".0f"), ("fetch_ms", "fetch (ms)", ".0f"),
                              ("draw_ms", "draw (ms)", ".0f"), ("bytes", "bytes", ","), ("cached", "cached", ""),
                              ("longest_task_ms", "longest task (ms)", ".0f")]))
    print(f"\n### Server: GET /api/v1/series/ID/view, width {args.width} px, one channel (HTTP round trip, "
          f"median of {args.repeats})\n")
    print(table(server_rows, [("span", "points in range", ","), ("first_ms", "first call (ms)", ".1f"),
                              ("median_ms", "median (ms)", ".1f"), ("max_ms", "max (ms)", ".1f"),
                              ("bytes", "bytes", ","), ("drawn", "points sent", ",")]))
    if args.json:
        args.json.write_text(json.dumps({"loads": load_rows, "actions": action_rows, "server": server_rows}, indent=1))


if __name__ == "__main__":
    main()
