"""One error type with an HTTP status; the web handler and the CLI both turn it into one clear line.

Every 4xx/5xx answer of the API has one shape, built by :func:`error_body`::

    {"detail": "what went wrong and what to fix", "code": "not_found", "errors": []}

``code`` is a short, stable, machine-readable word (:data:`STATUS_CODES`, or an :class:`AppError` subclass's own);
``errors`` lists the field errors of a 422 (``{"field", "message", "type"}`` each) and is empty otherwise.
"""

from __future__ import annotations

from typing import Any

STATUS_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    410: "gone",
    411: "length_required",
    412: "precondition_failed",
    413: "too_large",
    415: "unsupported_media_type",
    416: "range_not_satisfiable",
    422: "invalid_input",
    429: "too_many_requests",
    500: "internal_error",
    502: "bad_gateway",
    503: "unavailable",
    504: "timeout",
}
"""The ``code`` of an error response that names no more specific one."""


def code_for_status(status: int) -> str:
    """The default ``code`` of an HTTP status (``"error"`` for one not in :data:`STATUS_CODES`)."""
    return STATUS_CODES.get(status, "error")


def error_body(status: int, message: str, code: str | None = None, errors: list[Any] | None = None) -> dict[str, Any]:
    """The JSON body of every error response: ``{"detail": message, "code": code, "errors": [...]}``."""
    return {"detail": message, "code": code or code_for_status(status), "errors": list(errors or [])}


class AppError(Exception):
    """An expected failure the user can fix: ``message`` says what to fix, ``status`` is its HTTP code, ``code``
    a short machine-readable word for clients (defaults to the status's, :data:`STATUS_CODES`), ``errors`` the
    field errors when there are several."""

    status: int = 400
    code: str = ""
    retry_after: int | None = None

    def __init__(
        self, message: str, status: int | None = None, code: str | None = None, errors: list[Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code:
            self.code = code
        elif not self.code or (status is not None and status != type(self).status):
            self.code = code_for_status(self.status)
        self.errors: list[Any] = list(errors or [])


class NotFound(AppError):
    status = 404
    code = "not_found"


class Conflict(AppError):
    status = 409
    code = "conflict"


class Forbidden(AppError):
    status = 403
    code = "forbidden"


class Unauthorized(AppError):
    status = 401
    code = "unauthorized"


class TooManyRequests(AppError):
    """Refused for now; ``retry_after`` seconds later the same request may pass (sent as ``Retry-After``)."""

    status = 429
    code = "too_many_requests"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after))


class Unavailable(AppError):
    """The server is too busy right now (no database connection free in time): retry after ``retry_after`` s."""

    status = 503
    code = "unavailable"

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after))
