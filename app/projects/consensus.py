"""Several analysts on one window: the consensus label training uses, and how much the analysts agree.

Pure functions on plain values (no database): :mod:`app.projects.review` reads the answers and calls these. The rule,
also in docs/ANNOTATORS.md:

- an analyst's answer to a window counts as ``anomaly`` when any of its ranges is anomalous, else ``normal`` when any
  is normal, else ``unsure`` (:func:`window_vote`);
- the consensus is the majority of the ``anomaly`` and ``normal`` votes; a tie (``unsure`` votes do not count, so
  also "everyone unsure") gives ``unsure``, which training ignores (:func:`majority`);
- an admin's adjudication wins over the votes;
- an ``anomaly`` consensus keeps the anomalous points that at least half (rounded up) of the anomaly voters marked
  (the union when that leaves none); the rest of the window is normal (:func:`consensus`).

Agreement: Cohen's κ for each pair of analysts over the windows both answered (scikit-learn's
``cohen_kappa_score``) and Krippendorff's α over every window answered by at least two (the ``krippendorff`` package,
nominal level); both on the window votes, ``unsure`` a category of its own.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations

import krippendorff
import numpy as np
from sklearn.metrics import cohen_kappa_score

VOTES = ("anomaly", "normal", "unsure")
"""What one analyst's answer to a window counts as, and what a consensus can be."""


@dataclass(frozen=True)
class Piece:
    """One labeled range ``[start, end)`` (points) of an answer, value ``anomaly`` / ``normal`` / ``unsure``."""

    start: int
    end: int
    value: str


@dataclass(frozen=True)
class Consensus:
    """The label a window gets from its answers: ``value`` (one of :data:`VOTES`), the ranges training uses
    (``pieces``: the whole window, or normal / anomalous / normal parts), the ``rule`` that decided it
    (``single``, ``majority``, ``tie`` or ``adjudicated``) and the vote count per value."""

    value: str
    pieces: tuple[Piece, ...]
    rule: str
    votes: dict[str, int] = field(default_factory=dict)


def window_vote(pieces: Sequence[Piece]) -> str:
    """An answer's vote on its window: ``anomaly`` if any range is anomalous, else ``normal`` if any is normal,
    else ``unsure``."""
    values = {p.value for p in pieces}
    if "anomaly" in values:
        return "anomaly"
    if "normal" in values:
        return "normal"
    return "unsure"


def majority(votes: Sequence[str]) -> str:
    """The majority of the ``anomaly`` and ``normal`` votes; ``unsure`` on a tie (``unsure`` votes are not counted,
    so all-unsure is a tie of 0 to 0)."""
    anomaly, normal = votes.count("anomaly"), votes.count("normal")
    if anomaly > normal:
        return "anomaly"
    if normal > anomaly:
        return "normal"
    return "unsure"


def consensus(answers: Sequence[Sequence[Piece]], start: int, end: int, adjudicated: str | None = None) -> Consensus:
    """The consensus of ``answers`` (one list of pieces per analyst) on the window ``[start, end)``; an
    ``adjudicated`` value (an admin's) wins. See the module docstring for the rule."""
    votes = [window_vote(a) for a in answers]
    counts = {v: votes.count(v) for v in VOTES}
    if adjudicated is not None:
        value, rule = adjudicated, "adjudicated"
    elif len(answers) == 1:
        value, rule = votes[0], "single"
    else:
        value = majority(votes)
        rule = "tie" if value == "unsure" and counts["anomaly"] == counts["normal"] else "majority"
    if rule == "single":
        return Consensus(value, tuple(answers[0]), rule, counts)
    if value != "anomaly":
        return Consensus(value, (Piece(start, end, value),), rule, counts)
    anomalous = [[(p.start, p.end) for p in a if p.value == "anomaly"] for a, v in zip(answers, votes, strict=True)]
    anomalous = [ranges for ranges in anomalous if ranges]
    return Consensus(value, _anomalous_parts(anomalous, start, end), rule, counts)


def _anomalous_parts(voters: list[list[tuple[int, int]]], start: int, end: int) -> tuple[Piece, ...]:
    """Window ``[start, end)`` split into normal / anomalous pieces: a point is anomalous when at least half (rounded
    up) of the anomaly voters marked it, or, when no point reaches that, when any did. No anomaly voter (an
    adjudicated anomaly nobody marked): the whole window."""
    if not voters:
        return (Piece(start, end, "anomaly"),)
    marks = np.zeros(end - start, dtype=np.int32)
    for ranges in voters:
        covered = np.zeros(end - start, dtype=bool)
        for a, b in ranges:
            covered[max(a, start) - start : max(min(b, end) - start, 0)] = True
        marks += covered
    flagged = marks >= math.ceil(len(voters) / 2)
    if not flagged.any():
        flagged = marks > 0
    if not flagged.any():  # ranges outside the window: the whole window
        return (Piece(start, end, "anomaly"),)
    pieces: list[Piece] = []
    edges = np.flatnonzero(np.diff(flagged.astype(np.int8))) + 1
    bounds = [0, *edges.tolist(), len(flagged)]
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        pieces.append(Piece(start + a, start + b, "anomaly" if flagged[a] else "normal"))
    return tuple(pieces)


# -- agreement ------------------------------------------------------------------------------------------------------


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Cohen's κ of two analysts' votes on the same windows (``a[i]`` and ``b[i]`` on window ``i``); None when it is
    undefined (no window, or both gave one and the same value everywhere: expected agreement 1)."""
    if len(a) != len(b):
        raise ValueError("the two analysts' votes must be on the same windows")
    if not a:
        return None
    labels = [v for v in VOTES if v in set(a) | set(b)]
    if len(labels) < 2:
        return None
    kappa = float(cohen_kappa_score(list(a), list(b), labels=labels))
    return None if math.isnan(kappa) else kappa


def krippendorff_alpha(units: Sequence[Mapping[Hashable, str]]) -> float | None:
    """Krippendorff's α (nominal) over windows, each a mapping analyst -> vote; windows with fewer than two votes
    carry no information and are left out. None when undefined (no such window, or a single value used at all)."""
    units = [u for u in units if len(u) >= 2]
    if not units:
        return None
    raters = sorted({r for u in units for r in u}, key=str)
    codes = {v: i for i, v in enumerate(VOTES)}
    data = np.full((len(raters), len(units)), np.nan)
    row = {r: i for i, r in enumerate(raters)}
    for j, unit in enumerate(units):
        for rater, vote in unit.items():
            data[row[rater], j] = codes[vote]
    if len(np.unique(data[~np.isnan(data)])) < 2:
        return None  # one value only: α is 0/0
    alpha = float(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"))
    return None if math.isnan(alpha) else alpha


@dataclass(frozen=True)
class PairAgreement:
    """Two analysts over the windows both answered: ``windows`` of them, the share with the same vote, κ."""

    a: Hashable
    b: Hashable
    windows: int
    observed: float | None
    kappa: float | None


def pair_agreements(units: Sequence[Mapping[Hashable, str]]) -> list[PairAgreement]:
    """Cohen's κ for every pair of analysts who answered at least one window in common, in analyst order."""
    raters = sorted({r for u in units for r in u}, key=str)
    out = []
    for a, b in combinations(raters, 2):
        both = [(u[a], u[b]) for u in units if a in u and b in u]
        if not both:
            continue
        va, vb = [x for x, _ in both], [y for _, y in both]
        observed = sum(x == y for x, y in both) / len(both)
        out.append(PairAgreement(a, b, len(both), observed, cohen_kappa(va, vb)))
    return out
