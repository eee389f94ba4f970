"""Several analysts per window (answers kept per analyst, consensus, agreement, adjudication) and the review of a
fully answered round before it retrains (submit, or close by itself after the project's grace period).

Below :mod:`app.projects.service` (which calls it from the answer path and :func:`effective_labels`), above
:mod:`app.projects.rounds`; takes a session and never commits. The consensus rule itself is pure, in
:mod:`app.projects.consensus`; docs/ANNOTATORS.md tells users.

How answers are kept. Every answer is label rows of one author (``source`` ``analyst``); a second answer by the same
analyst supersedes theirs. With ``answers_per_window`` 1 another analyst's answer is not replaced: a second analyst
gets 409 (reload and see it). With more, each analyst's answer stays in force beside the others', a skip is a
``retracted`` marker row of its author (no ``supersedes``), and a query is ``answered`` (or ``skipped`` when nobody
answered it) once that many analysts responded. An admin's adjudication is a label row with source ``adjudicator``
over the window; the newest in force wins the consensus.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from app.accounts.models import User
from app.accounts.service import audit, usernames
from app.db import utcnow
from app.errors import AppError, Conflict, NotFound
from app.jobs import service as jobs
from app.projects import assignment, rounds
from app.projects import consensus as cons
from app.projects import repository as repo
from app.projects.models import Label, Project, Query, Round
from app.projects.rounds import RoundStatus
from app.webhooks import service as webhooks

ADJUDICATOR = "adjudicator"
"""``Label.source`` of an admin's adjudication."""
CONSENSUS = "consensus"
"""``Label.source`` of the (unstored) labels :func:`consensus_labels` derives from several answers."""
MAX_ANSWERS_PER_WINDOW = 5


def several_answers(project: Project) -> bool:
    """Whether the project keeps several analysts' answers per window (never for the ground-truth oracle)."""
    return project.oracle == "human" and project.answers_per_window > 1


# -- one query's rows -------------------------------------------------------------------------------------------------


@dataclass
class QueryRows:
    """A query's label rows read into who said what: ``answers`` per author (in force, range order), ``skipped`` the
    authors whose skip marker is in force, ``adjudication`` the newest adjudication in force."""

    answers: dict[int | None, list[Label]] = field(default_factory=dict)
    skipped: set[int | None] = field(default_factory=set)
    adjudication: Label | None = None
    newest: Label | None = None

    @property
    def responders(self) -> set[int | None]:
        return set(self.answers) | self.skipped


def _read(rows: Sequence[Label]) -> QueryRows:
    superseded = {r.supersedes_id for r in rows}
    out = QueryRows(newest=max(rows, key=lambda r: r.id) if rows else None)
    for r in rows:
        if r.id in superseded:
            continue
        if r.source == ADJUDICATOR:
            if r.value != "retracted" and (out.adjudication is None or r.id > out.adjudication.id):
                out.adjudication = r
        elif r.value != "retracted":
            out.answers.setdefault(r.author_id, []).append(r)
        elif r.supersedes_id is None:  # a skip marker (a retraction that replaces nothing)
            out.skipped.add(r.author_id)
    for pieces in out.answers.values():
        pieces.sort(key=lambda r: (r.start, r.id))
    out.skipped -= set(out.answers)
    return out


def query_rows(session: Session, query_id: int) -> QueryRows:
    return _read(repo.labels_for_query(session, query_id))


def _who(session: Session, author_id: int | None) -> str:
    return usernames(session).get(author_id, "another analyst") if author_id is not None else "the ground truth"


def _at(label: Label) -> str:
    return label.created_at.strftime("%H:%M:%S UTC")


# -- the answer path (called by app.projects.service.answer_query / undo_answer) --------------------------------


def answer_to_replace(session: Session, project: Project, query: Query, actor: User | None) -> list[Label]:
    """The rows in force that ``actor``'s new answer to ``query`` supersedes (read after the round's lock is held).

    One answer per window: the answer in force, when ``actor`` gave it; another analyst's answer or skip is refused
    with 409 (it was given meanwhile: reload). Several: ``actor``'s own answer and skip marker; a window that already
    has its answers from others is refused with 409."""
    session.refresh(query)  # read after the lock: a concurrent answer has committed by now
    rows = repo.labels_for_query(session, query.id)
    me = actor.id if actor else None
    read = _read(rows)
    if not several_answers(project):
        superseded = {r.supersedes_id for r in rows}
        in_force = [r for r in rows if r.value != "retracted" and r.id not in superseded and r.source != ADJUDICATOR]
        if query.status == "answered":
            other = next((r for r in in_force if r.author_id != me), None)
            if other is not None:
                raise Conflict(f"already answered by {_who(session, other.author_id)} at {_at(other)}; reload")
        elif query.status == "skipped" and read.newest is not None and read.newest.author_id != me:
            raise Conflict(f"already skipped by {_who(session, read.newest.author_id)} at {_at(read.newest)}; reload")
        return in_force
    others = read.responders - {me}
    if me not in read.responders and len(others) >= project.answers_per_window:
        names = ", ".join(sorted(_who(session, a) for a in others))
        raise Conflict(f"this window already has its {project.answers_per_window} answers ({names}); reload")
    superseded = {r.supersedes_id for r in rows}
    mine = [
        r
        for r in rows
        if r.id not in superseded and r.author_id == me and r.source == "analyst" and r.value != "retracted"
    ]
    markers = [
        r
        for r in rows
        if r.id not in superseded and r.author_id == me and r.value == "retracted" and r.supersedes_id is None
    ]
    return sorted(mine, key=lambda r: r.id) + markers


def refuse_if_answered_by_another(session: Session, query: Query, actor: User | None) -> None:
    """Before the round's lock: 409 at once when another analyst's answer or skip to ``query`` has committed (one
    answer per window, a round open and dealt to nobody in particular). :func:`answer_to_replace` would refuse it
    too, but only after the request waited its turn for the lock behind every concurrent answer to the round — on
    SQLite, the database's write lock. What was read here has committed, so the refusal stands; every other case
    (a pending window, the caller's own answer, several answers per window, a dealt round) is decided under the
    lock."""
    if query.status not in ("answered", "skipped"):
        return
    try:
        rnd = repo.get_round(session, query.round_id)
        project = session.get(Project, rnd.project_id) if rnd is not None else None
        if rnd is None or project is None or rnd.status != "open" or assignment.is_dealt(rnd):
            return
        if not several_answers(project):
            answer_to_replace(session, project, query, actor)
    finally:
        session.expire_all()  # whatever was read here is read again under the lock (a locking SELECT keeps loaded rows)


def query_status(session: Session, project: Project, query: Query, answered: str) -> str:
    """The query's status after an answer, a skip or an undo was written (and flushed): ``answered`` (what the one
    answer made it) with one answer per window; with several, ``answered`` once that many analysts responded and any
    of them answered, ``skipped`` when all of them skipped, else ``pending``."""
    if not several_answers(project):
        return answered
    read = query_rows(session, query.id)
    if len(read.responders) < project.answers_per_window:
        return "pending"
    return "answered" if read.answers else "skipped"


def settle_query(session: Session, project: Project, query: Query, round_id: int) -> str:
    """After some of ``query``'s answers were retracted (an undo, or a deletion in the explorer): its status from
    what is left in force (:func:`query_status`), and the round's review clock (:func:`after_answers`). Returns
    the new status."""
    status = query_status(session, project, query, "pending")
    repo.mark_query(session, query.id, status, answered_at=query.answered_at if status != "pending" else None)
    session.expire(query)
    after_answers(session, round_id)
    return status


def rows_to_undo(session: Session, project: Project, query: Query, actor: User | None) -> list[Label]:
    """What an undo retracts: the answer in force (one answer per window), or ``actor``'s own answer and skip marker
    (several). 409 when there is none."""
    rows = repo.labels_for_query(session, query.id)
    superseded = {r.supersedes_id for r in rows}
    live = [r for r in rows if r.id not in superseded and r.source != ADJUDICATOR]
    if not several_answers(project):
        if query.status == "pending":
            raise Conflict("this query has no answer to undo")
        return [r for r in live if r.value != "retracted"]
    me = actor.id if actor else None
    mine = [r for r in live if r.author_id == me and (r.value != "retracted" or r.supersedes_id is None)]
    if not mine:
        raise Conflict("you have no answer to this window to undo")
    return mine


def next_query_for(
    session: Session, project: Project, rnd: Round, viewer: User | None, *, claim: bool = True
) -> Query | None:
    """The first pending query of ``rnd`` (rank order) that ``viewer`` has not answered or skipped yet; in a round
    dealt to named analysts, the first of ``viewer``'s own windows (:mod:`app.projects.assignment`). With one
    answer per window in a round every analyst sees, the first one no other analyst holds, claimed for ``viewer``
    (:func:`claim_next`) unless ``claim`` is False (a read-only caller): analysts asking at the same time are handed
    different windows."""
    if claims_apply(project, rnd, viewer):
        assert viewer is not None
        return claim_next(session, rnd, viewer, write=claim)
    if not several_answers(project) and assignment.sees_every_window(rnd, viewer):
        return repo.next_pending_query(session, rnd.id)
    return next(_queue_of(session, project, rnd, viewer), None)


def waiting_for(session: Session, project: Project, rnd: Round, viewer: User | None) -> int:
    """How many windows of ``rnd`` wait for ``viewer``'s answer: the queries :func:`next_query_for` would still
    hand them, one after the other (not those another analyst holds now)."""
    if claims_apply(project, rnd, viewer):
        now = utcnow()
        return sum(claimed_by_other(q, viewer, now) is None for q in repo.pending_queries(session, rnd.id))
    if not several_answers(project) and assignment.sees_every_window(rnd, viewer):
        return repo.count_pending(session, rnd.id)
    return sum(1 for _ in _queue_of(session, project, rnd, viewer))


# -- one analyst per window at a time ----------------------------------------------------------------------------

CLAIM_TTL = timedelta(minutes=5)
"""How long a window handed to an analyst (one answer per window) is kept from the others. Asking again within it
hands the same window back and renews it; after it, the window goes to whoever asks next, and the first answer
stored still wins (a later one gets 409)."""


def claims_apply(project: Project, rnd: Round, viewer: User | None) -> bool:
    """Claims are for one answer per window in a round every analyst sees: with several answers each analyst
    answers every window, and a dealt round gives each analyst their own windows already."""
    return viewer is not None and not several_answers(project) and assignment.sees_every_window(rnd, viewer)


def claimed_by_other(query: Query, viewer: User | None, now: datetime) -> int | None:
    """The id of the analyst other than ``viewer`` who holds ``query`` at ``now``, else None."""
    holder = query.claimed_by_id
    if holder is None or (viewer is not None and holder == viewer.id):
        return None
    if query.claimed_until is None or query.claimed_until <= now:
        return None
    return holder


def claim_next(
    session: Session, rnd: Round, viewer: User, ttl: timedelta = CLAIM_TTL, *, write: bool = True
) -> Query | None:
    """The window ``viewer`` should answer next, claimed for them until ``ttl`` from now: the one they already hold,
    else the first pending one (rank order) nobody else holds. None when every pending window is held by others
    (they come back when their claims lapse). A window lost to a concurrent claim is passed over. ``write`` False
    (a read-only caller, who cannot answer): the same window, not claimed."""
    now = utcnow()

    def held_by_viewer(q: Query) -> bool:
        return q.claimed_by_id == viewer.id and q.claimed_until is not None and q.claimed_until > now

    # every pending window nobody else holds (an own lapsed hold included), the ones viewer holds first
    open_to_viewer = [q for q in repo.pending_queries(session, rnd.id) if claimed_by_other(q, viewer, now) is None]
    for query in sorted(open_to_viewer, key=lambda q: not held_by_viewer(q)):  # stable: rank order within each
        if not write:
            return query
        until = query.claimed_until
        if held_by_viewer(query) and until is not None and until - now > ttl / 2:
            return query  # held, and for long enough: no write on every poll
        if repo.claim_query(session, query.id, viewer.id, now, now + ttl):
            session.expire(query)
            return query
    return None


def claim(session: Session, actor: User, query_id: int, ttl: timedelta = CLAIM_TTL) -> Query:
    """Claim one window for ``actor`` (the labeling page claims the window it shows): 409 naming the analyst who
    holds it; a window of a round or project without claims is returned unclaimed."""
    query = repo.get_query(session, query_id)
    rnd = repo.get_round(session, query.round_id) if query is not None else None
    project = session.get(Project, rnd.project_id) if rnd is not None else None
    if query is None or rnd is None or project is None:
        raise NotFound(f"no query with id {query_id}")
    if query.status != "pending" or rnd.status != "open" or not claims_apply(project, rnd, actor):
        return query
    now = utcnow()
    if not repo.claim_query(session, query.id, actor.id, now, now + ttl):
        session.refresh(query)
        holder = claimed_by_other(query, actor, now)
        if holder is not None:
            raise Conflict(f"{_who(session, holder)} is answering this window; take another", code="claimed")
        return query  # answered meanwhile: the answer path tells whoever answers it next
    session.expire(query)
    return query


def _queue_of(session: Session, project: Project, rnd: Round, viewer: User | None) -> Iterator[Query]:
    """``viewer``'s pending queries of ``rnd`` in rank order: their own windows in a dealt round, and with several
    answers per window only those they have not answered or skipped."""
    dealt = not assignment.sees_every_window(rnd, viewer)
    me = viewer.id if viewer else None
    queries = repo.list_queries(session, rnd.id)
    owners = assignment.assigned(project, rnd, queries) if dealt else {}
    for query in queries:
        if query.status != "pending" or (dealt and me not in owners[query.id]):
            continue
        if not several_answers(project) or me not in query_rows(session, query.id).responders:
            yield query


def viewer_answers(
    session: Session, project: Project, queries: Sequence[Query], viewer: User | None
) -> dict[int, tuple[str, list[Label]]]:
    """Per query: its status as ``viewer`` sees it in the labeling queue and their own answer. Several answers: a
    query they answered or skipped is ``answered`` / ``skipped`` for them; one they did not is ``pending`` while it
    needs answers, else its status. One answer per window: the query's status and the answer in force."""
    me = viewer.id if viewer else None
    out = {}
    for q in queries:
        read = query_rows(session, q.id)
        if not several_answers(project):
            out[q.id] = (q.status, [r for pieces in read.answers.values() for r in pieces])
        elif me in read.answers:
            out[q.id] = ("answered", read.answers[me])
        elif me in read.skipped:
            out[q.id] = ("skipped", [])
        else:
            out[q.id] = (q.status, [])
    return out


# -- consensus: what training reads ------------------------------------------------------------------------------


def consensus_labels(project: Project, labels: Sequence[Label]) -> list[Label]:
    """``labels`` (rows in force, oldest first) with each query's several answers (and its adjudication) replaced
    by the consensus ranges (unstored rows, source :data:`CONSENSUS`; value ``unsure`` on a tie, which training
    ignores). Labels outside queries pass unchanged. One answer per window: ``labels`` as they are, less
    adjudications."""
    if not several_answers(project):
        return [lab for lab in labels if lab.source != ADJUDICATOR]
    by_query: dict[int, list[Label]] = {}
    out: list[Label] = []
    for lab in labels:
        if lab.query_id is None:
            out.append(lab)
        else:
            by_query.setdefault(lab.query_id, []).append(lab)
    for rows in by_query.values():
        out.extend(_consensus_rows(rows))
    return sorted(out, key=lambda lab: (lab.created_at, lab.id or 0))


def _consensus_rows(rows: list[Label]) -> list[Label]:
    answers: dict[int | None, list[Label]] = {}
    adjudication = None
    for r in rows:
        if r.source == ADJUDICATOR:
            adjudication = r if adjudication is None or r.id > adjudication.id else adjudication
        else:
            answers.setdefault(r.author_id, []).append(r)
    if len(answers) == 1 and adjudication is None:
        return rows  # one analyst so far: their answer as given
    ranges = [r for r in rows if r.source != ADJUDICATOR] or rows  # rows: the adjudication alone
    start, end = min(r.start for r in ranges), max(r.end for r in ranges)
    result = cons.consensus(
        [[cons.Piece(r.start, r.end, r.value) for r in pieces] for pieces in answers.values()],
        start,
        end,
        adjudication.value if adjudication is not None else None,
    )
    first = rows[0]
    newest = max(rows, key=lambda r: r.created_at)
    types = Counter(getattr(r, "label_type", None) for r in rows if r.value == "anomaly")
    types.pop(None, None)
    label_type = types.most_common(1)[0][0] if types else None
    return [
        _unstored(first, p.start, p.end, p.value, newest, label_type if p.value == "anomaly" else None)
        for p in result.pieces
    ]


def _unstored(like: Label, start: int, end: int, value: str, newest: Label, label_type: str | None) -> Label:
    label = Label(
        project_id=like.project_id,
        series_id=like.series_id,
        start=start,
        end=end,
        value=value,
        source=CONSENSUS,
        author_id=None,
        round_id=like.round_id,
        query_id=like.query_id,
        supersedes_id=None,
        idempotency_key=None,
        created_at=newest.created_at,
    )
    if hasattr(Label, "label_type"):
        label.label_type = label_type
    return label


# -- closing a round: at once, on submit, or after the grace period ------------------------------------------------


def after_answers(session: Session, round_id: int) -> list[int]:
    """Called after every answer, skip and undo. With queries still pending: nothing (and the review clock stops).
    Every query answered: the round closes at once (ground truth, or a grace period of 0; returns the retraining
    and webhook jobs' ids to enqueue after commit) or stays open for review until ``review_grace_minutes`` after
    this answer."""
    rnd = repo.get_round(session, round_id)
    assert rnd is not None
    if repo.count_pending(session, round_id) > 0:
        if rnd.review_until is not None:
            repo.set_round_status(session, round_id, (RoundStatus.OPEN,), RoundStatus.OPEN, review_until=None)
        return []
    project = repo.get_project(session, rnd.project_id)
    assert project is not None
    if project.oracle != "human" or project.review_grace_minutes <= 0:
        return close_round(session, round_id)
    until = utcnow() + timedelta(minutes=project.review_grace_minutes)
    repo.set_round_status(session, round_id, (RoundStatus.OPEN,), RoundStatus.OPEN, review_until=until)
    return []


def close_round(session: Session, round_id: int, actor: User | None = None) -> list[int]:
    """Move the round from open to complete exactly once, create its retraining job and tell the ``round.completed``
    webhooks; returns the jobs to enqueue after commit (the retraining job first; none when another caller closed
    it)."""
    moved = rounds.move(
        session,
        round_id,
        (RoundStatus.OPEN,),
        RoundStatus.COMPLETE,
        completed_at=utcnow(),
        review_until=None,
        submitted_by=actor.id if actor else None,
    )
    if not moved:
        return []
    rnd = repo.get_round(session, round_id)
    assert rnd is not None
    job = jobs.create_job(
        session, "retrain", project_id=rnd.project_id, round_id=rnd.id, dedupe_key=f"retrain:{rnd.id}"
    )
    event = {"project_id": rnd.project_id, "round_id": rnd.id, "number": rnd.number, "retrain_job_id": job.id}
    return [job.id, *webhooks.emit(session, "round.completed", event)]


@dataclass
class Submitted:
    round: Round
    job_ids: list[int]  # enqueue after commit


def submit_round(session: Session, actor: User | None, round_id: int) -> Submitted:
    """An analyst or an admin closes a fully answered round for retraining (before its grace period is over)."""
    rnd = repo.lock_round_for_write(session, round_id)
    if rnd is None:
        raise NotFound(f"no round with id {round_id}")
    if rnd.status != RoundStatus.OPEN:
        raise Conflict(f"round {rnd.number} is already {rnd.status}; nothing to submit")
    pending = repo.count_pending(session, rnd.id)
    if pending:
        raise Conflict(
            f"{pending} window{'s' if pending != 1 else ''} of round {rnd.number} still "
            f"need{'' if pending != 1 else 's'} answers; answer or skip {'them' if pending != 1 else 'it'} first"
        )
    job_ids = close_round(session, rnd.id, actor)
    audit(session, actor, "round.submit", "round", rnd.id, project_id=rnd.project_id, number=rnd.number)
    session.refresh(rnd)
    return Submitted(rnd, job_ids)


def close_overdue_rounds(session: Session, project_id: int | None = None) -> list[int]:
    """Close every open round whose review grace period is over (the sweeper, and the next request that reads a
    project's round); returns the retraining jobs' ids to enqueue after commit. Each round is locked and checked
    again first, so an undo that reopened a window meanwhile keeps it open."""
    job_ids = []
    for round_id in repo.rounds_due_for_closing(session, utcnow(), project_id):
        rnd = repo.lock_round_for_write(session, round_id)
        if rnd is None or rnd.status != RoundStatus.OPEN or rnd.review_until is None or rnd.review_until > utcnow():
            continue
        if repo.count_pending(session, round_id) > 0:
            continue
        closed = close_round(session, round_id)
        if closed:
            audit(session, None, "round.close", "round", round_id, project_id=rnd.project_id, reason="review time over")
            job_ids += closed
        session.refresh(rnd)
    return job_ids


# -- agreement and adjudication ---------------------------------------------------------------------------------------


def _votes(labels: Sequence[Label]) -> dict[int, dict[int | None, str]]:
    """query id -> analyst -> vote, from rows in force (skips leave no row in force, adjudications are left out)."""
    pieces: dict[int, dict[int | None, list[cons.Piece]]] = {}
    for lab in labels:
        if lab.query_id is None or lab.source in (ADJUDICATOR, CONSENSUS):
            continue
        pieces.setdefault(lab.query_id, {}).setdefault(lab.author_id, []).append(
            cons.Piece(lab.start, lab.end, lab.value)
        )
    return {q: {a: cons.window_vote(p) for a, p in by.items()} for q, by in pieces.items()}


def _figures(units: list[dict[Hashable, str]], names: dict[int, str]) -> dict[str, Any]:
    several = [u for u in units if len(u) >= 2]
    return {
        "windows": len(several),
        "alpha": cons.krippendorff_alpha(several),
        "pairs": [
            {
                "a": names.get(p.a, str(p.a)),  # type: ignore[call-overload]
                "b": names.get(p.b, str(p.b)),  # type: ignore[call-overload]
                "windows": p.windows,
                "observed": p.observed,
                "kappa": p.kappa,
            }
            for p in cons.pair_agreements(several)
        ],
    }


def agreement(session: Session, project: Project, raw_labels: Sequence[Label]) -> dict[str, Any]:
    """How much the analysts agree, from the rows in force (``raw_labels``: the repository's, before consensus):
    Krippendorff's α and Cohen's κ per analyst pair, overall and per round, over windows answered by at least two;
    and the disagreements (windows whose votes differ) with their consensus and adjudication, newest round first."""
    names = usernames(session)
    votes = _votes(raw_labels)
    adjudications: dict[int, Label] = {}
    for lab in raw_labels:
        if lab.source == ADJUDICATOR and lab.query_id is not None:
            adjudications[lab.query_id] = lab
    series = {s.id: s.name for s in project.series}
    per_round, disagreements, everything = [], [], []
    for rnd in repo.list_rounds(session, project.id):
        queries = repo.list_queries(session, rnd.id)
        units: list[dict[Hashable, str]] = [{a: v for a, v in votes[q.id].items()} for q in queries if q.id in votes]
        everything += units
        per_round.append({"round_id": rnd.id, "round": rnd.number, **_figures(units, names)})
        for q in queries:
            given = votes.get(q.id, {})
            if len(set(given.values())) < 2:
                continue
            adj = adjudications.get(q.id)
            disagreements.append(
                {
                    "query_id": q.id,
                    "round": rnd.number,
                    "series_id": q.series_id,
                    "series": series.get(q.series_id, ""),
                    "start": q.start,
                    "end": q.end,
                    "answers": [
                        {"analyst": names.get(a, "") if a is not None else "", "value": v}
                        for a, v in sorted(given.items(), key=lambda item: names.get(item[0] or 0, ""))
                    ],
                    "consensus": cons.majority(list(given.values())) if adj is None else adj.value,
                    "adjudicated": adj.value if adj is not None else None,
                    "adjudicated_by": names.get(adj.author_id, "") if adj is not None and adj.author_id else None,
                }
            )
    return {
        "project_id": project.id,
        "answers_per_window": project.answers_per_window,
        "overall": _figures(everything, names),
        "rounds": per_round,
        "disagreements": sorted(disagreements, key=lambda d: (-d["round"], d["query_id"])),
    }


ADJUDICATION_VALUES = ("anomaly", "normal", "unsure")


def adjudicate(session: Session, actor: User | None, project: Project, query: Query, value: str) -> Label:
    """An admin decides a window the analysts disagree on: a label row (source :data:`ADJUDICATOR`) over the window
    that wins the consensus, superseding an earlier adjudication (append-only)."""
    if value not in ADJUDICATION_VALUES:
        raise AppError(f"adjudicate with one of {', '.join(ADJUDICATION_VALUES)}, not {value!r}", status=422)
    if not several_answers(project):
        raise Conflict(
            f"project {project.name!r} takes one answer per window; adjudication decides between several answers"
        )
    rnd = repo.lock_round_for_write(session, query.round_id)
    assert rnd is not None
    read = query_rows(session, query.id)
    if not read.answers:
        raise Conflict("this window has no answer yet; adjudicate once the analysts have answered it")
    label = Label(
        project_id=project.id,
        series_id=query.series_id,
        start=query.start,
        end=query.end,
        value=value,
        source=ADJUDICATOR,
        author_id=actor.id if actor else None,
        round_id=query.round_id,
        query_id=query.id,
        supersedes_id=read.adjudication.id if read.adjudication is not None else None,
    )
    repo.add(session, label)
    audit(session, actor, "label.adjudicate", "query", query.id, round_id=query.round_id, value=value)
    return label


# -- entry points for the routes ------------------------------------------------------------------------------------


def _project(session: Session, project_id: int) -> Project:
    project = repo.get_project(session, project_id)
    if project is None:
        raise NotFound(f"no project with id {project_id}")
    return project


def project_agreement(session: Session, project_id: int) -> dict[str, Any]:
    """:func:`agreement` of a project (404 for an unknown one)."""
    project = _project(session, project_id)
    return agreement(session, project, repo.effective_labels(session, project.id))


def adjudicate_query(session: Session, actor: User | None, query_id: int, value: str) -> Label:
    """:func:`adjudicate` by query id (404 for an unknown query)."""
    query = repo.get_query(session, query_id)
    if query is None:
        raise NotFound(f"no query with id {query_id}")
    rnd = repo.get_round(session, query.round_id)
    assert rnd is not None
    return adjudicate(session, actor, _project(session, rnd.project_id), query, value)


def labels_for_viewer(
    session: Session,
    project: Project,
    labels: Sequence[Label],
    viewer: User | None,
    series_id: int,
    start: int,
    end: int,
) -> list[Label]:
    """What ``viewer``'s chart shades (``labels``: the labels in force overlapping ``[start, end)`` of
    ``series_id``). Several answers per window: the open round's windows show only the viewer's own answers, never
    another analyst's or the consensus, so that each answer is given independently (what agreement measures)."""
    if not several_answers(project):
        return list(labels)
    rnd = repo.active_round(session, project.id)
    if rnd is None or rnd.status != RoundStatus.OPEN:
        return list(labels)
    me = viewer.id if viewer else None
    kept = [lab for lab in labels if lab.round_id != rnd.id or lab.query_id is None]
    own = [
        lab
        for lab in repo.effective_labels(session, project.id, series_id=series_id, start=start, end=end)
        if lab.round_id == rnd.id and lab.query_id is not None and lab.author_id == me and lab.source == "analyst"
    ]
    return sorted(kept + own, key=lambda lab: (lab.created_at, lab.id or 0))


def set_review_grace(session: Session, actor: User | None, project_id: int, minutes: int) -> Project:
    """Change how long a fully answered round waits for review; a round already in review keeps its closing time."""
    project = _project(session, project_id)
    before = project.review_grace_minutes
    project.review_grace_minutes = minutes
    session.flush()
    audit(session, actor, "project.review_grace", "project", project.id, before=before, after=minutes)
    return project


def set_answers_per_window(session: Session, actor: User | None, project_id: int, n: int) -> Project:
    """Change how many analysts answer each window. Only between rounds: an open round's windows were asked, and
    some answered, under the old number (its consensus and its completion count on it)."""
    repo.lock_project_for_write(session, project_id)  # no round starts meanwhile
    project = _project(session, project_id)
    before = project.answers_per_window
    if n == before:
        return project
    active = repo.active_round(session, project.id)
    if active is not None and active.status == "open":
        raise Conflict(
            f"round {active.number} is open with {before} answer(s) per window; submit or finish it, then change "
            "the number of answers per window"
        )
    project.answers_per_window = n
    session.flush()
    audit(session, actor, "project.answers_per_window", "project", project.id, before=before, after=n)
    return project
