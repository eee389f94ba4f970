"""Every project, round, query and label query."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.orm import Session, aliased

from app.datasets.models import Series
from app.projects.models import Label, Project, Query, Round, project_series


def add(session: Session, obj: object) -> None:
    session.add(obj)
    session.flush()


def get_project(session: Session, project_id: int) -> Project | None:
    return session.get(Project, project_id)


def get_project_by_name(session: Session, name: str) -> Project | None:
    return session.scalar(select(Project).where(Project.name == name))


def list_projects(session: Session) -> list[Project]:
    return list(session.scalars(select(Project).order_by(Project.id)))


def project_ids_with_series(session: Session, series_id: int) -> set[int]:
    """The projects whose data include the series (one index lookup; loading each project's series is not needed)."""
    return set(session.scalars(select(project_series.c.project_id).where(project_series.c.series_id == series_id)))


def first_series(session: Session, project_id: int) -> Series | None:
    """The project's first series (by id): the one its model's channels and chunking were set up from."""
    return session.scalar(
        select(Series)
        .join(project_series, project_series.c.series_id == Series.id)
        .where(project_series.c.project_id == project_id)
        .order_by(Series.id)
        .limit(1)
    )


def get_round(session: Session, round_id: int, *, lock: bool = False) -> Round | None:
    q = select(Round).where(Round.id == round_id)
    if lock:
        q = q.with_for_update()  # serialises answers to one round on PostgreSQL; SQLite locks the whole file
    return session.scalar(q)


def list_rounds(session: Session, project_id: int) -> list[Round]:
    return list(session.scalars(select(Round).where(Round.project_id == project_id).order_by(Round.number)))


def last_round(session: Session, project_id: int) -> Round | None:
    return session.scalar(select(Round).where(Round.project_id == project_id).order_by(Round.number.desc()).limit(1))


ACTIVE_STATUSES = ("open", "complete", "training")
"""``app.projects.rounds.ACTIVE`` as plain strings (that module imports this one)."""


def project_and_active_round(session: Session, project_id: int) -> tuple[Project, Round | None] | None:
    """The project and its active round (:func:`active_round`) in one query; None when there is no such project.
    For the analysts' most frequent request (the next query), where each round trip counts on PostgreSQL."""
    row = session.execute(
        select(Project, Round)
        .outerjoin(Round, (Round.project_id == Project.id) & Round.status.in_(ACTIVE_STATUSES))
        .where(Project.id == project_id)
        .order_by(Round.number.desc())
        .limit(1)
    ).first()
    return None if row is None else (row[0], row[1])


def active_round(session: Session, project_id: int) -> Round | None:
    return session.scalar(
        select(Round)
        .where(Round.project_id == project_id, Round.status.in_(ACTIVE_STATUSES))
        .order_by(Round.number.desc())
        .limit(1)
    )


def set_round_status(session: Session, round_id: int, expected: tuple[str, ...], status: str, **values: object) -> bool:
    """Compare-and-set: only one of several concurrent callers moves a round out of ``expected``."""
    result = session.execute(
        update(Round)
        .where(Round.id == round_id, Round.status.in_(expected))
        .values(status=status, **values)
        .execution_options(synchronize_session=False)
    )
    return cast("CursorResult[Any]", result).rowcount == 1


def get_query(session: Session, query_id: int) -> Query | None:
    return session.get(Query, query_id)


def list_queries(session: Session, round_id: int) -> list[Query]:
    return list(session.scalars(select(Query).where(Query.round_id == round_id).order_by(Query.rank)))


def next_pending_query(session: Session, round_id: int) -> Query | None:
    return session.scalar(
        select(Query).where(Query.round_id == round_id, Query.status == "pending").order_by(Query.rank).limit(1)
    )


def pending_queries(session: Session, round_id: int) -> list[Query]:
    """The round's pending queries in rank order (with who holds each and until when)."""
    return list(
        session.scalars(select(Query).where(Query.round_id == round_id, Query.status == "pending").order_by(Query.rank))
    )


def claim_query(session: Session, query_id: int, user_id: int, now: datetime, until: datetime) -> bool:
    """Hand a pending query to ``user_id`` until ``until``, unless another user holds it past ``now``: one
    conditional UPDATE, so of two analysts claiming a window at once exactly one gets it (PostgreSQL re-reads the
    row after the first commits; SQLite runs one writer at a time). Whether this user holds it now."""
    result = cast(
        CursorResult[Any],
        session.execute(
            update(Query)
            .where(
                Query.id == query_id,
                Query.status == "pending",
                (Query.claimed_by_id.is_(None)) | (Query.claimed_by_id == user_id) | (Query.claimed_until <= now),
            )
            .values(claimed_by_id=user_id, claimed_until=until)
            .execution_options(synchronize_session=False)
        ),
    )
    return result.rowcount == 1


def count_pending(session: Session, round_id: int) -> int:
    return (
        session.scalar(select(func.count(Query.id)).where(Query.round_id == round_id, Query.status == "pending")) or 0
    )


def set_query_status(session: Session, query_id: int, expected: str, status: str, **values: object) -> bool:
    result = session.execute(
        update(Query)
        .where(Query.id == query_id, Query.status == expected)
        .values(status=status, **values)
        .execution_options(synchronize_session=False)
    )
    return cast("CursorResult[Any]", result).rowcount == 1


def count_answered_queries(session: Session, project_id: int) -> int:
    """Labels used: every answered query, oracle answers included (skips are free)."""
    return (
        session.scalar(
            select(func.count(Query.id))
            .join(Round, Round.id == Query.round_id)
            .where(Round.project_id == project_id, Query.status == "answered")
        )
        or 0
    )


def mark_query(session: Session, query_id: int, status: str, **values: object) -> None:
    """Set a query's status (and e.g. ``answered_at``) whatever it was: a second answer re-marks an answered one."""
    session.execute(
        update(Query)
        .where(Query.id == query_id)
        .values(status=status, **values)
        .execution_options(synchronize_session=False)
    )


def effective_labels(
    session: Session, project_id: int, *, series_id: int | None = None, start: int | None = None, end: int | None = None
) -> list[Label]:
    """The labels in force, oldest first: rows of the project that no later row supersedes (an undo or an edit adds
    a row pointing at the one it replaces) and that are not ``retracted``; optionally only those of ``series_id``
    overlapping points ``[start, end)``. One query: the superseded ids are an uncorrelated subquery over the
    project's rows (``NOT IN`` on a set, with the NULLs left out so that ``NOT IN`` means what it says)."""
    later = aliased(Label)
    superseded = select(later.supersedes_id).where(later.project_id == project_id, later.supersedes_id.is_not(None))
    q = select(Label).where(Label.project_id == project_id, Label.value != "retracted", Label.id.not_in(superseded))
    if series_id is not None:
        q = q.where(Label.series_id == series_id)
    if end is not None:
        q = q.where(Label.start < end)
    if start is not None:
        q = q.where(Label.end > start)
    return list(session.scalars(q.order_by(Label.id)))


def labels_for_query(session: Session, query_id: int) -> list[Label]:
    return list(session.scalars(select(Label).where(Label.query_id == query_id).order_by(Label.id)))


def labels_by_key(session: Session, key_prefix: str) -> list[Label]:
    return list(
        session.scalars(
            select(Label).where(Label.idempotency_key.startswith(key_prefix, autoescape=True)).order_by(Label.id)
        )
    )


def _take_sqlite_write_lock(session: Session, table, row_id: int) -> None:  # type: ignore[no-untyped-def]
    """On SQLite, start the transaction with a write (a no-op UPDATE of one row): the driver opens its transaction
    only at the first write, so this takes the database's write lock before anything is read, which is what
    ``BEGIN IMMEDIATE`` does. Reads that decide what to write then see every earlier commit, and a concurrent
    writer waits (busy timeout) instead of failing half-way. ``FOR UPDATE`` does nothing on SQLite."""
    if session.get_bind().dialect.name == "sqlite":
        session.execute(
            update(table).where(table.id == row_id).values(id=table.id).execution_options(synchronize_session=False)
        )


def lock_round_for_write(session: Session, round_id: int) -> Round | None:
    """The round, locked against concurrent answers until the transaction ends, on PostgreSQL (row lock) and on
    SQLite (database write lock); read after the lock is held, so its status is current."""
    _take_sqlite_write_lock(session, Round, round_id)
    return get_round(session, round_id, lock=True)


def lock_project_for_write(session: Session, project_id: int) -> Project | None:
    """The project row locked until the transaction ends (serialises free labels with one idempotency key)."""
    _take_sqlite_write_lock(session, Project, project_id)
    return session.scalar(select(Project).where(Project.id == project_id).with_for_update())


def get_label(session: Session, label_id: int) -> Label | None:
    return session.get(Label, label_id)


def superseding_label(session: Session, label_id: int) -> Label | None:
    """The row that replaced ``label_id`` (an edit, a delete, an undo or a second answer), or None while in force."""
    return session.scalar(select(Label).where(Label.supersedes_id == label_id).order_by(Label.id).limit(1))


def rounds_due_for_closing(session: Session, now: datetime, project_id: int | None = None) -> list[int]:
    """Ids of open rounds whose review grace period (``review_until``) is over (app.projects.review)."""
    q = select(Round.id).where(Round.status == "open", Round.review_until.is_not(None), Round.review_until <= now)
    if project_id is not None:
        q = q.where(Round.project_id == project_id)
    return list(session.scalars(q.order_by(Round.id)))
