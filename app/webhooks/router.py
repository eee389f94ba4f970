"""Webhook endpoints (admin only): register, list, delete, test, read the delivery log; and the /admin/webhooks page.

The page's forms post here with the CSRF field; the signing secret is shown once, in the answer to the creation.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Query, Request
from fastapi.responses import RedirectResponse, Response

from app.deps import AdminPrincipal, PostedForm, Principal, SessionDep
from app.errors import AppError
from app.jobs.router import enqueue_after_commit
from app.projects import service as projects
from app.rendering import render
from app.webhooks import service
from app.webhooks.schemas import DeliveryOut, DeliveryPage, WebhookCreate, WebhookCreated, WebhookOut

router = APIRouter(tags=["webhooks"])


@router.post("/api/v1/webhooks", response_model=WebhookCreated, status_code=201)
def create_webhook(body: WebhookCreate, session: SessionDep, principal: AdminPrincipal) -> WebhookCreated:
    """Register a URL for events; the answer carries the signing secret, shown only this once."""
    if body.project_id is not None:
        projects.get_project(session, body.project_id)  # 404 for a project that does not exist
    subscription, secret = service.create_subscription(session, principal.user, body.url, body.events, body.project_id)
    return WebhookCreated.model_validate({**WebhookOut.model_validate(subscription).model_dump(), "secret": secret})


@router.get("/api/v1/webhooks", response_model=list[WebhookOut])
def list_webhooks(session: SessionDep, principal: AdminPrincipal) -> list[WebhookOut]:
    return [WebhookOut.model_validate(s) for s in service.list_subscriptions(session)]


@router.delete("/api/v1/webhooks/{webhook_id}", status_code=204)
def delete_webhook(webhook_id: int, session: SessionDep, principal: AdminPrincipal) -> Response:
    service.delete_subscription(session, principal.user, webhook_id)
    return Response(status_code=204)


@router.get("/api/v1/webhooks/{webhook_id}/deliveries", response_model=DeliveryPage)
def list_deliveries(
    webhook_id: int,
    session: SessionDep,
    principal: AdminPrincipal,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="next_cursor of the previous page")] = None,
) -> DeliveryPage:
    """The webhook's deliveries, newest first, with each attempt's HTTP status and response time."""
    rows, next_cursor = service.list_deliveries(session, webhook_id, limit, cursor)
    return DeliveryPage(items=[DeliveryOut.model_validate(d) for d in rows], next_cursor=next_cursor)


@router.post("/api/v1/webhooks/{webhook_id}/test", response_model=DeliveryOut, status_code=202)
def test_webhook(
    webhook_id: int, request: Request, background: BackgroundTasks, session: SessionDep, principal: AdminPrincipal
) -> DeliveryOut:
    """Queue a ``ping`` to this webhook; follow it in its deliveries."""
    delivery, job_ids = service.send_test(session, principal.user, webhook_id)
    enqueue_after_commit(request, background, job_ids)
    return DeliveryOut.model_validate(delivery)


# -- the admin page -------------------------------------------------------------------------------------------------


@router.get("/admin/webhooks", include_in_schema=False)
def webhooks_page(request: Request, session: SessionDep, principal: AdminPrincipal) -> Response:
    return _page(request, session, principal)


@router.post("/admin/webhooks", include_in_schema=False)
def create_from_page(
    request: Request,
    session: SessionDep,
    principal: AdminPrincipal,
    form: PostedForm,
) -> Response:
    url, events = str(form.get("url") or ""), [str(e) for e in form.getlist("events")]
    project = str(form.get("project_id") or "")
    filled = {"url": url, "events": events, "project_id": project}
    try:
        project_id = int(project) if project else None
        if project_id is not None:
            projects.get_project(session, project_id)
        subscription, secret = service.create_subscription(session, principal.user, url, events, project_id)
    except ValueError:
        return _page(request, session, principal, error="choose a project from the list", form=filled, status=422)
    except AppError as exc:
        return _page(request, session, principal, error=exc.message, form=filled, status=exc.status)
    return _page(request, session, principal, created=subscription, secret=secret, status=201)


@router.post("/admin/webhooks/{webhook_id}/delete", include_in_schema=False)
def delete_from_page(webhook_id: int, session: SessionDep, principal: AdminPrincipal) -> Response:
    service.delete_subscription(session, principal.user, webhook_id)
    return RedirectResponse("/admin/webhooks", status_code=303)


@router.post("/admin/webhooks/{webhook_id}/test", include_in_schema=False)
def test_from_page(
    webhook_id: int,
    request: Request,
    background: BackgroundTasks,
    session: SessionDep,
    principal: AdminPrincipal,
) -> Response:
    _, job_ids = service.send_test(session, principal.user, webhook_id)
    enqueue_after_commit(request, background, job_ids)
    return RedirectResponse(f"/admin/webhooks?tested={webhook_id}", status_code=303)


def _page(
    request: Request,
    session: SessionDep,
    principal: Principal,
    status: int = 200,
    **context: object,
) -> Response:
    deliveries, _ = service.list_deliveries(session, None, limit=50)
    return render(
        request,
        "admin_webhooks.html",
        principal,
        status_code=status,
        webhooks=service.list_subscriptions(session),
        deliveries=deliveries,
        events=service.EVENTS,
        projects={p.id: p.name for p in projects.list_projects(session)},
        tested=request.query_params.get("tested"),
        **context,
    )
