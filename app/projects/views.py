"""What the project pages show (app/projects/pages.py): view models assembled from the services, so that the routes
only parse, check the role and render. Reads only; no query here that a repository does not own.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from app.accounts import service as accounts
from app.accounts.models import User
from app.core.detectors import detector_class
from app.datasets import service as datasets
from app.db import utcnow
from app.jobs import service as jobs
from app.jobs.schemas import JobOut
from app.projects import assignment, review, service
from app.projects import repository as repo
from app.projects.models import Project
from app.projects.rounds import RoundStatus
from app.projects.schemas import QueryOut
from app.versions import service as versions


def project_rows(session: Session, queue_of: User | None = None) -> list[dict[str, Any]]:
    """One row per project for the project list and the labeling home: its data set, last round, pending queries,
    labels used and the serving version's figures. With ``queue_of``, "pending" counts the windows waiting for that
    user's answer (their own windows of a round dealt to named analysts; with several answers per window, those they
    have not answered), as their labeling queue will show them."""
    return [_project_row(session, p, queue_of) for p in service.list_projects(session)]


def _project_row(session: Session, project: Project, queue_of: User | None) -> dict[str, Any]:
    last = repo.last_round(session, project.id)
    pending = 0
    if last is not None and last.status == RoundStatus.OPEN:
        pending = (
            repo.count_pending(session, last.id)
            if queue_of is None
            else review.waiting_for(session, project, last, queue_of)
        )
    serving = versions.serving_version(session, project)
    return {
        "project": project,
        "dataset": datasets.get_dataset(session, project.dataset_id).name,
        "round": last,
        "pending": pending,
        "labels_used": service.labels_used(session, project.id),
        "serving": serving,
        "pr_auc": (serving.metrics or {}).get("pr_auc") if serving else None,
        "labels_pr_auc": (serving.metrics or {}).get("labels_pr_auc") if serving else None,
    }


def project_page(session: Session, project_id: int) -> dict[str, Any]:
    """The admin's project page: rounds, versions (with the learning curve), jobs, who answered."""
    # versions before the project: one committed in between is missing here, never shown as not serving
    version_rows = versions.list_versions(session, project_id)
    project = service.get_project(session, project_id)
    review.close_overdue_rounds(session, project.id)  # a round whose review time is over shows as complete
    rounds = service.round_summaries(session, project.id)
    project_jobs = [JobOut.model_validate(j).model_dump(mode="json") for j in jobs.list_jobs(session, 50, project.id)]
    curve = [
        {
            "version": v.id,
            "round": v.round_number,
            "labels_used": v.labels_used,
            "pr_auc": (v.metrics or {}).get("pr_auc"),
            "labels_pr_auc": (v.metrics or {}).get("labels_pr_auc"),
            "roc_auc": (v.metrics or {}).get("roc_auc"),
        }
        for v in sorted(version_rows, key=lambda v: v.id)
    ]
    per_round = [
        {"round": s.round.number, **{k: s.counts.get(k, 0) for k in ("anomaly", "normal", "unsure")}}
        for s in reversed(rounds)
    ]
    serving_id = project.serving_version_id or (version_rows[-1].id if version_rows else None)
    return {
        "project": project,
        "dataset": datasets.get_dataset(session, project.dataset_id),
        "rounds": rounds,
        "versions": version_rows,
        "serving_id": serving_id,
        "adoption_rule": versions.adoption_rule(project),
        # whether the check judges a version on answers it did not learn from (else in-sample: it can only refuse)
        "adoption_held_out": detector_class(project.detector).can_hold_out_labels,
        "users": accounts.usernames(session),
        # who a round can be dealt to (the start-round form's "Assign…")
        "analysts": [u.username for u in accounts.list_users(session) if u.is_active and u.role == "analyst"],
        "active": repo.active_round(session, project.id),
        "labels_used": service.labels_used(session, project.id),
        "jobs_json": project_jobs,
        "charts": {"curve": curve, "per_round": per_round, "budget": project.budget},
        "series_names": {s.id: s.name for s in project.series},
        # several answers per window: agreement and disagreements (templates/_agreement.html)
        "agreement": review.project_agreement(session, project.id) if review.several_answers(project) else None,
    }


def labeling_state(session: Session, project: Project, viewer: User | None = None) -> dict[str, Any]:
    """The labeling queue's state: the open (else the last) round, its queries in rank order with their answers in
    force, and the series they are on. With several answers per window, each query's status and answer are
    ``viewer``'s own (app.projects.review.viewer_answers). A round whose review time is over is closed first (the
    sweeper sends its retraining job)."""
    review.close_overdue_rounds(session, project.id)
    active = repo.active_round(session, project.id)
    last = active or repo.last_round(session, project.id)
    out: dict[str, Any] = {
        "project": {
            "id": project.id,
            "name": project.name,
            "window": project.window,
            "strategy": project.strategy,
            "detector": project.detector,
            "budget": project.budget,
            "auto_next": project.auto_next,
            "labels_used": service.labels_used(session, project.id),
            "anomaly_types": list(project.anomaly_types),
            "answers_per_window": project.answers_per_window,
            "review_grace_minutes": project.review_grace_minutes,
            "oracle": project.oracle,
        },
        "round": None,
        "queries": [],
        "series": {},
        "series_list": [{"id": s.id, "name": s.name} for s in project.series],
    }
    if last is None:
        return out
    summary = next(s for s in service.round_summaries(session, project.id) if s.round.id == last.id)
    version = versions.get_version(session, last.source_version_id) if last.source_version_id else None
    users = accounts.usernames(session)
    out["round"] = {
        "id": last.id,
        "number": last.number,
        "strategy": last.strategy,
        "status": last.status,
        "k": last.k,
        "answered": summary.counts["answered"] + summary.counts["skipped"],
        "total": len(summary.queries),
        "open_windows": summary.counts["pending"],  # windows that still need answers, from anyone
        "review_until": last.review_until.isoformat() + "Z" if last.review_until else None,
        "version": None
        if version is None
        else {
            "id": version.id,
            "round_number": version.round_number,
            "threshold": version.threshold,
            "method": version.method,
        },
    }
    # a round dealt to named analysts: their own windows only (app.projects.assignment); admins see every window
    dealt = not assignment.sees_every_window(last, viewer)
    owners = assignment.assigned(project, last, summary.queries)
    out["round"]["assignees"] = [users.get(i, f"user {i}") for i in (last.assignee_ids or [])]
    out["round"]["yours"] = sum(viewer.id in who for who in owners.values()) if dealt and viewer else None
    # several answers per window: the viewer sees their own answers (and windows they answered as done)
    mine = review.viewer_answers(session, project, summary.queries, viewer) if review.several_answers(project) else {}
    claims = last.status == "open" and review.claims_apply(project, last, viewer)
    now = utcnow()
    for q in summary.queries:
        if dealt and viewer and viewer.id not in owners[q.id]:
            continue
        item = QueryOut.model_validate(q).model_dump(mode="json")
        answer = summary.answers[q.id]
        if q.id in mine:
            item["status"], answer = mine[q.id]
        item["assignees"] = [users.get(i, f"user {i}") for i in owners[q.id]]
        # one answer per window: a pending window another analyst was handed (and holds) is theirs for now
        holder = review.claimed_by_other(q, viewer, now) if claims and q.status == "pending" else None
        item["claimed_by"] = users.get(holder, f"user {holder}") if holder is not None else None
        item["answer"] = [
            {
                "start": lab.start,
                "end": lab.end,
                "value": lab.value,
                "author": users.get(lab.author_id, "") if lab.author_id else lab.source,
                "label_type": lab.label_type,
                "comment": lab.comment,
            }
            for lab in answer
        ]
        out["queries"].append(item)
    for s in project.series:
        if any(q.series_id == s.id for q in summary.queries):
            out["series"][str(s.id)] = {
                "id": s.id,
                "name": s.name,
                "n_points": s.n_points,
                "n_channels": s.n_channels,
                "channel_names": s.channel_names,
                "x_kind": s.timestamp_kind,
            }
    return out


def jobs_page(session: Session, limit: int = 200, webhooks: bool = False) -> dict[str, Any]:
    """The jobs monitor: the newest jobs (webhook deliveries only when asked for) and the names of their projects."""
    listed = jobs.list_jobs(session, limit, webhooks=webhooks)
    return {
        "webhooks": webhooks,
        "jobs_json": [JobOut.model_validate(j).model_dump(mode="json") for j in listed],
        "project_names": {p.id: p.name for p in service.list_projects(session)},
    }
