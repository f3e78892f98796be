"""Prometheus metrics (`GET /metrics`), each named `session_inbox_…`, in one `Metrics` per app.

What a request does is counted as it happens, cheaply: `RequestMetrics` (pure ASGI middleware)
counts and times each HTTP answer by route template, `observe_naming` each naming. What the
app's parts count or hold (relayed events, failures, subscribers, the pool) is read when
`/metrics` is scraped, so their hot paths carry nothing.

With `serve --workers N`, every process writes its metrics to files in PROMETHEUS_MULTIPROC_DIR
(prometheus_client's multiprocess mode, chosen when it is imported) and a scrape, answered by any
worker, merges them all: the parent sets the directory up (`multiprocess_directory`) before the
workers start, and each worker writes what it holds every `SAMPLE_S` for the scrapes of others."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from starlette.requests import ClientDisconnect, HTTPConnection, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.access_log import CLIENT_GONE
from app.naming.names import Names

if TYPE_CHECKING:
    from app.state import AppState

log = logging.getLogger(__name__)

PATH = "/metrics"
PREFIX = "session_inbox_"
# The variable prometheus_client reads, when imported, to write to files (multiprocess mode).
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
# With several processes, how often each writes down what it holds (subscribers, the pool).
SAMPLE_S = 5.0
# How long a scrape waits for the database to count the outbox.
BACKLOG_TIMEOUT_S = 1.0
# A request that matched no route; and a method outside these, so that clients cannot make
# label values up.
UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
NAMING_BUCKETS = (0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)


def is_multiprocess() -> bool:
    """Whether prometheus_client writes to `PROMETHEUS_MULTIPROC_DIR` in this process."""
    return bool(getattr(values.ValueClass, "_multiprocess", False))


class _Follower:
    """A counter that follows a count kept elsewhere, which only grows."""

    def __init__(self, counter: Counter) -> None:
        self.counter = counter
        self.seen = 0

    def follow(self, count: int) -> None:
        if count > self.seen:
            self.counter.inc(count - self.seen)
        # Lower: another source (a new relay) started from zero.
        self.seen = count


class Metrics:
    """The metrics of one app, in a registry of its own (tests make many apps in a process)."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(PREFIX + name, doc, labels, registry=registry)

        def histogram(name: str, doc: str, labels: tuple[str, ...], buckets: Any) -> Histogram:
            return Histogram(PREFIX + name, doc, labels, buckets=buckets, registry=registry)

        # With several processes, a gauge is what each process holds, the live ones summed.
        def gauge(name: str, doc: str, mode: Literal["livesum", "mostrecent"] = "livesum") -> Gauge:
            return Gauge(PREFIX + name, doc, registry=registry, multiprocess_mode=mode)

        self.requests = counter(
            "requests",
            "HTTP requests answered, by route template, method and status.",
            ("route", "method", "status"),
        )
        self.request_seconds = histogram(
            "request_duration_seconds",
            "Time from a request's arrival to the last byte of its answer, by route template.",
            ("route", "method"),
            REQUEST_BUCKETS,
        )
        self.namings = counter(
            "namings",
            "Sessions named, by the configured namer and outcome: ok, or why the local names "
            "were used instead (timeout, gave_up, key_rejected, api_error, unusable_answer, "
            "unexpected).",
            ("namer", "outcome"),
        )
        self.naming_seconds = histogram(
            "naming_duration_seconds",
            "Time taken to name a session, fallback included, by the configured namer.",
            ("namer",),
            NAMING_BUCKETS,
        )
        self.events_relayed = counter(
            "events_relayed", "Events the outbox relay appended to the event log."
        )
        self.publish_failures = counter(
            "publish_failures",
            "Appends to the event log that failed (the log could not be reached).",
        )
        self.relay_failures = counter(
            "relay_failures", "Rounds of the outbox relay that failed on the database."
        )
        # One table for every process: the latest count wins.
        self.outbox_backlog = gauge(
            "outbox_backlog",
            "Events waiting in the outbox for the event log (NaN: the database did not answer).",
            "mostrecent",
        )
        self.subscribers = gauge("subscribers", "Open event subscriptions (GraphQL sessionEvents).")
        self.streams_open = gauge("streams_open", "Unpaged session lists being streamed.")
        self.db_pool_size = gauge(
            "db_pool_size", "Connections in the PostgreSQL pool (0 on SQLite, which has none)."
        )
        self.db_pool_in_use = gauge(
            "db_pool_in_use", "Connections of the PostgreSQL pool lent out now."
        )
        self.db_pool_max = gauge(
            "db_pool_max", "The most connections the PostgreSQL pool may hold."
        )
        self._relayed = _Follower(self.events_relayed)
        self._publish_failures = _Follower(self.publish_failures)
        self._relay_failures = _Follower(self.relay_failures)
        # The labelled children of each request's labels, made once.
        self._request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        children = self._request_children.get((route, method, status))
        if children is None:
            children = (
                self.requests.labels(route, method, str(status)),
                self.request_seconds.labels(route, method),
            )
            self._request_children[route, method, status] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_naming(self, names: Names, seconds: float) -> None:
        namer = "anthropic" if names.namer == "anthropic" or names.fallback else "local"
        self.namings.labels(namer, names.fallback or "ok").inc()
        self.naming_seconds.labels(namer).observe(seconds)

    def sample(self, state: AppState) -> None:
        """Writes down what the app's parts count and hold now."""
        relay = state.events.relay
        self._relayed.follow(relay.relayed)
        self._publish_failures.follow(relay.publish_failures)
        self._relay_failures.follow(relay.database_failures)
        self.subscribers.set(len(state.events.fanout))
        self.streams_open.set(state.db.streams_open)
        size, in_use = state.db.pool_usage()
        self.db_pool_size.set(size)
        self.db_pool_in_use.set(in_use)
        self.db_pool_max.set(state.db.pool_size if state.db.is_postgres else 0)

    async def scrape(self, state: AppState) -> bytes:
        """The text exposition, with what `state` holds now and the outbox counted."""
        self.sample(state)
        try:
            async with asyncio.timeout(BACKLOG_TIMEOUT_S):
                backlog: float = await state.events.relay.outbox.backlog()
        except Exception:
            log.debug("the outbox could not be counted for /metrics", exc_info=True)
            backlog = math.nan
        self.outbox_backlog.set(backlog)
        if is_multiprocess():
            # Every process's files, merged: a registry per scrape, as prometheus_client's
            # documentation has it.
            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
            return generate_latest(merged)
        return generate_latest(self.registry)

    @asynccontextmanager
    async def sampling(self, state: AppState) -> AsyncIterator[None]:
        """For the app's lifespan: with several processes, writes down what this one holds
        every `SAMPLE_S` (a scrape is answered by one of them) and, at the end, takes this
        process's gauges out of the sums. Nothing to do with one process."""
        if not is_multiprocess():
            yield
            return
        task = asyncio.create_task(self._sample_every(state), name="metrics-sampler")
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]

    async def _sample_every(self, state: AppState) -> None:
        while True:
            try:
                self.sample(state)
            except Exception:
                log.exception("could not sample the metrics")
            await asyncio.sleep(SAMPLE_S)


def metrics_of(connection: HTTPConnection) -> Metrics:
    """The metrics of the app serving `connection` (a request or a WebSocket)."""
    metrics: Metrics = connection.app.state.metrics
    return metrics


def metrics_route(metrics: Metrics) -> Route:
    """`GET /metrics`: `metrics` in Prometheus's text format."""

    async def endpoint(request: Request) -> Response:
        state: AppState = request.state.inbox
        return Response(await metrics.scrape(state), media_type=CONTENT_TYPE_LATEST)

    return Route(PATH, endpoint, methods=["GET"])


class RequestMetrics:
    """ASGI middleware: every HTTP answer counted and timed by route template (`/sessions/{id}`,
    never the path itself), method and status; WebSockets pass through."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # What the app raises without answering is answered 500 further out.
        status = 500

        async def send_seen(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_seen)
        except ClientDisconnect:
            # Gone before its answer: counted as AccessLog writes it down.
            status = CLIENT_GONE if status == 500 else status
            raise
        finally:
            method = scope["method"]
            self.metrics.observe_request(
                _template(scope.get("route")),
                method if method in METHODS else "other",
                status,
                time.perf_counter() - started,
            )


def _template(route: Any) -> str:
    """The path template of the route the router picked (`scope["route"]`), if it picked one."""
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


@contextmanager
def multiprocess_directory(workers: int) -> Iterator[Path | None]:
    """For `serve`, around the server's run in the parent: with several workers, or the
    operator's PROMETHEUS_MULTIPROC_DIR, the directory named there (inherited by the workers),
    where each writes its metrics. The operator's is emptied of an earlier run's files and
    kept; otherwise a temporary one is made, and removed at the end. None with one process."""
    given = os.environ.get(MULTIPROC_DIR)
    if given:
        directory = Path(given)
        directory.mkdir(parents=True, exist_ok=True)
        # An earlier run's counts would be added to this one's.
        for stale in directory.glob("*.db"):
            stale.unlink()
        yield directory
        return
    if workers <= 1:
        yield None
        return
    directory = Path(tempfile.mkdtemp(prefix="session-inbox-metrics-"))
    os.environ[MULTIPROC_DIR] = str(directory)
    try:
        yield directory
    finally:
        del os.environ[MULTIPROC_DIR]
        shutil.rmtree(directory, ignore_errors=True)
