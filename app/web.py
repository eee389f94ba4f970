"""create_app(): routers, templates, static files, the one error handler, the lifespan."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from app import __version__
from app.accounts.guard import RETRY_AFTER_S, Guard, security_headers
from app.accounts.router import router as accounts_router
from app.datasets.router import router as datasets_router
from app.db import Database
from app.errors import AppError, Unavailable
from app.jobs.executor import make_executor
from app.jobs.router import router as jobs_router
from app.projects.pages import router as pages_router
from app.projects.router import router as projects_router
from app.rendering import make_templates, render, wants_json
from app.settings import Settings
from app.static_files import mount_static
from app.versions.router import router as versions_router

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("anomaloop")
ROUTERS: tuple[APIRouter, ...] = (
    accounts_router,
    datasets_router,
    projects_router,
    versions_router,
    jobs_router,
    pages_router,
)


def create_app(settings: Settings | None = None, database: Database | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        clean_stale_uploads(settings)
        app.state.executor = make_executor(app.state.settings, app.state.db)
        try:
            yield
        finally:
            if app.state.executor is not None:
                app.state.executor.shutdown()
            if database is None:
                app.state.db.dispose()

    app = FastAPI(
        title="anomaloop",
        version=__version__,
        lifespan=lifespan,
        docs_url="/api/docs",
        openapi_url="/api/openapi.json",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.db = database or Database(settings.sqlalchemy_url, settings.pool_options())
    app.state.templates = make_templates(ROOT / "templates")
    app.state.executor = None
    mount_static(app, ROOT / "static")  # versioned URLs, long-lived cache headers (app/static_files.py)
    # chart JSON and Plotly's bundle compress several-fold; small responses are left alone
    app.add_middleware(GZipMiddleware, minimum_size=2048)
    # outermost: identity and body limits before anything reads the body; security headers on every response
    app.add_middleware(Guard, settings=settings, db=app.state.db)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    _add_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    return app


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


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def app_error(request: Request, exc: AppError) -> Response:
        if exc.status == 401 and not wants_json(request):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
        if wants_json(request):
            response: Response = JSONResponse({"detail": exc.message}, status_code=exc.status)
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
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
            problems.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        message = "invalid input: " + "; ".join(problems)
        if wants_json(request):
            return JSONResponse({"detail": message, "errors": problems}, status_code=422)
        return render(request, "error.html", _principal(request), status_code=422, message=message, status=422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        message = "internal error; nothing was saved by this request. The server log has the details."
        if wants_json(request):
            response: Response = JSONResponse({"detail": message}, status_code=500)
        else:
            response = render(request, "error.html", None, status_code=500, message=message, status=500)
        # Starlette sends this response from outside every middleware, the guard's headers included.
        for name, value in security_headers(request.app.state.settings, request.url.path):
            response.headers.setdefault(name, value)
        return response
