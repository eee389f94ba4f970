"""Several analysts per window: every answer kept, each analyst asked only what they have not answered, agreement on
the project page and in the API, adjudication that changes what training learns; and, with one answer per window,
a second analyst told (409) instead of silently replacing the first answer."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

from app.accounts.service import create_api_token, create_user
from app.datasets.models import Dataset, Series
from app.projects import repository as repo
from app.projects import review
from app.projects import service as projects
from app.projects.models import Project, Query, Round

PASSWORD = "annotator-password-1"
WINDOW = 20


def make_round(database, name: str, answers_per_window: int, n_queries: int = 4, grace: int = 10) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """A human project with one open round of ``n_queries`` windows, made in the database (answers need no model).
    Returns ``(project id, round id)``."""
    with database.session_scope() as session:
        dataset = Dataset(name=f"{name}-data", n_channels=1)
        session.add(dataset)
        session.flush()
        series = Series(
            dataset_id=dataset.id,
            name=f"{name}-series",
            n_points=1000,
            n_channels=1,
            channel_names=["v"],
            timestamp_kind="index",
            chunk_points=65_536,
        )
        session.add(series)
        session.flush()
        project = Project(
            name=name,
            dataset_id=dataset.id,
            detector="iforest",
            window=WINDOW,
            stride=1,
            strategy="top_k",
            round_size=n_queries,
            budget=100,
            answers_per_window=answers_per_window,
            review_grace_minutes=grace,
        )
        project.series = [series]
        session.add(project)
        session.flush()
        rnd = Round(project_id=project.id, number=1, strategy="top_k", k=n_queries, status="open")
        session.add(rnd)
        session.flush()
        session.add_all(
            Query(round_id=rnd.id, series_id=series.id, start=100 * i, end=100 * i + WINDOW, rank=i)
            for i in range(n_queries)
        )
        return project.id, rnd.id


@pytest.fixture
def client_for(app, database) -> Iterator:  # type: ignore[no-untyped-def]
    """``client_for(name)``: a signed-in client of a new analyst ``name``."""
    clients: list[TestClient] = []

    def make(name: str, role: str = "analyst") -> TestClient:
        with database.session_scope() as session:
            create_user(session, name, role, PASSWORD)
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        page = client.post("/login", data={"username": name, "password": PASSWORD, "next": "/"})
        assert page.status_code == 200, page.text
        client.headers["X-CSRF-Token"] = re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def answer_all(client: TestClient, project_id: int, values: list[str]) -> list[int]:
    """Answer the next windows this analyst is given, in order; returns the query ids answered."""
    answered = []
    for value in values:
        q = client.get(f"/api/v1/projects/{project_id}/next-query").json()
        assert q is not None, f"no window left after {len(answered)}"
        r = client.post(f"/api/v1/queries/{q['id']}/answer", json={"value": value})
        assert r.status_code == 200, r.text
        answered.append(q["id"])
    return answered


def in_force_by_author(database, project_id: int) -> dict[int, dict[str, str]]:  # type: ignore[no-untyped-def]
    """query id -> analyst name -> value, from the stored rows in force (not the consensus)."""
    with database.session_scope() as session:
        names = {1: ""} | projects.usernames(session)
        out: dict[int, dict[str, str]] = {}
        for lab in repo.effective_labels(session, project_id):
            out.setdefault(lab.query_id, {})[names.get(lab.author_id, "?")] = lab.value
        return out


A_VOTES = ["anomaly", "anomaly", "normal", "normal"]
B_VOTES = ["anomaly", "normal", "normal", "normal"]


def test_two_analysts_on_two_answers_per_window_both_answers_are_stored(database, client_for):
    project_id, round_id = make_round(database, "two-answers", answers_per_window=2)
    alice, bob, carol = client_for("alice"), client_for("bob"), client_for("carol")
    asked_alice = answer_all(alice, project_id, A_VOTES)
    # alice answered every window; they still wait for a second answer, but not from her
    assert alice.get(f"/api/v1/projects/{project_id}/next-query").json() is None
    statuses = [q["status"] for q in alice.get(f"/api/v1/rounds/{round_id}/queries").json()]
    assert statuses == ["pending"] * 4
    mine = alice.get(f"/api/v1/projects/{project_id}/labeling").json()
    assert [q["status"] for q in mine["queries"]] == ["answered"] * 4  # her queue shows her answers as done
    assert [q["answer"][0]["value"] for q in mine["queries"]] == A_VOTES
    assert mine["round"]["open_windows"] == 4
    # while the round is open, each analyst's chart shades only their own answers: bob answers on his own
    series_id = mine["queries"][0]["series_id"]

    def shaded(client: TestClient) -> list[str]:
        labels = client.get(f"/api/v1/projects/{project_id}/series/{series_id}/labels?start=0&end=1000").json()
        return [lab["value"] for lab in sorted(labels, key=lambda lab: lab["start"])]

    assert shaded(alice) == A_VOTES and shaded(bob) == []

    asked_bob = answer_all(bob, project_id, B_VOTES)
    assert asked_bob == asked_alice  # bob is given the same windows
    assert shaded(bob) == B_VOTES and shaded(alice) == A_VOTES
    stored = in_force_by_author(database, project_id)
    assert [stored[q] for q in asked_alice] == [{"alice": a, "bob": b} for a, b in zip(A_VOTES, B_VOTES, strict=True)]
    assert [q["status"] for q in bob.get(f"/api/v1/rounds/{round_id}/queries").json()] == ["answered"] * 4

    # alice changes her mind on window 1: her answer is superseded, bob's stays
    r = alice.post(f"/api/v1/queries/{asked_alice[0]}/answer", json={"value": "normal"})
    assert r.status_code == 200, r.text
    assert in_force_by_author(database, project_id)[asked_alice[0]] == {"alice": "normal", "bob": "anomaly"}
    # a third analyst finds the windows full
    assert carol.get(f"/api/v1/projects/{project_id}/next-query").json() is None
    refused = carol.post(f"/api/v1/queries/{asked_alice[0]}/answer", json={"value": "anomaly"})
    assert refused.status_code == 409 and "already has its 2 answers (alice, bob)" in refused.json()["detail"]
    # bob undoes his answer to window 2: only his, and the window needs an answer again (from bob or carol)
    assert bob.post(f"/api/v1/queries/{asked_alice[1]}/undo").status_code == 200
    assert in_force_by_author(database, project_id)[asked_alice[1]] == {"alice": "anomaly"}
    assert carol.get(f"/api/v1/projects/{project_id}/next-query").json()["id"] == asked_alice[1]


def test_the_agreement_on_the_project_page_matches_a_hand_computation(database, client_for, admin_client):
    project_id, round_id = make_round(database, "agreement", answers_per_window=2)
    answer_all(client_for("alice"), project_id, A_VOTES)
    answer_all(client_for("bob"), project_id, B_VOTES)
    # Cohen's kappa by hand: the two agree on 3 of 4 windows (p_o = 3/4); alice says anomaly on 2 of 4, bob on 1 of 4,
    # so chance agreement p_e = 2/4 * 1/4 + 2/4 * 3/4 = 1/2, and kappa = (p_o - p_e) / (1 - p_e) = 1/2
    p_o = 3 / 4
    p_e = (2 / 4) * (1 / 4) + (2 / 4) * (3 / 4)
    kappa = (p_o - p_e) / (1 - p_e)
    figures = admin_client.get(f"/api/v1/projects/{project_id}/agreement").json()
    [pair] = figures["overall"]["pairs"]
    assert (pair["a"], pair["b"], pair["windows"]) == ("alice", "bob", 4)
    assert pair["kappa"] == pytest.approx(kappa) and pair["observed"] == pytest.approx(p_o)
    assert figures["overall"]["alpha"] == pytest.approx(8 / 15)  # tests/app/test_consensus.py works it out
    assert [d["query_id"] for d in figures["disagreements"]] == [figures["disagreements"][0]["query_id"]]
    assert figures["disagreements"][0]["consensus"] == "unsure"  # 1 anomaly vs 1 normal: a tie

    page = admin_client.get(f"/projects/{project_id}")
    assert page.status_code == 200
    section = page.text[page.text.index('id="agreement"') :]
    assert "Cohen's κ, alice · bob" in section and f"{kappa:.3f}" in section  # 0.500
    assert f"{8 / 15:.3f}" in section  # Krippendorff's alpha
    assert 'id="disagreements"' in section and "alice: anomaly" in section and "bob: normal" in section


def test_adjudication_changes_the_training_label(database, client_for, admin_client, analyst_client):
    project_id, round_id = make_round(database, "adjudicate", answers_per_window=2)
    asked = answer_all(client_for("alice"), project_id, A_VOTES)
    answer_all(client_for("bob"), project_id, B_VOTES)
    tie = asked[1]  # alice anomaly, bob normal

    def training_label(query_id: int) -> int | None:
        """The label of the window the core learns from (pool_state: the labels training reads)."""
        with database.session_scope() as session:
            project = projects.get_project(session, project_id)
            q = repo.get_query(session, query_id)
            state = projects.pool_state(session, project)
            found = [r.value for r in state.labels[0] if r.start < q.end and r.end > q.start]
            assert len(found) <= 1, found
            return found[0] if found else None

    assert training_label(asked[0]) == 1  # both anomaly
    assert training_label(asked[2]) == 0  # both normal
    assert training_label(tie) is None  # a tie is unsure: not trained on

    assert analyst_client.post(f"/api/v1/queries/{tie}/adjudicate", json={"value": "anomaly"}).status_code == 403
    r = admin_client.post(f"/api/v1/queries/{tie}/adjudicate", json={"value": "anomaly"})
    assert r.status_code == 201 and r.json()["source"] == "adjudicator", r.text
    assert training_label(tie) == 1
    again = admin_client.post(f"/api/v1/queries/{tie}/adjudicate", json={"value": "normal"})  # a second thought
    assert again.status_code == 201 and again.json()["supersedes_id"] == r.json()["id"]
    assert training_label(tie) == 0
    d = admin_client.get(f"/api/v1/projects/{project_id}/agreement").json()["disagreements"][0]
    assert (d["query_id"], d["consensus"], d["adjudicated"], d["adjudicated_by"]) == (tie, "normal", "normal", "admin")
    # the export shows the label training uses
    exported = [
        row for row in admin_client.get(f"/api/v1/projects/{project_id}/labels").json() if row["query_id"] == tie
    ]
    assert [(row["value"], row["source"]) for row in exported] == [("normal", "consensus")]

    single, _ = make_round(database, "one-answer", answers_per_window=1, n_queries=1)
    with database.session_scope() as session:
        q = repo.list_queries(session, repo.active_round(session, single).id)[0].id
    assert admin_client.post(f"/api/v1/queries/{q}/answer", json={"value": "normal"}).status_code == 200
    refused = admin_client.post(f"/api/v1/queries/{q}/adjudicate", json={"value": "anomaly"})
    assert refused.status_code == 409 and "one answer per window" in refused.json()["detail"]


def test_one_answer_per_window_a_second_analyst_is_told_not_overwritten(database, client_for, analyst_client):
    project_id, round_id = make_round(database, "single", answers_per_window=1, n_queries=3)
    alice, bob = client_for("alice"), client_for("bob")
    q = alice.get(f"/api/v1/projects/{project_id}/next-query").json()
    assert bob.get(f"/api/v1/projects/{project_id}/next-query").json()["id"] != q["id"]  # handed another window
    assert alice.post(f"/api/v1/queries/{q['id']}/answer", json={"value": "anomaly"}).status_code == 200
    second = bob.post(f"/api/v1/queries/{q['id']}/answer", json={"value": "normal"})
    assert second.status_code == 409
    assert re.fullmatch(r"already answered by alice at \d\d:\d\d:\d\d UTC; reload", second.json()["detail"])
    assert in_force_by_author(database, project_id)[q["id"]] == {"alice": "anomaly"}
    # alice may still change her own answer (it supersedes hers)
    assert alice.post(f"/api/v1/queries/{q['id']}/answer", json={"value": "normal"}).status_code == 200
    assert in_force_by_author(database, project_id)[q["id"]] == {"alice": "normal"}
    # a skip is protected the same way
    other = alice.get(f"/api/v1/projects/{project_id}/next-query").json()
    assert alice.post(f"/api/v1/queries/{other['id']}/answer", json={"value": "skip"}).status_code == 200
    skipped = bob.post(f"/api/v1/queries/{other['id']}/answer", json={"value": "anomaly"})
    assert skipped.status_code == 409 and "already skipped by alice" in skipped.json()["detail"]


def test_one_answer_per_window_analysts_on_one_round_are_handed_different_windows(
    app, database, client_for, admin_client
):
    """Each analyst asking for the next window gets one nobody else holds: nobody answers a window for nothing."""
    project_id, round_id = make_round(database, "claims", answers_per_window=1, n_queries=3)
    alice, bob, carol, dave = (client_for(name) for name in ("alice", "bob", "carol", "dave"))
    url = f"/api/v1/projects/{project_id}/next-query"
    with database.session_scope() as session:  # a read-only token is shown the next window and takes nothing
        erin = create_user(session, "erin", "analyst", PASSWORD)
        _, read_only = create_api_token(session, erin, "erin-read", ["read"])
    with TestClient(app, headers={"Authorization": f"Bearer {read_only}"}) as reader:
        shown = reader.get(url).json()
        assert reader.get(url).json()["id"] == shown["id"]
    handed = {name: c.get(url).json() for name, c in (("alice", alice), ("bob", bob), ("carol", carol))}
    assert handed["alice"]["id"] == shown["id"] and len({q["id"] for q in handed.values()}) == 3
    assert alice.get(url).json()["id"] == handed["alice"]["id"]  # asking again gives the same window back
    assert dave.get(url).json() is None  # every window left is with someone: none for dave, none answered twice
    state = dave.get(f"/api/v1/projects/{project_id}/labeling").json()
    assert {q["id"]: q["claimed_by"] for q in state["queries"]} == {q["id"]: n for n, q in handed.items()}
    home = dave.get("/label")
    assert home.status_code == 200 and "claims" in home.text  # the chooser: nothing waits for dave
    assert home.url.path == "/label"
    taken = dave.post(f"/api/v1/queries/{handed['alice']['id']}/claim")
    assert taken.status_code == 409 and taken.json()["detail"] == "alice is answering this window; take another"
    # alice answers: her window is done, the two left are with bob and carol, so none is handed to her next
    r = alice.post(f"/api/v1/queries/{handed['alice']['id']}/answer", json={"value": "anomaly"})
    assert r.status_code == 200 and r.json()["next_query_id"] is None
    # bob walks away: once his hold lapses his window goes to whoever asks next
    with database.session_scope() as session:
        query = session.get(Query, handed["bob"]["id"])
        query.claimed_until = query.claimed_until - (review.CLAIM_TTL * 2)
    assert dave.get(url).json()["id"] == handed["bob"]["id"]
    assert bob.get(url).json() is None
    # carol's hold lapses and nobody takes the window meanwhile: asking again, she gets it back
    with database.session_scope() as session:
        query = session.get(Query, handed["carol"]["id"])
        query.claimed_until = query.claimed_until - (review.CLAIM_TTL * 2)
    assert carol.get(url).json()["id"] == handed["carol"]["id"]
    # an admin's reading of the queue takes nothing; the page's claim of a window it shows does
    assert admin_client.get(f"/api/v1/projects/{project_id}/labeling").json()["queries"][2]["claimed_by"] == "carol"
    assert carol.post(f"/api/v1/queries/{handed['carol']['id']}/claim").status_code == 200
    # the first answer stored wins, whoever held the window: bob's late answer to his lapsed window is still taken
    assert bob.post(f"/api/v1/queries/{handed['bob']['id']}/answer", json={"value": "normal"}).status_code == 200
    late = dave.post(f"/api/v1/queries/{handed['bob']['id']}/answer", json={"value": "anomaly"})
    assert late.status_code == 409


def test_one_answer_per_window_analysts_asking_at_once_get_distinct_windows(database, client_for):
    """Eight analysts ask for their next window at the same moment: eight different windows (a conditional claim
    per window, on SQLite and PostgreSQL alike)."""
    project_id, _ = make_round(database, "at-once", answers_per_window=1, n_queries=8)
    clients = [client_for(f"analyst{i}") for i in range(8)]
    barrier = threading.Barrier(len(clients))

    def ask(client: TestClient) -> int | None:
        barrier.wait()
        q = client.get(f"/api/v1/projects/{project_id}/next-query").json()
        return q["id"] if q else None

    with ThreadPoolExecutor(len(clients)) as pool:
        got = list(pool.map(ask, clients))
    assert None not in got and len(set(got)) == 8, got
