"""One error type with an HTTP status; the web handler and the CLI both turn it into one clear line."""

from __future__ import annotations


class AppError(Exception):
    """An expected failure the user can fix: ``message`` says what to fix, ``status`` is its HTTP code."""

    status: int = 400

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
