"""create_app(): routers, templates, static files, the one error handler, the lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import plotly
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from app import __version__
from app.db import Database
from app.errors import AppError
from app.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
log = logging.getLogger("anomaloop")


def wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or "application/json" in request.headers.get("accept", "")


def render(request: Request, template: str, principal: Any = None, status_code: int = 200, **context: Any) -> Response:
    """Render a page with the signed-in principal (for the nav bar and the CSRF token)."""
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(
        request, template, {"principal": principal, "version": __version__, **context}, status_code=status_code
    )


def create_app(settings: Settings | None = None, database: Database | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.executor = _make_executor(app)
        try:
            yield
        finally:
            if app.state.executor is not None:
                app.state.executor.shutdown()
            if database is None:
                app.state.db.dispose()

    app = FastAPI(title="anomaloop", version=__version__, lifespan=lifespan, docs_url="/api/docs",
                  openapi_url="/api/openapi.json", redoc_url=None)
    app.state.settings = settings
    app.state.db = database or Database(settings.sqlalchemy_url)
    app.state.templates = Jinja2Templates(directory=str(ROOT / "templates"))
    app.state.executor = None
    app.mount("/static", StaticFiles(directory=str(ROOT / "static")), name="static")
    # chart JSON and Plotly's bundle compress several-fold; small responses are left alone
    app.add_middleware(GZipMiddleware, minimum_size=2048)

    @app.get("/vendor/plotly.min.js", include_in_schema=False)
    def plotly_js() -> FileResponse:
        # Plotly's own bundle from the installed package: no CDN, and the version always matches the package.
        return FileResponse(PLOTLY_JS, media_type="text/javascript", headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    _add_error_handlers(app)
    for router in _routers():
        app.include_router(router)
    return app


def _routers() -> list[Any]:
    from app.accounts.router import router as accounts_router
    from app.datasets.router import router as datasets_router
    from app.jobs.router import router as jobs_router
    from app.projects.pages import router as pages_router
    from app.projects.router import router as projects_router
    from app.versions.router import router as versions_router

    return [accounts_router, datasets_router, projects_router, versions_router, jobs_router, pages_router]


def _make_executor(app: FastAPI) -> Any:
    from app.jobs.executor import make_executor

    return make_executor(app.state.settings, app.state.db)


def _principal(request: Request) -> Any:
    """The signed-in user if authentication ran before the error (so error pages keep the nav bar)."""
    return getattr(request.state, "principal", None)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def app_error(request: Request, exc: AppError) -> Response:
        if exc.status == 401 and not wants_json(request):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
        if wants_json(request):
            return JSONResponse({"detail": exc.message}, status_code=exc.status)
        return render(request, "error.html", _principal(request), status_code=exc.status, message=exc.message,
                      status=exc.status)

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
            return JSONResponse({"detail": message}, status_code=500)
        return render(request, "error.html", None, status_code=500, message=message, status=500)
