"""Project use cases: create, start rounds, answer queries, undo, complete rounds.

Services take a session and never commit; the caller's scope does, and only then enqueues the jobs a call returns
(Celery's rule: commit before enqueueing). Training itself lives in :mod:`app.versions.service`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.accounts.models import User
from app.accounts.service import audit
from app.datasets import repository as datasets_repo
from app.datasets import service as datasets
from app.datasets.models import Series
from app.db import utcnow
from app.errors import AppError, Conflict, NotFound
from app.jobs import service as jobs
from app.projects import repository as repo
from app.projects.models import Label, Project, Query, Round
from app.projects.schemas import ProjectCreate
from app.versions import repository as versions_repo

USABLE = ("anomaly", "normal")  # label values a model trains on; unsure and retracted are kept but not used


# -- data ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PoolPart:
    """One series inside the project's pool: its points ``[0, pool_points)`` sit at ``offset`` in the pool."""

    series_id: int
    offset: int
    pool_points: int
    n_points: int


def pool_points(project: Project, n_points: int) -> int:
    """Points of a series that analysts may be asked about: all but the held-back tail."""
    return max(project.window, int(round(n_points * (1.0 - project.holdout_fraction))))


def pool_parts(project: Project) -> list[PoolPart]:
    parts, offset = [], 0
    for s in project.series:
        n = pool_points(project, s.n_points)
        parts.append(PoolPart(s.id, offset, n, s.n_points))
        offset += n
    return parts


def model_input(session: Session, series: Series, end: int | None = None) -> np.ndarray:
    """Values ready for a model: ``(n, C)`` float32 with gaps (``--fill keep``) carried forward, then backward."""
    values = datasets.read_values(session, series, 0, end)
    if np.isnan(values).any():
        import pandas as pd

        values = pd.DataFrame(values).ffill().bfill().fillna(0.0).to_numpy(np.float32)
    return values


def load_pool(session: Session, project: Project) -> tuple[np.ndarray, list[PoolPart]]:
    """The pool of every series concatenated: ``(sum of pool points, C)``; models fit and learn on this."""
    parts = pool_parts(project)
    arrays = [model_input(session, s, p.pool_points) for s, p in zip(project.series, parts, strict=True)]
    return np.concatenate(arrays), parts


# -- projects -----------------------------------------------------------------------------------------------------


def get_project(session: Session, project_id: int) -> Project:
    project = repo.get_project(session, project_id)
    if project is None:
        raise NotFound(f"no project with id {project_id}")
    return project


def create_project(session: Session, actor: User | None, spec: ProjectCreate) -> tuple[Project, int]:
    """Create a project and its initial-fit job; returns ``(project, job id)`` — enqueue the job after commit."""
    from app.core.detectors import available_detectors
    from app.core.query import available_strategies

    if spec.detector not in available_detectors():
        raise AppError(f"unknown detector {spec.detector!r}; choose one of {', '.join(available_detectors())}")
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
    short = [s.name for s in series if pool_points_for(spec, s.n_points) < 2 * spec.window]
    if short:
        raise AppError(f"series {short} are too short for windows of {spec.window} points")
    if spec.oracle == "ground_truth" and not all(s.has_ground_truth for s in series):
        raise AppError("the ground-truth oracle needs series imported with a label column")
    _check_detector_params(spec)
    project = Project(
        name=spec.name.strip(), dataset_id=dataset.id, detector=spec.detector, detector_params=spec.detector_params,
        window=spec.window, stride=spec.stride, strategy=spec.strategy, strategy_params=spec.strategy_params,
        round_size=spec.round_size, budget=spec.budget, auto_next=spec.auto_next, oracle=spec.oracle,
        threshold_method=spec.threshold_method, holdout_fraction=spec.holdout_fraction, seed=spec.seed,
        created_by=actor.id if actor else None,
    )
    project.series = series
    repo.add(session, project)
    job = jobs.create_job(session, "fit", project_id=project.id, dedupe_key=f"fit:{project.id}")
    audit(session, actor, "project.create", "project", project.id, detector=spec.detector, strategy=spec.strategy)
    return project, job.id


def pool_points_for(spec: ProjectCreate, n_points: int) -> int:
    return int(round(n_points * (1.0 - spec.holdout_fraction)))


def _check_detector_params(spec: ProjectCreate) -> None:
    from app.core.detectors import make_detector

    try:
        make_detector(spec.detector, window=spec.window, stride=spec.stride, seed=spec.seed, device="cpu",
                      **spec.detector_params)
    except (TypeError, ValueError) as exc:
        raise AppError(f"detector parameters: {exc}") from None


# -- labels -------------------------------------------------------------------------------------------------------


def effective_labels(session: Session, project_id: int) -> list[Label]:
    """Labels in force: not superseded by a later row (an undo or an edit), newest last."""
    rows = repo.labels_for_project(session, project_id)
    superseded = {r.supersedes_id for r in rows if r.supersedes_id is not None}
    return [r for r in rows if r.id not in superseded and r.value != "retracted"]


def training_ranges(session: Session, project: Project, parts: list[PoolPart]):  # type: ignore[no-untyped-def]
    """Effective anomaly/normal labels as core ``LabeledRange`` in pool coordinates (clipped to the pool)."""
    from app.core.windows import LabeledRange

    offsets = {p.series_id: p for p in parts}
    ranges = []
    for label in effective_labels(session, project.id):
        part = offsets.get(label.series_id)
        if label.value not in USABLE or part is None:
            continue
        start, end = label.start, min(label.end, part.pool_points)
        if end > start:
            ranges.append(LabeledRange(part.offset + start, part.offset + end, 1 if label.value == "anomaly" else 0))
    return ranges


def labels_used(session: Session, project_id: int) -> int:
    return repo.count_answered_queries(session, project_id)


# -- rounds -------------------------------------------------------------------------------------------------------


@dataclass
class RoundStarted:
    round: Round
    job_ids: list[int]  # jobs to enqueue after commit (a ground-truth round completes at once)


def start_round(
    session: Session, actor: User | None, project_id: int, strategy: str | None = None, k: int | None = None
) -> RoundStarted:
    """Pick the next queries from the latest model version's scores, within the remaining budget."""
    from app.core.query import available_strategies

    project = get_project(session, project_id)
    active = repo.active_round(session, project.id)
    if active is not None:
        raise Conflict(f"round {active.number} is still {active.status}; finish it before starting another")
    version = versions_repo.latest(session, project.id)
    if version is None:
        raise Conflict("the initial model is not trained yet; wait for the fit job to finish")
    strategy = strategy or project.strategy
    if strategy not in available_strategies():
        raise AppError(f"unknown strategy {strategy!r}; choose one of {', '.join(available_strategies())}")
    remaining = project.budget - labels_used(session, project.id)
    k = min(k or project.round_size, remaining)
    if k <= 0:
        raise Conflict(f"the label budget of {project.budget} windows is spent")
    last = repo.last_round(session, project.id)
    number = (last.number if last else 0) + 1
    picks = _pick(session, project, version, strategy, k, number, remaining)
    if not picks:
        raise Conflict("no unlabeled window is left to ask about")
    rnd = Round(project_id=project.id, number=number, strategy=strategy, k=len(picks), status="open",
                started_by=actor.id if actor else None, source_version_id=version.id)
    repo.add(session, rnd)
    for rank, (series_id, start, score, margin, reason) in enumerate(picks):
        session.add(Query(round_id=rnd.id, series_id=series_id, start=start, end=start + project.window, rank=rank,
                          score=score, margin=margin, reason=reason))
    session.flush()
    audit(session, actor, "round.start", "round", rnd.id, project_id=project.id, number=number, strategy=strategy,
          k=len(picks))
    job_ids = []
    if project.oracle == "ground_truth":
        job_id = answer_round_from_ground_truth(session, project, rnd)
        job_ids += [job_id] if job_id else []
    return RoundStarted(rnd, job_ids)


def _pick(session: Session, project: Project, version, strategy: str, k: int, number: int,  # type: ignore[no-untyped-def]
          remaining: int):
    """Queries as ``(series id, start point, score, margin, reason)``, best first. RLAD's warm-up round asks all
    its warm-up windows (3 N_w, within the remaining budget) instead of ``k``."""
    from app.core.loop import labeled_windows, pool_window_range
    from app.core.query import select

    rng = np.random.default_rng([project.seed, number])
    parts = pool_parts(project)
    ranges = training_ranges(session, project, parts)
    chunk = max(1, project.series[0].chunk_points)
    scores, labeled, margins, owners = [], [], [], []
    have_margins = True
    for part in parts:
        n_win = (part.n_points - project.window) // project.stride + 1
        i0, i1 = pool_window_range((0, part.pool_points), project.window, project.stride)
        w = versions_repo.read_scores(session, version.id, part.series_id, "window", 0, n_win, chunk)
        if len(w) != n_win:
            raise Conflict(f"model version {version.id} has no window scores for series {part.series_id}")
        m = versions_repo.read_scores(session, version.id, part.series_id, "margin", 0, n_win, chunk)
        have_margins &= len(m) == n_win
        local = [type(r)(r.start - part.offset, r.end - part.offset, r.value) for r in ranges
                 if part.offset <= r.start < part.offset + part.pool_points]
        lab = labeled_windows(local, part.n_points, project.window, project.stride)
        scores.append(w[i0:i1])
        labeled.append(lab[i0:i1])
        margins.append(m[i0:i1] if len(m) == n_win else np.zeros(i1 - i0))
        owners.append(np.stack([np.full(i1 - i0, part.series_id), np.arange(i0, i1)], axis=1))
    all_scores = np.concatenate(scores).astype(np.float64)
    all_labeled = np.concatenate(labeled)
    owner = np.concatenate(owners)
    options = dict(project.strategy_params)
    initial = _initial_picks(session, project, version, ranges, owner)
    if initial is not None:
        picks = [(int(owner[i, 0]), int(owner[i, 1]) * project.stride, float(all_scores[i]), None,
                  "warm-up: iForest high / low / middle score") for i in initial[:remaining]]
        return picks
    found = select(strategy, all_scores, all_labeled, k, rng, min_gap=max(1, project.window // project.stride),
                   uncertainty=np.concatenate(margins) if have_margins else None, **options)
    return [(int(owner[p.index, 0]), int(owner[p.index, 1]) * project.stride, float(p.score),
             None if p.margin is None else float(p.margin), p.reason) for p in found]


def _initial_picks(session: Session, project: Project, version, ranges, owner: np.ndarray):  # type: ignore[no-untyped-def]
    """RLAD's warm-up windows for the first round (before any label), as indices into ``owner``; else ``None``."""
    if ranges or project.detector != "rlad":
        return None
    from app.core.detectors import load_detector

    detector = load_detector(session.get(type(version), version.id).weights)
    if not hasattr(detector, "initial_queries"):
        return None
    X, parts = load_pool(session, project)
    wanted = detector.initial_queries(X)  # window indices of the concatenated pool
    lookup = {(int(s), int(w)): i for i, (s, w) in enumerate(owner)}
    out = []
    for idx in np.asarray(wanted).tolist():
        start = int(idx) * project.stride
        part = next((p for p in parts if p.offset <= start < p.offset + p.pool_points), None)
        if part is None or start + project.window > part.offset + part.pool_points:
            continue  # a window across two series is not a real window
        local = (start - part.offset) // project.stride
        if (part.series_id, local) in lookup:
            out.append(lookup[(part.series_id, local)])
    return out or None


def answer_round_from_ground_truth(session: Session, project: Project, rnd: Round) -> int | None:
    """The ground-truth oracle answers every query of ``rnd`` (each answer counted as a label, per point)."""
    for query in repo.list_queries(session, rnd.id):
        series = session.get(Series, query.series_id)
        truth = datasets.read_truth(session, series, query.start, query.end)
        if truth is None:
            raise AppError(f"series {series.name!r} has no ground truth for the oracle")
        edges = np.flatnonzero(np.diff(np.concatenate([[-1], truth, [-1]])))
        for a, b in zip(edges[:-1], edges[1:], strict=True):
            value = "anomaly" if truth[a] == 1 else "normal"
            session.add(Label(project_id=project.id, series_id=series.id, start=query.start + int(a),
                              end=query.start + int(b), value=value, source="oracle", round_id=rnd.id,
                              query_id=query.id))
        repo.set_query_status(session, query.id, "pending", "answered", answered_at=utcnow())
    session.flush()
    return complete_round_if_done(session, rnd.id)


def complete_round_if_done(session: Session, round_id: int) -> int | None:
    """When no query is pending, move the round to ``complete`` exactly once and create its retraining job."""
    if repo.count_pending(session, round_id) > 0:
        return None
    if not repo.set_round_status(session, round_id, ("open",), "complete", completed_at=utcnow()):
        return None  # someone else completed it
    rnd = repo.get_round(session, round_id)
    assert rnd is not None
    job = jobs.create_job(session, "retrain", project_id=rnd.project_id, round_id=rnd.id,
                          dedupe_key=f"retrain:{rnd.id}")
    return job.id


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


def answer_query(
    session: Session,
    actor: User | None,
    query_id: int,
    value: str,
    anomaly_range: tuple[int, int] | None = None,
    idempotency_key: str | None = None,
) -> AnswerResult:
    """Store an analyst's answer at once. A retried request with the same ``idempotency_key`` returns what was
    stored the first time and writes nothing; a second answer to the same query supersedes the first."""
    query = repo.get_query(session, query_id)
    if query is None:
        raise NotFound(f"no query with id {query_id}")
    rnd = repo.get_round(session, query.round_id, lock=True)
    assert rnd is not None
    if idempotency_key:
        existing = repo.labels_by_key(session, idempotency_key + ":")
        if existing or repo.labels_by_key(session, idempotency_key + "!"):
            return _result(session, query, rnd, existing, duplicate=True, job_ids=[])
    if rnd.status != "open":
        raise Conflict(f"round {rnd.number} is {rnd.status}; its answers can no longer change")
    if anomaly_range is not None:
        a, b = anomaly_range
        if not (query.start <= a < b <= query.end):
            raise AppError(f"the marked range [{a}, {b}) must lie inside the window [{query.start}, {query.end})")
    previous = [lab for lab in repo.labels_for_query(session, query.id) if lab.value != "retracted"]
    superseded = {lab.supersedes_id for lab in repo.labels_for_query(session, query.id)}
    previous = [lab for lab in previous if lab.id not in superseded]
    labels: list[Label] = []
    if value == "skip":
        if idempotency_key:  # remember the key so a retried skip is recognised
            labels.append(_label(query, rnd, actor, query.start, query.end, "retracted", f"{idempotency_key}!",
                                 supersedes=None))
        status = "skipped"
    else:
        pieces = [(query.start, query.end, value)]
        if anomaly_range is not None:
            a, b = anomaly_range
            pieces = [(query.start, a, "normal"), (a, b, "anomaly"), (b, query.end, "normal")]
            pieces = [p for p in pieces if p[1] > p[0]]
        for i, (a, b, v) in enumerate(pieces):
            key = f"{idempotency_key}:{i}" if idempotency_key else None
            labels.append(_label(query, rnd, actor, a, b, v, key, supersedes=previous[i].id if i < len(previous)
                                 else None))
        status = "answered"
    # older answers not superseded one-to-one are retracted explicitly, so nothing is silently lost or left in force
    for old in previous[len(labels):] if value != "skip" else previous:
        session.add(_label(query, rnd, actor, old.start, old.end, "retracted", None, supersedes=old.id))
    for lab in labels:
        session.add(lab)
    try:
        session.flush()
    except IntegrityError:  # a concurrent retry with the same key won the race
        raise Conflict("this answer is being saved by another request; retry to get its result") from None
    session.execute(
        Query.__table__.update().where(Query.id == query.id).values(status=status, answered_at=utcnow())
    )
    session.expire(query)
    audit(session, actor, f"label.{value}", "query", query.id, round_id=rnd.id,
          range=list(anomaly_range) if anomaly_range else None)
    job_id = complete_round_if_done(session, rnd.id)
    session.refresh(rnd)
    return _result(session, query, rnd, [lab for lab in labels if lab.value != "retracted"], duplicate=False,
                   job_ids=[job_id] if job_id else [])


def _label(query: Query, rnd: Round, actor: User | None, start: int, end: int, value: str, key: str | None,
           supersedes: int | None) -> Label:
    return Label(project_id=rnd.project_id, series_id=query.series_id, start=start, end=end, value=value,
                 source="analyst", author_id=actor.id if actor else None, round_id=rnd.id, query_id=query.id,
                 supersedes_id=supersedes, idempotency_key=key)


def _result(session: Session, query: Query, rnd: Round, labels: list[Label], duplicate: bool,
            job_ids: list[int]) -> AnswerResult:
    queries = repo.list_queries(session, rnd.id)
    answered = sum(q.status != "pending" for q in queries)
    return AnswerResult(query, labels, duplicate, rnd, answered, len(queries), repo.next_pending_query(session, rnd.id),
                        job_ids)


def undo_answer(session: Session, actor: User | None, query_id: int) -> Query:
    """Retract a query's answer (append-only: a ``retracted`` row supersedes each label) and reopen the query."""
    query = repo.get_query(session, query_id)
    if query is None:
        raise NotFound(f"no query with id {query_id}")
    rnd = repo.get_round(session, query.round_id, lock=True)
    assert rnd is not None
    if rnd.status != "open":
        raise Conflict(f"round {rnd.number} is {rnd.status}; its answers can no longer change")
    if query.status == "pending":
        raise Conflict("this query has no answer to undo")
    rows = repo.labels_for_query(session, query.id)
    superseded = {r.supersedes_id for r in rows}
    for old in rows:
        if old.id not in superseded and old.value != "retracted":
            session.add(_label(query, rnd, actor, old.start, old.end, "retracted", None, supersedes=old.id))
    repo.set_query_status(session, query.id, query.status, "pending", answered_at=None)
    session.flush()
    session.expire(query)
    audit(session, actor, "label.undo", "query", query.id, round_id=rnd.id)
    return query


def add_free_label(session: Session, actor: User | None, project_id: int, series_id: int, start: int, end: int,
                   value: str, idempotency_key: str | None = None) -> Label:
    """A range labeled in the explorer, outside any query (used for training; not counted against the budget)."""
    project = get_project(session, project_id)
    series = next((s for s in project.series if s.id == series_id), None)
    if series is None:
        raise NotFound(f"series {series_id} is not part of project {project.name!r}")
    if not 0 <= start < end <= series.n_points:
        raise AppError(f"range [{start}, {end}) is outside the series (0..{series.n_points})")
    if idempotency_key:
        existing = repo.labels_by_key(session, idempotency_key + ":")
        if existing:
            return existing[0]
    label = Label(project_id=project.id, series_id=series_id, start=start, end=end, value=value, source="analyst",
                  author_id=actor.id if actor else None,
                  idempotency_key=f"{idempotency_key}:0" if idempotency_key else None)
    repo.add(session, label)
    audit(session, actor, f"label.{value}", "series", series_id, project_id=project.id, range=[start, end])
    return label


# -- reading for pages and exports --------------------------------------------------------------------------------


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
    return QueryContext(query, rnd, project, session.get(Series, query.series_id),
                        sum(q.status != "pending" for q in queries), len(queries),
                        version.id if version else None, version.threshold if version else None)


def next_query(session: Session, project_id: int) -> Query | None:
    """The next pending query of the project's open round, in rank order."""
    project = get_project(session, project_id)
    rnd = repo.active_round(session, project.id)
    if rnd is None or rnd.status != "open":
        return None
    return repo.next_pending_query(session, rnd.id)


def export_labels(session: Session, project_id: int) -> list[dict]:
    """Labels in force, one row per labeled range, with series name and author."""
    from app.accounts.models import User as UserModel

    project = get_project(session, project_id)
    names = {s.id: s.name for s in project.series}
    users = {u.id: u.username for u in session.query(UserModel).all()}
    return [
        {"series_id": lab.series_id, "series": names.get(lab.series_id, ""), "start": lab.start, "end": lab.end,
         "value": lab.value, "source": lab.source, "author": users.get(lab.author_id, "") if lab.author_id else "",
         "round_id": lab.round_id, "query_id": lab.query_id, "label_id": lab.id,
         "created_at": lab.created_at.isoformat()}
        for lab in effective_labels(session, project.id)
    ]


def point_label_table(session: Session, project_id: int, series_id: int) -> np.ndarray:
    """Per-timestamp labels of one series: ``(n_points,)`` int8, 1 anomaly, 0 normal, -1 unlabeled (latest wins)."""
    project = get_project(session, project_id)
    series = next((s for s in project.series if s.id == series_id), None)
    if series is None:
        raise NotFound(f"series {series_id} is not part of project {project.name!r}")
    out = np.full(series.n_points, -1, dtype=np.int8)
    for lab in effective_labels(session, project.id):
        if lab.series_id == series_id and lab.value in USABLE:
            out[lab.start : lab.end] = 1 if lab.value == "anomaly" else 0
    return out


# -- labeling queue and admin pages (reads only) ------------------------------------------------------------------


def labels_in_range(session: Session, project_id: int, series_id: int, start: int, end: int) -> list[Label]:
    """Labels in force on ``series_id`` overlapping points ``[start, end)``, oldest first (for shading a chart)."""
    return [lab for lab in effective_labels(session, project_id)
            if lab.series_id == series_id and lab.start < end and lab.end > start]


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
