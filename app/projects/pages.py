"""Browser pages of the loop: project list and creation, the admin project view, the analyst's labeling queue,
the jobs monitor; plus the two small read endpoints the labeling queue needs.

Routes stay thin: they read through the services, check the role (admin pages take ``AdminPrincipal``, so an analyst
gets 403 whatever buttons the page shows) and render. Actions from these pages post to the /api/v1 endpoints with the
CSRF header (admin.js, label.js); the one form post here (creating a project) carries the CSRF field.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from app.core.thresholds import DEFAULT_THRESHOLD_METHOD
from app.datasets import service as datasets
from app.deps import AdminPrincipal, CurrentPrincipal, PostedForm, Principal, SessionDep
from app.errors import AppError
from app.jobs.router import enqueue_after_commit
from app.projects import service, views
from app.projects.schemas import ProjectCreate, ProjectSettingsIn
from app.rendering import render

router = APIRouter(include_in_schema=False)

STRATEGIES: dict[str, str] = {
    "hybrid": "top-k plus random picks across score bins: finds anomalies and checks the model's blind spots",
    "top_k": "the highest-scored unlabeled windows",
    "interval": "random picks spread over score bins",
    "margin": "windows closest to the decision boundary (smallest margin)",
    "least_confidence": "windows the model is least confident about",
    "entropy": "windows with the highest prediction entropy",
    "random": "uniform random windows (a baseline)",
}
FORM_DEFAULTS: dict[str, Any] = {
    "detector": "ensemble",
    "window": 25,
    "stride": 1,
    "strategy": "hybrid",
    "round_size": 10,
    "budget": 100,
    "auto_next": False,
    "oracle": "human",
    "threshold_method": DEFAULT_THRESHOLD_METHOD,
    "holdout_fraction": 0.0,
    "seed": 0,
    "adoption_policy": "validate",
    "max_flag_share": 0.05,
    "anomaly_types": "anomaly",
    "answers_per_window": 1,
    "review_grace_minutes": 10,
}
THRESHOLD_CHOICES: dict[str, str] = {
    "expected_f1": "best F1 expected over all points",
    "best_f1": "best F1 on the labeled points",
    "percentile": "score percentile",
    "mean_std": "mean + k·std",
    "fpr": "target false-positive rate",
}
"""How each of :data:`app.core.thresholds.THRESHOLD_METHODS` is named on the form and the project page."""


# -- project list and creation ------------------------------------------------------------------------------------


@router.get("/projects")
def projects_page(request: Request, session: SessionDep, principal: CurrentPrincipal) -> Response:
    return render(request, "projects.html", principal, rows=views.project_rows(session))


@router.get("/projects/new")
def new_project_page(request: Request, session: SessionDep, principal: AdminPrincipal) -> Response:
    return _new_form(request, session, principal, dict(FORM_DEFAULTS))


def _new_form(
    request: Request,
    session: SessionDep,
    principal: Principal,
    form: dict[str, Any],
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    detectors = service.detector_choices()
    form.setdefault(
        "detector_params",
        json.dumps(detectors[form["detector"]][1] if form.get("detector") in detectors else {}, indent=1),
    )
    return render(
        request,
        "project_new.html",
        principal,
        status_code=status_code,
        form=form,
        error=error,
        datasets=datasets.list_datasets(session),
        detectors=detectors,
        strategies=STRATEGIES,
        thresholds=THRESHOLD_CHOICES,
    )


@router.post("/projects/new")
def create_project(
    request: Request,
    background: BackgroundTasks,
    session: SessionDep,
    principal: AdminPrincipal,
    raw: PostedForm,
) -> Response:
    form: dict[str, Any] = {k: raw.get(k) for k in raw if k not in ("csrf_token", "series_ids")}
    form["series_ids"] = [int(str(v)) for v in raw.getlist("series_ids") if str(v).isdigit()]
    form["auto_next"] = raw.get("auto_next") in ("on", "true", "1")
    try:
        params = json.loads(str(form.get("detector_params") or "{}"))
        if not isinstance(params, dict):
            raise AppError('detector parameters must be a JSON object, e.g. {"epochs": 5}')
        spec = ProjectCreate(
            name=str(form.get("name") or ""),
            dataset_id=form.get("dataset_id") or 0,
            series_ids=form["series_ids"] or None,
            detector=form.get("detector") or "ensemble",
            detector_params=params,
            window=form.get("window") or None,
            stride=form.get("stride") or 1,
            strategy=form.get("strategy") or None,
            round_size=form.get("round_size") or 10,
            budget=form.get("budget") or 100,
            auto_next=form["auto_next"],
            oracle=form.get("oracle") or "human",
            threshold_method=form.get("threshold_method") or DEFAULT_THRESHOLD_METHOD,
            holdout_fraction=form.get("holdout_fraction") or 0.0,
            seed=form.get("seed") or 0,
            adoption_policy=form.get("adoption_policy") or "validate",
            max_flag_share=form.get("max_flag_share") or 0.05,
            anomaly_types=anomaly_type_list(form.get("anomaly_types")),
            answers_per_window=form.get("answers_per_window") or 1,
            review_grace_minutes=form.get("review_grace_minutes") or FORM_DEFAULTS["review_grace_minutes"],
        )
        project, job_id = service.create_project(session, principal.user, spec)
    except json.JSONDecodeError as exc:
        return _new_form(request, session, principal, form, f"detector parameters are not valid JSON: {exc}", 400)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'form'}: {e['msg']}" for e in exc.errors())
        return _new_form(request, session, principal, form, f"invalid input: {problems}", 422)
    except AppError as exc:
        return _new_form(request, session, principal, form, exc.message, exc.status)
    enqueue_after_commit(request, background, [job_id])
    return RedirectResponse(f"/projects/{project.id}", status_code=303)


def anomaly_type_list(text: object) -> list[str]:
    """The form's comma-separated anomaly types as a list (empty entries dropped; none given: the default)."""
    return [t.strip() for t in str(text or "").split(",") if t.strip()] or ["anomaly"]


@router.post("/projects/{project_id}/anomaly-types")
def set_anomaly_types(
    project_id: int,
    session: SessionDep,
    principal: AdminPrincipal,
    raw: PostedForm,
) -> Response:
    """The project page's anomaly-types form: back to the page with the new types (a 422 page says what to fix)."""
    try:
        settings = ProjectSettingsIn(anomaly_types=anomaly_type_list(raw.get("anomaly_types")))
    except ValidationError as exc:
        raise AppError("anomaly types: " + "; ".join(e["msg"] for e in exc.errors()), status=422) from None
    service.update_anomaly_types(session, principal.user, project_id, settings.anomaly_types or ["anomaly"])
    return RedirectResponse(f"/projects/{project_id}#anomaly-types", status_code=303)


# -- admin project view -------------------------------------------------------------------------------------------


@router.get("/projects/{project_id}")
def project_page(request: Request, project_id: int, session: SessionDep, principal: AdminPrincipal) -> Response:
    page = views.project_page(session, project_id)
    return render(
        request,
        "project.html",
        principal,
        **page,
        strategies=STRATEGIES,
        thresholds=THRESHOLD_CHOICES,
        detector_help=service.detector_choices().get(page["project"].detector, ("", {}))[0],
    )


# -- analyst labeling queue ---------------------------------------------------------------------------------------


@router.get("/label")
def label_home(request: Request, session: SessionDep, principal: CurrentPrincipal) -> Response:
    """Straight to the queue when one project waits for answers; otherwise a list to choose from."""
    rows = views.project_rows(session, queue_of=principal.user)
    waiting = [r for r in rows if r["pending"] > 0]
    if len(waiting) == 1:
        return RedirectResponse(f"/projects/{waiting[0]['project'].id}/label", status_code=303)
    return render(request, "label_home.html", principal, rows=rows, waiting=waiting)


@router.get("/projects/{project_id}/label")
def label_page(request: Request, project_id: int, session: SessionDep, principal: CurrentPrincipal) -> Response:
    project = service.get_project(session, project_id)
    state = views.labeling_state(session, project, principal.user)
    return render(request, "label.html", principal, project=project, state=state)


@router.get("/api/v1/projects/{project_id}/labeling")
def labeling_state_api(project_id: int, session: SessionDep, principal: CurrentPrincipal) -> dict[str, Any]:
    """The labeling queue's state: the open round, its queries in rank order with their answers, the series."""
    return views.labeling_state(session, service.get_project(session, project_id), principal.user)


@router.get("/api/v1/projects/{project_id}/series/{series_id}/labels")
def labels_in_range(
    project_id: int,
    series_id: int,
    session: SessionDep,
    principal: CurrentPrincipal,
    start: Annotated[int, Query(ge=0)] = 0,
    end: Annotated[int | None, Query(ge=1)] = None,
) -> list[dict[str, Any]]:
    """Labels in force on one series overlapping ``[start, end)`` (to shade a chart)."""
    stop = end if end is not None else 2**62
    return [
        {
            "id": lab.id,
            "start": lab.start,
            "end": lab.end,
            "value": lab.value,
            "source": lab.source,
            "query_id": lab.query_id,
            "round_id": lab.round_id,
            "label_type": lab.label_type,
            "comment": lab.comment,
        }
        for lab in service.labels_in_range(session, project_id, series_id, start, stop, principal.user)
    ]


# -- jobs monitor -------------------------------------------------------------------------------------------------


@router.get("/admin/jobs")
def jobs_page(request: Request, session: SessionDep, principal: AdminPrincipal, webhooks: bool = False) -> Response:
    return render(request, "jobs.html", principal, **views.jobs_page(session, webhooks=webhooks))
