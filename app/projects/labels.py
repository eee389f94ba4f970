"""Editing and deleting labels, append-only: an edit is a new row that supersedes the old one, a delete a new
``retracted`` row that supersedes it. Nothing is updated in place and the old row stays (the label's history).

Who may: the label's author or an admin (an oracle's label has no author: admins only). A label that a later row
has already replaced (an edit, a delete, an undo, a second answer) cannot be changed again: 409, naming the row in
force. The new row keeps the old one's round and query, so a query's answer stays one answer; its author is the
one who made the change (each row says who wrote it; the audit log has the rest).

Sits above :mod:`app.projects.service` in the domain's layers (it reads projects and labels in force through it);
services take a session and never commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from app.accounts.models import User
from app.accounts.service import audit, usernames
from app.errors import AppError, Conflict, Forbidden, NotFound
from app.projects import repository as repo
from app.projects import review, service
from app.projects.models import COMMENT_CHARS, LABEL_TYPE_CHARS, Label
from app.schemas_common import UtcDateTime


class LabelEdit(BaseModel):
    """The body of ``PATCH /api/v1/labels/{id}``: only the fields given change. ``label_type`` and ``comment`` set
    to null (or "") clear them; a type belongs to anomalous ranges only, and changing the value away from
    ``anomaly`` drops it."""

    value: Literal["anomaly", "normal", "unsure"] | None = None
    start: int | None = Field(None, ge=0, description="first point (inclusive)")
    end: int | None = Field(None, ge=1, description="last point (exclusive)")
    label_type: str | None = Field(None, max_length=LABEL_TYPE_CHARS, description="one of the project's types")
    comment: str | None = Field(None, max_length=COMMENT_CHARS)


@dataclass
class LabelRow:
    """A label in force as the explorer lists it: the row plus its author's name."""

    id: int
    project_id: int
    series_id: int
    start: int
    end: int
    value: str
    label_type: str | None
    comment: str | None
    source: str
    author_id: int | None
    author: str
    round_id: int | None
    query_id: int | None
    supersedes_id: int | None
    created_at: UtcDateTime


def series_labels(session: Session, project_id: int, series_id: int) -> list[LabelRow]:
    """The labels in force of ``project_id`` on ``series_id``, oldest first, with their authors' names."""
    project = service.get_project(session, project_id)
    if series_id not in {s.id for s in project.series}:
        raise NotFound(f"series {series_id} is not part of project {project.name!r}")
    users = usernames(session)
    return [_row(lab, users) for lab in service.effective_labels(session, project.id, series_id=series_id)]


def label_history(session: Session, label_id: int) -> list[LabelRow]:
    """Every row of one label's history, oldest first: the rows it superseded, itself, and the rows that replaced
    it (the last one is in force unless its value is ``retracted``)."""
    label = _get(session, label_id)
    users = usernames(session)
    chain = [label]
    while chain[0].supersedes_id is not None:
        older = repo.get_label(session, chain[0].supersedes_id)
        if older is None:
            break
        chain.insert(0, older)
    while (newer := repo.superseding_label(session, chain[-1].id)) is not None:
        chain.append(newer)
    return [_row(lab, users) for lab in chain]


def edit_label(session: Session, actor: User | None, label_id: int, changes: LabelEdit, *, is_admin: bool) -> LabelRow:
    """Change a label's value, range, type or comment: a new row superseding ``label_id`` (returned). An edit that
    changes nothing writes nothing and returns the label as it is."""
    given = changes.model_fields_set
    if not given:
        raise AppError("nothing to change: give value, start, end, label_type or comment", status=422)
    old = _lock_for_change(session, actor, label_id, is_admin)
    project = service.get_project(session, old.project_id)
    series = next(s for s in project.series if s.id == old.series_id)
    start = changes.start if "start" in given and changes.start is not None else old.start
    end = changes.end if "end" in given and changes.end is not None else old.end
    if not 0 <= start < end <= series.n_points:
        raise AppError(
            f"range [{start}, {end}) is not inside the series (0..{series.n_points}) with start < end", status=422
        )
    value = changes.value if "value" in given and changes.value is not None else old.value
    if "label_type" in given:
        label_type = (changes.label_type or "").strip() or None
    else:  # a type describes an anomaly: it goes when the range no longer is one
        label_type = old.label_type if value == "anomaly" else None
    label_type = service.checked_type(label_type, value, list(project.anomaly_types or [])) or None
    comment = ((changes.comment or "").strip() or None) if "comment" in given else old.comment
    if (start, end, value, label_type, comment) == (old.start, old.end, old.value, old.label_type, old.comment):
        return describe(session, old)
    new = _successor(old, actor, start, end, value, label_type, comment)
    repo.add(session, new)
    audit(
        session,
        actor,
        "label.edit",
        "label",
        old.id,
        project_id=old.project_id,
        new_label_id=new.id,
        range=[start, end],
        value=value,
    )
    return describe(session, new)


def delete_label(session: Session, actor: User | None, label_id: int, *, is_admin: bool) -> LabelRow:
    """Take a label out of force: a ``retracted`` row superseding ``label_id`` (returned); the old row stays."""
    old = _lock_for_change(session, actor, label_id, is_admin)
    new = _successor(old, actor, old.start, old.end, "retracted", None, None)
    repo.add(session, new)
    reopened = _reopen_query(session, old)
    audit(
        session,
        actor,
        "label.delete",
        "label",
        old.id,
        project_id=old.project_id,
        new_label_id=new.id,
        reopened_query_id=reopened,
    )
    return describe(session, new)


def _reopen_query(session: Session, deleted: Label) -> int | None:
    """A queue answer deleted from the explorer while its round is open counts as undone: when none of that
    analyst's ranges for the window is left in force, the window is asked again (as the queue's Undo does) and the
    round's review clock stops. Returns the query's id when its status changed. In a closed round the answer stays
    counted; the deletion only takes its label out of training."""
    if deleted.query_id is None or deleted.round_id is None:
        return None
    rnd = repo.get_round(session, deleted.round_id)  # locked by _lock_for_change
    query = repo.get_query(session, deleted.query_id)
    if rnd is None or rnd.status != "open" or query is None or query.status == "pending":
        return None
    session.flush()
    project = service.get_project(session, rnd.project_id)
    answers = review.query_rows(session, query.id).answers
    if deleted.author_id in answers or (answers and not review.several_answers(project)):
        return None  # other ranges of the answer are still in force: the window stays answered
    before = query.status
    return query.id if review.settle_query(session, project, query, rnd.id) != before else None


def describe(session: Session, label: Label) -> LabelRow:
    """One label row with its author's name."""
    return _row(label, usernames(session))


def _get(session: Session, label_id: int) -> Label:
    label = repo.get_label(session, label_id)
    if label is None:
        raise NotFound(f"no label with id {label_id}")
    return label


def _lock_for_change(session: Session, actor: User | None, label_id: int, is_admin: bool) -> Label:
    """The label, checked to be changeable by ``actor`` and still in force, with its round (a queue's answers are
    serialised on it) and its project (edits are) locked until the transaction ends, so two concurrent changes of
    one label give one new row and a 409, never two rows in force."""
    label = _get(session, label_id)
    if not is_admin and (actor is None or label.author_id != actor.id):
        owner = usernames(session).get(label.author_id, "") if label.author_id else ""
        who = f"its author ({owner})" if owner else "an admin (no analyst wrote it)"
        raise Forbidden(f"label {label_id} can be changed only by {who} or an admin")
    if label.round_id is not None:
        repo.lock_round_for_write(session, label.round_id)
    repo.lock_project_for_write(session, label.project_id)
    if label.value == "retracted":
        raise Conflict(f"label {label_id} is a deletion record; change the label in force instead")
    newer = repo.superseding_label(session, label_id)  # read after the locks: earlier changes have committed
    if newer is not None:
        what = "deleted" if newer.value == "retracted" else f"replaced by label {newer.id}"
        raise Conflict(f"label {label_id} was already {what}; reload the labels and change the one in force")
    return label


def _successor(
    old: Label, actor: User | None, start: int, end: int, value: str, label_type: str | None, comment: str | None
) -> Label:
    return Label(
        project_id=old.project_id,
        series_id=old.series_id,
        start=start,
        end=end,
        value=value,
        source="analyst",
        author_id=actor.id if actor else None,
        round_id=old.round_id,
        query_id=old.query_id,
        supersedes_id=old.id,
        label_type=label_type,
        comment=comment,
    )


def _row(label: Label, users: dict[int, str]) -> LabelRow:
    return LabelRow(
        id=label.id,
        project_id=label.project_id,
        series_id=label.series_id,
        start=label.start,
        end=label.end,
        value=label.value,
        label_type=label.label_type,
        comment=label.comment,
        source=label.source,
        author_id=label.author_id,
        author=users.get(label.author_id, "") if label.author_id else "",
        round_id=label.round_id,
        query_id=label.query_id,
        supersedes_id=label.supersedes_id,
        # stored as UTC; SQLite hands it back naive, and an API date-time carries its offset (RFC 3339)
        created_at=label.created_at if label.created_at.tzinfo else label.created_at.replace(tzinfo=UTC),
    )
