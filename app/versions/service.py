"""Model versions: train (fit or feedback) outside any transaction, store with scores, promote, roll back.

Training runs in three steps so no database transaction is held while a model learns:
:func:`prepare_training` (read everything, short transaction) -> :func:`train` (pure: core only) ->
:func:`store_training` (write the version and its scores, short transaction, idempotent per round).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.accounts.models import User
from app.accounts.service import audit
from app.core import metrics as m
from app.core.adoption import AdoptionRule
from app.core.detectors.registry import detector_class, load_detector, make_detector
from app.core.loop import PoolState, learn, pool_threshold, validate_candidate
from app.core.loop import Query as CoreQuery
from app.core.runtime import resolve_device
from app.core.windows import LabeledRange, n_windows, ranges_to_point_labels
from app.datasets import service as datasets
from app.errors import Conflict, NotFound
from app.jobs.models import Job
from app.projects import repository as projects_repo
from app.projects import rounds
from app.projects import service as projects
from app.projects.models import Project
from app.projects.rounds import RoundStatus
from app.versions import repository as repo
from app.versions import scoring
from app.versions.models import ModelVersion
from app.webhooks import service as webhooks


@dataclass
class SeriesData:
    series_id: int
    values: np.ndarray  # (n_points, C) the whole series, held-back tail included
    truth: np.ndarray | None  # (n_points,) imported ground truth, for evaluation only
    pool_points: int
    offset: int  # where this series' pool starts in the concatenated pool


@dataclass
class TrainingInput:
    """Everything a training run needs, read in one short transaction."""

    project_id: int
    round_number: int
    detector: str
    params: dict
    weights: bytes | None  # the version to refine (the one that served when the round was asked); None = fit
    pool: np.ndarray  # (N, C) every series' pool, concatenated
    state: PoolState  # the project as the core loop sees it (series, labels in force, budget)
    series: list[SeriesData]
    threshold_method: str
    chunk_points: int
    labels_used: int
    rule: AdoptionRule = field(default_factory=AdoptionRule)
    newest: list[tuple[CoreQuery, list[LabeledRange]]] = field(default_factory=list)  # the round's answers
    serving_windows: list[np.ndarray] | None = None  # the serving version's window scores per series

    @property
    def ranges(self) -> list[LabeledRange]:
        """Labels in force in pool coordinates."""
        return self.state.pool_ranges()


@dataclass
class TrainingOutput:
    weights: bytes
    scores: dict[int, dict[str, np.ndarray]]  # series id -> {"point", "window", "margin", "driver"}
    threshold: float
    metrics: dict = field(default_factory=dict)
    device: str = "cpu"
    train_seconds: float = 0.0
    adoption: dict = field(default_factory=dict)


def adoption_rule(project: Project) -> AdoptionRule:
    """The rule that decides whether the project's new versions serve (its settings, the core's other defaults)."""
    return AdoptionRule(policy=project.adoption_policy, max_flag_share=project.max_flag_share)


def prepare_training(session: Session, job: Job) -> TrainingInput | None:
    """Inputs for ``job`` (kind ``fit`` or ``retrain``); ``None`` when its version already exists (a rerun)."""
    if job.project_id is None:
        raise NotFound(f"job {job.id} belongs to no project")
    project = projects.get_project(session, job.project_id)
    newest: list[tuple[CoreQuery, list[LabeledRange]]] = []
    serving_windows = None
    state = projects.pool_state(session, project)
    if job.kind == "fit":
        number, weights = 0, None
    else:
        rnd = projects_repo.get_round(session, job.round_id) if job.round_id is not None else None
        if rnd is None:
            raise NotFound(f"job {job.id} points at a missing round")
        number = rnd.number
        source = repo.get(session, rnd.source_version_id) if rnd.source_version_id else repo.latest(session, project.id)
        if source is None:
            raise Conflict("no model version to refine")
        weights = source.weights
        rounds.move(session, rnd.id, (RoundStatus.COMPLETE, RoundStatus.FAILED), RoundStatus.TRAINING)
        newest = projects.round_answers(session, project, state, rnd.id)
        serving = repo.serving_or_latest(session, project)
        if serving is not None:
            serving_windows = _stored_windows(session, project, serving, state)
    if repo.get_for_round(session, project.id, number) is not None:
        return None
    pool, state = projects.load_pool(session, project, state)
    series = []
    for s, part, offset in zip(project.series, state.series, state.offsets(), strict=True):
        series.append(
            SeriesData(s.id, projects.model_input(session, s), datasets.read_truth(session, s), part.pool_end, offset)
        )
    params = {"window": project.window, "stride": project.stride, "seed": project.seed, **project.detector_params}
    rule = adoption_rule(project)
    return TrainingInput(
        project.id,
        number,
        project.detector,
        params,
        weights,
        pool,
        state,
        series,
        project.threshold_method,
        project.series[0].chunk_points,
        state.answers,
        rule,
        newest,
        serving_windows,
    )


def _stored_windows(
    session: Session, project: Project, version: ModelVersion, state: PoolState
) -> list[np.ndarray] | None:
    """A version's stored window scores per series of the pool, or None if any is missing."""
    out = []
    for s in state.series:
        n_win = n_windows(s.n_points, project.window, project.stride)
        series_id = cast(int, s.key)  # the product keys the pool's series by their id
        arr = repo.read_scores(session, version.id, series_id, "window", 0, n_win, project.series[0].chunk_points)
        if len(arr) != n_win:
            return None
        out.append(arr.astype(np.float64))
    return out


def train(inp: TrainingInput, device: str, progress=None) -> TrainingOutput:  # type: ignore[no-untyped-def]
    """Fit (no weights) or refine with every label so far (:func:`app.core.loop.learn`), score every series, and
    judge the candidate on the round's answers (:func:`app.core.loop.validate_candidate`). Pure: no database."""
    t0 = time.perf_counter()
    if inp.weights is None:
        detector = make_detector(inp.detector, device=device, **inp.params)
        detector.fit(inp.pool, progress=progress)
    else:
        detector = load_detector(inp.weights, device=device)  # the worker's device, whatever the last one used
        learn(detector, inp.pool, inp.ranges, progress)
    seconds = time.perf_counter() - t0
    # provides_margins / explains_windows declare the optional methods used below (app/core/detectors/base.py);
    # a type checker cannot tie a flag to a method
    capable: Any = detector
    scores = {}
    basis = []  # per series, the pool's point scores the threshold is chosen on (Detector.threshold_basis)
    for s in inp.series:
        points, windows = detector.point_and_window_scores(s.values)
        entry = {"point": points, "window": windows}
        if detector.provides_margins:
            entry["margin"] = capable.margins(s.values, window_scores=windows)
        if detector.explains_windows:
            entry["driver"] = np.asarray(capable.window_drivers(s.values, window_scores=windows), dtype=np.float32)
        scores[s.series_id] = entry
        basis.append(detector.threshold_basis(s.values, points)[: s.pool_points])
    pool_points = np.concatenate([scores[s.series_id]["point"][: s.pool_points] for s in inp.series])
    # from the labels gathered, never from ground truth (-1 entries are unlabeled)
    labels = ranges_to_point_labels(list(inp.ranges), len(pool_points))
    chosen = pool_threshold(inp.threshold_method, np.concatenate(basis), labels)
    verdict = validate_candidate(
        inp.rule,
        inp.state,
        inp.newest,
        detector,
        inp.pool,
        [scores[s.series_id]["window"] for s in inp.series],
        inp.serving_windows if inp.weights is not None else None,
        pool_points,
        chosen,
    )
    threshold = float(verdict.threshold)  # the guard's, when the labels' own flags more than its limit
    metrics = evaluate(inp, scores, labels, threshold)
    metrics["flag_share"] = round(verdict.flag_share, 6)
    if detector.explains_windows:
        metrics["member_names"] = list(capable.member_names_)
    notes, clause = detector.training_notes()  # e.g. RLAD's check of its agent against its warm-up forest
    metrics.update(notes)
    adoption = verdict.as_dict()
    if clause:  # what scores this version, said where the verdict is shown
        adoption["reason"] += "; " + clause
    return TrainingOutput(detector.to_bytes(), scores, threshold, metrics, resolve_device(device), seconds, adoption)


def evaluate(
    inp: TrainingInput, scores: dict[int, dict[str, np.ndarray]], labels: np.ndarray, threshold: float
) -> dict:
    """A version's metrics: on the pool's ``labels`` ``(N,)`` (1 / 0 / -1 unlabeled) and, where imported, on ground
    truth of the held-back tail (or of the whole series when nothing is held back, marked as such), with the
    ``threshold`` it serves with."""
    pool_scores = np.concatenate([scores[s.series_id]["point"][: s.pool_points] for s in inp.series])
    known = labels >= 0
    out: dict = {"labels_used": inp.labels_used, "labeled_points": int(known.sum()), "threshold": threshold}
    if known.any() and 0 < labels[known].sum() < known.sum():
        out["labels_pr_auc"] = m.pr_auc(pool_scores[known], labels[known])
    truths = [s for s in inp.series if s.truth is not None]
    if truths and len(truths) == len(inp.series):
        held_back = all(s.pool_points < len(s.values) for s in inp.series)
        evs = [
            (
                scores[s.series_id]["point"][s.pool_points :] if held_back else scores[s.series_id]["point"],
                truth[s.pool_points :] if held_back else truth,
            )
            for s in inp.series
            if (truth := s.truth) is not None  # all of them (checked above)
        ]
        ev_scores = np.concatenate([e[0] for e in evs]).astype(np.float64)
        ev_truth = np.concatenate([e[1] for e in evs]).astype(np.int64)
        out["truth_part"] = "held-back tail" if held_back else "whole series (includes labeled windows)"
        if 0 < ev_truth.sum() < len(ev_truth):
            f1, _ = m.best_f1(ev_scores, ev_truth)
            out.update(
                {
                    "pr_auc": m.pr_auc(ev_scores, ev_truth),
                    "roc_auc": m.roc_auc(ev_scores, ev_truth),
                    "best_f1_oracle": f1,
                    "pa_k_auc": m.pa_k_auc(ev_scores, ev_truth),
                    "f1_at_threshold": m.precision_recall_f1(ev_scores, ev_truth, threshold)[2],
                }
            )
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in out.items()}


def store_training(
    session: Session, job: Job, inp: TrainingInput, out: TrainingOutput
) -> tuple[ModelVersion, list[int]]:
    """Write the version and its scores; the unique (project, round) key makes a rerun a no-op. Returns the version
    and the jobs to enqueue after commit (the next round's, when ``auto_next`` and the oracle answers at once)."""
    project = projects.get_project(session, inp.project_id)
    existing = repo.get_for_round(session, project.id, inp.round_number)
    if existing is not None:
        return existing, []
    version = ModelVersion(
        project_id=project.id,
        round_number=inp.round_number,
        method=detector_class(project.detector).method(),
        params=inp.params,
        weights=out.weights,
        metrics=out.metrics,
        threshold=out.threshold,
        labels_used=inp.labels_used,
        device=out.device,
        train_seconds=round(out.train_seconds, 3),
        adoption=out.adoption,
    )
    try:
        with session.begin_nested():
            repo.add(session, version)
    except IntegrityError:
        existing = repo.get_for_round(session, project.id, inp.round_number)
        if existing is None:
            raise
        return existing, []
    for series_id, kinds in out.scores.items():
        for kind, arr in kinds.items():
            repo.write_scores(session, version.id, series_id, kind, arr, inp.chunk_points)
    previous = project.serving_version_id
    served = _adopt(session, project, version)
    follow_up: list[int] = webhooks.emit(
        session,
        "version.created",
        _version_event(version, served=served, reason=str(version.adoption.get("reason", ""))),
    )
    if served:
        follow_up += webhooks.emit(
            session, "version.served", _version_event(version, previous_version_id=previous, by="adoption")
        )
    if job.round_id is not None:
        rounds.move(session, job.round_id, (RoundStatus.TRAINING, RoundStatus.COMPLETE), RoundStatus.DONE)
    if project.auto_next:
        follow_up += _auto_next_round(session, project)
    audit(
        session,
        None,
        "version.create",
        "model_version",
        version.id,
        project_id=project.id,
        round=inp.round_number,
        labels_used=inp.labels_used,
        served=served,
        why=version.adoption.get("reason", ""),
    )
    return version, follow_up


def _adopt(session: Session, project: Project, version: ModelVersion) -> bool:
    """Serve ``version`` if its verdict allows it and no admin has pinned another; note why not otherwise."""
    if not version.adoption.get("serve", True):
        return False
    if not project.follow_new_versions and project.serving_version_id is not None:
        why = f"an admin pinned v{project.serving_version_id}; the checks said: {version.adoption.get('reason', '')}"
        version.adoption = {**version.adoption, "pinned": True, "reason": why}
        return False
    project.serving_version_id = version.id
    return True


def _auto_next_round(session: Session, project: Project) -> list[int]:
    if project.budget - projects.labels_used(session, project.id) <= 0:
        return []
    try:
        with session.begin_nested():
            started = projects.start_round(session, None, project.id)
    except Conflict:
        return []  # budget spent or nothing left to ask: the loop ends here
    return started.job_ids


def _version_event(version: ModelVersion, **extra: object) -> dict:
    """The ``data`` of a ``version.*`` webhook: which version of which project, and what it scored."""
    metrics = {
        k: v for k, v in (version.metrics or {}).items() if isinstance(v, int | float) and not isinstance(v, bool)
    }
    return {
        "project_id": version.project_id,
        "version_id": version.id,
        "round_number": version.round_number,
        "method": version.method,
        "threshold": version.threshold,
        "labels_used": version.labels_used,
        "metrics": metrics,
        **extra,
    }


def get_version(session: Session, version_id: int) -> ModelVersion:
    version = repo.get(session, version_id)
    if version is None:
        raise NotFound(f"no model version with id {version_id}")
    return version


def promote(session: Session, actor: User | None, version_id: int) -> tuple[ModelVersion, list[int]]:
    """Make ``version_id`` the one that serves (also how an admin rolls back to an older version). The pick
    sticks: new versions are stored and shown but do not serve until the admin lets the project follow them
    again (:func:`follow_new_versions`). Returns the version and the ``version.served`` webhook jobs to enqueue
    after commit."""
    version = get_version(session, version_id)
    project = projects.get_project(session, version.project_id)
    previous = project.serving_version_id
    project.serving_version_id = version.id
    project.follow_new_versions = False
    audit(session, actor, "version.promote", "model_version", version.id, project_id=project.id, previous=previous)
    if previous == version.id:
        return version, []
    event = _version_event(version, previous_version_id=previous, by="promote")
    return version, webhooks.emit(session, "version.served", event)


def follow_new_versions(
    session: Session, actor: User | None, project_id: int, follow: bool
) -> tuple[Project, list[int]]:
    """The one switch: ``True`` serves the newest version that passed adoption now and new ones as they pass;
    ``False`` keeps the version serving now, whatever comes. Returns the project and the ``version.served``
    webhook jobs to enqueue after commit (when the serving version changed)."""
    project = projects.get_project(session, project_id)
    project.follow_new_versions = follow
    job_ids: list[int] = []
    if follow:
        newest = repo.newest_served_version(session, project.id)
        if newest is not None and newest.id != project.serving_version_id:
            event = _version_event(newest, previous_version_id=project.serving_version_id, by="follow")
            project.serving_version_id = newest.id
            job_ids = webhooks.emit(session, "version.served", event)
    audit(
        session,
        actor,
        "project.follow_versions",
        "project",
        project.id,
        follow=follow,
        serving=project.serving_version_id,
    )
    return project, job_ids


def serving_version(session: Session, project: Project) -> ModelVersion | None:
    return repo.serving_or_latest(session, project)


def version_to_show(session: Session, project: Project, version_id: int | None) -> ModelVersion:
    """``version_id`` if it is one of the project's versions, else (``None``) the serving version."""
    version = get_version(session, version_id) if version_id else serving_version(session, project)
    if version is None:
        raise NotFound("the project has no model version yet; wait for the initial fit")
    if version.project_id != project.id:
        raise NotFound(f"version {version_id} is not a version of project {project.id}")
    return version


def read_scores(
    session: Session, version: ModelVersion, series_id: int, start: int = 0, end: int | None = None
) -> np.ndarray:
    """Point scores ``[start, end)`` of ``version`` on a series, read by range. Points the version has not scored
    yet (a series imported after it trained, points appended since) are scored first, in this request when few
    (:func:`app.versions.scoring.ensure_scored`); otherwise a job scores them and ``ScoresPending`` (409, with the
    job id) says so: a router that catches it and answers 202 keeps the job it created."""
    series = datasets.get_series(session, series_id)
    end = series.n_points if end is None else min(end, series.n_points)
    scoring.ensure_scored(session, version, series_id, end)
    return repo.read_scores(session, version.id, series_id, "point", max(0, start), end, series.chunk_points)


def list_versions(session: Session, project_id: int) -> list[ModelVersion]:
    return repo.list_for_project(session, project_id)


def score_view(
    session: Session,
    project: Project,
    version: ModelVersion,
    series_id: int,
    start: int,
    end: int | None,
    width_px: int,
) -> dict:
    """A version's point scores on ``[start, end)`` downsampled for a chart (MinMaxLTTB, ~2 points per pixel)."""
    projects.scored_series(session, project, series_id)
    scores = read_scores(session, version, series_id, start, end).astype(np.float64)
    idx = datasets.downsample_indices(scores, max(16, min(width_px, 4000) * 2))
    return {
        "version_id": version.id,
        "round_number": version.round_number,
        "threshold": version.threshold,
        "start": start,
        "end": start + len(scores),
        "i": (idx + start).tolist(),
        "y": [round(float(v), 6) for v in scores[idx]],
    }


def projects_with_series(session: Session, series_id: int) -> list[dict]:
    """Projects that use a series, with their versions (newest first), for the explorer's overlay picker."""
    out = []
    for p in projects_repo.list_projects(session):
        if any(s.id == series_id for s in p.series):
            out.append(
                {
                    "id": p.id,
                    "name": p.name,
                    "serving_version_id": p.serving_version_id,
                    "versions": [
                        {"id": v.id, "round_number": v.round_number, "method": v.method}
                        for v in reversed(repo.list_for_project(session, p.id))
                    ],
                }
            )
    return out
