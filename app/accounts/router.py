"""Sign-in pages and the API-token endpoints."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlparse

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from app.accounts import repository as repo
from app.accounts import service
from app.accounts.schemas import TokenCreate, TokenCreated, UserOut
from app.deps import SESSION_COOKIE, AdminPrincipal, CurrentPrincipal, OptionalPrincipal, SessionDep, SettingsDep
from app.errors import Unauthorized
from app.web import render

router = APIRouter()


def _safe_next(target: str | None) -> str:
    # Only same-site paths: an open redirect would let a phishing link bounce through the login page.
    if not target or urlparse(target).netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


@router.get("/login", include_in_schema=False)
def login_page(request: Request, principal: OptionalPrincipal, next: str | None = None) -> Response:
    if principal is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return render(request, "login.html", None, next=_safe_next(next))


@router.post("/login", include_in_schema=False)
def login(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    username: Annotated[str, Form()],
    password: Annotated[str, Form()],
    next: Annotated[str, Form()] = "/",
) -> Response:
    try:
        user = service.authenticate(session, username, password)
    except Unauthorized as exc:
        return render(request, "login.html", None, status_code=401, error=exc.message, next=_safe_next(next),
                      username=username)
    new = service.start_session(session, user, settings.session_hours)
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(SESSION_COOKIE, new.token, httponly=True, samesite="lax",
                        secure=settings.environment == "production", max_age=settings.session_hours * 3600)
    return response


@router.post("/logout", include_in_schema=False)
def logout(request: Request, session: SessionDep, principal: CurrentPrincipal) -> Response:
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        service.end_session(session, cookie)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.get("/api/v1/me", response_model=UserOut, tags=["accounts"])
def me(principal: CurrentPrincipal) -> UserOut:
    return UserOut(id=principal.user.id, username=principal.user.username, role=principal.user.role)


@router.post("/api/v1/tokens", response_model=TokenCreated, status_code=201, tags=["accounts"])
def create_token(body: TokenCreate, session: SessionDep, principal: CurrentPrincipal) -> TokenCreated:
    token, plain = service.create_api_token(session, principal.user, body.name, body.scopes)
    service.audit(session, principal.user, "token.create", "api_token", token.id, name=token.name, scopes=token.scopes)
    return TokenCreated(id=token.id, name=token.name, prefix=token.prefix, scopes=token.scopes, token=plain)


@router.get("/admin/audit", include_in_schema=False)
def audit_page(request: Request, session: SessionDep, principal: AdminPrincipal) -> Response:
    events = repo.list_audit(session, limit=300)
    users = {u.id: u.username for u in repo.list_users(session)}
    return render(request, "audit.html", principal, events=events, users=users)
