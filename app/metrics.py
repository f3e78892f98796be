"""Prometheus metrics (`GET /metrics`), each named `session_inbox_…`, in one `Metrics` per app.

What a request does is counted as it happens, cheaply: `AccessLog` (`app.access_log`) counts
and times each HTTP answer by route template, `observe_naming` each naming. What the app's parts
count or hold (relayed events, failures, subscribers, the pool) is read when `/metrics` is
scraped, so their hot paths carry nothing. Requests, the hottest path of all, are counted in
plain integers (`RequestCounts`), with no lock: they are counted and scraped in the event loop
alone, and exposed at scrape time as prometheus_client's own Counter and Histogram would be.
This makes the module long: with several processes they are counted in those prometheus_client
metrics after all (`FileRequestCounts`), whose values are the files every process reads.

With `serve --workers N`, every process writes its metrics to files in PROMETHEUS_MULTIPROC_DIR
(prometheus_client's multiprocess mode, chosen when it is imported) and a scrape, answered by any
worker, merges them all: the parent sets the directory up (`multiprocess_directory`) before the
workers start, and each worker writes what it holds every `SAMPLE_S` for the scrapes of others."""

from __future__ import annotations

import asyncio
import bisect
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
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
from prometheus_client import metrics as prometheus_metrics
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import INF, floatToGoString
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.routing import Route

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
REQUESTS = PREFIX + "requests"
REQUESTS_DOC = "HTTP requests answered, by route template, method and status."
REQUEST_SECONDS = PREFIX + "request_duration_seconds"
REQUEST_SECONDS_DOC = (
    "Time from a request's arrival to the last byte of its answer, by route template."
)
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


class _Latency:
    """One histogram series: observations per bucket (not cumulated), their sum, and when it
    was first observed."""

    __slots__ = ("buckets", "created", "sum")

    def __init__(self) -> None:
        self.buckets = [0] * len(_REQUEST_BOUNDS)
        self.sum = 0.0
        self.created = time.time()


class _Count:
    """One counter series, with the histogram series of its route and method."""

    __slots__ = ("created", "latency", "value")

    def __init__(self, latency: _Latency) -> None:
        self.value = 0
        self.latency = latency
        self.created = time.time()


# The histogram's upper bounds, +Inf last, as prometheus_client's Histogram holds them.
_REQUEST_BOUNDS = (*REQUEST_BUCKETS, INF)
_LE = tuple(floatToGoString(bound) for bound in _REQUEST_BOUNDS)  # type: ignore[no-untyped-call]


class RequestCounts(Collector):
    """Requests counted and timed in plain integers, lock-free: `observe` runs in the event loop,
    and so does the scrape that reads them (`generate_latest`, in the `/metrics` endpoint). What
    `collect` exposes is what a Counter `requests` and a Histogram `request_duration_seconds`
    with the same labels would (the same samples, in the same order, `_created` included)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._counts: dict[tuple[str, str, int], _Count] = {}
        self._latencies: dict[tuple[str, str], _Latency] = {}
        registry.register(self)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        count = self._counts.get((route, method, status))
        if count is None:
            latency = self._latencies.get((route, method))
            if latency is None:
                latency = self._latencies[route, method] = _Latency()
            count = self._counts[route, method, status] = _Count(latency)
        count.value += 1
        latency = count.latency
        # The first bound at or above `seconds`, as `Histogram.observe` picks it.
        latency.buckets[bisect.bisect_left(_REQUEST_BOUNDS, seconds)] += 1
        latency.sum += seconds

    def describe(self) -> Iterable[Metric]:
        return [
            Metric(REQUESTS, REQUESTS_DOC, "counter"),
            Metric(REQUEST_SECONDS, REQUEST_SECONDS_DOC, "histogram"),
        ]

    def collect(self) -> Iterable[Metric]:
        # prometheus_client's switch for `_created` series (PROMETHEUS_DISABLE_CREATED_SERIES),
        # read as its own metrics read it: private, and pinned by a test against them.
        created = prometheus_metrics._use_created
        requests, seconds = self.describe()
        for (route, method, status), count in list(self._counts.items()):
            labels = {"route": route, "method": method, "status": str(status)}
            requests.add_sample(REQUESTS + "_total", labels, float(count.value))
            if created:
                requests.add_sample(REQUESTS + "_created", labels, count.created)
        for (route, method), latency in list(self._latencies.items()):
            labels = {"route": route, "method": method}
            observed = 0.0
            for le, in_bucket in zip(_LE, latency.buckets, strict=True):
                observed += in_bucket
                seconds.add_sample(REQUEST_SECONDS + "_bucket", {**labels, "le": le}, observed)
            seconds.add_sample(REQUEST_SECONDS + "_count", labels, observed)
            seconds.add_sample(REQUEST_SECONDS + "_sum", labels, latency.sum)
            if created:
                seconds.add_sample(REQUEST_SECONDS + "_created", labels, latency.created)
        return [requests, seconds]


class FileRequestCounts:
    """With several processes: requests counted in prometheus_client's own metrics, whose values
    are the files that a scrape in any process merges (their lock is the price)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            REQUESTS, REQUESTS_DOC, ("route", "method", "status"), registry=registry
        )
        self.request_seconds = Histogram(
            REQUEST_SECONDS,
            REQUEST_SECONDS_DOC,
            ("route", "method"),
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        # The labelled children of each request's labels, made once.
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        children = self._children.get((route, method, status))
        if children is None:
            children = (
                self.requests.labels(route, method, str(status)),
                self.request_seconds.labels(route, method),
            )
            self._children[route, method, status] = children
        children[0].inc()
        children[1].observe(seconds)


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

        # Registered first, as the metrics it stands for were, so the exposition keeps its order.
        requests = FileRequestCounts(registry) if is_multiprocess() else RequestCounts(registry)
        self.observe_request: Callable[[str, str, int, float], None] = requests.observe
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
