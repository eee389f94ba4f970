"""The round's state machine: its states, the moves between them, and the one function that moves a round.

```
open ──(submit or grace over)──▶ complete ──(a worker takes the retraining job)──▶ training ──▶ done
                                    ▲  ▲                                             │
                                    │  └──────────(job cancelled: back in the queue)──┤
                                    └──(retry)── failed ◀───────(the job failed)──────┘
```
Every other module reads :class:`RoundStatus` and moves rounds through :func:`move`; a database CHECK constraint
keeps the column to these values.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy.orm import Session

from app.projects import repository as repo


class RoundStatus(StrEnum):
    OPEN = "open"
    """Queries are being answered; once all are, the round is in review (``review_until`` set: answers can still
    change) until submitted or its grace period is over (app.projects.review), or closes at once (grace 0, oracle)."""
    COMPLETE = "complete"
    """Every query answered; the retraining job is queued."""
    TRAINING = "training"
    """A worker is training the round's version."""
    DONE = "done"
    """The round's version is stored (serving or not)."""
    FAILED = "failed"
    """The retraining job failed; a retry puts the round back to ``complete``."""


TRANSITIONS: dict[RoundStatus, frozenset[RoundStatus]] = {
    RoundStatus.OPEN: frozenset({RoundStatus.COMPLETE}),
    RoundStatus.COMPLETE: frozenset({RoundStatus.TRAINING, RoundStatus.DONE, RoundStatus.FAILED}),
    RoundStatus.TRAINING: frozenset({RoundStatus.DONE, RoundStatus.FAILED, RoundStatus.COMPLETE}),
    RoundStatus.FAILED: frozenset({RoundStatus.TRAINING, RoundStatus.COMPLETE}),
    RoundStatus.DONE: frozenset(),
}
ACTIVE = (RoundStatus.OPEN, RoundStatus.COMPLETE, RoundStatus.TRAINING)
"""A project has at most one round in these states; a new round starts only when none is."""


def move(
    session: Session, round_id: int, sources: tuple[RoundStatus, ...], target: RoundStatus, **values: object
) -> bool:
    """Compare-and-set a round from one of ``sources`` to ``target`` (each move must be in :data:`TRANSITIONS`).
    Returns whether this caller moved it: of several concurrent callers exactly one does."""
    illegal = [s for s in sources if target not in TRANSITIONS[s]]
    if illegal:
        raise ValueError(f"a round cannot move from {', '.join(illegal)} to {target}")
    return repo.set_round_status(session, round_id, tuple(str(s) for s in sources), str(target), **values)
