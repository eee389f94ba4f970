"""Scores of points a model version has not scored yet: points appended to a series (live data), series imported
after a version trained, and arrays scored without being stored (``POST /api/v1/projects/{id}/score``).

A version stores its scores per series when it trains (:func:`app.versions.service.store_training`). When a series
grows, only its tail needs scoring, and the scores of the new points must be exactly those a fresh scoring of the
whole, longer series would give. The score of a window depends only on its own points and a short reach before
them (a rolling z-score's history, a reconstruction detector's overlapping inference windows), and the windows of a
detector sit on a fixed grid from point 0. So the tail is scored from a segment that starts early enough
(:func:`reach`) and on the grid, and only the scores the segment gets exactly right are kept:

- point scores from ``n_scored - window`` on (the last old points too: a reconstruction detector's score of a point
  near the old end changes once windows cover it from the other side);
- window scores (and margins, drivers) of every window that ends at or after that point.

Three steps, so no transaction is held while a model scores: :func:`prepare_tail` (read; short) ->
:func:`compute_tail` (pure) -> :func:`store_tail` (write under the series' lock; idempotent: a tail another scorer
already stored is left alone). Small batches are scored in the request that appended them, after the points
committed (:func:`score_appended`); larger ones by a job of kind ``score`` (:func:`run_score_job`). Services take a
session and never commit.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session

from app import observability
from app.core.detectors.base import Detector
from app.core.detectors.registry import load_detector
from app.core.windows import n_windows
from app.datasets import service as datasets
from app.datasets.models import Series
from app.db import Database
from app.errors import AppError, Conflict, NotFound
from app.jobs import service as jobs
from app.projects import repository as projects_repo
from app.projects import service as projects
from app.projects.models import Project
from app.settings import Settings
from app.versions import repository as repo
from app.versions.models import ModelVersion
from app.webhooks import service as webhooks

log = logging.getLogger("anomaloop.scoring")

SYNC_POINTS = 10_000
"""Unscored points scored in the request (an append, a read of scores); more go to a ``score`` job."""
MAX_ARRAY_POINTS = 100_000
"""Most points ``POST /api/v1/projects/{id}/score`` scores in one request."""
JOB_KIND = "score"
_JOB_KEY = re.compile(r"^score:(?:v(\d+):)?s(\d+):n(\d+)$")
"""``score:s<series>:n<points>`` (every version covering the series) or ``score:v<version>:s<series>:n<points>``
(one version): the job's work, and its deduplication key (one job per series length)."""


class ScoresPending(AppError):
    """More than :data:`SYNC_POINTS` points of a series have no scores of ``version_id`` yet: a ``score`` job must
    compute them first. Raised by :func:`ensure_scored` before any job row is written, because the request's
    transaction rolls back with the error; the web's handler for it starts (or finds) the job in a transaction of its
    own (:func:`start_pending_job`) and answers 409 with the job id."""

    status = 409
    code = "scores_pending"
    retry_after = 5

    def __init__(self, version_id: int, series_id: int, scored: int, n_points: int) -> None:
        super().__init__(
            f"model version {version_id} has not scored points {scored:,}-{n_points - 1:,} of series {series_id} "
            f"yet ({n_points - scored:,} points); a scoring job is computing them"
        )
        self.version_id, self.series_id, self.scored, self.n_points = version_id, series_id, scored, n_points


# -- loaded models ---------------------------------------------------------------------------------------------------


class DetectorCache:
    """Recently used model versions, loaded: rebuilding an ensemble from its stored bytes takes ~0.5 s, scoring a
    100-point batch a few ms. A version's weights never change once stored, so an entry is keyed by the version id
    and its creation time (a reused id of a deleted version is another key); each database has its own cache
    (:attr:`app.db.Database.caches`). Each entry has a lock: a detector keeps per-series caches that are not safe to
    share between threads, so one scoring at a time uses it. Bounded LRU; thread-safe. A version is loaded once
    however many requests ask for it at the same moment (the others wait for that load, not a load of their own)."""

    def __init__(self, max_items: int) -> None:
        self.max_items = max_items
        self._items: OrderedDict[Hashable, tuple[Detector, threading.Lock]] = OrderedDict()
        self._loading: dict[Hashable, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, load: Callable[[], Detector]) -> tuple[Detector, threading.Lock]:
        found = self._found(key)
        if found is not None:
            return found
        with self._lock:
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:  # one load per key at a time; another version's load never waits on it
            found = self._found(key)  # loaded by the thread this one waited for
            if found is not None:
                return found
            entry = (load(), threading.Lock())
            with self._lock:
                self._items[key] = entry
                self._loading.pop(key, None)
                while len(self._items) > self.max_items:
                    self._items.popitem(last=False)
        return entry

    def _found(self, key: Hashable) -> tuple[Detector, threading.Lock] | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found


MODEL_CACHE_SIZE = 8
"""Loaded model versions kept per :class:`~app.db.Database` (a few MB each)."""


def loaded_detector(session: Session, version: ModelVersion) -> tuple[Detector, threading.Lock]:
    """``version``'s detector from its database's cache (loaded from its stored weights on a miss) and the lock to
    hold while scoring with it. A session made outside :class:`~app.db.Database` gets a fresh load every time."""
    database = session.info.get("database")
    if database is None:
        cache = DetectorCache(1)
    else:  # setdefault keeps the first cache two racing threads make
        cache = database.caches.get("detectors") or database.caches.setdefault(
            "detectors", DetectorCache(MODEL_CACHE_SIZE)
        )
    key = (version.id, version.created_at)
    return cache.get(key, lambda: load_detector(repo.weights_of(session, version.id)))


# -- which versions score a series -----------------------------------------------------------------------------------


def covering_versions(session: Session, series_id: int) -> list[tuple[Project, ModelVersion]]:
    """The serving version of every project whose model covers the series: the series is one of the project's, or
    the serving version has already scored it (a series asked for after it trained)."""
    out, members = [], projects_repo.project_ids_with_series(session, series_id)
    for project in projects_repo.list_projects(session):
        version = repo.serving_or_latest(session, project)
        if version is None:
            continue
        if project.id in members or repo.has_scores(session, version.id, series_id):
            out.append((project, version))
    return out


def reach(detector: Detector) -> tuple[int, int]:
    """``(context, grid)``: how many points before a window can change its score, and the step of the grids the
    detector's windows sit on (a segment starting on a multiple of ``grid`` sees the whole series' windows).

    Read from the detector's parameters: its window and stride, a rolling history (``history``), the inference
    stride of a reconstruction detector (whose point scores average overlapping windows) and, for an ensemble, the
    same of every member. Generous on purpose: a longer segment costs little, a short one gives wrong scores."""
    window, grid = int(detector.window), max(1, int(detector.stride))
    context = 2 * window + grid + int(getattr(detector, "history", 0) or 0)
    config = getattr(detector, "config", None)
    inference = getattr(config, "inference_stride", None)
    if isinstance(inference, int) and inference > 0:
        grid = math.lcm(grid, inference)
    for member in getattr(detector, "members_", None) or []:
        member_context, member_grid = reach(member)
        context, grid = max(context, member_context), math.lcm(grid, member_grid)
    return context + grid, grid


# -- scoring a tail --------------------------------------------------------------------------------------------------


@dataclass
class TailWork:
    """What scoring a series' unscored tail needs, read in one short transaction."""

    project_id: int
    version_id: int
    series_id: int
    detector: Detector
    detector_lock: threading.Lock  # held while scoring (DetectorCache)
    values: np.ndarray  # (n_points - segment_start, C) model input of the segment
    segment_start: int
    n_scored: int  # point scores stored before
    n_points: int
    point_from: int  # first point score (re)written
    window_from: int  # first window score (re)written
    kinds: tuple[str, ...]  # window kinds the version stores: window, margin, driver
    point_chunk: int
    window_chunk: int
    threshold: float | None


@dataclass
class TailScores:
    work: TailWork
    points: np.ndarray  # (n_points - point_from,)
    windows: dict[str, np.ndarray]  # kind -> (n_windows(n_points) - window_from,)
    seconds: float


@dataclass
class Scored:
    """What scoring one version on one series did (the append's answer lists one per project)."""

    project_id: int
    version_id: int
    status: str  # scored | queued | up_to_date | not_enough_points
    scored_points: int = 0  # new points scored
    job_id: int | None = None
    anomalies: list[dict] = field(default_factory=list)  # new anomalous segments (also sent as webhooks)
    message: str = ""

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def prepare_tail(session: Session, project: Project, version: ModelVersion, series: Series) -> TailWork | Scored:
    """The work to score ``version`` on the unscored tail of ``series``, or a :class:`Scored` saying why none is
    needed (up to date; fewer points than one window)."""
    n_scored = repo.scored_length(session, version.id, series.id)
    n_points = series.n_points
    if n_scored >= n_points:
        return Scored(project.id, version.id, "up_to_date")
    window, stride = project.window, project.stride
    if n_windows(n_points, window, stride) == 0:
        return Scored(
            project.id,
            version.id,
            "not_enough_points",
            message=f"series {series.id} has {n_points} points; the model scores windows of {window}",
        )
    first = projects_repo.first_series(session, project.id) or series
    model_channels = first.n_channels
    if series.n_channels != model_channels:
        raise AppError(
            f"series {series.id} has {series.n_channels} channel(s); project {project.id}'s model takes "
            f"{model_channels}: ask a project whose data set it belongs to",
            status=422,
        )
    detector, lock = loaded_detector(session, version)
    context, grid = reach(detector)
    point_from = max(0, n_scored - window) if n_scored else 0
    segment_start = max(0, (point_from - context) // grid * grid) if point_from else 0
    window_from = max(0, -(-(point_from - window + 1) // stride))
    if n_scored == 0:  # a series this version never scored: every kind of window score the detector gives
        given = {"window": True, "margin": detector.provides_margins, "driver": detector.explains_windows}
        kinds = tuple(k for k, present in given.items() if present)
    else:  # a longer series: the kinds the version stored for it
        kinds = tuple(k for k in ("window", "margin", "driver") if repo.has_scores(session, version.id, series.id, k))
    chunk = first.chunk_points
    return TailWork(
        project.id,
        version.id,
        series.id,
        detector,
        lock,
        _model_segment(session, series, segment_start),
        segment_start,
        n_scored,
        n_points,
        point_from,
        window_from,
        kinds,
        series.chunk_points,
        chunk,
        version.threshold,
    )


def _model_segment(session: Session, series: Series, start: int) -> np.ndarray:
    """Points ``[start, n_points)`` as :func:`app.projects.service.model_input` gives them for the whole series:
    gaps (``--fill keep``) carried forward from the last value before ``start`` when the segment begins in one."""
    values = datasets.read_values(session, series, start)
    if not np.isnan(values).any():
        return values
    frame = pd.DataFrame(values)
    if start > 0 and np.isnan(values[0]).any():
        before = projects.model_input(session, series, start)[-1:]  # the whole head, filled as the full series is
        frame = pd.concat([pd.DataFrame(before), frame], ignore_index=True).ffill().iloc[1:]
    return frame.ffill().bfill().fillna(0.0).to_numpy(np.float32)


def compute_tail(work: TailWork) -> TailScores:
    """Score the segment (pure: no database) and keep the scores it gets exactly right."""
    t0 = time.perf_counter()
    detector: Any = work.detector  # margins / window_drivers exist where provides_margins / explains_windows say
    with work.detector_lock:
        points, windows = detector.point_and_window_scores(work.values)
        out = {"window": np.asarray(windows)}
        if "margin" in work.kinds and detector.provides_margins:
            out["margin"] = np.asarray(detector.margins(work.values, window_scores=windows))
        if "driver" in work.kinds and detector.explains_windows:
            out["driver"] = np.asarray(detector.window_drivers(work.values, window_scores=windows), dtype=np.float32)
    offset = work.segment_start // detector.stride  # the segment's first window is this window of the series
    kept = {k: v[work.window_from - offset :] for k, v in out.items()}
    return TailScores(work, np.asarray(points)[work.point_from - work.segment_start :], kept, time.perf_counter() - t0)


def store_tail(session: Session, result: TailScores) -> tuple[Scored, list[int]]:
    """Write the tail's scores under the series' lock, then send ``anomaly.detected`` for every new anomalous
    segment of the newly scored points (only when a scored series grew: a first scoring sends none). Returns what
    was done and the webhook delivery jobs to enqueue after commit. A tail another scorer stored first is kept."""
    work = result.work
    datasets.lock_series(session, work.series_id)
    now_scored = repo.scored_length(session, work.version_id, work.series_id)
    if now_scored >= work.n_points:
        return Scored(work.project_id, work.version_id, "up_to_date"), []
    repo.write_scores_from(
        session, work.version_id, work.series_id, "point", work.point_from, result.points, work.point_chunk
    )
    for kind, scores in result.windows.items():
        repo.write_scores_from(
            session, work.version_id, work.series_id, kind, work.window_from, scores, work.window_chunk
        )
    new_from = max(now_scored, work.n_scored)
    observability.observe_scoring_seconds(result.seconds)
    anomalies: list[dict] = []
    hooks: list[int] = []
    if work.n_scored > 0 and work.threshold is not None:
        anomalies = _new_segments(result.points, work.point_from, new_from, work.threshold)
        if anomalies:
            series = datasets.get_series(session, work.series_id)
            for segment in anomalies:
                segment.update(_stamps(session, series, segment["start"], segment["end"]))
                payload = {
                    "project_id": work.project_id,
                    "version_id": work.version_id,
                    "series_id": work.series_id,
                    "threshold": work.threshold,
                    **segment,
                }
                hooks += webhooks.emit(session, "anomaly.detected", payload)
    return Scored(work.project_id, work.version_id, "scored", work.n_points - new_from, anomalies=anomalies), hooks


def _new_segments(points: np.ndarray, point_from: int, new_from: int, threshold: float) -> list[dict]:
    """Runs of points at or above ``threshold`` that start among the new points ``[new_from, ...)`` (a run that
    began before them is not new). ``points`` are the scores from ``point_from`` on."""
    flags = np.asarray(points) >= threshold
    local = new_from - point_from
    if local >= len(flags):
        return []
    head = flags[local:]
    before = bool(flags[local - 1]) if local > 0 else False
    # edge e: the flag changes between head[e - 1] (or ``before``) and head[e]; rises and falls alternate
    edges = np.flatnonzero(np.diff(np.concatenate([[before], head, [False]]).astype(np.int8)))
    starts, ends = edges[::2], edges[1::2]
    if before:  # the first edge closes a run that began before the new points: not a new segment
        starts, ends = edges[1::2], edges[2::2]
    out = []
    for a, b in zip(starts, ends, strict=False):
        seg = np.asarray(points)[local + a : local + b]
        out.append(
            {
                "start": int(new_from + a),
                "end": int(new_from + b),
                "peak_score": round(float(seg.max()), 6),
                "ongoing": bool(local + b == len(flags)),
            }
        )
    return out


def _stamps(session: Session, series: Series, start: int, end: int) -> dict:
    stamps = datasets.read_timestamps(session, series, start, end)
    first, last = stamps[0], stamps[-1]
    if series.timestamp_kind == "datetime":
        return {
            # the API's one time format (docs/API.md "Times"): ISO 8601 UTC with "Z", stored values being UTC
            "start_timestamp": pd.Timestamp(first).isoformat() + "Z",
            "end_timestamp": pd.Timestamp(last).isoformat() + "Z",
        }
    return {"start_timestamp": first.item(), "end_timestamp": last.item()}


def score_tail(session: Session, project: Project, version: ModelVersion, series: Series) -> tuple[Scored, list[int]]:
    """The three steps in one session (small tails, in a request)."""
    work = prepare_tail(session, project, version, series)
    if isinstance(work, Scored):
        return work, []
    return store_tail(session, compute_tail(work))


# -- live data: append, then score -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AppendResult:
    append_id: int
    series_id: int
    start: int
    end: int
    first_timestamp: str | None
    last_timestamp: str | None
    replayed: bool
    score_now: bool  # score in the request, after this transaction commits (score_appended)
    scoring: list[dict]
    job_ids: list[int]  # jobs to enqueue after commit

    def as_dict(self) -> dict:
        return {
            "append_id": self.append_id,
            "series_id": self.series_id,
            "start": self.start,
            "end": self.end,
            "n_points": self.end - self.start,
            "first_timestamp": self.first_timestamp,
            "last_timestamp": self.last_timestamp,
            "scoring": self.scoring,
        }


def append_points(
    session: Session, actor_id: int | None, series_id: int, body: bytes, content_type: str, key: str | None
) -> AppendResult:
    """Parse, validate and store a batch (:func:`app.datasets.service.append_points`). A batch of more than
    :data:`SYNC_POINTS` gets a ``score`` job in the same transaction; a smaller one is scored by
    :func:`score_appended` once this transaction committed. A replayed batch (same idempotency key and content)
    changes nothing and answers what the first request answered."""
    series = datasets.get_series(session, series_id)
    batch = datasets.parse_points(series, body, content_type)
    appended = datasets.append_points(session, actor_id, series_id, batch, key)
    row = appended.batch
    if appended.replayed:  # scored again only if the first request stopped before it recorded its scoring
        return _result(row, replayed=True, score_now=not row.scoring, job_ids=[])
    observability.record_points_ingested(len(batch))
    if len(batch) <= SYNC_POINTS:
        return _result(row, replayed=False, score_now=True, job_ids=[])
    job = jobs.create_job(session, JOB_KIND, dedupe_key=f"score:s{series_id}:n{appended.series.n_points}")
    row.scoring = [
        Scored(p.id, v.id, "queued", job_id=job.id, message=f"job {job.id} scores these points").as_dict()
        for p, v in covering_versions(session, series_id)
    ]
    return _result(row, replayed=False, score_now=False, job_ids=[job.id])


def _result(row: Any, *, replayed: bool, score_now: bool, job_ids: list[int]) -> AppendResult:
    return AppendResult(
        row.id,
        row.series_id,
        row.start,
        row.end,
        row.first_timestamp,
        row.last_timestamp,
        replayed,
        score_now,
        list(row.scoring or []),
        job_ids,
    )


def score_appended(session: Session, append_id: int) -> tuple[list[dict], list[int]]:
    """Score a stored batch (and anything unscored before it) with every covering serving version; returns what
    each did (also stored on the batch, so a retry of the append answers the same) and the webhook delivery jobs
    and any ``score`` job to enqueue after commit. A version with more than :data:`SYNC_POINTS` unscored points
    (a job is still on an earlier large batch) gets a job instead."""
    row = datasets.get_append(session, append_id)
    series = datasets.get_series(session, row.series_id)
    outcomes, job_ids = [], []
    for project, version in covering_versions(session, series.id):
        pending = series.n_points - repo.scored_length(session, version.id, series.id)
        if pending > SYNC_POINTS:
            job = _score_job(session, version, series)
            outcomes.append(Scored(project.id, version.id, "queued", job_id=job.id).as_dict())
            job_ids.append(job.id)
            continue
        scored, hooks = score_tail(session, project, version, series)
        outcomes.append(scored.as_dict())
        job_ids += hooks
    row.scoring = outcomes
    return outcomes, job_ids


def score_after_append(db: Database, append_id: int) -> tuple[list[dict], list[int]]:
    """:func:`score_appended` in a transaction of its own, once the points have committed. The points are stored
    whatever happens here: a database too busy to score them now must not turn the append into a 503 (a client would
    resend a batch that is already in), so the answer says ``deferred`` and the first read of their scores scores
    them (:func:`ensure_scored`)."""
    try:
        with db.session_scope() as session:
            return score_appended(session, append_id)
    except (PoolTimeout, OperationalError):
        log.warning("append %s stored; scoring deferred: the database is busy", append_id, exc_info=True)
        deferred = {
            "status": "deferred",
            "scored_points": 0,
            "message": "the points are stored; the server was too busy to score them now: the first read of their "
            "scores does",
        }
        return [deferred], []


def _score_job(session: Session, version: ModelVersion, series: Series) -> Any:
    job = jobs.create_job(
        session,
        JOB_KIND,
        project_id=version.project_id,
        dedupe_key=f"score:v{version.id}:s{series.id}:n{series.n_points}",
    )
    if job.status in ("failed", "cancelled"):
        jobs.retry(session, None, job.id)
    return job


# -- scores asked for before they exist ------------------------------------------------------------------------------


def ensure_scored(session: Session, version: ModelVersion, series_id: int, end: int | None = None) -> int:
    """Make sure ``version`` has point scores of ``series_id`` up to ``end`` (default: the series' end): a series
    imported after the version trained, or points appended and not scored yet, are scored now when at most
    :data:`SYNC_POINTS` are missing; otherwise :class:`ScoresPending` (409; the web's handler starts the job and
    names it). 409 too for a series shorter than one window. Returns how many points the version has scored."""
    series = datasets.get_series(session, series_id)
    end = series.n_points if end is None else min(end, series.n_points)
    scored = repo.scored_length(session, version.id, series_id)
    if scored >= end:
        return scored
    project = projects.get_project(session, version.project_id)
    if series.n_points - scored > SYNC_POINTS:
        job = _score_job(session, version, series)  # found, or created and rolled back with the error below
        if job.status != "done":  # a done job with points still unscored failed to store them: score here instead
            raise ScoresPending(version.id, series_id, scored, series.n_points)
    outcome, _ = score_tail(session, project, version, series)
    if outcome.status == "not_enough_points":
        raise Conflict(f"model version {version.id} cannot score series {series_id} yet: {outcome.message}")
    return repo.scored_length(session, version.id, series_id)


def start_pending_job(session: Session, pending: ScoresPending) -> tuple[int, str]:
    """The ``score`` job for a :class:`ScoresPending` (created, found, or retried when it failed) and the message
    that names it; the caller commits, then enqueues the job."""
    version = repo.get(session, pending.version_id)
    if version is None:
        raise NotFound(f"no model version with id {pending.version_id}")
    job = _score_job(session, version, datasets.get_series(session, pending.series_id))
    return job.id, (
        f"{pending.message} in job {job.id}: follow GET /api/v1/jobs/{job.id} and ask again when it is done"
    )


def run_score_job(db: Database, settings: Settings, job_id: int) -> str:
    """The body of a ``score`` job: score the unscored tail of its series with its version (or every covering
    serving version), reading and writing in short transactions around the scoring. Webhook deliveries it creates
    are queued jobs the executor's sweeper runs."""
    with db.session_scope() as session:
        job = jobs.get_job(session, job_id)
        match = _JOB_KEY.match(job.dedupe_key or "")
        if match is None:
            raise ValueError(f"job {job_id} is not a scoring job (key {job.dedupe_key!r})")
        version_id, series_id = match.group(1), int(match.group(2))
        if version_id is not None:
            version = repo.get(session, int(version_id))
            if version is None:
                raise NotFound(f"model version {version_id} no longer exists")
            targets = [(version.project_id, version.id)]
        else:
            targets = [(p.id, v.id) for p, v in covering_versions(session, series_id)]
    done = []
    for project_id, version_id_ in targets:
        with db.session_scope() as session:
            project = projects.get_project(session, project_id)
            version = repo.get(session, version_id_)
            if version is None:
                continue
            work = prepare_tail(session, project, version, datasets.get_series(session, series_id))
        if isinstance(work, Scored):
            done.append(f"v{version_id_}: {work.status.replace('_', ' ')}")
            continue
        result = compute_tail(work)
        with db.session_scope() as session:
            scored, _hooks = store_tail(session, result)  # deliveries are queued rows: the sweeper sends them
        done.append(f"v{version_id_}: {scored.scored_points:,} points")
    return f"scored series {series_id}: " + ("; ".join(done) or "no model covers it")


# -- scoring without storing -----------------------------------------------------------------------------------------


def score_array(session: Session, project_id: int, body: bytes, content_type: str) -> dict:
    """Score uploaded values with the project's serving version without storing anything: ``{"project_id",
    "version_id", "n_points", "threshold", "scores", "predictions"}`` (scores as the version's stored scores of the
    same values would be; predictions 1 where a score is at or above the threshold)."""
    project = projects.get_project(session, project_id)
    version = repo.serving_or_latest(session, project)
    if version is None:
        raise NotFound(f"project {project_id} has no model version yet; wait for the initial fit")
    names = project.series[0].channel_names if project.series else []
    values = datasets.parse_values(names, body, content_type, MAX_ARRAY_POINTS)
    if len(values) < project.window:
        raise AppError(
            f"send at least {project.window} points (one window of the model), not {len(values)}", status=422
        )
    detector, lock = loaded_detector(session, version)
    t0 = time.perf_counter()
    with lock:
        points, _ = detector.point_and_window_scores(values)
    observability.observe_scoring_seconds(time.perf_counter() - t0)
    threshold = version.threshold
    stored = np.asarray(points, dtype=np.float32)  # as a stored score would be
    return {
        "project_id": project.id,
        "version_id": version.id,
        "n_points": len(values),
        "threshold": threshold,
        "scores": [round(float(v), 6) for v in stored],
        "predictions": [int(v >= threshold) for v in stored] if threshold is not None else [],
    }
