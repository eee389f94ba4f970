"""Operations: the Prometheus metrics of one app instance (``/metrics``) and the reachability checks of ``/healthz``.

Every app instance owns its :class:`Metrics` (``app.state.metrics``): a ``CollectorRegistry`` of its own, so two apps
in one process (the tests) never share counters, and nothing here is a module-level registry.

- HTTP: ``anomaloop_http_requests_total{method,route,status}`` and ``anomaloop_http_request_duration_seconds{method,
  route}`` (a histogram), counted by :class:`MetricsMiddleware`, a pure ASGI middleware (it never buffers a streamed
  response). ``route`` is the route *template* (``/api/v1/projects/{project_id}/scores``), never the raw path, so the
  number of series stays bounded; a path no route matches counts as ``<unmatched>``.
- Domain gauges read from the database at scrape time by :class:`DatabaseCollector` (three ``GROUP BY`` counts):
  ``anomaloop_jobs{state}``, ``anomaloop_rounds{status}``, ``anomaloop_labels{value,source}``; plus
  ``anomaloop_database_up`` (0 when those queries failed: the scrape still answers).
- Ingestion and scoring: ``anomaloop_points_ingested_total`` and ``anomaloop_scoring_duration_seconds``, fed by
  :func:`record_points_ingested` and :func:`observe_scoring_seconds`. Code that ingests or scores calls them with no
  handle on the app: during a request the middleware makes the app's metrics the *current* ones (a context variable,
  which follows the request into the threadpool and into a streamed body); outside a request (a Celery worker, the
  in-process executor's thread) they do nothing unless given ``metrics=`` explicitly.
- The process: ``process_resident_memory_bytes``, CPU seconds, open file descriptors (``ProcessCollector``).

Counters live in the process that serves the request. With several web processes (``anomaloop serve --workers``)
they are kept in files that every process reads at a scrape (prometheus-client's multiprocess mode,
:func:`shared_metrics_dir`), so any process answers for all; the process collector is then left out.

This module imports no web framework and no domain package (services call the ``record_*`` functions, so it must
close no import cycle); its three monitoring counts are written here as plain table/column queries for that reason.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import column, create_engine, func, select, table, text
from sqlalchemy.pool import NullPool

if TYPE_CHECKING:
    from app.db import Database

log = logging.getLogger("anomaloop")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

UNMATCHED_ROUTE = "<unmatched>"
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Seconds; the issue's targets (100 ms reads, 250 ms appends) fall on bucket edges."""
SCORING_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Seconds per scoring call (a 100-point append is milliseconds; a job over a long series, many seconds)."""
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""prometheus-client's own variable: where its multiprocess mode keeps every process's values."""
CHECK_TIMEOUT_S = 2.0
"""Connect and statement timeout of each ``/healthz`` check."""


class Metrics:
    """The Prometheus registry and instruments of one app instance (kept in ``app.state.metrics``).

    ``database``: where :class:`DatabaseCollector` counts jobs, rounds and labels at scrape time (None: no gauges).
    """

    def __init__(self, database: Database | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "anomaloop_http_requests",
            "HTTP requests answered, by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "anomaloop_http_request_duration_seconds",
            "Seconds from a request's arrival to the end of its response body (streams included).",
            ["method", "route"],
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.points_ingested = Counter(
            "anomaloop_points_ingested",
            "Points appended to series through the API (time steps; every channel of a step counts once).",
            registry=self.registry,
        )
        self.scoring_seconds = Histogram(
            "anomaloop_scoring_duration_seconds",
            "Seconds one scoring call took (new points, a new series, an uploaded array).",
            buckets=SCORING_BUCKETS,
            registry=self.registry,
        )
        shared_dir = os.environ.get(MULTIPROC_ENV)
        if shared_dir:
            # several web processes (shared_metrics_dir): every process's instruments write their values to files
            # there, and a scrape of any process reads them all; the per-process collector would show one
            # process of several, so it is left out
            self.exposition = CollectorRegistry(auto_describe=True)
            MultiProcessCollector(self.exposition, path=shared_dir)
        else:
            self.exposition = self.registry
            ProcessCollector(namespace="", registry=self.registry)
        if database is not None:
            self.exposition.register(DatabaseCollector(database))

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """The exposition text and its content type: OpenMetrics when the scraper asks for it, else Prometheus text."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.exposition), content_type


@contextmanager
def shared_metrics_dir(data_dir: Path) -> Iterator[Path]:
    """While several web processes serve one port: a fresh folder where prometheus-client's multiprocess mode keeps
    their counters, named in the environment the processes inherit (``PROMETHEUS_MULTIPROC_DIR``, read when they
    import prometheus-client). Emptied first (a dead server's values would be added in) and removed after."""
    folder = data_dir / "metrics"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(folder.resolve())
    try:
        yield folder
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(folder, ignore_errors=True)


_current: ContextVar[Metrics | None] = ContextVar("anomaloop_current_metrics", default=None)
"""The metrics of the app serving the current request (set by :class:`MetricsMiddleware`; ``None`` elsewhere)."""


def record_points_ingested(n: int, metrics: Metrics | None = None) -> None:
    """Count ``n`` points (time steps) appended to a series; a no-op outside a request unless ``metrics`` is given."""
    target = metrics or _current.get()
    if target is not None and n > 0:
        target.points_ingested.inc(n)


def observe_scoring_seconds(seconds: float, metrics: Metrics | None = None) -> None:
    """Record one scoring call that took ``seconds``; a no-op outside a request unless ``metrics`` is given."""
    target = metrics or _current.get()
    if target is not None and seconds >= 0:
        target.scoring_seconds.observe(seconds)


# -- HTTP ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoutePattern:
    """One route as the middleware matches it: the compiled path regex, its methods (None: any), its template."""

    regex: re.Pattern[str]
    methods: frozenset[str] | None
    template: str


class MetricsMiddleware:
    """Pure ASGI middleware counting every HTTP request by route template and status, with its latency.

    Outermost in :func:`app.web.create_app`, so it also counts what the guard refuses before routing (401, 413);
    such a request's template is found by matching the path against ``patterns()``. The latency ends with the last
    body chunk (a streamed response is timed whole); a request that raised counts as 500.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, patterns: Callable[[], Sequence[RoutePattern]]) -> None:
        self.app = app
        self.metrics = metrics
        self.patterns = patterns

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_counting(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        token = _current.set(self.metrics)
        try:
            await self.app(scope, receive, send_counting)
        finally:
            _current.reset(token)
            method = str(scope.get("method", "GET"))
            route = self.route_template(scope.get("path", ""), method)
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.request_seconds.labels(method, route).observe(time.perf_counter() - started)

    def route_template(self, path: str, method: str) -> str:
        """The template of the route that serves ``method path`` (or, for a wrong method, of the route the path
        names); ``<unmatched>`` when no route does. Matched from the path (not from what routing left in the scope)
        so that requests refused before routing are counted under their route too."""
        partial = None
        for pattern in self.patterns():
            if pattern.regex.match(path):
                if pattern.methods is None or method in pattern.methods:
                    return pattern.template
                partial = partial or pattern.template
        return partial or UNMATCHED_ROUTE


# -- database gauges ----------------------------------------------------------------------------------------------

_JOB = table("job", column("status"))
_ROUND = table("round", column("status"))
_LABEL = table("label", column("value"), column("source"))


class DatabaseCollector(Collector):
    """Jobs by state, rounds by status and labels by value and source, counted when Prometheus scrapes.

    Three ``GROUP BY`` queries in one short read-only transaction: ``job.status`` is indexed and the round and label
    tables stay small next to the series values, so a scrape costs milliseconds. A database that cannot answer
    gives ``anomaloop_database_up 0`` and no domain gauges, never a failed scrape.
    """

    def __init__(self, database: Database) -> None:
        self.database = database

    def describe(self) -> list[Metric]:
        return []  # unknown until a scrape: the registry must not call collect() (a query) when this registers

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("anomaloop_database_up", "1 when the database answered this scrape's queries.")
        try:
            with self.database.engine.connect() as conn:
                jobs = conn.execute(select(_JOB.c.status, func.count()).group_by(_JOB.c.status)).all()
                rounds = conn.execute(select(_ROUND.c.status, func.count()).group_by(_ROUND.c.status)).all()
                labels = conn.execute(
                    select(_LABEL.c.value, _LABEL.c.source, func.count()).group_by(_LABEL.c.value, _LABEL.c.source)
                ).all()
        except Exception:  # noqa: BLE001 - a scrape reports the database as down rather than failing
            log.warning("metrics: the database did not answer the scrape's queries", exc_info=True)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        family = GaugeMetricFamily("anomaloop_jobs", "Jobs by state.", labels=["state"])
        for status, count in jobs:
            family.add_metric([str(status)], count)
        yield family
        family = GaugeMetricFamily("anomaloop_rounds", "Labeling rounds by status.", labels=["status"])
        for status, count in rounds:
            family.add_metric([str(status)], count)
        yield family
        family = GaugeMetricFamily(
            "anomaloop_labels",
            "Stored label rows by value and source (append-only: undos and edits are rows too).",
            labels=["value", "source"],
        )
        for value, source, count in labels:
            family.add_metric([str(value), str(source)], count)
        yield family


# -- /healthz -----------------------------------------------------------------------------------------------------


@dataclass
class Check:
    """One reachability check of ``/healthz``: ``ok``, how long it took, and, when it failed, the kind of error
    (never the URL or its credentials: ``/healthz`` is public; the server log has the details)."""

    ok: bool
    seconds: float
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": self.ok, "ms": round(self.seconds * 1000, 1), **self.extra}
        if self.error is not None:
            body["error"] = self.error
        return body


class HealthChecks:
    """The checks behind ``/healthz``, each with its own short connection (never the request pool's: the health of
    a server whose pool is exhausted is "reachable but busy", and the check must not queue behind that).

    ``database_url``: the app's SQLAlchemy URL; ``broker_url``: the Celery broker, if one is configured.
    """

    def __init__(self, database_url: str, broker_url: str | None, timeout_s: float = CHECK_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self.broker_url = broker_url
        connect_args: dict[str, Any] = {}
        if database_url.startswith("sqlite"):
            connect_args = {"timeout": timeout_s, "check_same_thread": False}
        elif database_url.startswith("postgresql"):
            millis = int(timeout_s * 1000)
            connect_args = {"connect_timeout": max(1, int(timeout_s)), "options": f"-c statement_timeout={millis}"}
        self.engine = create_engine(database_url, poolclass=NullPool, connect_args=connect_args)

    def database(self) -> Check:
        started = time.perf_counter()
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - any failure means "unreachable"; the kind is reported
            log.warning("healthz: database unreachable: %s", exc)
            return Check(False, time.perf_counter() - started, _kind(exc))
        return Check(True, time.perf_counter() - started)

    def broker(self) -> Check | None:
        """``None`` when no broker is configured (the in-process executor needs none)."""
        if not self.broker_url:
            return None
        started = time.perf_counter()
        scheme = urlsplit(self.broker_url).scheme
        try:
            if scheme in ("redis", "rediss", "unix"):
                import redis

                client = redis.Redis.from_url(
                    self.broker_url, socket_connect_timeout=self.timeout_s, socket_timeout=self.timeout_s
                )
                try:
                    client.ping()
                finally:
                    client.close()
            else:  # amqp and the rest of kombu's transports
                from kombu import Connection

                with Connection(self.broker_url, connect_timeout=self.timeout_s) as conn:
                    conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=self.timeout_s)
        except Exception as exc:  # noqa: BLE001 - any failure means "unreachable"; the kind is reported
            log.warning("healthz: broker unreachable: %s", exc)
            return Check(False, time.perf_counter() - started, _kind(exc))
        return Check(True, time.perf_counter() - started)

    def dispose(self) -> None:
        self.engine.dispose()


def _kind(exc: BaseException) -> str:
    return f"unreachable ({exc.__class__.__name__})"
