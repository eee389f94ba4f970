"""Windows of a round assigned to named analysts.

An admin who starts a round may name its analysts (``Round.assignee_ids``, in the order given). The round's windows
are then dealt to them in rank order, round-robin, each to as many of them as the project's answers per window (at
most all of them): with analysts A, B, C and one answer per window, ranks 1, 4, 7, … go to A, 2, 5, 8, … to B; with
two answers per window rank 1 goes to A and B, rank 2 to C and A, and so on. A round names at least as many
analysts as the project's answers per window (app.projects.service.start_round), so every window can complete.
The deal is a function of the round's list and its windows' ranks, so nothing per window is stored and every page
and request sees the same deal.

An assigned analyst's queue holds their windows only (``next-query`` and the labeling page); an analyst the round
does not name has nothing to do in it, and answering a window dealt to someone else is refused (403, naming whose it
is). Admins may answer any window — they stand in for an absent analyst — and see every window. A round without
named analysts works as before: anyone with the analyst role answers any window. The ground-truth oracle ignores
the deal. docs/ANNOTATORS.md tells users.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from app.accounts import repository as accounts_repo
from app.accounts.models import User
from app.accounts.service import usernames
from app.errors import AppError, Forbidden
from app.projects.models import Project, Query, Round

MAX_ASSIGNEES = 50


def deal(assignee_ids: Sequence[int], n_windows: int, per_window: int) -> list[list[int]]:
    """The analysts of each window, by rank position ``0 … n_windows - 1``: round-robin over ``assignee_ids``,
    ``min(per_window, len(assignee_ids))`` distinct analysts each (``[]`` per window when nobody is named)."""
    n = len(assignee_ids)
    if n == 0:
        return [[] for _ in range(n_windows)]
    k = max(1, min(per_window, n))
    return [[assignee_ids[(i * k + j) % n] for j in range(k)] for i in range(n_windows)]


def resolve(session: Session, names: Sequence[str]) -> list[int]:
    """User ids of ``names`` (each once, in the order given): active users with the analyst or admin role; 422
    naming every name that is not one."""
    wanted = list(dict.fromkeys(n.strip() for n in names if n.strip()))
    if len(wanted) > MAX_ASSIGNEES:
        raise AppError(f"assign a round to at most {MAX_ASSIGNEES} analysts (got {len(wanted)})", status=422)
    ids, wrong = [], []
    for name in wanted:
        user = accounts_repo.get_user_by_name(session, name)
        if user is None or not user.is_active or user.role not in ("analyst", "admin"):
            wrong.append(name[:60])
        else:
            ids.append(user.id)
    if wrong:
        raise AppError(
            f"cannot assign windows to {', '.join(map(repr, wrong))}: not an active analyst or admin",
            status=422,
            code="invalid_assignee",
        )
    return ids


def assigned(project: Project, rnd: Round, queries: Sequence[Query]) -> dict[int, list[int]]:
    """Per query id of ``rnd``: the user ids its window is dealt to (empty lists when the round names nobody).
    ``queries``: every query of the round (the deal follows their ranks)."""
    ids = list(rnd.assignee_ids or [])
    ordered = sorted(queries, key=lambda q: q.rank)
    return {q.id: who for q, who in zip(ordered, deal(ids, len(ordered), project.answers_per_window), strict=True)}


def is_dealt(rnd: Round) -> bool:
    return bool(rnd.assignee_ids)


def sees_every_window(rnd: Round, viewer: User | None) -> bool:
    """Whether ``viewer``'s queue holds every window of ``rnd``: a round without a deal, the oracle (None), or an
    admin the round does not name."""
    if not is_dealt(rnd) or viewer is None:
        return True
    return viewer.role == "admin" and viewer.id not in (rnd.assignee_ids or [])


def check_may_answer(
    session: Session, project: Project, rnd: Round, query: Query, queries: Sequence[Query], actor: User | None
) -> None:
    """403 when ``actor`` (an analyst) answers a window of a dealt round that is not theirs; admins and the oracle
    may answer any window."""
    if not is_dealt(rnd) or actor is None or actor.role == "admin" or project.oracle != "human":
        return
    owners = assigned(project, rnd, queries)[query.id]
    if actor.id not in owners:
        names = usernames(session)
        raise Forbidden(
            f"window {query.rank + 1} of round {rnd.number} is assigned to "
            f"{', '.join(names.get(i, f'user {i}') for i in owners)}; answer the windows in your own queue"
        )
