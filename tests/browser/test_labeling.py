"""The analyst's labeling queue in a real browser against the live server: keys, a dragged range, undo, reload,
an answer given offline and delivered exactly once, and a completed round that the admin page watches retrain.

The project uses RLAD with a small training budget so the retraining job runs for a few seconds: long enough for
the admin page to show it running with its episode and reward, short enough for a test.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from app.datasets.reader import ImportOptions
from app.datasets.service import get_series, import_files
from app.projects.models import Label
from app.projects.schemas import ProjectCreate
from tests.browser.conftest import VIEWPORT, login, open_first_round, shot

pytestmark = pytest.mark.browser
CURRENT = "#lq[data-query]:not([data-query=''])"


def import_small_series(database, folder: Path, dataset: str) -> int:
    """1,200 points, channels ``cpu`` and ``mem``, two marked spikes; returns the data set id."""
    rng = np.random.default_rng(0)
    t = np.arange(1_200)
    cpu = np.sin(t / 20) + 0.1 * rng.standard_normal(t.size)
    mem = np.cos(t / 35) + 0.1 * rng.standard_normal(t.size)
    label = np.zeros(t.size, dtype=int)
    cpu[600:615] += 3.0
    mem[1_100:1_110] -= 3.0
    label[600:615] = label[1_100:1_110] = 1
    path = folder / f"{dataset}.csv"
    pd.DataFrame(
        {
            "timestamp": pd.date_range("2024-01-01", periods=t.size, freq="min").strftime("%Y-%m-%dT%H:%M:%S"),
            "cpu": cpu,
            "mem": mem,
            "label": label,
        }
    ).to_csv(path, index=False)
    with database.session_scope() as session:
        [item] = import_files(session, [path], dataset, ImportOptions())
        return get_series(session, item.series_id).dataset_id


@pytest.fixture(scope="module")
def rlad_project(live_server, tmp_path_factory) -> dict:
    """An RLAD project (small budget: 8 windows) with its first model trained and round 1 open.

    40 episodes make the round's retrain last several seconds on an idle machine, so the admin page (which
    polls every 1-2 s) sees it running; with 4 it finished in about a second and was sometimes missed."""
    database = live_server.database
    dataset_id = import_small_series(database, tmp_path_factory.mktemp("labeling"), "servers-labeling")
    return open_first_round(
        database,
        ProjectCreate(
            name="labeling-queue",
            dataset_id=dataset_id,
            detector="rlad",
            window=25,
            stride=5,
            round_size=8,
            budget=8,
            holdout_fraction=0.2,
            detector_params={"episodes": 40, "steps_per_episode": 250},
            review_grace_minutes=0,  # the last answer closes the round (tests/browser/test_annotators.py reviews)
        ),
    )


def current(page) -> int:  # type: ignore[no-untyped-def]
    page.wait_for_selector(CURRENT)
    return int(page.get_attribute("#lq", "data-query"))


def press_and_wait(page, key: str) -> int | None:  # type: ignore[no-untyped-def]
    """Press an answer key; returns the next query shown (None when the round is done)."""
    before = current(page)
    page.keyboard.press(key)
    # '' also means "drawing the next one": done only when the round-complete panel shows
    page.wait_for_function(f"""() => {{ const q = document.getElementById('lq').dataset.query;
        return q !== '{before}' && (q !== '' || !document.getElementById('lq-done').hidden); }}""")
    shown = page.get_attribute("#lq", "data-query")
    return int(shown) if shown else None


def wait_saved(page) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_function("() => document.getElementById('lq-sync').dataset.pending === '0'", timeout=15_000)


def answers(page, project_id: int) -> dict[int, list[tuple[int, int, str]]]:  # type: ignore[no-untyped-def]
    state = page.evaluate(f"fetch('/api/v1/projects/{project_id}/labeling').then(r => r.json())")
    return {q["id"]: [(a["start"], a["end"], a["value"]) for a in q["answer"]] for q in state["queries"]}


def drag_inside_window(page, offset_a: int, offset_b: int) -> None:  # type: ignore[no-untyped-def]
    """Drag across points ``start + offset_a .. start + offset_b`` of the queried window on the first channel."""
    box = page.evaluate(
        """([a, b]) => {
        const el = document.getElementById('lq-chart'), L = el._fullLayout, r = el.getBoundingClientRect();
        const q = JSON.parse(document.getElementById('lq-state').textContent).queries
                    .find((q) => String(q.id) === document.getElementById('lq').dataset.query);
        const px = (i) => r.left + L.xaxis._offset + L.xaxis.l2p(window.__lq.xOf(i));  // x: the series' time
        return {x0: px(q.start + a), x1: px(q.start + b),
                y: r.top + L.yaxis._offset + L.yaxis._length / 2};
    }""",
        [offset_a, offset_b],
    )
    page.mouse.move(box["x0"], box["y"])
    page.mouse.down()
    page.mouse.move((box["x0"] + box["x1"]) / 2, box["y"], steps=6)
    page.mouse.move(box["x1"], box["y"], steps=6)
    page.mouse.up()


def test_analyst_labels_with_keys_and_a_dragged_range_undoes_and_keeps_labels_over_a_reload(
    page, live_server, rlad_project, browser
) -> None:
    pid = rlad_project["id"]
    starts = {qid: start for qid, start, _ in rlad_project["queries"]}
    login(page, "analyst")
    page.goto("/label")  # straight to the queue when one project waits; other browser tests may leave theirs open
    if not page.url.endswith(f"/projects/{pid}/label"):
        page.locator(f'a[href="/projects/{pid}/label"]').click()
    page.wait_for_url(f"**/projects/{pid}/label")
    q1 = current(page)
    assert page.inner_text("#lq-count") == "0 / 8"
    assert "warm-up" in page.inner_text("#why-reason") and page.inner_text("#why-model").startswith("v")
    assert page.locator("#lq-channels input").count() == 2
    shot(page, "label-queue")

    # 1: the whole window is anomalous
    q2 = press_and_wait(page, "a")
    # 2: only points +5..+12 are anomalous: drag, then `a`
    drag_inside_window(page, 5, 12)
    page.wait_for_function("() => document.getElementById('lq-selection').textContent.includes('Marked points')")
    shot(page, "label-dragged-range")
    q3 = press_and_wait(page, "a")
    # 3: normal, then undone: the same window comes back
    q4 = press_and_wait(page, "n")
    assert len({q1, q2, q3, q4}) == 4
    wait_saved(page)
    assert answers(page, pid)[q3] == [(starts[q3], starts[q3] + 25, "normal")]
    page.keyboard.press("z")
    page.wait_for_function(f"() => document.getElementById('lq').dataset.query === '{q3}'")
    assert page.inner_text("#lq-count") == "2 / 8"

    got = answers(page, pid)
    assert got[q1] == [(starts[q1], starts[q1] + 25, "anomaly")]
    s2 = starts[q2]
    assert got[q2] == [(s2, s2 + 5, "normal"), (s2 + 5, s2 + 13, "anomaly"), (s2 + 13, s2 + 25, "normal")]
    assert got[q3] == []

    page.reload()
    assert current(page) == q3  # the first window still waiting
    assert page.inner_text("#lq-count") == "2 / 8"
    queue = page.inner_text("#lq-queue")
    assert queue.count("anomaly") == 2 and queue.count("to do") == 6
    shot(page, "label-after-reload")
    page.wait_for_function("() => window.__lq.prefetched >= 1")  # the next window's data is here before going offline

    # offline: the answer is kept with a visible pending state, then delivered exactly once
    page.context.set_offline(True)
    q_next = press_and_wait(page, "u")
    assert q_next not in (None, q3)  # the next window shows at once (it was prefetched)
    assert page.locator("#lq-chart .main-svg").count() > 0 and "Offline" not in page.inner_text("#lq-chart")
    page.wait_for_function("() => document.getElementById('lq-sync').dataset.pending === '1'")
    assert "pending" in page.inner_text("#lq-sync")
    key = page.evaluate("JSON.parse(localStorage.getItem('anomaloop.outbox.v1'))[0].key")
    shot(page, "label-offline-pending")
    time.sleep(3.5)  # a retry while offline fails and keeps the answer
    assert page.get_attribute("#lq-sync", "data-pending") == "1"
    page.context.set_offline(False)
    wait_saved(page)
    with live_server.database.session_scope() as session:
        rows = session.scalars(select(Label).where(Label.query_id == q3, Label.value == "unsure")).all()
        assert [(r.query_id, r.value) for r in rows] == [(q3, "unsure")]
    # the same request again (a retry that lost its response) writes nothing
    again = page.evaluate(
        """([q, key]) => fetch(`/api/v1/queries/${q}/answer`, {method: 'POST',
        headers: {'Content-Type': 'application/json',
                  'X-CSRF-Token': document.querySelector('meta[name=csrf-token]').content},
        body: JSON.stringify({value: 'unsure', idempotency_key: key})}).then(r => r.json())""",
        [q3, key],
    )
    assert again["duplicate"] is True
    with live_server.database.session_scope() as session:
        assert len(session.scalars(select(Label).where(Label.query_id == q3, Label.value == "unsure")).all()) == 1

    # an admin watches the project page while the analyst finishes the round
    admin_context = browser.new_context(viewport=VIEWPORT, base_url=live_server.url)
    admin = admin_context.new_page()
    errors: list[str] = []
    admin.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        login(admin, "admin")
        admin.goto(f"/projects/{pid}")
        admin.wait_for_selector("#versions tr[data-version]")
        assert admin.locator("#versions tr[data-version]").count() == 1
        while press_and_wait(page, "n") is not None:
            pass
        page.wait_for_selector("#lq-complete", timeout=20_000)
        assert "the model is retraining" in page.inner_text("#lq-complete")
        assert page.inner_text("#lq-count") == "8 / 8"
        shot(page, "label-round-complete")

        seen: list[tuple[str, str]] = []
        deadline = time.monotonic() + 420  # RLAD's retrain took over 2 minutes on a fresh install (2026-12-06)
        while time.monotonic() < deadline:
            row = admin.locator("#jobs tbody tr", has_text="retrain")
            if row.count():
                status = row.first.get_attribute("data-status")
                if not seen or seen[-1][0] != status:
                    seen.append((status, row.first.locator(".job-msg").inner_text()))
                    if status == "running":
                        shot(admin, "project-admin-job-running")
                if status in ("done", "failed", "cancelled"):
                    break
            time.sleep(0.15)
        assert seen and seen[-1][0] == "done", seen
        # seen running with its phase (RLAD: warm-up, episodes with reward, label propagation), then done
        assert any(s == "running" and msg for s, msg in seen), f"never saw the job running: {seen}"
        admin.wait_for_function(
            "() => document.querySelectorAll('#versions tr[data-version]').length === 2", timeout=15_000
        )
        newest = admin.locator("#versions tr[data-version]").first
        assert "serving" in newest.inner_text() and newest.locator("td").nth(3).inner_text() == "8"
        assert admin.locator("#jobs tbody tr", has_text="retrain").locator(".job-pct").inner_text() == "100%"
        shot(admin, "project-admin-new-version")
        assert not errors, errors
    finally:
        admin_context.close()
