"""Several annotators and the review before retraining, in Debian's chromium.

- Two analysts on an "answers per window = 2" project answer the same windows with the keys: both answers are
  stored; the project page's agreement figure is the hand-computed Cohen's kappa; adjudicating the tied window on
  the page changes the label training reads.
- A round reviewed before it closes: answer every window, undo one, answer it again, submit; the round then
  retrains.

- A round dealt to a named analyst: the admin ticks her under "Assign…" and starts the round; her queue holds every
  window, another analyst's says the round is assigned to her.

Screenshots: ``annotators-review-panel``, ``annotators-waiting-for-others``, ``annotators-agreement``,
``annotators-adjudicated``, ``annotators-submitted``, ``annotators-assign``, ``annotators-assigned-elsewhere`` in
test-artifacts/screenshots/. Every ``wait_for_function``
takes a function (the Content-Security-Policy forbids evaluating a string expression).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app.accounts import repository as accounts_repo
from app.accounts.models import User
from app.accounts.service import create_user
from app.datasets.reader import ImportOptions
from app.datasets.service import get_series, import_files
from app.projects import repository as repo
from app.projects import service as projects
from app.projects.models import Round
from app.projects.schemas import ProjectCreate
from tests.browser.conftest import login, open_first_round, shot

pytestmark = pytest.mark.browser
PASSWORD = "annotator-password-1"
WINDOW = 40
CURRENT = "#lq[data-query]:not([data-query=''])"
DONE = "#lq-done:not([hidden])"


def fitted_project(database, folder: Path, name: str, round_size: int, start: bool = True, **settings) -> dict:  # type: ignore[no-untyped-def]
    """An iforest project on a small fresh series, its first model trained and round 1 open (unless ``start``
    is false)."""
    rng = np.random.default_rng(7)
    t = np.arange(2_000)
    values = np.sin(t / 30) + 0.1 * rng.standard_normal(t.size)
    for at in (300, 900, 1_500):
        values[at : at + 10] += 4.0
    path = folder / f"{name}.csv"
    pd.DataFrame({"value": values}).to_csv(path, index=False)
    with database.session_scope() as session:
        [item] = import_files(session, [path], name, ImportOptions(timestamps="index"))
        dataset_id = get_series(session, item.series_id).dataset_id
    opened = open_first_round(
        database,
        ProjectCreate(
            name=name,
            dataset_id=dataset_id,
            detector="iforest",
            window=WINDOW,
            stride=10,
            strategy="top_k",
            round_size=round_size,
            budget=round_size * 3,
            detector_params={"n_estimators": 30},
            **settings,
        ),
        start=start,
    )
    return {**opened, "queries": [qid for qid, _, _ in opened.get("queries", [])]}


def sign_in_as(page, name: str) -> None:  # type: ignore[no-untyped-def]
    page.goto("/login")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()
    assert not page.url.rstrip("/").endswith("/login")


def answer_with_key(page, key: str) -> None:  # type: ignore[no-untyped-def]
    """Press an answer key on the window shown; wait for the next window or the panel after the last one."""
    before = page.get_attribute("#lq", "data-query")
    page.keyboard.press(key)
    page.wait_for_function(
        "(q) => { const d = document.getElementById('lq').dataset.query;"
        " return (d !== '' && d !== q) || !document.getElementById('lq-done').hidden; }",
        arg=before,
    )


def wait_saved(page) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_function("() => document.getElementById('lq-sync').dataset.pending === '0'")


def stored_answers(database, project_id: int) -> dict[int, dict[str, str]]:  # type: ignore[no-untyped-def]
    """query id -> analyst -> value: the rows in force, each analyst's own (not the consensus)."""
    with database.session_scope() as session:
        names = projects.usernames(session)
        out: dict[int, dict[str, str]] = {}
        for lab in repo.effective_labels(session, project_id):
            out.setdefault(lab.query_id, {})[names.get(lab.author_id, "?")] = lab.value
        return out


def training_label(database, project_id: int, query_id: int) -> int | None:  # type: ignore[no-untyped-def]
    """The label training reads for a window (pool_state), None when it learns nothing there."""
    with database.session_scope() as session:
        q = repo.get_query(session, query_id)
        state = projects.pool_state(session, projects.get_project(session, project_id))
        found = [r.value for r in state.labels[0] if r.start < q.end and r.end > q.start]
        return found[0] if found else None


def test_two_analysts_agreement_on_the_project_page_and_adjudication(browser, live_server, tmp_path_factory):
    database = live_server.database
    project = fitted_project(
        database,
        tmp_path_factory.mktemp("annotators"),
        "two-analysts",
        4,
        answers_per_window=2,
        review_grace_minutes=10,
    )
    with database.session_scope() as session:
        for name in ("alice", "bob"):
            create_user(session, name, "analyst", PASSWORD)
    votes = {"alice": "aann", "bob": "annn"}
    for name, keys in votes.items():
        context = browser.new_context(viewport={"width": 1440, "height": 900}, base_url=live_server.url)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc, errors=errors: errors.append(str(exc)))
        sign_in_as(page, name)
        page.goto(f"/projects/{project['id']}/label")
        page.wait_for_selector(CURRENT)
        for key in keys:
            answer_with_key(page, key)
        wait_saved(page)
        page.wait_for_selector("#lq-review")
        if name == "alice":  # bob has not answered yet: alice waits for him, her answers still editable
            assert page.inner_text("#lq-review-title") == "You answered every window"
            assert "4 windows wait for other analysts' answers (2 per window)" in page.inner_text("#lq-review-text")
            assert page.locator("#lq-submit").count() == 0
            shot(page, "annotators-waiting-for-others")
        else:
            assert "every window answered" in page.inner_text("#lq-review-title")
            assert page.locator("#lq-submit").is_visible()
        assert not errors, errors
        context.close()

    # both analysts' answers are stored, in the queue's rank order
    stored = stored_answers(database, project["id"])
    expected = [{"alice": a, "bob": b} for a, b in zip(votes["alice"], votes["bob"], strict=True)]
    short = {"anomaly": "a", "normal": "n"}
    assert [{k: short[v] for k, v in stored[q].items()} for q in project["queries"]] == expected

    # the project page's kappa is the hand computation: p_o = 3/4, p_e = 2/4*1/4 + 2/4*3/4 = 1/2, kappa = 1/2
    p_o, p_e = 3 / 4, (2 / 4) * (1 / 4) + (2 / 4) * (3 / 4)
    kappa = (p_o - p_e) / (1 - p_e)
    context = browser.new_context(viewport={"width": 1440, "height": 900}, base_url=live_server.url)
    admin = context.new_page()
    login(admin, "admin")
    admin.goto(f"/projects/{project['id']}")
    section = admin.locator("#agreement")
    section.scroll_into_view_if_needed()
    pair = section.locator(".agreement-pair .v")
    assert float(pair.get_attribute("data-kappa")) == pytest.approx(kappa)
    assert pair.inner_text() == f"{kappa:.3f}"
    assert section.locator("#agreement-alpha").inner_text() == f"{8 / 15:.3f}"
    tie = project["queries"][1]  # alice anomaly, bob normal
    row = section.locator(f"#disagreements tr[data-query='{tie}']")
    assert "tie" in row.inner_text() and training_label(database, project["id"], tie) is None
    section.screenshot(path=str(shot(admin, "annotators-agreement")))

    row.locator("button[data-value=anomaly]").click()
    admin.wait_for_selector(f"#disagreements tr[data-query='{tie}'] >> text=adjudicated by admin")
    assert training_label(database, project["id"], tie) == 1  # the next retraining learns the adjudicated label
    admin.locator("#agreement").screenshot(path=str(shot(admin, "annotators-adjudicated")))
    context.close()


def test_a_round_is_reviewed_and_undone_before_it_closes(page, live_server, tmp_path_factory):
    database = live_server.database
    project = fitted_project(database, tmp_path_factory.mktemp("review"), "review-round", 3, review_grace_minutes=10)
    login(page, "analyst")
    page.goto(f"/projects/{project['id']}/label")
    page.wait_for_selector(CURRENT)
    for key in "nnn":
        answer_with_key(page, key)
    wait_saved(page)
    page.wait_for_selector("#lq-submit")
    assert "every window answered — review before the model retrains" in page.inner_text("#lq-review-title")
    assert "closes by itself at" in page.inner_text("#lq-review-text")
    with database.session_scope() as session:
        assert session.get(Round, project["round_id"]).status == "open"  # answered, not retraining
    shot(page, "annotators-review-panel")

    page.keyboard.press("z")  # undo the last answer: its window is shown again
    page.wait_for_selector(CURRENT)
    assert int(page.get_attribute("#lq", "data-query")) == project["queries"][-1]
    answer_with_key(page, "a")  # answered again, differently
    wait_saved(page)
    page.wait_for_selector("#lq-submit")
    page.click("#lq-submit")
    page.wait_for_selector("#lq-complete")
    assert "Round 1 complete" in page.inner_text("#lq-complete")
    shot(page, "annotators-submitted")
    with database.session_scope() as session:
        rnd = session.get(Round, project["round_id"])
        assert rnd.status != "open" and rnd.submitted_by == accounts_repo.get_user_by_name(session, "analyst").id
        values = {lab.query_id: lab.value for lab in projects.effective_labels(session, project["id"])}
    assert [values[q] for q in project["queries"]] == ["normal", "normal", "anomaly"]


def test_a_round_dealt_to_a_named_analyst(browser, live_server, tmp_path_factory):
    database = live_server.database
    project = fitted_project(
        database, tmp_path_factory.mktemp("assign"), "dealt-round", 3, start=False, review_grace_minutes=10
    )
    with database.session_scope() as session:
        for name in ("dana", "eve"):
            create_user(session, name, "analyst", PASSWORD)

    def new_page():  # type: ignore[no-untyped-def]
        context = browser.new_context(viewport={"width": 1440, "height": 900}, base_url=live_server.url)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        return context, page, errors

    context, admin, errors = new_page()
    login(admin, "admin")
    admin.goto(f"/projects/{project['id']}")
    admin.click("#assign summary")
    admin.check("#assign input[value=dana]")
    shot(admin, "annotators-assign")
    admin.click("#start-round button[type=submit]")
    admin.wait_for_selector("text=dealt to dana")
    assert not errors, errors
    context.close()
    with database.session_scope() as session:
        rnd = repo.active_round(session, project["id"])
        assert rnd is not None and rnd.assignee_ids == [accounts_repo.get_user_by_name(session, "dana").id]

    context, dana, errors = new_page()
    sign_in_as(dana, "dana")
    dana.goto(f"/projects/{project['id']}/label")
    dana.wait_for_selector(CURRENT)
    assert dana.locator("#lq-queue li").count() == 3  # every window is hers
    answer_with_key(dana, "n")
    wait_saved(dana)
    assert not errors, errors
    context.close()

    context, eve, errors = new_page()
    sign_in_as(eve, "eve")
    eve.goto(f"/projects/{project['id']}/label")
    eve.wait_for_selector("#lq-review")
    assert eve.inner_text("#lq-review-title") == "Round 1 is assigned to other analysts"
    assert "dealt to dana" in eve.inner_text("#lq-review-text")
    assert eve.locator("#lq-queue li").count() == 0
    shot(eve, "annotators-assigned-elsewhere")
    assert not errors, errors
    context.close()


def test_analysts_on_one_round_are_shown_different_windows(browser, live_server, tmp_path_factory):
    """One answer per window: the page takes the window it shows, so a second analyst opening the same round is shown
    another one — also when a third took it between the page's loading and its claim (409: passed over) — and once
    only others' windows are left, the page says whose they are. Every answer given is stored; none is refused."""
    database = live_server.database
    project = fitted_project(database, tmp_path_factory.mktemp("claims"), "one-each", 4, review_grace_minutes=10)
    first, second, third, fourth = project["queries"]
    with database.session_scope() as session:
        for name in ("ann", "ben", "dan"):
            create_user(session, name, "analyst", PASSWORD)
        dan_id = accounts_repo.get_user_by_name(session, "dan").id

    def holder(query_id: int) -> int | None:
        with database.session_scope() as session:
            return repo.get_query(session, query_id).claimed_by_id

    def new_page(name: str):  # type: ignore[no-untyped-def]
        context = browser.new_context(viewport={"width": 1440, "height": 900}, base_url=live_server.url)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        sign_in_as(page, name)
        return context, page, errors

    ann_context, ann, ann_errors = new_page("ann")
    ann.goto(f"/projects/{project['id']}/label")
    ann.wait_for_selector(f"#lq[data-query='{first}']")
    deadline = time.monotonic() + 10
    while holder(first) is None:  # the page's claim is on its way
        assert time.monotonic() < deadline
        time.sleep(0.05)

    ben_context, ben, ben_errors = new_page("ben")
    claims: list[str] = []

    def dan_takes_it_first(route) -> None:  # type: ignore[no-untyped-def]
        # the first window ben's page shows is taken by dan (through the API, as his client would) just before
        # ben's page claims it
        claims.append(route.request.url)
        if len(claims) == 1:
            with database.session_scope() as session:
                dan = session.get(User, dan_id)
                taken = projects.next_query(session, project["id"], dan)
                assert taken is not None and taken.id == second
        route.continue_()

    ben.route("**/api/v1/queries/*/claim", dan_takes_it_first)
    ben.goto(f"/projects/{project['id']}/label")
    ben.wait_for_selector(f"#lq[data-query='{third}']")  # not ann's window, and not dan's (409: passed over)
    assert claims[0].endswith(f"/queries/{second}/claim") and claims[1].endswith(f"/queries/{third}/claim")
    queue = {int(li.get_attribute("data-query")): li.inner_text() for li in ben.locator("#lq-queue li").all()}
    assert "with ann" in queue[first] and "with dan" in queue[second], queue
    answer_with_key(ben, "a")
    assert ben.get_attribute("#lq", "data-query") == str(fourth)
    answer_with_key(ben, "n")
    wait_saved(ben)
    ben.wait_for_selector("text=The windows left are with other analysts")
    assert "being answered by ann, dan" in ben.inner_text("#lq-done")
    shot(ben, "annotators-windows-with-others")

    answer_with_key(ann, "n")
    wait_saved(ann)
    assert stored_answers(database, project["id"]) == {
        first: {"ann": "normal"},
        third: {"ben": "anomaly"},
        fourth: {"ben": "normal"},
    }
    assert not ann_errors and not ben_errors, ann_errors + ben_errors
    ann_context.close()
    ben_context.close()
