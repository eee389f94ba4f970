"""Sign-in pages, the API-token and user endpoints, and the admin pages for tokens and users."""

from __future__ import annotations

import secrets
from typing import Annotated
from urllib.parse import urlparse

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from app.accounts import service
from app.accounts.models import User
from app.accounts.schemas import (
    PasswordChange,
    PasswordSet,
    TokenCreate,
    TokenCreated,
    TokenOut,
    UserCreate,
    UserDetail,
    UserOut,
)
from app.deps import (
    SESSION_COOKIE,
    AdminPrincipal,
    CurrentPrincipal,
    OptionalPrincipal,
    Principal,
    SessionDep,
    SettingsDep,
)
from app.errors import AppError, Forbidden, TooManyRequests, Unauthorized, error_body
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


# -- the caller ------------------------------------------------------------------------------------------------

IdPath = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.get("/api/v1/me", response_model=UserOut, tags=["accounts"])
def me(principal: CurrentPrincipal) -> UserOut:
    return UserOut(id=principal.user.id, username=principal.user.username, role=principal.user.role)


@router.post("/api/v1/me/password", status_code=204, tags=["accounts"])
def change_my_password(
    body: PasswordChange, request: Request, session: SessionDep, settings: SettingsDep, principal: CurrentPrincipal
) -> Response:
    """Change your own password with the current one. Your other browser sessions end; API tokens stay valid.
    Wrong current passwords count as failed sign-ins (the same lockout as /login)."""
    address = _client_address(request)
    service.check_login_allowed(
        session,
        principal.username,
        address,
        max_failures=settings.login_max_failures,
        max_per_address=settings.login_max_failures_per_address,
        window_minutes=settings.login_window_minutes,
    )
    keep = request.cookies.get(SESSION_COOKIE) if principal.browser else None
    try:
        service.change_own_password(session, principal.user, body.current_password, body.new_password, keep)
    except Forbidden as exc:  # answered, not raised: the failure must be committed for the limiter to count it
        service.record_login(session, principal.user, principal.username, address, ok=False)
        return JSONResponse(error_body(403, exc.message, exc.code), status_code=403)
    return Response(status_code=204)


# -- API tokens ------------------------------------------------------------------------------------------------


def _token_out(info: service.TokenInfo) -> TokenOut:
    return TokenOut.model_validate(info, from_attributes=True)


@router.get("/api/v1/tokens", response_model=list[TokenOut], tags=["accounts"])
def list_tokens(
    session: SessionDep,
    principal: CurrentPrincipal,
    user_id: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="Admins: only this user's tokens.")] = None,
) -> list[TokenOut]:
    """Admins see every user's tokens; everyone else their own. Never a secret or a hash."""
    if not principal.is_admin:
        user_id = principal.user.id
    return [_token_out(t) for t in service.list_api_tokens(session, user_id)]


@router.post("/api/v1/tokens", response_model=TokenCreated, status_code=201, tags=["accounts"])
def create_token(body: TokenCreate, session: SessionDep, principal: CurrentPrincipal) -> TokenCreated:
    """Create a token; its secret is in this answer only. A token can create tokens no broader than itself."""
    token, plain = service.issue_token(
        session,
        principal.user,
        body.name,
        list(body.scopes),
        user_id=body.user_id,
        caller_scopes=principal.scopes,
        as_admin=principal.is_admin,
        expires_in_days=body.expires_in_days,
    )
    return TokenCreated(
        id=token.id,
        name=token.name,
        prefix=token.prefix,
        user_id=token.user_id,
        scopes=token.scopes,
        expires_at=token.expires_at,
        token=plain,
    )


@router.delete("/api/v1/tokens/{token_id}", status_code=204, tags=["accounts"])
def revoke_token(token_id: IdPath, session: SessionDep, principal: CurrentPrincipal) -> Response:
    """Revoke a token at once (its owner, or an admin). Revoking a revoked token is no error."""
    service.revoke_api_token(session, principal.user, token_id, as_admin=principal.is_admin)
    return Response(status_code=204)


# -- users -----------------------------------------------------------------------------------------------------


def _user_out(user: User) -> UserDetail:
    return UserDetail(
        id=user.id, username=user.username, role=user.role, active=user.is_active, created_at=user.created_at
    )


@router.get("/api/v1/users", response_model=list[UserDetail], tags=["accounts"])
def list_users(session: SessionDep, principal: AdminPrincipal) -> list[UserDetail]:
    return [_user_out(u) for u in service.list_users(session)]


@router.post("/api/v1/users", response_model=UserDetail, status_code=201, tags=["accounts"])
def create_user(body: UserCreate, session: SessionDep, principal: AdminPrincipal) -> UserDetail:
    return _user_out(service.add_user(session, principal.user, body.username, body.role, body.password))


@router.post("/api/v1/users/{user_id}/disable", response_model=UserDetail, tags=["accounts"])
def disable_user(user_id: IdPath, session: SessionDep, principal: AdminPrincipal) -> UserDetail:
    """The user can no longer sign in; its sessions end and its tokens are revoked. 409 for the last active admin."""
    return _user_out(service.disable_user(session, principal.user, user_id))


@router.post("/api/v1/users/{user_id}/enable", response_model=UserDetail, tags=["accounts"])
def enable_user(user_id: IdPath, session: SessionDep, principal: AdminPrincipal) -> UserDetail:
    """The user can sign in again; its old tokens stay revoked."""
    return _user_out(service.enable_user(session, principal.user, user_id))


@router.post("/api/v1/users/{user_id}/password", status_code=204, tags=["accounts"])
def set_user_password(
    user_id: IdPath, body: PasswordSet, request: Request, session: SessionDep, principal: AdminPrincipal
) -> Response:
    """Set a user's password; the user's browser sessions end (but yours, when it is your own)."""
    service.set_password(session, principal.user, user_id, body.password, _own_cookie(request, principal, user_id))
    return Response(status_code=204)


def _own_cookie(request: Request, principal: Principal, user_id: int) -> str | None:
    """The caller's session cookie when the change is to the caller's own account (so it stays signed in)."""
    return request.cookies.get(SESSION_COOKIE) if principal.browser and principal.user.id == user_id else None


# -- admin pages -----------------------------------------------------------------------------------------------


@router.get("/admin/audit", include_in_schema=False)
def audit_page(request: Request, session: SessionDep, principal: AdminPrincipal) -> Response:
    events = service.list_audit(session, limit=300)
    users = service.usernames(session)
    return render(request, "audit.html", principal, events=events, users=users)


def _tokens_page(
    request: Request, session: SessionDep, principal: Principal, status_code: int = 200, **context: object
) -> Response:
    return render(
        request,
        "admin_tokens.html",
        principal,
        status_code=status_code,
        tokens=list(reversed(service.list_api_tokens(session))),
        users=[u for u in service.list_users(session) if u.is_active],
        scopes=service.TOKEN_SCOPES,
        **context,
    )


@router.get("/admin/tokens", include_in_schema=False)
def tokens_page(request: Request, session: SessionDep, principal: AdminPrincipal) -> Response:
    return _tokens_page(request, session, principal)


@router.post("/admin/tokens", include_in_schema=False)
def tokens_create(
    request: Request,
    session: SessionDep,
    principal: AdminPrincipal,
    name: Annotated[str, Form(max_length=100)],
    user_id: Annotated[int, Form(ge=1, le=2**31 - 1)],
    scope: Annotated[str, Form(max_length=10)] = "read",
    expires_in_days: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """Create a token and show its secret on this page, once (a reload does not show it again)."""
    form = {"name": name, "user_id": user_id, "scope": scope, "expires_in_days": expires_in_days}
    try:
        if scope not in service.TOKEN_SCOPES:
            raise AppError(f"scope must be one of {', '.join(service.TOKEN_SCOPES)}")
        days = expires_in_days.strip()
        if days and not days.isdigit():
            raise AppError("the expiry is a whole number of days, or empty for none")
        token, plain = service.issue_token(
            session,
            principal.user,
            name,
            list(service.TOKEN_SCOPES[: service.TOKEN_SCOPES.index(scope) + 1]),
            user_id=user_id,
            as_admin=True,
            expires_in_days=int(days) if days else None,
        )
    except AppError as exc:
        return _tokens_page(request, session, principal, status_code=exc.status, error=exc.message, form=form)
    response = _tokens_page(request, session, principal, status_code=201, created=token, secret=plain)
    response.headers["Cache-Control"] = "no-store"  # the secret must not stay in a cache
    return response


@router.post("/admin/tokens/{token_id}/revoke", include_in_schema=False)
def tokens_revoke(token_id: IdPath, session: SessionDep, principal: AdminPrincipal) -> Response:
    service.revoke_api_token(session, principal.user, token_id, as_admin=True)
    return RedirectResponse("/admin/tokens", status_code=303)


USER_NOTICES = {
    "created": "created",
    "disabled": "disabled: its sessions ended and its tokens were revoked",
    "enabled": "enabled: it can sign in again (its old tokens stay revoked)",
    "password": "has a new password; its other sessions ended",
}


def _users_page(
    request: Request, session: SessionDep, principal: Principal, status_code: int = 200, **context: object
) -> Response:
    return render(
        request, "admin_users.html", principal, status_code=status_code, users=service.list_users(session), **context
    )


@router.get("/admin/users", include_in_schema=False)
def users_page(
    request: Request,
    session: SessionDep,
    principal: AdminPrincipal,
    done: Annotated[str | None, Query(max_length=20)] = None,
    user: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> Response:
    notice = None
    if done in USER_NOTICES and user is not None:
        names = service.usernames(session)
        if user in names:
            notice = f"{names[user]} {USER_NOTICES[done]}."
    return _users_page(request, session, principal, notice=notice)


def _user_done(action: str, user_id: int) -> Response:
    return RedirectResponse(f"/admin/users?done={action}&user={user_id}", status_code=303)


@router.post("/admin/users", include_in_schema=False)
def users_create(
    request: Request,
    session: SessionDep,
    principal: AdminPrincipal,
    username: Annotated[str, Form(max_length=100)],
    role: Annotated[str, Form(max_length=16)],
    password: Annotated[str, Form(max_length=service.MAX_PASSWORD)],
) -> Response:
    try:
        user = service.add_user(session, principal.user, username, role, password)
    except AppError as exc:
        form = {"username": username, "role": role}
        return _users_page(request, session, principal, status_code=exc.status, error=exc.message, form=form)
    return _user_done("created", user.id)


@router.post("/admin/users/{user_id}/disable", include_in_schema=False)
def users_disable(request: Request, user_id: IdPath, session: SessionDep, principal: AdminPrincipal) -> Response:
    try:
        service.disable_user(session, principal.user, user_id)
    except AppError as exc:
        return _users_page(request, session, principal, status_code=exc.status, error=exc.message)
    return _user_done("disabled", user_id)


@router.post("/admin/users/{user_id}/enable", include_in_schema=False)
def users_enable(user_id: IdPath, session: SessionDep, principal: AdminPrincipal) -> Response:
    service.enable_user(session, principal.user, user_id)
    return _user_done("enabled", user_id)


@router.post("/admin/users/{user_id}/password", include_in_schema=False)
def users_password(
    request: Request,
    user_id: IdPath,
    session: SessionDep,
    principal: AdminPrincipal,
    password: Annotated[str, Form(max_length=service.MAX_PASSWORD)],
) -> Response:
    try:
        service.set_password(session, principal.user, user_id, password, _own_cookie(request, principal, user_id))
    except AppError as exc:
        return _users_page(request, session, principal, status_code=exc.status, error=exc.message)
    return _user_done("password", user_id)
