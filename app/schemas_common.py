"""Field types shared by the request and response bodies of every domain: one timestamp format for the whole API.

Every time the API answers is ISO 8601 in UTC with a ``Z``: ``2026-12-03T12:55:32.621842Z`` for the moments the
server records (rows' ``created_at`` and the like; microseconds only when there are some) and
``2024-01-02T09:20:00Z`` for the timestamps of a series' points. The database keeps naive UTC times; RFC 3339
``date-time`` (what the OpenAPI document promises) needs the offset.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, PlainSerializer, WithJsonSchema

_UTC_SUFFIX = "+00:00"


def as_utc(moment: datetime) -> datetime:
    """``moment`` with its zone: a naive time is UTC (how the database keeps them), an aware one is converted."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def utc_text(moment: datetime) -> str:
    """ISO 8601 in UTC with ``Z``, e.g. ``2026-12-03T12:55:32.621842Z`` (a naive ``moment`` is taken as UTC)."""
    return as_utc(moment).isoformat().removesuffix(_UTC_SUFFIX) + "Z"


def _point_timestamp_text(value: object) -> object:
    # A datetime series keeps its first and last timestamps as pandas writes them ("2024-01-02 09:20:00+00:00",
    # nanoseconds kept); rewritten as text so that no precision is lost. Number series' texts ("1.5") pass as they are.
    if isinstance(value, str) and value.endswith(_UTC_SUFFIX):
        return value.removesuffix(_UTC_SUFFIX).replace(" ", "T", 1) + "Z"
    return value


UtcDateTime = Annotated[
    datetime,
    AfterValidator(as_utc),
    PlainSerializer(utc_text, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
"""A moment in UTC: naive values are taken as UTC; JSON answers carry it as ``2026-12-03T12:55:32.621842Z``."""

PointTimestamp = Annotated[str, BeforeValidator(_point_timestamp_text)]
"""The timestamp of a series' point as text: ``2024-01-02T09:20:00Z`` (datetime series) or the number as imported."""
