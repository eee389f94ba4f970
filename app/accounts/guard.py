"""The gate in front of every request: who is calling (resolved before any body is read), how large a body may
be, and the security headers of every response.

FastAPI reads a route's body (a multipart upload into a temporary file, a JSON document into memory) before it
resolves the route's dependencies, so authentication in a dependency comes too late to refuse an anonymous 300 MB
upload. This ASGI middleware runs first: it resolves the credential in a short transaction of its own (in the
threadpool, never on the event loop), refuses a write from nobody or a body over its route's limit from its
``Content-Length`` alone, and counts the bytes of a body without one. The route's dependencies then reuse the
resolved :class:`~app.accounts.service.Identity` (see :func:`app.deps.optional_principal`).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import anyio
from fastapi import HTTPException
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.responses import JSONResponse, RedirectResponse, Response

from app.accounts import service
from app.db import Database
from app.errors import error_body
from app.settings import Settings

log = logging.getLogger("anomaloop")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

SESSION_COOKIE = "anomaloop_session"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
PUBLIC_WRITES = {"/login"}
"""Writes that need no credential (the sign-in form: rate limited and CSRF-checked by its route)."""
UPLOAD_PATHS = {"/api/v1/datasets/import", "/admin/import"}
"""Routes that take a file: admins only, up to ``max_upload_mb``; every other body is capped at ``max_json_kb``."""
WRITING_READS = re.compile(r"/api/v1/projects/\d+/next-query")
"""GETs that write: ``next-query`` hands the caller its window (a claim on the query's row), so it takes a write
slot — it may wait for a lock (SQLite's one writer), and reads must not queue behind it."""
NO_IDENTITY_PREFIXES = ("/static/", "/vendor/", "/healthz")
"""Public and static paths: no database work at all, so ``/healthz`` answers even when the pool is exhausted."""
RETRY_AFTER_S = 5

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'"
)
"""Strict: scripts only from our own files (no inline script, no eval). Inline *styles* stay allowed: Plotly sets
style attributes on the SVG it draws."""


class TokenTouches:
    """The ``last_used_at`` writes of one app, made after the response on one thread of their own: they are rare
    (once a minute per token) and best effort, and never make a request wait. The app's lifespan closes
    it, so no write is still running when the app (or a test) has finished with its database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.throttle = service.TouchThrottle()
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def after_request(self, identity: service.Identity) -> None:
        if identity.token_id is None or not self.throttle.claim(identity):
            return
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="token-touch")
            self._pool.submit(self._touch, identity.token_id)

    def close(self) -> None:
        """Wait for the writes already queued; a later request starts a new thread."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def _touch(self, token_id: int) -> None:
        try:
            with self.db.session_scope() as session:
                service.touch_token(session, token_id)
        except Exception:  # noqa: BLE001 - best effort: a busy database only delays the next write by a minute
            log.debug("could not record token %s as used", token_id, exc_info=True)


class Guard:
    """Pure ASGI middleware (no ``BaseHTTPMiddleware``: that would buffer streaming responses)."""

    def __init__(
        self, app: Callable[..., Awaitable[None]], settings: Settings, db: Database, touches: TokenTouches
    ) -> None:
        self.app = app
        self.settings = settings
        self.db = db
        self._slots: dict[bool, anyio.Semaphore] = {}  # reads and writes; made on first use, in the server's loop
        self.touches = touches

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = self._with_headers(scope, send)
        path, method = scope["path"], scope["method"]
        if path.startswith(NO_IDENTITY_PREFIXES):
            await self.app(scope, receive, send)
            return
        read = method in SAFE_METHODS and not WRITING_READS.fullmatch(path)
        slots, admitted = self._admission(read), False
        with anyio.move_on_after(self.settings.admission_wait_seconds):
            await slots.acquire()
            admitted = True
        if not admitted:  # a queue this long would only grow: ask the client to come back
            await _busy(scope, receive, send)
            return
        try:
            await self._guarded(scope, receive, send, path, method)
        finally:
            slots.release()

    def _admission(self, read: bool) -> anyio.Semaphore:
        """Admission control: at most ``max_concurrent_requests`` reads and ``max_concurrent_writes`` writes inside
        the app at once, the rest waiting their turn (first come, first served) in the event loop, where waiting
        costs nothing. Without it every request of a burst takes a thread at once: the threads then contend for
        Python's lock and the database pool while requests that already hold a connection wait for a thread for
        their next step (FastAPI runs a route's dependencies and its body on separate hops), and throughput
        collapses (appends at 50 clients: 11 a second instead of 48, with 503s from the pool; BENCHMARKS.md).
        Writes have slots of their own because a write may wait for a lock (SQLite's one writer, a round's row):
        reads must not queue behind it."""
        if read not in self._slots:
            limit = self.settings.max_concurrent_requests if read else self.settings.max_concurrent_writes
            self._slots[read] = anyio.Semaphore(limit)
        return self._slots[read]

    async def _guarded(self, scope: Scope, receive: Receive, send: Send, path: str, method: str) -> None:
        headers = _headers(scope)
        auth = headers.get("authorization", "")
        bearer = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        cookie = _cookie(headers.get("cookie", ""), SESSION_COOKIE)
        identity: service.Identity | service.TokenRefusal | None = None
        if bearer is not None or cookie:
            try:
                identity = await anyio.to_thread.run_sync(self._resolve, bearer, cookie)
            except (PoolTimeout, OperationalError) as exc:
                if isinstance(exc, OperationalError) and not _is_busy(exc):
                    raise
                await _busy(scope, receive, send)
                return
        scope.setdefault("state", {})["identity"] = identity
        if method not in SAFE_METHODS:
            refusal = self._refuse_body(scope, path, headers, identity)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
            receive = _capped(receive, self._limit(path))
        await self.app(scope, receive, send)
        if isinstance(identity, service.Identity):
            self.touches.after_request(identity)

    # -- identity ----------------------------------------------------------------------------------------------
    def _resolve(self, bearer: str | None, cookie: str | None) -> service.Identity | service.TokenRefusal | None:
        with self.db.session_scope() as session:
            return service.resolve_identity(session, bearer, cookie)

    # -- bodies ------------------------------------------------------------------------------------------------
    def _limit(self, path: str) -> int:
        if path in UPLOAD_PATHS:
            return self.settings.max_upload_mb * 1024 * 1024 + 64 * 1024  # the multipart envelope and form fields
        return self.settings.max_json_kb * 1024

    def _refuse_body(
        self,
        scope: Scope,
        path: str,
        headers: dict[str, str],
        identity: service.Identity | service.TokenRefusal | None,
    ) -> Response | None:
        """A response that refuses the request without reading its body, or ``None`` to let it through."""
        json = _wants_json(path, headers)
        if isinstance(identity, service.TokenRefusal):
            return _error(json, 401, identity.message, scope, identity.code)
        if path not in PUBLIC_WRITES and identity is None:
            return _error(json, 401, "sign in first", scope)
        if path in UPLOAD_PATHS:
            assert isinstance(identity, service.Identity)
            refusal = service.scope_refusal(
                identity.role, identity.scopes, "admin", browser=identity.browser, granted=identity.granted_scopes
            )
            if refusal is not None:
                return _error(json, 403, refusal, scope, service.refusal_code(identity.role, "admin"))
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return _error(json, 400, "invalid Content-Length", scope)
            if int(length) > self._limit(path):
                return _error(json, 413, self._too_large(path), scope)
        return None

    def _too_large(self, path: str) -> str:
        if path in UPLOAD_PATHS:
            return f"the upload is larger than the {self.settings.max_upload_mb} MB limit"
        return f"the request body is larger than the {self.settings.max_json_kb} KB limit"

    # -- headers -----------------------------------------------------------------------------------------------
    def _with_headers(self, scope: Scope, send: Send) -> Send:
        extra = [(k.encode(), v.encode()) for k, v in security_headers(self.settings, scope["path"])]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [h for h in extra if h[0] not in present]
            await send(message)

        return send_with_headers


def security_headers(settings: Settings, path: str) -> list[tuple[str, str]]:
    """The headers every response carries (lower-case names); HSTS only in production (served over HTTPS)."""
    headers = [
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "same-origin"),
        ("x-frame-options", "DENY"),
        # /api/docs sends its own policy (its one inline script allowed by hash); only missing headers are added
        ("content-security-policy", CSP),
        ("cross-origin-opener-policy", "same-origin"),
    ]
    if settings.environment == "production":
        headers.append(("strict-transport-security", "max-age=31536000; includeSubDomains"))
    return headers


def _capped(receive: Receive, limit: int) -> Receive:
    """``receive`` that fails with 413 once more than ``limit`` body bytes arrived (bodies sent without a
    ``Content-Length``, or with a false one)."""
    seen = 0

    async def capped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                # FastAPI passes an HTTPException raised while reading the body through unchanged.
                raise HTTPException(413, f"the request body is larger than the limit of {limit:,} bytes")
        return message

    return capped


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value.strip('"') or None
    return None


def _wants_json(path: str, headers: dict[str, str]) -> bool:
    return path.startswith("/api/") or "application/json" in headers.get("accept", "")


def _error(json: bool, status: int, message: str, scope: Scope, code: str | None = None) -> Response:
    if status == 401 and not json:
        target = scope["path"] + (f"?{scope['query_string'].decode('latin-1')}" if scope.get("query_string") else "")
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
    if json:
        # RFC 6750: a refused token is "invalid_token"; a request without any credential gets the bare challenge
        challenge = 'Bearer error="invalid_token"' if code else "Bearer"
        headers = {"WWW-Authenticate": challenge} if status == 401 else None
        return JSONResponse(error_body(status, message, code), status_code=status, headers=headers)
    return Response(f"{status}: {message}\n", status_code=status, media_type="text/plain")


def _is_busy(exc: OperationalError) -> bool:
    """SQLite's "database is locked" after its busy timeout: the same "try again shortly" as an exhausted pool."""
    return "database is locked" in str(exc.orig) or "database table is locked" in str(exc.orig)


async def _busy(scope: Scope, receive: Receive, send: Send) -> None:
    json = _wants_json(scope["path"], _headers(scope))
    message = "the server is busy; retry in a few seconds"
    response = (
        JSONResponse(error_body(503, message), status_code=503)
        if json
        else Response(message + "\n", status_code=503, media_type="text/plain")
    )
    response.headers["Retry-After"] = str(RETRY_AFTER_S)
    await response(scope, receive, send)
