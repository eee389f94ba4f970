"""Page rendering shared by every router and the error handlers: the Jinja templates and ``render``/``wants_json``.

A module of its own so that routers need not import :mod:`app.web` (which imports the routers): no import cycle.
``create_app`` stores :func:`make_templates`' result in ``app.state.templates``; :func:`render` reads it from there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates

from app import __version__

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"


def make_templates(directory: Path = TEMPLATES_DIR) -> Jinja2Templates:
    """The app's Jinja environment (``create_app`` keeps it in ``app.state.templates``)."""
    return Jinja2Templates(directory=str(directory))


def wants_json(request: Request) -> bool:
    """Whether to answer with JSON rather than a page: API paths, or a client that asks for JSON."""
    return request.url.path.startswith("/api/") or "application/json" in request.headers.get("accept", "")


def render(request: Request, template: str, principal: Any = None, status_code: int = 200, **context: Any) -> Response:
    """Render a page with the signed-in principal (for the nav bar and the CSRF token)."""
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(
        request, template, {"principal": principal, "version": __version__, **context}, status_code=status_code
    )
