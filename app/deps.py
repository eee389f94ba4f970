"""Request dependencies: the database session (committed before the response), the signed-in user, CSRF."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from app.accounts import service as accounts
from app.accounts.guard import SAFE_METHODS, SESSION_COOKIE
from app.accounts.models import User
from app.db import Database
from app.errors import Forbidden, Unauthorized
from app.settings import Settings

# Dependencies that do no I/O are ``async def``: FastAPI runs a plain ``def`` dependency on a thread of its own, and a
# request with several of them waited for a free thread before each (under load, while holding a connection).


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_database(request: Request) -> Database:
    return request.app.state.db


def get_session(request: Request) -> Iterator[Session]:
    # scope="function" (below) commits before the response is sent: a failed commit is a 500, never a 200
    # for a label that was not stored.
    database: Database = request.app.state.db
    with database.session_scope() as session:
        yield session


async def read_form(request: Request) -> FormData:
    """The posted form, read here (asynchronously) so that the route itself can be a plain ``def`` (threadpool): its
    database work must never run on the event loop."""
    return await request.form()


async def read_body(request: Request) -> bytes:
    """The request body as sent (JSON or CSV; the guard has already capped its size), read here for a ``def`` route
    like :func:`read_form`."""
    return await request.body()


SettingsDep = Annotated[Settings, Depends(get_settings)]
PostedForm = Annotated[FormData, Depends(read_form)]
RawBody = Annotated[bytes, Depends(read_body)]
DatabaseDep = Annotated[Database, Depends(get_database)]
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


@dataclass
class Principal:
    """Who is calling: a browser session (with its CSRF token) or an API token (with scopes).

    ``user`` is the ORM row for services within the request; the plain fields are copied at sign-in time so an error
    page can still show who is signed in after the request's transaction rolled back (expiring ``user``).
    ``scopes`` compose (read < write < admin); a browser session holds them all, limited by the user's role.
    ``granted_scopes``: a token's scopes as created (``scopes`` drops ``admin`` for a user who is no admin).
    """

    user: User
    browser: bool = False
    scopes: tuple[str, ...] = accounts.TOKEN_SCOPES
    csrf_token: str = ""
    username: str = ""
    role: str = ""
    granted_scopes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.username, self.role = self.user.username, self.user.role

    def allows(self, scope: str) -> bool:
        return accounts.scope_allows(self.scopes, scope)

    def require(self, scope: str) -> None:
        """403 naming what is missing unless this caller may do what ``scope`` (read, write, admin) allows."""
        refusal = accounts.scope_refusal(
            self.role, self.scopes, scope, browser=self.browser, granted=self.granted_scopes
        )
        if refusal is not None:
            raise Forbidden(refusal, code=accounts.refusal_code(self.role, scope))

    @property
    def is_admin(self) -> bool:
        return self.role == "admin" and self.allows("admin")


async def presented_csrf(request: Request) -> str | None:
    """The CSRF token a cookie-authenticated write presents: the ``X-CSRF-Token`` header (fetch) or the form's
    ``csrf_token`` field. Async only to read the form; no database work here. The body it may read has already
    passed the guard (a signed-in caller, within the size limit)."""
    if request.method in SAFE_METHODS:
        return None
    presented = request.headers.get("x-csrf-token")
    browser_form = "form" in request.headers.get("content-type", "") and "authorization" not in request.headers
    if presented is None and browser_form and request.cookies.get(SESSION_COOKIE):
        presented = (await request.form()).get("csrf_token")  # type: ignore[assignment]
    return presented


def optional_principal(
    request: Request, session: SessionDep, presented: Annotated[str | None, Depends(presented_csrf)]
) -> Principal | None:
    """The caller, or ``None`` for an anonymous visitor. A plain ``def``: FastAPI runs it in the threadpool, so its
    database reads never block the event loop. The guard middleware (:mod:`app.accounts.guard`) has already
    resolved the credential before the body was read; this loads the user into the request's session."""
    state = request.scope.get("state", {})
    if "identity" in state:
        identity = state["identity"]
    else:  # an app without the guard (never in create_app): resolve here
        auth = request.headers.get("authorization", "")
        bearer = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        identity = accounts.resolve_identity(session, bearer, request.cookies.get(SESSION_COOKIE))
    if isinstance(identity, accounts.TokenRefusal):
        raise Unauthorized(identity.message, code=identity.code)
    if identity is None:
        return None
    assert isinstance(identity, accounts.Identity)
    user = session.get(User, identity.user_id)
    if user is None or not user.is_active:  # deactivated since the guard looked
        if identity.browser:
            return None
        raise Unauthorized("the user of this API token is disabled; an admin can enable it", code="user_disabled")
    if identity.browser and request.method not in SAFE_METHODS:
        # Cookie-authenticated writes need the session's CSRF token (header for fetch, field for forms).
        accounts.check_csrf_token(identity.csrf_token, presented)
    principal = Principal(
        user, identity.browser, identity.scopes, identity.csrf_token, granted_scopes=identity.granted_scopes
    )
    request.state.principal = principal
    return principal


OptionalPrincipal = Annotated[Principal | None, Depends(optional_principal)]


async def current_principal(principal: OptionalPrincipal, request: Request) -> Principal:
    if principal is None:
        raise Unauthorized("sign in first")
    principal.require("read" if request.method in SAFE_METHODS else "write")
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


async def admin_principal(principal: CurrentPrincipal) -> Principal:
    principal.require("admin")
    return principal


AdminPrincipal = Annotated[Principal, Depends(admin_principal)]
