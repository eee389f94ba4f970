"""Project use cases: create, start rounds, answer queries, undo, complete rounds.

Services take a session and never commit; the caller's scope does, and only then enqueues the jobs a call returns
(Celery's rule: commit before enqueueing). Training itself lives in :mod:`app.versions.service`.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pandas as pd
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.accounts.models import User
from app.accounts.service import audit, usernames
from app.core.detectors import available_detectors, detector_class, load_detector, make_detector
from app.core.loop import (
    UNCERTAINTY_STRATEGIES,
    PoolState,
    SeriesPool,
    plan_round,
    truth_answer,
    warmup_candidates,
)
from app.core.loop import Query as CoreQuery
from app.core.query import available_strategies
from app.core.windows import LabeledRange, n_windows
from app.datasets import repository as datasets_repo
from app.datasets import service as datasets
from app.datasets.models import Series
from app.db import utcnow
from app.errors import AppError, Conflict, NotFound
from app.jobs import service as jobs
from app.projects import assignment, review
from app.projects import repository as repo
from app.projects.models import Label, Project, Query, Round
from app.projects.rounds import RoundStatus
from app.projects.schemas import ProjectCreate
from app.schemas_common import utc_text
from app.versions import repository as versions_repo
from app.versions.models import ModelVersion

USABLE = ("anomaly", "normal")  # label values a model trains on; unsure and retracted are kept but not used


# -- data ---------------------------------------------------------------------------------------------------------


def pool_points(project: Project | ProjectCreate, n_points: int) -> int:
    """Points of a series that analysts may be asked about: all but the held-back tail."""
    return max(int(project.window or 0), int(round(n_points * (1.0 - project.holdout_fraction))))


def pool_state(session: Session, project: Project) -> PoolState:
    """The project as the core loop sees it: its series' pools, the labels in force, the budget and the seed."""
    series = [SeriesPool(s.id, s.n_points, pool_points(project, s.n_points)) for s in project.series]
    index = {s.id: i for i, s in enumerate(project.series)}
    labels: list[list[LabeledRange]] = [[] for _ in series]
    for label in effective_labels(session, project.id):
        if label.value in USABLE and label.series_id in index:
            labels[index[label.series_id]].append(LabeledRange(label.start, label.end, int(label.value == "anomaly")))
    return PoolState(
        series,
        project.window,
        project.stride,
        budget=project.budget,
        answers=labels_used(session, project.id),
        seed=project.seed,
        labels=labels,
    )


def model_input(session: Session, series: Series, end: int | None = None) -> np.ndarray:
    """Values ready for a model: ``(n, C)`` float32 with gaps (``--fill keep``) carried forward, then backward."""
    values = datasets.read_values(session, series, 0, end)
    if np.isnan(values).any():
        values = pd.DataFrame(values).ffill().bfill().fillna(0.0).to_numpy(np.float32)
    return values


def load_pool(session: Session, project: Project, state: PoolState | None = None) -> tuple[np.ndarray, PoolState]:
    """The pool of every series concatenated, ``(sum of pool points, C)``, and the pool state; models fit and learn
    on this."""
    state = state or pool_state(session, project)
    arrays = [model_input(session, s, p.pool_end) for s, p in zip(project.series, state.series, strict=True)]
    return np.concatenate(arrays), state


# -- projects -----------------------------------------------------------------------------------------------------


def get_project(session: Session, project_id: int) -> Project:
    project = repo.get_project(session, project_id)
    if project is None:
        raise NotFound(f"no project with id {project_id}")
    return project


def scored_series(session: Session, project: Project, series_id: int) -> Series:
    """A series the project's model may score and serve: one of the project's series, or any series of its data set
    (a series imported into the data set after the model trained is scored on first request). Labeling rounds plan
    on the project's own series only."""
    series = next((s for s in project.series if s.id == series_id), None)
    if series is None:
        found = datasets_repo.get_series(session, series_id)
        if found is not None and found.dataset_id == project.dataset_id:
            series = found
    if series is None:
        raise NotFound(f"series {series_id} is neither part of project {project.name!r} nor of its data set")
    return series


def detector_choices() -> dict[str, tuple[str, dict[str, Any]]]:
    """What the "New project" form offers: name -> (one line of help, starting parameters), read from each
    detector's ``summary`` and ``starter_params``; the ensemble first (the default), then by name."""
    classes = {name: detector_class(name) for name in available_detectors()}
    offered = {n: (c.summary, dict(c.starter_params)) for n, c in classes.items() if c.summary}
    return dict(sorted(offered.items(), key=lambda item: (item[0] != "ensemble", item[0])))


def create_project(session: Session, actor: User | None, spec: ProjectCreate) -> tuple[Project, int]:
    """Create a project and its initial-fit job; returns ``(project, job id)`` — enqueue the job after commit."""
    if spec.detector not in available_detectors():
        raise AppError(f"unknown detector {spec.detector!r}; choose one of {', '.join(available_detectors())}")
    cls = detector_class(spec.detector)  # its defaults fill what the admin left open
    spec = spec.model_copy(
        update={"window": spec.window or cls.default_window, "strategy": spec.strategy or cls.default_strategy}
    )
    assert spec.window is not None  # filled just above
    if spec.stride > spec.window:
        raise AppError(f"stride {spec.stride} must not exceed the window of {spec.window} points")
    if spec.strategy not in available_strategies():
        raise AppError(f"unknown strategy {spec.strategy!r}; choose one of {', '.join(available_strategies())}")
    dataset = datasets_repo.get_dataset(session, spec.dataset_id)
    if dataset is None:
        raise NotFound(f"no data set with id {spec.dataset_id}")
    if repo.get_project_by_name(session, spec.name.strip()) is not None:
        raise Conflict(f"a project named {spec.name.strip()!r} already exists")
    series = list(dataset.series)
    if spec.series_ids is not None:
        wanted = set(spec.series_ids)
        series = [s for s in series if s.id in wanted]
        missing = wanted - {s.id for s in series}
        if missing:
            raise AppError(f"series {sorted(missing)} are not in data set {dataset.name!r}")
    if not series:
        raise AppError(f"data set {dataset.name!r} has no series to work on")
    short = [s.name for s in series if min(s.n_points, pool_points(spec, s.n_points)) < 2 * spec.window]
    if short:
        raise AppError(f"series {short} are too short for windows of {spec.window} points")
    if spec.oracle == "ground_truth" and not all(s.has_ground_truth for s in series):
        raise AppError("the ground-truth oracle needs series imported with a label column")
    _check_detector_params(spec)
    project = Project(
        name=spec.name.strip(),
        dataset_id=dataset.id,
        detector=spec.detector,
        detector_params=spec.detector_params,
        window=spec.window,
        stride=spec.stride,
        strategy=spec.strategy,
        strategy_params=spec.strategy_params,
        round_size=spec.round_size,
        budget=spec.budget,
        auto_next=spec.auto_next,
        oracle=spec.oracle,
        threshold_method=spec.threshold_method,
        holdout_fraction=spec.holdout_fraction,
        seed=spec.seed,
        adoption_policy=spec.adoption_policy,
        max_flag_share=spec.max_flag_share,
        anomaly_types=list(spec.anomaly_types),
        answers_per_window=spec.answers_per_window,
        review_grace_minutes=spec.review_grace_minutes,
        created_by=actor.id if actor else None,
    )
    project.series = series
    repo.add(session, project)
    job = jobs.create_job(session, "fit", project_id=project.id, dedupe_key=f"fit:{project.id}")
    audit(session, actor, "project.create", "project", project.id, detector=spec.detector, strategy=spec.strategy)
    return project, job.id


def update_anomaly_types(session: Session, actor: User | None, project_id: int, anomaly_types: list[str]) -> Project:
    """Set the types an anomalous range may carry (the schema checked names and count). Labels already stored keep
    their type, also one no longer offered: the exports and the explorer still show it."""
    project = get_project(session, project_id)
    before = list(project.anomaly_types)
    project.anomaly_types = list(anomaly_types)
    session.flush()
    audit(session, actor, "project.anomaly_types", "project", project.id, before=before, after=list(anomaly_types))
    return project


def _check_detector_params(spec: ProjectCreate) -> None:
    try:
        make_detector(
            spec.detector, window=spec.window, stride=spec.stride, seed=spec.seed, device="cpu", **spec.detector_params
        )
    except (TypeError, ValueError) as exc:
        raise AppError(f"detector parameters: {exc}") from None


# -- labels -------------------------------------------------------------------------------------------------------


def effective_labels(
    session: Session, project_id: int, series_id: int | None = None, start: int | None = None, end: int | None = None
) -> list[Label]:
    """Labels in force: not superseded by a later row (an undo or an edit) and not retracted, oldest first;
    optionally only those of ``series_id`` overlapping points ``[start, end)``. One SQL query
    (:func:`app.projects.repository.effective_labels`). With several answers per window, each query's answers
    are replaced by their consensus (:func:`app.projects.review.consensus_labels`): what training reads."""
    project = get_project(session, project_id)
    if not review.several_answers(project):
        return review.consensus_labels(
            project, repo.effective_labels(session, project_id, series_id=series_id, start=start, end=end)
        )
    # a query's answers are read whole before the consensus, then the range filter applies to the result
    labels = review.consensus_labels(project, repo.effective_labels(session, project_id, series_id=series_id))
    return [lab for lab in labels if (end is None or lab.start < end) and (start is None or lab.end > start)]


def round_answers(
    session: Session, project: Project, state: PoolState, round_id: int
) -> list[tuple[CoreQuery, list[LabeledRange]]]:
    """The answers in force to a round's queries, as the core validates a candidate on them: each query as a core
    :class:`~app.core.loop.Query` (series index, window, points) with its anomaly/normal ranges."""
    index = {s.key: i for i, s in enumerate(state.series)}
    by_query: dict[int, list[LabeledRange]] = {}
    for label in effective_labels(session, project.id):
        if label.round_id == round_id and label.query_id is not None and label.value in USABLE:
            by_query.setdefault(label.query_id, []).append(
                LabeledRange(label.start, label.end, int(label.value == "anomaly"))
            )
    out = []
    for q in repo.list_queries(session, round_id):
        if q.id in by_query and q.series_id in index:
            core = CoreQuery(
                q.start // project.stride, q.start, q.end, "", q.rank, float(q.score or 0.0), series=index[q.series_id]
            )
            out.append((core, by_query[q.id]))
    return out


def labels_used(session: Session, project_id: int) -> int:
    return repo.count_answered_queries(session, project_id)


# -- rounds -------------------------------------------------------------------------------------------------------


@dataclass
class RoundStarted:
    round: Round
    job_ids: list[int]  # jobs to enqueue after commit (a ground-truth round completes at once)


def start_round(
    session: Session,
    actor: User | None,
    project_id: int,
    strategy: str | None = None,
    k: int | None = None,
    assignees: Sequence[str] | None = None,
) -> RoundStarted:
    """Plan the next round (:func:`app.core.loop.plan_round`) on the serving version's stored scores, within the
    remaining budget, and persist its queries. The serving version is also the one the round's retraining refines.
    ``assignees``: usernames its windows are dealt to (:mod:`app.projects.assignment`); none: anyone answers."""
    project = get_project(session, project_id)
    assignee_ids = assignment.resolve(session, assignees or [])
    if assignee_ids and project.oracle != "human":
        raise AppError("a ground-truth project's rounds are answered by the oracle: assign no analyst", status=422)
    if 0 < len(assignee_ids) < project.answers_per_window:
        raise AppError(
            f"each window needs {project.answers_per_window} answers: name at least that many analysts "
            f"(or none, and anyone answers)",
            status=422,
        )
    closed = review.close_overdue_rounds(session, project.id)  # a round whose review time is over closes first
    active = repo.active_round(session, project.id)
    if active is not None:
        hint = " (submit it in the labeling queue)" if active.status == RoundStatus.OPEN and active.review_until else ""
        raise Conflict(f"round {active.number} is still {active.status}{hint}; finish it before starting another")
    version = versions_repo.serving_or_latest(session, project)
    if version is None:
        raise Conflict("the initial model is not trained yet; wait for the fit job to finish")
    strategy = strategy or project.strategy
    if strategy not in available_strategies():
        raise AppError(f"unknown strategy {strategy!r}; choose one of {', '.join(available_strategies())}")
    state = pool_state(session, project)
    k = min(k or project.round_size, state.remaining)
    if k <= 0:
        raise Conflict(f"the label budget of {project.budget} windows is spent")
    last = repo.last_round(session, project.id)
    number = (last.number if last else 0) + 1
    picks = plan_queries(session, project, version, state, strategy, k, number)
    if not picks:
        raise Conflict("no unlabeled window is left to ask about")
    rnd = Round(
        project_id=project.id,
        number=number,
        strategy=strategy,
        k=len(picks),
        status=RoundStatus.OPEN,
        started_by=actor.id if actor else None,
        source_version_id=version.id,
        assignee_ids=assignee_ids or None,
    )
    repo.add(session, rnd)
    for q in picks:
        session.add(
            Query(
                round_id=rnd.id,
                series_id=state.series[q.series].key,
                start=q.start,
                end=q.end,
                rank=q.rank,
                score=q.score,
                margin=q.margin,
                reason=q.reason[:300],
            )
        )
    session.flush()
    audit(
        session,
        actor,
        "round.start",
        "round",
        rnd.id,
        project_id=project.id,
        number=number,
        strategy=strategy,
        k=len(picks),
        assignees=assignee_ids,
    )
    job_ids = list(closed)
    if project.oracle == "ground_truth":
        job_ids += answer_round_from_ground_truth(session, project, rnd)
        session.refresh(rnd)  # the round moved on in SQL (complete): answer with its state now
    return RoundStarted(rnd, job_ids)


def plan_queries(
    session: Session, project: Project, version: ModelVersion, state: PoolState, strategy: str, k: int, number: int
) -> list[CoreQuery]:
    """Load what the core planner needs from storage — the version's window scores (margins and drivers where the
    detector has them; RLAD's warm-up candidates before any label) — and plan the round."""
    cls = detector_class(project.detector)
    chunk = max(1, project.series[0].chunk_points)

    def stored(kind: str) -> list[np.ndarray] | None:
        out = []
        for s in state.series:
            n_win = n_windows(s.n_points, project.window, project.stride)
            series_id = cast(int, s.key)  # the product keys the pool's series by their id
            arr = versions_repo.read_scores(session, version.id, series_id, kind, 0, n_win, chunk)
            if len(arr) != n_win:
                return None
            out.append(arr)
        return out

    scores = stored("window")
    if scores is None:
        raise Conflict(f"model version {version.id} has no window scores for every series of the project")
    margins = stored("margin") if strategy in UNCERTAINTY_STRATEGIES and cls.provides_margins else None
    drivers = stored("driver") if cls.explains_windows else None
    warmup: list[tuple[int, int]] = []
    if cls.asks_warmup and not state.has_labels:
        detector = load_detector(versions_repo.weights_of(session, version.id))
        pools = [model_input(session, s, p.pool_end) for s, p in zip(project.series, state.series, strict=True)]
        warmup = warmup_candidates(detector, pools)
    return plan_round(
        state,
        scores,
        strategy,
        k,
        number,
        margins=margins,
        warmup=warmup,
        drivers=drivers,
        member_names=(version.metrics or {}).get("member_names", ()),
        options=dict(project.strategy_params),
    )


def answer_round_from_ground_truth(session: Session, project: Project, rnd: Round) -> list[int]:
    """The ground-truth oracle answers every query of ``rnd`` exactly as the bench's oracle does
    (:func:`app.core.loop.truth_answer` with the detector's ``answer_mode``); each answer counts one label."""
    mode = detector_class(project.detector).answer_mode
    for query in repo.list_queries(session, rnd.id):
        series = datasets.get_series(session, query.series_id)
        truth = datasets.read_truth(session, series, query.start, query.end)
        if truth is None:
            raise AppError(f"series {series.name!r} has no ground truth for the oracle")
        for r in truth_answer(truth, query.start, query.end, mode):
            session.add(
                Label(
                    project_id=project.id,
                    series_id=series.id,
                    start=r.start,
                    end=r.end,
                    value="anomaly" if r.value == 1 else "normal",
                    source="oracle",
                    round_id=rnd.id,
                    query_id=query.id,
                )
            )
        repo.set_query_status(session, query.id, "pending", "answered", answered_at=utcnow())
    session.flush()
    return complete_round_if_done(session, rnd.id)


def complete_round_if_done(session: Session, round_id: int) -> list[int]:
    """When no query is pending, move the round to ``complete`` exactly once and create its retraining job (returns
    the jobs to enqueue after commit: the retraining job and the ``round.completed`` webhooks) — at once for ground
    truth or a review grace of 0; else the round stays open for review until submitted or its grace period is over
    (:func:`app.projects.review.after_answers`)."""
    return review.after_answers(session, round_id)


# -- answers ------------------------------------------------------------------------------------------------------


@dataclass
class AnswerResult:
    query: Query
    labels: list[Label]
    duplicate: bool
    round: Round
    answered: int
    total: int
    next_query: Query | None
    job_ids: list[int]


@dataclass(frozen=True)
class AnsweredRange:
    """One labeled range of an answer: points ``[start, end)`` (``end`` clamped to the series), ``value`` anomaly,
    normal or unsure, an anomaly ``label_type`` from the project's ``anomaly_types`` and a ``comment``."""

    start: int
    end: int
    value: str = "anomaly"
    label_type: str | None = None
    comment: str | None = None


Piece = tuple[int, int, str, str, str]
"""A label row an answer stores: ``(start, end, value, label_type or "", comment or "")`` (sortable: no None)."""

RANGE_REACH = 20_000
"""Labeled ranges may reach this many points beyond the queried window (the labeling page shows at most 20,000
points around it: static/js/view.js LABEL_MAX_SPAN)."""


def answer_query(
    session: Session,
    actor: User | None,
    query_id: int,
    value: str,
    anomaly_range: tuple[int, int] | None = None,
    idempotency_key: str | None = None,
    *,
    ranges: Sequence[AnsweredRange] | None = None,
    label_type: str | None = None,
    comment: str | None = None,
) -> AnswerResult:
    """Store an analyst's answer at once: the whole window (``value``, with an anomaly's ``label_type`` and a
    ``comment``), or labeled ``ranges`` (which may reach into the context shown around the window) with ``value``
    for the window's points no range covers (:func:`_answer_pieces`).

    A retried request with the same ``idempotency_key`` (scoped to the
    caller and to answering) returns what was stored the first time and writes nothing; the same key with a
    different answer is refused (422). A second answer to the same query supersedes the first.

    Concurrent answers to one round are serialised by :func:`repo.lock_round_for_write` (a row lock on PostgreSQL,
    the write lock taken first on SQLite, like ``BEGIN IMMEDIATE``): each reads the answers in force after the
    previous one committed, so exactly one answer is in force per query however many arrive at once; once the
    last query of the round is answered, later ones get 409 (the round is complete)."""
    query = repo.get_query(session, query_id)
    if query is None:
        raise NotFound(f"no query with id {query_id}")
    key = _scoped_key(actor, "answer", idempotency_key) if idempotency_key else None
    if not key or not (repo.labels_by_key(session, key + ":") or repo.labels_by_key(session, key + "!")):
        review.refuse_if_answered_by_another(session, query, actor)  # a retry of a stored answer is answered below
    rnd = repo.lock_round_for_write(session, query.round_id)
    assert rnd is not None
    pieces = _answer_pieces(session, query, rnd.project_id, value, anomaly_range, ranges, label_type, comment)
    if key:
        existing = repo.labels_by_key(session, key + ":")
        skipped = repo.labels_by_key(session, key + "!")
        if existing or skipped:
            stored = "skip" if skipped else sorted(_piece_of(lab) for lab in existing)
            wanted = "skip" if value == "skip" else sorted(pieces)
            if (existing or skipped)[0].query_id != query.id or stored != wanted:
                raise AppError(
                    "this idempotency key was already used for a different answer; send a new key for a new answer",
                    status=422,
                )
            return _result(session, query, rnd, existing, duplicate=True, job_ids=[], actor=actor)
    if rnd.status != "open":
        raise Conflict(f"round {rnd.number} is {rnd.status}; its answers can no longer change")
    project = get_project(session, rnd.project_id)
    if assignment.is_dealt(rnd):  # a window dealt to other analysts is not this analyst's to answer (403)
        assignment.check_may_answer(session, project, rnd, query, repo.list_queries(session, rnd.id), actor)
    # what this answer replaces: the one in force, or (several answers per window) this analyst's own; 409 when
    # another analyst answered meanwhile (app.projects.review)
    previous = review.answer_to_replace(session, project, query, actor)
    labels: list[Label] = []
    if value == "skip":
        # a marker row says who skipped (another analyst is then told, app.projects.review); its key, that a retried
        # skip is recognised
        marker = f"{key}!" if key else None
        labels.append(_label(query, rnd, actor, query.start, query.end, "retracted", marker, supersedes=None))
        status = "skipped"
    else:
        for i, (a, b, v, kind, note) in enumerate(pieces):
            labels.append(
                _label(
                    query,
                    rnd,
                    actor,
                    a,
                    b,
                    v,
                    f"{key}:{i}" if key else None,
                    supersedes=previous[i].id if i < len(previous) else None,
                    label_type=kind or None,
                    comment=note or None,
                )
            )
        status = "answered"
    # older answers not superseded one-to-one are retracted explicitly, so nothing is silently lost or left in force
    for old in previous[len(labels) :] if value != "skip" else previous:
        session.add(_label(query, rnd, actor, old.start, old.end, "retracted", None, supersedes=old.id))
    for lab in labels:
        session.add(lab)
    try:
        session.flush()
    except IntegrityError:  # a concurrent retry with the same key won the race (not reachable while locked)
        raise Conflict("this answer is being saved by another request; retry to get its result") from None
    status = review.query_status(session, project, query, status)  # several answers: done once enough analysts are
    repo.mark_query(session, query.id, status, answered_at=utcnow() if status != "pending" else None)
    session.expire(query)
    audit(
        session,
        actor,
        f"label.{value}",
        "query",
        query.id,
        round_id=rnd.id,
        range=list(anomaly_range) if anomaly_range else None,
        ranges=[[p[0], p[1], p[2]] for p in pieces] if ranges else None,
    )
    job_ids = complete_round_if_done(session, rnd.id)
    session.refresh(rnd)
    return _result(
        session,
        query,
        rnd,
        [lab for lab in labels if lab.value != "retracted"],
        duplicate=False,
        job_ids=job_ids,
        actor=actor,
    )


def _piece_of(label: Label) -> Piece:
    return (label.start, label.end, label.value, label.label_type or "", label.comment or "")


def _answer_pieces(
    session: Session,
    query: Query,
    project_id: int,
    value: str,
    anomaly_range: tuple[int, int] | None,
    ranges: Sequence[AnsweredRange] | None,
    label_type: str | None,
    comment: str | None,
) -> list[Piece]:
    """The label rows an answer stores, in point order: the whole window; or normal / dragged anomaly / normal (the
    older single range, inside the window); or each of ``ranges`` (clamped to the series, checked against the
    project's anomaly types, never overlapping) plus the window's uncovered points, labeled ``value``. The window's
    label for training stays what :func:`app.core.loop.window_label` makes of these ranges."""
    types = list(get_project(session, project_id).anomaly_types) if ranges or label_type else []
    kind = checked_type(label_type, "anomaly" if value == "anomaly" else value, types)
    note = (comment or "").strip()
    if ranges is None:
        if anomaly_range is None:
            return [(query.start, query.end, value, kind, note)]
        a, b = anomaly_range
        if not (query.start <= a < b <= query.end):
            raise AppError(f"the marked range [{a}, {b}) must lie inside the window [{query.start}, {query.end})")
        pieces = [(query.start, a, "normal", "", ""), (a, b, "anomaly", kind, note), (b, query.end, "normal", "", "")]
        return [p for p in pieces if p[1] > p[0]]
    n_points = datasets.get_series(session, query.series_id).n_points
    lo, hi = max(0, query.start - RANGE_REACH), min(n_points, query.end + RANGE_REACH)
    marked: list[Piece] = []
    for r in sorted(ranges, key=lambda r: (r.start, r.end)):
        if r.start >= n_points:
            raise AppError(
                f"range [{r.start}, {r.end}) starts past the end of the series ({n_points} points)", status=422
            )
        if r.start < lo or min(r.end, n_points) > hi:
            raise AppError(
                f"range [{r.start}, {r.end}) is more than {RANGE_REACH:,} points from the window "
                f"[{query.start}, {query.end}); label it in the explorer instead",
                status=422,
            )
        end = min(r.end, n_points)
        if marked and r.start < marked[-1][1]:
            raise AppError(
                f"ranges [{marked[-1][0]}, {marked[-1][1]}) and [{r.start}, {r.end}) overlap; "
                "a point takes one label: trim or merge them",
                status=422,
            )
        marked.append((r.start, end, r.value, checked_type(r.label_type, r.value, types), (r.comment or "").strip()))
    rest: list[Piece] = []
    at = query.start
    for a, b, *_ in marked + [(query.end, query.end, "", "", "")]:
        if a > at and at < query.end:
            rest.append((at, min(a, query.end), value, kind, note))
        at = max(at, b)
    return sorted(marked + rest)


def checked_type(label_type: str | None, value: str, types: Sequence[str]) -> str:
    """``label_type`` as stored ("" for none), or a 422 that names the project's types. Answers, free labels and
    label edits (app.projects.labels) all check through here."""
    if label_type is None or not label_type.strip():
        return ""
    if value != "anomaly":
        raise AppError(f"only an anomaly range carries a type; this one is {value}", status=422)
    name = label_type.strip()
    if name not in types:
        raise AppError(f"{name!r} is not an anomaly type of this project; choose one of {', '.join(types)}", status=422)
    return name


def _scoped_key(actor: User | None, endpoint: str, key: str) -> str:
    """The stored form of a client's idempotency key: a digest of caller, endpoint and key, so two users (or one
    user's answer and free label) reusing a key never meet. 40 hex digits + ``:i`` fit the 64-character column."""
    raw = f"{actor.id if actor else 0}|{endpoint}|{key}"
    return hashlib.sha256(raw.encode()).hexdigest()[:40]


def _label(
    query: Query,
    rnd: Round,
    actor: User | None,
    start: int,
    end: int,
    value: str,
    key: str | None,
    supersedes: int | None,
    label_type: str | None = None,
    comment: str | None = None,
) -> Label:
    return Label(
        project_id=rnd.project_id,
        series_id=query.series_id,
        start=start,
        end=end,
        value=value,
        source="analyst",
        author_id=actor.id if actor else None,
        round_id=rnd.id,
        query_id=query.id,
        supersedes_id=supersedes,
        idempotency_key=key,
        label_type=label_type,
        comment=comment,
    )


def _result(
    session: Session,
    query: Query,
    rnd: Round,
    labels: list[Label],
    duplicate: bool,
    job_ids: list[int],
    actor: User | None = None,
) -> AnswerResult:
    queries = repo.list_queries(session, rnd.id)
    answered = sum(q.status != "pending" for q in queries)
    # the window to do next is the one next-query would hand this analyst (and claims for them)
    following = (
        review.next_query_for(session, get_project(session, rnd.project_id), rnd, actor)
        if rnd.status == "open"
        else None
    )
    return AnswerResult(query, labels, duplicate, rnd, answered, len(queries), following, job_ids)


def undo_answer(session: Session, actor: User | None, query_id: int) -> Query:
    """Retract a query's answer (append-only: a ``retracted`` row supersedes each label) and reopen the query."""
    query = repo.get_query(session, query_id)
    if query is None:
        raise NotFound(f"no query with id {query_id}")
    rnd = repo.lock_round_for_write(session, query.round_id)
    assert rnd is not None
    if rnd.status != "open":
        raise Conflict(f"round {rnd.number} is {rnd.status}; its answers can no longer change")
    session.refresh(query)  # read after the lock: a concurrent answer or undo has committed by now
    project = get_project(session, rnd.project_id)
    for old in review.rows_to_undo(session, project, query, actor):  # 409 when there is nothing to undo
        session.add(_label(query, rnd, actor, old.start, old.end, "retracted", None, supersedes=old.id))
    session.flush()
    review.settle_query(session, project, query, rnd.id)  # a window open again: the round's review clock stops
    audit(session, actor, "label.undo", "query", query.id, round_id=rnd.id)
    return query


def add_free_label(
    session: Session,
    actor: User | None,
    project_id: int,
    series_id: int,
    start: int,
    end: int,
    value: str,
    idempotency_key: str | None = None,
    *,
    label_type: str | None = None,
    comment: str | None = None,
) -> Label:
    """A range labeled in the explorer, outside any query (used for training; not counted against the budget), with
    an anomaly's ``label_type`` (one of the project's types) and a ``comment``.
    The same ``idempotency_key`` (scoped to the caller) returns the stored label; with a different label, 422."""
    project = get_project(session, project_id)
    label_type = checked_type(label_type, value, project.anomaly_types) or None
    comment = (comment or "").strip() or None
    series = next((s for s in project.series if s.id == series_id), None)
    if series is None:
        raise NotFound(f"series {series_id} is not part of project {project.name!r}")
    if not 0 <= start < end <= series.n_points:
        raise AppError(f"range [{start}, {end}) is outside the series (0..{series.n_points})")
    key = _scoped_key(actor, "label", idempotency_key) if idempotency_key else None
    if key:
        repo.lock_project_for_write(session, project.id)  # concurrent retries of one key: one row, no 500
        existing = repo.labels_by_key(session, key + ":")
        if existing:
            found = existing[0]
            if (found.project_id, found.series_id, found.start, found.end, found.value, found.label_type) != (
                project.id,
                series_id,
                start,
                end,
                value,
                label_type,
            ):
                raise AppError(
                    "this idempotency key was already used for a different label; send a new key for a new label",
                    status=422,
                )
            return found
    label = Label(
        project_id=project.id,
        series_id=series_id,
        start=start,
        end=end,
        value=value,
        source="analyst",
        author_id=actor.id if actor else None,
        idempotency_key=f"{key}:0" if key else None,
        label_type=label_type,
        comment=comment,
    )
    repo.add(session, label)
    audit(session, actor, f"label.{value}", "series", series_id, project_id=project.id, range=[start, end])
    return label


# -- reading for pages and exports --------------------------------------------------------------------------------


def list_projects(session: Session) -> list[Project]:
    return repo.list_projects(session)


def list_rounds(session: Session, project_id: int) -> list[Round]:
    """A project's rounds, oldest first (404 for an unknown project)."""
    return repo.list_rounds(session, get_project(session, project_id).id)


def list_queries(session: Session, round_id: int) -> list[Query]:
    """A round's queries in rank order (none for an unknown round)."""
    return repo.list_queries(session, round_id)


@dataclass
class QueryContext:
    """What the labeling page needs about one query."""

    query: Query
    round: Round
    project: Project
    series: Series
    answered: int
    total: int
    version_id: int | None
    threshold: float | None


def query_context(session: Session, query_id: int) -> QueryContext:
    query = repo.get_query(session, query_id)
    if query is None:
        raise NotFound(f"no query with id {query_id}")
    rnd = repo.get_round(session, query.round_id)
    assert rnd is not None
    project = get_project(session, rnd.project_id)
    queries = repo.list_queries(session, rnd.id)
    version = versions_repo.get(session, rnd.source_version_id) if rnd.source_version_id else None
    return QueryContext(
        query,
        rnd,
        project,
        datasets.get_series(session, query.series_id),
        sum(q.status != "pending" for q in queries),
        len(queries),
        version.id if version else None,
        version.threshold if version else None,
    )


def next_query(session: Session, project_id: int, viewer: User | None = None, *, claim: bool = True) -> Query | None:
    """The next pending query of the project's open round, in rank order; with several answers per window, the next
    one ``viewer`` has not answered yet; with one, the next one no other analyst holds, claimed for ``viewer`` when
    ``claim`` (app.projects.review.claim_next). A round whose review time is over is closed first (its retraining
    job is left queued for the sweeper)."""
    found = repo.project_and_active_round(session, project_id)  # one round trip for both
    if found is None:
        raise NotFound(f"no project with id {project_id}")
    project, rnd = found
    if rnd is None or rnd.status != "open":
        return None
    if rnd.review_until is not None and rnd.review_until <= utcnow():
        # A project has one active round, so only this one can be overdue: asking the database for overdue rounds
        # on every call (the analysts' most frequent request) is not needed.
        review.close_overdue_rounds(session, project.id)
        session.refresh(rnd)
        if rnd.status != "open":
            return None
    return review.next_query_for(session, project, rnd, viewer, claim=claim)


EXPORT_FIELDS = (
    "series_id",
    "series",
    "start",
    "end",
    "value",
    "source",
    "author",
    "round_id",
    "query_id",
    "label_id",
    "created_at",
    "label_type",
    "comment",
)
"""The columns of a label export, one row per labeled range in force (``label_type`` and ``comment`` last, so
readers of the older columns by position keep working)."""


def export_labels(session: Session, project_id: int) -> list[dict]:
    """Labels in force, one row per labeled range, with series name and author (keys: :data:`EXPORT_FIELDS`)."""
    project = get_project(session, project_id)
    names = {s.id: s.name for s in project.series}
    users = usernames(session)
    return [
        {
            "series_id": lab.series_id,
            "series": names.get(lab.series_id, ""),
            "start": lab.start,
            "end": lab.end,
            "value": lab.value,
            "source": lab.source,
            "author": users.get(lab.author_id, "") if lab.author_id else "",
            "round_id": lab.round_id,
            "query_id": lab.query_id,
            "label_id": lab.id,
            "created_at": utc_text(lab.created_at),
            "label_type": lab.label_type or "",
            "comment": lab.comment or "",
        }
        for lab in effective_labels(session, project.id)
    ]


def export_labels_csv(session: Session, project_id: int) -> str:
    """:func:`export_labels` as CSV text with a header row (columns :data:`EXPORT_FIELDS`)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=EXPORT_FIELDS)
    writer.writeheader()
    writer.writerows(export_labels(session, project_id))
    return buf.getvalue()


def export_point_labels_csv(session: Session, project_id: int, series_id: int) -> Iterator[str]:
    """Per-point labels of one series as CSV lines ``index,timestamp,label,label_type,comment`` (label 1, 0, or empty
    when unlabeled; the type and comment of the label in force at that point, empty when it has none).

    Everything is read (and every error raised) before this returns; the iterator only formats, block by block, so
    a response can stream it after the session has closed."""
    table = point_label_table(session, project_id, series_id)
    details, texts = _point_label_details(session, project_id, series_id, len(table))
    stamps = datasets.read_timestamps(session, datasets.get_series(session, series_id))
    return _point_label_lines(table, stamps, details, texts)


def _point_label_details(
    session: Session, project_id: int, series_id: int, n_points: int
) -> tuple[np.ndarray, list[str]]:
    """Which type and comment each point's label in force carries: ``(n_points,)`` int32 indices into CSV-ready
    ``"label_type,comment"`` texts (index 0: neither), latest label wins as in :func:`point_label_table`."""
    texts = [","]
    index: dict[tuple[str, str], int] = {}
    details = np.zeros(n_points, dtype=np.int32)
    for lab in effective_labels(session, project_id, series_id=series_id):
        if lab.value not in USABLE:
            continue
        pair = (lab.label_type or "", lab.comment or "")
        if pair not in index:
            index[pair] = len(texts) if any(pair) else 0
            if any(pair):
                buf = io.StringIO()
                csv.writer(buf, lineterminator="").writerow(pair)
                texts.append(buf.getvalue())
        details[lab.start : lab.end] = index[pair]
    return details, texts


def _point_label_lines(
    table: np.ndarray, stamps: np.ndarray, details: np.ndarray, texts: list[str], block: int = 65_536
) -> Iterator[str]:
    yield "index,timestamp,label,label_type,comment\n"
    names = {-1: "", 0: "0", 1: "1"}
    for i in range(0, len(table), block):
        labels, ts, more = table[i : i + block].tolist(), stamps[i : i + block], details[i : i + block].tolist()
        yield "".join(f"{i + j},{ts[j]},{names[v]},{texts[more[j]]}\n" for j, v in enumerate(labels))


def point_label_table(session: Session, project_id: int, series_id: int) -> np.ndarray:
    """Per-timestamp labels of one series: ``(n_points,)`` int8, 1 anomaly, 0 normal, -1 unlabeled (latest wins)."""
    project = get_project(session, project_id)
    series = next((s for s in project.series if s.id == series_id), None)
    if series is None:
        raise NotFound(f"series {series_id} is not part of project {project.name!r}")
    out = np.full(series.n_points, -1, dtype=np.int8)
    for lab in effective_labels(session, project.id, series_id=series_id):
        if lab.value in USABLE:
            out[lab.start : lab.end] = 1 if lab.value == "anomaly" else 0
    return out


# -- labeling queue and admin pages (reads only) ------------------------------------------------------------------


def labels_in_range(
    session: Session, project_id: int, series_id: int, start: int, end: int, viewer: User | None = None
) -> list[Label]:
    """Labels in force on ``series_id`` overlapping points ``[start, end)``, oldest first (for shading a chart).
    Several answers per window: the open round's windows show ``viewer``'s own answers only
    (:func:`app.projects.review.labels_for_viewer`)."""
    labels = effective_labels(session, project_id, series_id=series_id, start=start, end=end)
    return review.labels_for_viewer(session, get_project(session, project_id), labels, viewer, series_id, start, end)


@dataclass
class RoundSummary:
    """A round with its queries, the answers in force per query and label counts (for the admin page)."""

    round: Round
    queries: list[Query]
    answers: dict[int, list[Label]]  # query id -> labels in force, in range order
    counts: dict[str, int]  # anomaly / normal / unsure labeled ranges, and answered / skipped / pending queries


def round_summaries(session: Session, project_id: int) -> list[RoundSummary]:
    """Every round of a project, newest first."""
    project = get_project(session, project_id)
    by_query: dict[int, list[Label]] = {}
    for lab in effective_labels(session, project.id):
        if lab.query_id is not None:
            by_query.setdefault(lab.query_id, []).append(lab)
    out = []
    for rnd in reversed(repo.list_rounds(session, project.id)):
        queries = repo.list_queries(session, rnd.id)
        answers = {q.id: sorted(by_query.get(q.id, []), key=lambda lab: lab.start) for q in queries}
        counts = {v: 0 for v in ("anomaly", "normal", "unsure", "answered", "skipped", "pending")}
        for q in queries:
            counts[q.status] = counts.get(q.status, 0) + 1
            for lab in answers[q.id]:
                counts[lab.value] = counts.get(lab.value, 0) + 1
        out.append(RoundSummary(rnd, queries, answers, counts))
    return out
