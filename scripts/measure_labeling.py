"""Measure the labeling queue: time from an answer key press to the next query drawn, in headless chromium.

Usage::

    python scripts/measure_labeling.py                   # 40 answers, 1.0 s of "reading" before each
    python scripts/measure_labeling.py --answers 60 --think 0.5 --channels 8

It builds its own world in a temporary folder: a migrated SQLite file, an admin and an analyst, a multichannel series
(sines plus noise, 20,000 points), an iforest project with its first model trained and one round of ``--answers``
windows open, and ``anomaloop serve`` in a separate process (so the browser driver does not share the server's GIL).
The analyst answers every window with ``n`` after ``--think`` seconds on it (an analyst reads a window before
answering; the page prefetches the next one meanwhile).

Two figures per answer:

* **in page**: ``performance.now()`` from the keydown handler to the frame after the next window's chart was drawn
  (``window.__lq.timings``, recorded by static/label.js);
* **driver**: wall time in this script from sending the key to the page reporting the new query id (adds the
  Playwright/CDP round trip, an upper bound).

Also the server time of the answer POST (browser resource timing). Prints a markdown table. Target: ≤ 150 ms.

Before answering, ``--loads`` page loads of the queue, each in a fresh browser context: navigation → first window
drawn and the longest main-thread task, with an empty browser cache and then warm; and in the last one, zoom and
pan in the queue (``+`` ``−`` ``←`` ``→``): input → chart drawn, and every request answered 4xx/5xx. A step
whose chart never comes (a refused view request) is counted as failed, not timed.
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

from app.accounts import repository as accounts_repo  # noqa: E402
from app.accounts.service import create_user  # noqa: E402
from app.datasets.reader import ImportOptions  # noqa: E402
from app.datasets.service import get_series, import_files  # noqa: E402
from app.db import Database  # noqa: E402
from app.jobs.runner import run_job  # noqa: E402
from app.migrate import upgrade  # noqa: E402
from app.projects import service as projects  # noqa: E402
from app.projects.schemas import ProjectCreate  # noqa: E402
from app.settings import Settings  # noqa: E402

PASSWORD = "measure-analyst-pw-1"  # noqa: S105 - a throwaway user in a temporary database
# From the very start of each page: long main-thread tasks, the last key press, and the time of every chart drawn
# (label.js sets #lq[data-query] to the query id after each draw; a MutationObserver sees every set).
PAGE_PROBES = """
window.__longtasks = [];
new PerformanceObserver((list) => { for (const e of list.getEntries()) window.__longtasks.push(e.duration); })
  .observe({ type: "longtask", buffered: true });
window.__lastInput = 0;
window.addEventListener("keydown", () => { window.__lastInput = performance.now(); }, true);
window.__drawn = [];
document.addEventListener("DOMContentLoaded", () => {
  const lq = document.getElementById("lq");
  if (!lq) return;
  new MutationObserver(() => { if (lq.dataset.query) window.__drawn.push(performance.now()); })
    .observe(lq, { attributes: true, attributeFilter: ["data-query"] });
});
"""


def build_world(folder: Path, url: str, points: int, channels: int, answers: int) -> int:
    """Users, the series, a trained iforest project and an open round of ``answers`` windows; returns its id."""
    rng = np.random.default_rng(0)
    t = np.arange(points)
    frame = pd.DataFrame({f"ch{c}": np.sin(t / (20 + 7 * c)) + 0.1 * rng.standard_normal(points)
                          for c in range(channels)})
    frame.insert(0, "timestamp", pd.date_range("2024-01-01", periods=points, freq="min").strftime("%Y-%m-%dT%H:%M:%S"))
    path = folder / "series.csv"
    frame.to_csv(path, index=False)
    upgrade(url)
    db = Database(url)
    with db.session_scope() as session:
        create_user(session, "admin", "admin", PASSWORD)
        create_user(session, "analyst", "analyst", PASSWORD)
        [item] = import_files(session, [path], "measure", ImportOptions())
        dataset_id = get_series(session, item.series_id).dataset_id
    with db.session_scope() as session:
        admin = accounts_repo.get_user_by_name(session, "admin")
        project, job_id = projects.create_project(session, admin, ProjectCreate(
            name="measure", dataset_id=dataset_id, detector="iforest", window=50, stride=10, strategy="top_k",
            round_size=answers, budget=answers, detector_params={"n_estimators": 50}))
        project_id = project.id
    run_job(db, Settings(database_url=url, data_dir=folder, broker_url=None), job_id, lambda _: None)
    with db.session_scope() as session:
        projects.start_round(session, accounts_repo.get_user_by_name(session, "admin"), project_id)
    db.dispose()
    return project_id


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
    for _ in range(600):
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=1):  # noqa: S310 - our own server
                return proc, base
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(proc.stderr.read().decode() if proc.stderr else "server exited") from None
            time.sleep(0.1)
    raise RuntimeError("the server did not start")


def _sign_in(page) -> None:  # type: ignore[no-untyped-def]
    page.goto("/login")
    page.fill("input[name=username]", "analyst")
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.click("button[type=submit]")


def measure_loads(base: str, project_id: int, loads: int) -> tuple[list[dict], list[dict], list[str]]:
    """Page loads of the queue (empty cache, then warm) and, in the last, zoom and pan; nothing is answered."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    load_rows: list[dict] = []
    action_rows: list[dict] = []
    refused: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"),
                                    args=["--headless", "--no-sandbox", "--disable-gpu"])
        for k in range(loads):
            context = browser.new_context(viewport={"width": 1440, "height": 900}, base_url=base)  # empty cache
            page = context.new_page()
            page.add_init_script(PAGE_PROBES)
            page.on("response", lambda r: refused.append(f"{r.status} {r.url}") if r.status >= 400 else None)
            _sign_in(page)
            for cache in ("empty", "warm"):
                page.goto(f"/projects/{project_id}/label")
                page.wait_for_function("() => window.__drawn && window.__drawn.length > 0", timeout=60_000)
                page.wait_for_timeout(1500)
                transferred = page.evaluate("""performance.getEntriesByType('resource')
                    .filter((e) => e.initiatorType === 'script').reduce((s, e) => s + e.transferSize, 0)""")
                load_rows.append({"load": k + 1, "cache": cache, "first_window_ms": page.evaluate("window.__drawn[0]"),
                                  "longest_task_ms": max(page.evaluate("window.__longtasks") or [0]),
                                  "script_bytes": transferred})
            if k == loads - 1:
                for name, key in [*[("key +", "+")] * 4, *[("key −", "-")] * 4, ("key ←", "ArrowLeft"),
                                  ("key →", "ArrowRight")]:
                    before = page.evaluate("window.__drawn.length")
                    page.evaluate("() => { window.__longtasks = []; }")
                    page.keyboard.press(key)
                    try:
                        page.wait_for_function(f"() => window.__drawn.length > {before}", timeout=8_000)
                    except PlaywrightTimeout:
                        action_rows.append({"action": name, "input_to_chart_ms": None, "longest_task_ms": None})
                        continue
                    took = page.evaluate("window.__drawn.at(-1) - window.__lastInput")
                    action_rows.append({"action": name, "input_to_chart_ms": took,
                                        "longest_task_ms": max(page.evaluate("window.__longtasks") or [0])})
            context.close()
        browser.close()
    return load_rows, action_rows, refused


def measure(base: str, project_id: int, answers: int, think: float) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium")
    if executable is None:
        raise SystemExit("needs Debian's chromium on PATH")
    driver: list[float] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = browser.new_context(viewport={"width": 1440, "height": 900}, base_url=base).new_page()
        _sign_in(page)
        page.goto(f"/projects/{project_id}/label")
        page.wait_for_selector("#lq[data-query]:not([data-query=''])")
        for _ in range(answers - 1):  # the last answer ends the round: no next window to time
            time.sleep(think)
            before = page.get_attribute("#lq", "data-query")
            t0 = time.perf_counter()
            page.keyboard.press("n")
            page.wait_for_function(f"(() => {{ const q = document.getElementById('lq').dataset.query;"
                                   f" return q && q !== '{before}'; }})()", polling="raf")
            driver.append((time.perf_counter() - t0) * 1000)
        # a function, not an expression: Playwright re-evaluates an expression with eval, which the page's CSP forbids
        page.wait_for_function("() => document.getElementById('lq-sync').dataset.pending === '0'")
        in_page = page.evaluate("window.__lq.timings")
        plot = page.evaluate("window.__lq.plot")
        server = page.evaluate("""performance.getEntriesByType('resource')
            .filter((e) => e.name.includes('/answer')).map((e) => e.responseEnd - e.requestStart)""")
        browser.close()
    return {"in page: key press → next window drawn": in_page, "driver: key sent → new query id seen": driver,
            "chart redraw (Plotly.react)": plot, "answer POST, request → response": server}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--answers", type=int, default=40)
    parser.add_argument("--think", type=float, default=1.0, help="seconds on each window before answering")
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument("--channels", type=int, default=4)
    parser.add_argument("--loads", type=int, default=3, help="page loads (fresh browser context each) before answering")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="anomaloop-measure-labeling-"))
    url = f"sqlite:///{folder / 'measure.db'}"
    proc = None
    try:
        project_id = build_world(folder, url, args.points, args.channels, args.answers)
        proc, base = start_server(folder, url)
        load_rows, action_rows, refused = (measure_loads(base, project_id, args.loads) if args.loads
                                           else ([], [], []))
        figures = measure(base, project_id, args.answers, args.think)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=15)
        shutil.rmtree(folder, ignore_errors=True)
    print(f"Labeling queue: {args.answers} answers, {args.channels} channels, {args.points:,}-point series, "
          f"{args.think:.1f} s on each window; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")
    print("| figure (ms) | n | median | p90 | max |")
    print("|---|---|---|---|---|")
    for name, values in figures.items():
        if not values:
            print(f"| {name} | 0 | — | — | — |")
            continue
        ordered = sorted(values)
        p90 = ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]
        print(f"| {name} | {len(values)} | {statistics.median(values):.0f} | {p90:.0f} | {max(values):.0f} |")
    if load_rows:
        print("\n### Page loads of the queue (fresh browser context each: empty cache, then warm)\n")
        print("| load | browser cache | navigation → first window drawn (ms) | longest main-thread task (ms) "
              "| script bytes transferred |")
        print("|---|---|---|---|---|")
        for row in load_rows:
            print(f"| {row['load']} | {row['cache']} | {row['first_window_ms']:.0f} | {row['longest_task_ms']:.0f} "
                  f"| {row['script_bytes']:,} |")
    if action_rows:
        print("\n### Zoom and pan in the queue (last load; key press → chart drawn)\n")
        print("| action | input → chart (ms) | longest task (ms) |")
        print("|---|---|---|")
        for row in action_rows:
            if row["input_to_chart_ms"] is None:
                print(f"| {row['action']} | failed: no chart within 8 s | — |")
            else:
                print(f"| {row['action']} | {row['input_to_chart_ms']:.0f} | {row['longest_task_ms']:.0f} |")
        print(f"\nRequests answered 4xx/5xx during the loads: {len(refused)}"
              + (f" (first: {refused[0]})" if refused else ""))
    if args.json:
        args.json.write_text(json.dumps({"answers": figures, "loads": load_rows, "actions": action_rows,
                                         "refused": refused}, indent=1))


if __name__ == "__main__":
    main()
