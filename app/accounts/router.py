"""Sign-in pages and the API-token endpoints."""

from __future__ import annotations

import secrets
from typing import Annotated
from urllib.parse import urlparse

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from app.accounts import service
from app.accounts.schemas import TokenCreate, TokenCreated, UserOut
from app.deps import SESSION_COOKIE, AdminPrincipal, CurrentPrincipal, OptionalPrincipal, SessionDep, SettingsDep
from app.errors import TooManyRequests, Unauthorized
from app.rendering import render
from app.settings import Settings

router = APIRouter()


def _safe_next(target: str | None) -> str:
    # Only same-site paths: an open redirect would let a phishing link bounce through the login page.
    if not target or urlparse(target).netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


LOGIN_COOKIE = "anomaloop_login"  # the nonce behind the sign-in form's CSRF token


def _login_form(request: Request, settings: Settings, status_code: int = 200, **context: object) -> Response:
    """The sign-in page with a CSRF token bound to a nonce cookie (reused while the visitor has one)."""
    nonce = request.cookies.get(LOGIN_COOKIE)
    if not nonce or len(nonce) > 100:
        nonce = secrets.token_urlsafe(24)
    token = service.login_form_token(settings.secret_key.get_secret_value(), nonce)
    response = render(request, "login.html", None, status_code=status_code, login_csrf=token, **context)
    response.set_cookie(
        LOGIN_COOKIE,
        nonce,
        httponly=True,
        samesite="strict",
        path="/login",
        secure=settings.environment == "production",
        max_age=24 * 3600,
    )
    return response


def _client_address(request: Request) -> str:
    # The peer's address; behind a reverse proxy run uvicorn with --proxy-headers so this is the real client.
    return request.client.host if request.client else "unknown"


def _from_a_browser(request: Request) -> bool:
    # Browsers send Origin (and Sec-Fetch-Site) with every form POST, cross-site ones included; a client that sends
    # neither is a script, which cannot be used for login CSRF against somebody else's browser.
    return any(h in request.headers for h in ("origin", "sec-fetch-site", "referer"))


@router.get("/login", include_in_schema=False)
def login_page(
    request: Request,
    settings: SettingsDep,
    principal: OptionalPrincipal,
    next: Annotated[str | None, Query(max_length=2000)] = None,
) -> Response:
    if principal is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return _login_form(request, settings, next=_safe_next(next))


@router.post("/login", include_in_schema=False)
def login(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    username: Annotated[str, Form(max_length=200)],
    password: Annotated[str, Form(max_length=1000)],
    next: Annotated[str, Form(max_length=2000)] = "/",
    csrf_token: Annotated[str | None, Form(max_length=200)] = None,
) -> Response:
    """Sign in. Refused while the account or the address has too many recent failures (429, ``Retry-After``);
    a form sent by a browser must carry the CSRF token of the sign-in page (no login CSRF: another site cannot
    sign a visitor in as the attacker). Every attempt is in the audit log."""
    form = {"next": _safe_next(next), "username": username}
    if (csrf_token is not None or _from_a_browser(request)) and not service.check_login_form_token(
        settings.secret_key.get_secret_value(), request.cookies.get(LOGIN_COOKIE), csrf_token
    ):
        return _login_form(
            request, settings, status_code=403, error="the sign-in form expired; please sign in again", **form
        )
    address = _client_address(request)
    try:
        service.check_login_allowed(
            session,
            username,
            address,
            max_failures=settings.login_max_failures,
            max_per_address=settings.login_max_failures_per_address,
            window_minutes=settings.login_window_minutes,
        )
    except TooManyRequests as exc:
        response = _login_form(request, settings, status_code=429, error=exc.message, **form)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    try:
        user = service.authenticate(session, username, password)
    except Unauthorized as exc:
        service.record_login(session, None, username, address, ok=False)
        return _login_form(request, settings, status_code=401, error=exc.message, **form)
    service.record_login(session, user, username, address, ok=True)
    new = service.start_session(session, user, settings.session_hours)
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        new.token,
        httponly=True,
        samesite="lax",
        secure=settings.environment == "production",
        max_age=settings.session_hours * 3600,
    )
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
    token, plain = service.create_api_token(session, principal.user, body.name, body.scopes, principal.scopes)
    service.audit(session, principal.user, "token.create", "api_token", token.id, name=token.name, scopes=token.scopes)
    return TokenCreated(id=token.id, name=token.name, prefix=token.prefix, scopes=token.scopes, token=plain)


@router.get("/admin/audit", include_in_schema=False)
def audit_page(request: Request, session: SessionDep, principal: AdminPrincipal) -> Response:
    events = service.list_audit(session, limit=300)
    users = service.usernames(session)
    return render(request, "audit.html", principal, events=events, users=users)
