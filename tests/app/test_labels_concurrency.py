"""Answers are stored at once, idempotently, append-only, and a round completes exactly once under concurrency."""

from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import func, select

from app.errors import AppError, Conflict
from app.jobs.models import Job
from app.projects import repository as repo
from app.projects import service as projects
from app.projects.models import Label, Round
from tests.app.loop_helpers import create, executor, import_series


@pytest.fixture
def open_round(database, shared_data, tmp_path):
    """A fitted iforest project on a real NAB series with one open round of 6 queries (human oracle)."""
    dataset_id = import_series(database, shared_data / "nab" / "realKnownCause__nyc_taxi.csv.gz", "taxi")
    project_id, job_id = create(
        database,
        dataset_id,
        name="p",
        detector="iforest",
        window=25,
        strategy="top_k",
        round_size=6,
        budget=60,
        review_grace_minutes=0,  # the last answer closes the round (what the concurrency test counts on)
    )
    ex = executor(database, tmp_path)
    ex.enqueue(job_id)
    assert ex.wait_idle(120)
    ex.shutdown()
    with database.session_scope() as session:
        started = projects.start_round(session, None, project_id)
        assert started.job_ids == []  # a human round waits for its answers
        return project_id, started.round.id, [q.id for q in repo.list_queries(session, started.round.id)]


def test_answers_are_idempotent_append_only_and_undoable(database, open_round):
    project_id, round_id, queries = open_round
    key = uuid.uuid4().hex
    with database.session_scope() as s:
        first = projects.answer_query(s, None, queries[0], "anomaly", None, key)
        assert not first.duplicate and first.answered == 1 and first.total == 6
    with database.session_scope() as s:  # the same request again (a retry after a network error)
        again = projects.answer_query(s, None, queries[0], "anomaly", None, key)
        assert again.duplicate and [lab.id for lab in again.labels] == [lab.id for lab in first.labels]
    with database.session_scope() as s:
        q = repo.get_query(s, queries[1])
        dragged = projects.answer_query(s, None, q.id, "anomaly", (q.start + 5, q.start + 9), uuid.uuid4().hex)
        assert [(lab.start - q.start, lab.end - q.start, lab.value) for lab in dragged.labels] == [
            (0, 5, "normal"),
            (5, 9, "anomaly"),
            (9, q.end - q.start, "normal"),
        ]
    with database.session_scope() as s, pytest.raises(AppError, match="must lie inside the window"):
        projects.answer_query(s, None, queries[2], "anomaly", (0, 10**9), None)
    with database.session_scope() as s:
        projects.undo_answer(s, None, queries[1])
    with database.session_scope() as s:
        effective = projects.effective_labels(s, project_id)
        assert {lab.query_id for lab in effective} == {queries[0]}  # the undone answer is no longer in force
        rows = s.scalar(select(func.count()).select_from(Label).where(Label.query_id == queries[1]))
        assert rows == 6  # 3 labels + 3 retractions: nothing updated in place, nothing lost
        assert repo.get_query(s, queries[1]).status == "pending"
        with pytest.raises(Conflict, match="no answer to undo"):
            projects.undo_answer(s, None, queries[1])


def test_eight_threads_one_round_completes_once(database, open_round):
    project_id, round_id, queries = open_round
    # every query answered once, plus duplicates: two retries with the same key and two second opinions
    plan = [(q, uuid.uuid4().hex) for q in queries]
    plan += [plan[0], plan[1], (queries[2], uuid.uuid4().hex), (queries[3], uuid.uuid4().hex)]
    accepted: list[tuple[str, bool]] = []  # (key, duplicate)
    refused: list[str] = []
    errors: list[Exception] = []
    barrier = threading.Barrier(8)

    def worker(items):  # type: ignore[no-untyped-def]
        barrier.wait()
        for query_id, key in items:
            for _attempt in range(50):
                try:
                    with database.session_scope() as s:
                        result = projects.answer_query(s, None, query_id, "normal", None, key)
                        accepted.append((key, result.duplicate))
                    break
                except Conflict as exc:
                    if "being saved by another request" in exc.message:
                        continue  # the same key is being written by the other thread: retry reads its result
                    refused.append(exc.message)
                    break
                except Exception as exc:  # noqa: BLE001 - SQLite "database is locked": retry like a client would
                    if "locked" not in str(exc):
                        errors.append(exc)
                        break

    threads = [threading.Thread(target=worker, args=(plan[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert len(accepted) + len(refused) == len(plan)
    # only second opinions that came after the round was complete may be refused, and they are told so
    assert all("no longer change" in m for m in refused) and len(refused) <= 2
    with database.session_scope() as s:
        stored = s.scalars(select(Label.idempotency_key).where(Label.idempotency_key.is_not(None))).all()
        assert len(stored) == len(set(stored))  # no key stored twice
        # every accepted answer is stored (keys are stored scoped to caller and endpoint)
        assert {k.split(":")[0].rstrip("!") for k in stored} == {
            projects._scoped_key(None, "answer", k) for k, _ in accepted
        }
        assert sum(not dup for _, dup in accepted) == len(stored)
        assert s.get(Round, round_id).status == "complete"
        assert all(q.status == "answered" for q in repo.list_queries(s, round_id))
        jobs = s.scalars(select(Job).where(Job.round_id == round_id)).all()
        assert len(jobs) == 1 and jobs[0].kind == "retrain"
