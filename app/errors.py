"""One error type with an HTTP status; the web handler and the CLI both turn it into one clear line."""

from __future__ import annotations


class AppError(Exception):
    """An expected failure the user can fix: ``message`` says what to fix, ``status`` is its HTTP code."""

    status: int = 400
    retry_after: int | None = None

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class NotFound(AppError):
    status = 404


class Conflict(AppError):
    status = 409


class Forbidden(AppError):
    status = 403


class Unauthorized(AppError):
    status = 401


class TooManyRequests(AppError):
    """Refused for now; ``retry_after`` seconds later the same request may pass (sent as ``Retry-After``)."""

    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after))


class Unavailable(AppError):
    """The server is too busy right now (no database connection free in time): retry after ``retry_after`` s."""

    status = 503

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after))
