"""create_app(): routers, templates, static files, the error handlers, the API docs, health and metrics, the lifespan.

Every 4xx/5xx of the API (and of any request sent with a bearer token) is ``{"detail", "code", "errors"}``
(:func:`app.errors.error_body`); browsers get the error page, or the sign-in page for a 401.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import logging
import re
import shutil
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from app import __version__
from app.accounts.guard import CSP, RETRY_AFTER_S, Guard, TokenTouches, security_headers
from app.accounts.router import router as accounts_router
from app.datasets.router import router as datasets_router
from app.db import Database
from app.deps import OptionalPrincipal
from app.errors import AppError, Forbidden, Unauthorized, Unavailable, code_for_status, error_body
from app.jobs.executor import make_executor
from app.jobs.router import router as jobs_router
from app.observability import Check, HealthChecks, Metrics, MetricsMiddleware, RoutePattern
from app.projects.pages import router as pages_router
from app.projects.router import router as projects_router
from app.rendering import make_templates, render, wants_json
from app.settings import Settings
from app.static_files import mount_static
from app.versions import scoring
from app.versions.router import router as versions_router
from app.versions.scoring import ScoresPending
from app.webhooks.router import router as webhooks_router

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("anomaloop")
ROUTERS: tuple[APIRouter, ...] = (
    accounts_router,
    datasets_router,
    projects_router,
    versions_router,
    jobs_router,
    webhooks_router,
    pages_router,
)


def create_app(settings: Settings | None = None, database: Database | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        clean_stale_uploads(settings)
        # this lifespan's own executor: a second lifespan of the same app (two test clients) replaces
        # app.state.executor, and each must still shut down the executor it started, not leave its threads running
        executor = app.state.executor = make_executor(app.state.settings, app.state.db)
        try:
            yield
        finally:
            executor.shutdown()
            app.state.token_touches.close()
            app.state.health.dispose()
            if database is None:
                app.state.db.dispose()

    app = FastAPI(
        title="anomaloop",
        version=__version__,
        description=API_DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served below from our own copy of Swagger UI (no CDN)
        openapi_url="/api/openapi.json",
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    app.state.settings = settings
    app.state.db = database or Database(settings.sqlalchemy_url, settings.pool_options())
    app.state.templates = make_templates(ROOT / "templates")
    app.state.executor = None
    app.state.metrics = Metrics(app.state.db)
    app.state.health = HealthChecks(settings.sqlalchemy_url, settings.broker_url)
    mount_static(app, ROOT / "static")  # versioned URLs, long-lived cache headers (app/static_files.py)
    # chart JSON and Plotly's bundle compress several-fold; small responses are left alone
    # level 1 (nginx's default), not 6 or Starlette's 9: a 10,000-point score read (339 kB of JSON) compresses in
    # 1.4 ms to 64 kB at level 1 against 9.6 ms to 59 kB at 6 — at 6 compression cost more CPU than building the
    # answer; Plotly's bundle is compressed once at level 9 by the static files (app/static_files.py)
    app.add_middleware(GZipMiddleware, minimum_size=2048, compresslevel=1)
    # identity and body limits before anything reads the body; security headers on every response
    app.state.token_touches = TokenTouches(app.state.db)
    app.add_middleware(Guard, settings=settings, db=app.state.db, touches=app.state.token_touches)
    # outermost: counts every request, the guard's refusals included, by route template
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics, patterns=_route_patterns(app))
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    _add_operations_routes(app)
    _add_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    return app


API_DESCRIPTION = """The REST API of anomaloop: import series, push live points, read anomaly scores and events, run \
labeling rounds, manage model versions and jobs.

**Authentication**: send an API token as `Authorization: Bearer <token>` (create one with `anomaloop token create` or \
on the Tokens page; press *Authorize* above to use one here). Scopes compose: `read` < `write` < `admin`.

**Errors**: every 4xx/5xx answer is `{"detail": "what to fix", "code": "not_found", "errors": []}`; `errors` lists \
the field errors of a 422.

See docs/API.md in the repository for the whole guide."""

BEARER_SCHEME = "bearerAuth"
ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "description": "The body of every 4xx/5xx answer of the API.",
    "required": ["detail", "code", "errors"],
    "properties": {
        "detail": {"type": "string", "description": "What went wrong and what to fix."},
        "code": {"type": "string", "description": "A short machine-readable word: not_found, invalid_input, ..."},
        "errors": {
            "type": "array",
            "description": "The field errors of a 422 (empty otherwise).",
            "items": {
                "type": "object",
                "properties": {
                    "field": {"type": "string", "description": "Where: body.name, query.start, ..."},
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
    },
}
MACHINE_PATHS = ("/metrics", "/healthz")
"""Non-API paths whose errors are JSON too: scrapers and probes, never a sign-in page."""


def _route_patterns(app: FastAPI) -> Callable[[], list[RoutePattern]]:
    """The app's routes, flattened through included routers, as the metrics middleware matches them; rebuilt
    when routes are added (the list is read on every request, so it is cached by the number of top-level routes)."""
    cache: dict[int, list[RoutePattern]] = {}

    def patterns() -> list[RoutePattern]:
        key = len(app.router.routes)
        if key not in cache:
            found: list[RoutePattern] = []
            for route in app.router.routes:
                contexts = getattr(route, "effective_route_contexts", None)
                for each in contexts() if callable(contexts) else [route]:
                    regex, template = getattr(each, "path_regex", None), getattr(each, "path_format", None)
                    if regex is not None and template:
                        methods = getattr(each, "methods", None)
                        found.append(RoutePattern(regex, frozenset(methods) if methods else None, template))
            cache.clear()
            cache[key] = found
        return cache[key]

    return patterns


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's OpenAPI document plus what clients need: the bearer scheme on every ``/api/`` operation (so
    Swagger UI's *Authorize* works) and the one error shape as every operation's 422 and ``default`` response."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {})[BEARER_SCHEME] = {
        "type": "http",
        "scheme": "bearer",
        "description": "An API token: `anomaloop token create --user NAME --scopes read` (shown once).",
    }
    components.setdefault("schemas", {})["Error"] = copy.deepcopy(ERROR_SCHEMA)
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path, operations in schema.get("paths", {}).items():
        if not path.startswith("/api/"):
            continue
        for operation in operations.values():
            operation.setdefault("security", [{BEARER_SCHEME: []}])
            responses = operation.setdefault("responses", {})
            if "422" in responses:
                responses["422"] = {
                    "description": "Invalid input: `errors` lists each field's problem",
                    "content": error,
                }
            responses.setdefault(
                "default", {"description": "Any error (4xx/5xx), in the one error shape", "content": error}
            )
    for unused in ("HTTPValidationError", "ValidationError"):
        components["schemas"].pop(unused, None)
    app.openapi_schema = schema
    return schema


def _add_operations_routes(app: FastAPI) -> None:
    """``/api/docs`` (Swagger UI from static/vendor/swagger-ui/), ``/healthz`` and ``/metrics``."""

    @app.get("/api/docs", include_in_schema=False)
    def api_docs() -> Response:
        static_url = app.state.templates.env.globals["static_url"]
        page = get_swagger_ui_html(
            openapi_url=app.openapi_url or "/api/openapi.json",
            title="anomaloop API",
            swagger_js_url=static_url("vendor/swagger-ui/swagger-ui-bundle.js"),
            swagger_css_url=static_url("vendor/swagger-ui/swagger-ui.css"),
            swagger_favicon_url=static_url("favicon.svg"),
            # validatorUrl: Swagger UI would otherwise send the document to validator.swagger.io for a badge
            swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": False, "tryItOutEnabled": True},
        )
        # The page's one inline script (the SwaggerUIBundle call) is allowed by its hash; nothing else inline runs.
        html = page.body.decode() if isinstance(page.body, bytes) else str(page.body)
        hashes = [
            "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
            for body in re.findall(r"<script>(.*?)</script>", html, flags=re.S)
        ]
        csp = CSP.replace("script-src 'self'", "script-src 'self' " + " ".join(hashes), 1)
        return Response(html, media_type="text/html", headers={"content-security-policy": csp})

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        """200 ``{"status": "ok", ...}`` when the database (and the broker, if configured) answer; 503
        ``{"status": "degraded", "failed": [...]}`` otherwise. Each check has its own connection and a short
        timeout, in threads of its own (a full request threadpool does not delay it)."""
        health: HealthChecks = app.state.health
        limiter = getattr(app.state, "health_limiter", None)
        if limiter is None:
            limiter = app.state.health_limiter = anyio.CapacityLimiter(4)
        results: dict[str, Check | None] = {}

        async def run(name: str, check: Any) -> None:
            # The checks' own timeouts bound them; this bounds the answer should a driver ignore its timeout.
            started = time.perf_counter()
            with anyio.move_on_after(health.timeout_s * 2):
                results[name] = await anyio.to_thread.run_sync(check, abandon_on_cancel=True, limiter=limiter)
                return
            results[name] = Check(False, time.perf_counter() - started, "unreachable (timed out)")

        async with anyio.create_task_group() as group:
            group.start_soon(run, "database", health.database)
            group.start_soon(run, "broker", health.broker)
        checks = {name: result for name, result in results.items() if result is not None}
        failed = sorted(name for name, result in checks.items() if not result.ok)
        body = {
            "status": "degraded" if failed else "ok",
            "version": __version__,
            "executor": "celery" if app.state.settings.broker_url else "in-process",
            "checks": {name: result.as_json() for name, result in checks.items()},
            "failed": failed,
        }
        return JSONResponse(body, status_code=503 if failed else 200, headers={"cache-control": "no-store"})

    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request, principal: OptionalPrincipal) -> Response:
        """Prometheus exposition. Admins only: an admin's browser session, or an API token of an admin user with
        any scope (a ``read`` token is enough and is what a scraper should hold)."""
        if principal is None:
            raise Unauthorized("send an admin's API token: Authorization: Bearer <token> (read scope is enough)")
        if principal.role != "admin" or not principal.allows("read"):
            raise Forbidden("metrics are for admins: use a token of an admin user (read scope is enough)")
        body, content_type = app.state.metrics.render(request.headers.get("accept"))
        return Response(body, media_type=content_type, headers={"cache-control": "no-store"})


def _principal(request: Request) -> Any:
    """The signed-in user if authentication ran before the error (so error pages keep the nav bar)."""
    return getattr(request.state, "principal", None)


def clean_stale_uploads(settings: Settings, older_than_s: float = 3600.0) -> int:
    """Remove upload folders a killed process left behind (``data_dir/uploads/upload-*``); returns how many.

    Only folders untouched for ``older_than_s``: another web process sharing the data folder may be receiving or
    importing one right now (an upload's file is written continuously, and an import of the largest accepted
    file takes minutes, not an hour)."""
    folder = settings.data_dir / "uploads"
    if not folder.is_dir():
        return 0
    removed, now = 0, time.time()
    for entry in folder.glob("upload-*"):
        try:
            newest = max([entry.stat().st_mtime] + [p.stat().st_mtime for p in entry.rglob("*")])
        except OSError:
            continue
        if now - newest > older_than_s:
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
    if removed:
        log.info("removed %d stale upload folder(s) from %s", removed, folder)
    return removed


def _json_errors(request: Request) -> bool:
    """Whether an error is answered as JSON: API paths, clients asking for JSON, anything sent with a bearer token
    (a program, never a browser to send to the sign-in page), and the scrape and probe paths."""
    return (
        wants_json(request)
        or request.headers.get("authorization", "").lower().startswith("bearer ")
        or request.url.path in MACHINE_PATHS
    )


def _error_json(
    status: int, message: str, code: str | None = None, errors: list[Any] | None = None, headers: Any = None
) -> JSONResponse:
    return JSONResponse(error_body(status, message, code, errors), status_code=status, headers=headers)


def _field_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    """Pydantic's errors as ``{"field": "body.name", "message": ..., "type": ...}``, without the input values (a
    password or a token must never be echoed back)."""
    found = []
    for err in exc.errors():
        where = ".".join(str(part) for part in err.get("loc", ()))
        found.append({"field": where, "message": str(err.get("msg", "")), "type": str(err.get("type", ""))})
    return found


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def app_error(request: Request, exc: AppError) -> Response:
        json = _json_errors(request)
        if exc.status == 401 and not json:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
        if json:
            response: Response = _error_json(exc.status, exc.message, exc.code, exc.errors)
            if exc.status == 401:
                response.headers["WWW-Authenticate"] = "Bearer"
        else:
            response = render(
                request,
                "error.html",
                _principal(request),
                status_code=exc.status,
                message=exc.message,
                status=exc.status,
            )
        if exc.retry_after is not None:
            response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.exception_handler(ScoresPending)
    async def scores_pending(request: Request, exc: ScoresPending) -> Response:
        # The request's transaction rolled back with the error: the scoring job gets a transaction of its own.
        def start() -> tuple[int, str]:
            with request.app.state.db.session_scope() as session:
                return scoring.start_pending_job(session, exc)

        job_id, message = await anyio.to_thread.run_sync(start)
        if request.app.state.executor is not None:
            request.app.state.executor.enqueue(job_id)
        body = {**error_body(exc.status, message, exc.code), "job_id": job_id}
        return JSONResponse(body, status_code=exc.status, headers={"Retry-After": str(exc.retry_after)})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # Routing's own refusals (no such route, wrong method) and the guard's 413 on a body that outgrew its limit.
        status = exc.status_code
        if status == 404 and exc.detail in (None, "Not Found"):
            message = f"no such page or API route: {request.url.path} (the API's routes are listed at /api/docs)"
        elif status == 405 and exc.detail in (None, "Method Not Allowed"):
            allowed = (exc.headers or {}).get("Allow", "")
            message = f"{request.method} is not allowed on {request.url.path}" + (f"; use {allowed}" if allowed else "")
        else:
            message = str(exc.detail)
        if _json_errors(request):
            return _error_json(status, message, code_for_status(status), headers=exc.headers)
        if status < 400:
            return Response(status_code=status, headers=exc.headers)
        response = render(
            request, "error.html", _principal(request), status_code=status, message=message, status=status
        )
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        return response

    @app.exception_handler(PoolTimeout)
    async def pool_exhausted(request: Request, exc: PoolTimeout) -> Response:
        # Every connection is in use and none came free within db_pool_timeout: say so at once, never hang.
        log.warning("no database connection free for %s %s", request.method, request.url.path)
        return await app_error(request, Unavailable("the server is busy; retry in a few seconds", RETRY_AFTER_S))

    @app.exception_handler(OperationalError)
    async def operational(request: Request, exc: OperationalError) -> Response:
        if "database is locked" in str(exc.orig):  # SQLite's busy timeout ran out behind a long write
            return await app_error(request, Unavailable("the database is busy; retry in a few seconds", RETRY_AFTER_S))
        return await unexpected(request, exc)

    @app.exception_handler(DataError)
    async def data_error(request: Request, exc: DataError) -> Response:
        # PostgreSQL refuses a value its column cannot hold (an id above 2^31, a name over its length): the input
        # is at fault, not the server. Routes bound what they can; this is the net under every one of them.
        log.info("database refused a value on %s %s: %s", request.method, request.url.path, exc.orig)
        return await app_error(
            request,
            AppError(
                "a number or a text in the request is outside what can be stored (too large, or too long)", status=422
            ),
        )

    @app.exception_handler(OverflowError)
    async def overflow(request: Request, exc: OverflowError) -> Response:
        # SQLite's driver and numpy raise this for integers beyond 64 bits (ids, offsets).
        return await app_error(request, AppError("a number in the request is too large", status=422))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        errors = _field_errors(exc)
        problems = []
        for err in errors:
            where = ".".join(p for p in err["field"].split(".") if p not in ("body", "query", "path", "header"))
            problems.append(f"{where}: {err['message']}" if where else err["message"])
        message = "invalid input: " + "; ".join(problems)
        if _json_errors(request):
            return _error_json(422, message, "invalid_input", errors)
        return render(request, "error.html", _principal(request), status_code=422, message=message, status=422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        message = "internal error; nothing was saved by this request. The server log has the details."
        if _json_errors(request):
            response: Response = _error_json(500, message, "internal_error")
        else:
            response = render(request, "error.html", None, status_code=500, message=message, status=500)
        # Starlette sends this response from outside every middleware, the guard's headers included.
        for name, value in security_headers(request.app.state.settings, request.url.path):
            response.headers.setdefault(name, value)
        return response
