"""Request dependencies: the database session (committed before the response), the signed-in user, CSRF."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.accounts import service as accounts
from app.accounts.models import User, UserSession
from app.db import Database
from app.errors import Forbidden, Unauthorized
from app.settings import Settings

SESSION_COOKIE = "anomaloop_session"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_database(request: Request) -> Database:
    return request.app.state.db


def get_session(request: Request) -> Iterator[Session]:
    # scope="function" (below) commits before the response is sent: a failed commit is a 500, never a 200
    # for a label that was not stored.
    with get_database(request).session_scope() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
DatabaseDep = Annotated[Database, Depends(get_database)]
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


@dataclass
class Principal:
    """Who is calling: a browser session (with its CSRF token) or an API token (with scopes).

    ``user`` is the ORM row for services within the request; the plain fields are copied at sign-in time so an error
    page can still show who is signed in after the request's transaction rolled back (expiring ``user``).
    """

    user: User
    browser: UserSession | None = None
    scopes: tuple[str, ...] = ("read", "write", "admin")
    username: str = ""
    role: str = ""
    csrf_token: str = ""

    def __post_init__(self) -> None:
        self.username, self.role = self.user.username, self.user.role
        self.csrf_token = self.browser.csrf_token if self.browser else ""

    @property
    def is_admin(self) -> bool:
        return self.role == "admin" and "admin" in self.scopes


async def optional_principal(request: Request, session: SessionDep) -> Principal | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        found = accounts.resolve_api_token(session, auth[7:].strip())
        if found is None:
            raise Unauthorized("invalid or revoked API token")
        user, token = found
        return Principal(user, None, tuple(token.scopes))
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    found_session = accounts.resolve_session(session, cookie)
    if found_session is None:
        return None
    user, user_session = found_session
    if request.method not in SAFE_METHODS:
        # Cookie-authenticated writes need the session's CSRF token (header for fetch, field for forms).
        presented = request.headers.get("x-csrf-token")
        if presented is None and "form" in request.headers.get("content-type", ""):
            presented = (await request.form()).get("csrf_token")  # type: ignore[assignment]
        accounts.check_csrf(user_session, presented)
    principal = Principal(user, user_session)
    request.state.principal = principal
    return principal


OptionalPrincipal = Annotated[Principal | None, Depends(optional_principal)]


def current_principal(principal: OptionalPrincipal, request: Request) -> Principal:
    if principal is None:
        raise Unauthorized("sign in first")
    if request.method not in SAFE_METHODS and principal.browser is None and "write" not in principal.scopes:
        raise Forbidden("this API token is read-only")
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def admin_principal(principal: CurrentPrincipal) -> Principal:
    if not principal.is_admin:
        raise Forbidden("admins only")
    return principal


AdminPrincipal = Annotated[Principal, Depends(admin_principal)]
