"""`GET /metrics`: Prometheus's text format, read back with prometheus_client's own parser, and
counters that move with what the app does: requests (by route template, never the raw path),
namings (the local namer, and the fake Anthropic server), events relayed and failing to be,
the outbox, subscribers, the pool; and, with `--workers 2`, the sum of both processes."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import httpx
import orjson
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families
from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive, Scope, Send

from app.access_log import AccessLog
from app.config import Settings, load_settings
from app.db import Database
from app.events import Events
from app.events.redis_log import RedisLog
from app.main import create_app
from app.metrics import (
    MULTIPROC_DIR,
    REQUEST_BUCKETS,
    FileRequestCounts,
    Metrics,
    RequestCounts,
    multiprocess_directory,
)
from app.model import NewSession
from app.naming import LocalNamer
from app.service import SessionService
from app.state import AppState
from tests.conftest import idle_events, with_state
from tests.fake_anthropic import FakeAnthropic, FakeResponse
from tests.ports import free_port
from tests.redis_server import RedisServer
from tests.servers import Servers
from tests.test_health import postgres_at
from tests.watching import watching

DEADLINE_S = 10.0
NEW = {"repo": "acme/app", "target_branch": "main", "messages": {"content": "Fix the login"}}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; 0 for one that is not there (a labelled counter not yet counted)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(http: httpx.AsyncClient) -> Samples:
    response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


async def until_scraped(http: httpx.AsyncClient, name: str, at_least: float) -> Samples:
    """Scrapes until the unlabelled sample `name` reaches `at_least` (TimeoutError past the
    deadline)."""
    async with asyncio.timeout(DEADLINE_S):
        while True:
            samples = await scrape(http)
            if value(samples, name) >= at_least:
                return samples
            await asyncio.sleep(0.05)


@asynccontextmanager
async def served(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app run with its own lifespan (its namer, relay and pool, as served)."""
    app = create_app(settings)
    async with app.router.lifespan_context(app) as state:
        transport = httpx.ASGITransport(app=with_state(app, dict(state or {})))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


@pytest.fixture
def fresh_settings(tmp_sqlite_url: str) -> Settings:
    """An empty SQLite file, migrated by the app's lifespan."""
    return replace(load_settings(environ={}, env_file=None), database_url=tmp_sqlite_url)


# Requests


async def test_rest_requests_are_counted_by_route_template_method_and_status(
    client: httpx.AsyncClient,
) -> None:
    created = await client.post("/sessions", json=NEW)
    location = created.headers["location"]
    await client.get(location)
    await client.get(location)
    await client.get(f"/sessions/{uuid.uuid4()}")
    await client.post(location, json=NEW)
    await client.get("/no/such/path")

    samples = await scrape(client)

    count = "session_inbox_requests_total"
    assert value(samples, count, route="/sessions", method="POST", status="201") == 1
    assert value(samples, count, route="/sessions/{id}", method="GET", status="200") == 2
    assert value(samples, count, route="/sessions/{id}", method="GET", status="404") == 1
    assert value(samples, count, route="/sessions/{id}", method="POST", status="405") == 1
    assert value(samples, count, route="unmatched", method="GET", status="404") == 1
    latency = "session_inbox_request_duration_seconds_count"
    assert value(samples, latency, route="/sessions/{id}", method="GET") == 3
    assert (
        value(
            samples, "session_inbox_request_duration_seconds_sum", route="/sessions", method="POST"
        )
        > 0
    )
    # No raw path is a label value: one series per template, whatever the ids.
    routes = {dict(labels).get("route") for _, labels in samples} - {None}
    # (the client itself reads /openapi.json, to check each answer against it)
    assert routes == {"/sessions", "/sessions/{id}", "/openapi.json", "unmatched"}


async def test_graphql_requests_are_counted_under_graphql(client: httpx.AsyncClient) -> None:
    query = {"query": "{ sessions(first: 1) { totalCount } }"}
    await client.post("/graphql", json=query)
    await client.get("/graphql", params=query)

    samples = await scrape(client)

    count = "session_inbox_requests_total"
    assert value(samples, count, route="/graphql", method="POST", status="200") == 1
    assert value(samples, count, route="/graphql", method="GET", status="200") == 1


async def test_a_scrape_is_counted_by_the_next_one(client: httpx.AsyncClient) -> None:
    await scrape(client)
    samples = await scrape(client)

    count = "session_inbox_requests_total"
    assert value(samples, count, route="/metrics", method="GET", status="200") == 1


async def test_refusals_of_the_middleware_are_counted(settings: Settings, db: Database) -> None:
    # A 401 is answered before the router: it is counted all the same (as `unmatched`).
    settings = replace(settings, api_tokens=("s3cret-token",))
    events = idle_events(db)
    state = AppState(settings, db, events, SessionService(db, LocalNamer(), events))
    app = create_app(settings)
    transport = httpx.ASGITransport(app=with_state(app, {"inbox": state}))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        refused = await http.get("/sessions")
        samples = parse(
            (await http.get("/metrics", headers={"Authorization": "Bearer s3cret-token"})).text
        )

    assert refused.status_code == 401
    count = "session_inbox_requests_total"
    assert value(samples, count, route="unmatched", method="GET", status="401") == 1


def test_lock_free_request_counts_expose_what_prometheus_own_metrics_would(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One process counts requests in plain integers; with several, prometheus_client's Counter
    # and Histogram count them. A scrape cannot tell the two apart, `_created` included.
    monkeypatch.setattr("time.time", lambda: 1_700_000_000.5)
    lock_free, own = CollectorRegistry(), CollectorRegistry()
    counts, prometheus_counts = RequestCounts(lock_free), FileRequestCounts(own)
    # Each bound, just under and over it, and past the last.
    seconds = [b + d for b in REQUEST_BUCKETS for d in (-1e-9, 0.0, 1e-9)] + [0.0, 60.0]
    for i, duration in enumerate(seconds * 3):
        labels = (["/sessions/{id}", "unmatched", "/healthz"][i % 3], ["GET", "POST"][i % 2])
        for observed in (counts, prometheus_counts):
            observed.observe(*labels, [200, 404, 499, 500][i % 4], duration)

    assert generate_latest(lock_free).decode() == generate_latest(own).decode()
    assert "session_inbox_requests_created" in generate_latest(lock_free).decode()


async def test_an_answer_the_app_never_gave_is_counted_as_the_access_line_says_it_ended() -> None:
    # 500 for an error (answered further out) or no answer at all, 499 for a client gone
    # mid-body, and the status sent when the app answered before failing.
    async def app(scope: Scope, _receive: Receive, send: Send) -> None:
        path = scope["path"]
        if path == "/answered-then-broken":
            await send({"type": "http.response.start", "status": 201, "headers": []})
            raise RuntimeError("a bug")
        if path == "/hung-up":
            raise ClientDisconnect
        if path == "/broken":
            raise RuntimeError("a bug")

    metrics = Metrics()
    observed = AccessLog(app, metrics=metrics)

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(_message: Message) -> None:
        pass

    for path in ("/broken", "/answered-then-broken", "/hung-up", "/silent"):
        scope: Scope = {"type": "http", "method": "BREW", "path": path, "headers": []}
        with contextlib.suppress(RuntimeError):
            await observed(scope, receive, send)

    samples = parse(generate_latest(metrics.registry).decode())
    count = "session_inbox_requests_total"
    statuses = {
        dict(labels)["status"]: sample
        for (name, labels), sample in samples.items()
        if name == count and dict(labels)["route"] == "unmatched"
    }
    assert statuses == {"500": 2.0, "201": 1.0, "499": 1.0}
    assert value(samples, count, route="unmatched", method="other", status="499") == 1


# Naming


async def test_a_local_naming_is_counted_and_timed(fresh_settings: Settings) -> None:
    async with served(fresh_settings) as http:
        assert (await http.post("/sessions", json=NEW)).status_code == 201
        samples = await scrape(http)

    assert value(samples, "session_inbox_namings_total", namer="local", outcome="ok") == 1
    assert value(samples, "session_inbox_naming_duration_seconds_count", namer="local") == 1


async def test_anthropic_namings_are_counted_by_outcome(fresh_settings: Settings) -> None:
    with FakeAnthropic() as fake:
        settings = replace(
            fresh_settings,
            anthropic_api_key="sk-ant-test",
            anthropic_base_url=fake.url,
            naming_timeout_s=5.0,
        )
        fake.enqueue(FakeResponse.tool_use("Fix the login", "fix-login"), FakeResponse.error(400))
        async with served(settings) as http:
            first = await http.post("/sessions", json=NEW)
            second = await http.post("/sessions", json=NEW)
            samples = await scrape(http)

    assert (first.status_code, second.status_code) == (201, 201)
    namings = "session_inbox_namings_total"
    assert value(samples, namings, namer="anthropic", outcome="ok") == 1
    assert value(samples, namings, namer="anthropic", outcome="api_error") == 1
    assert value(samples, namings, namer="local", outcome="ok") == 0
    assert value(samples, "session_inbox_naming_duration_seconds_count", namer="anthropic") == 2


# Events


async def test_events_relayed_and_subscribers_are_counted(
    client: httpx.AsyncClient, service: SessionService, events: Events
) -> None:
    async with watching(service) as watcher:
        created = (await client.post("/sessions", json=NEW)).json()
        await watcher.count(1)
        async with asyncio.timeout(DEADLINE_S):
            await events.relay.caught_up()
        watched = await scrape(client)
    after = await scrape(client)

    assert str(watcher.seen[0].session_id) == created["id"]
    assert value(watched, "session_inbox_events_relayed_total") == 1
    assert value(watched, "session_inbox_subscribers") == 1
    assert value(watched, "session_inbox_outbox_backlog") == 0
    assert value(after, "session_inbox_subscribers") == 0
    assert value(after, "session_inbox_publish_failures_total") == 0
    assert value(after, "session_inbox_relay_failures_total") == 0


async def test_the_outbox_backlog_is_counted_when_scraped(settings: Settings, db: Database) -> None:
    events = idle_events(db)  # no relay runs: what is committed stays in the outbox
    service = SessionService(db, LocalNamer(), events)
    for _ in range(3):
        await service.create(NewSession.convert(NEW))
    app = create_app(settings)
    state = AppState(settings, db, events, service)
    transport = httpx.ASGITransport(app=with_state(app, {"inbox": state}))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        samples = await scrape(http)

    assert value(samples, "session_inbox_outbox_backlog") == 3


async def test_appends_to_an_unreachable_event_log_are_counted(
    settings: Settings, db: Database
) -> None:
    events = Events(db, RedisLog(f"redis://127.0.0.1:{free_port()}/0", 10))
    service = SessionService(db, LocalNamer(), events)
    app = create_app(settings)
    transport = httpx.ASGITransport(
        app=with_state(app, {"inbox": AppState(settings, db, events, service)})
    )
    events.start()
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            assert (await http.post("/sessions", json=NEW)).status_code == 201
            samples = await until_scraped(http, "session_inbox_publish_failures_total", 1)
    finally:
        await events.stop()

    assert value(samples, "session_inbox_events_relayed_total") == 0
    assert value(samples, "session_inbox_outbox_backlog") == 1


async def test_a_scrape_answers_when_the_database_does_not() -> None:
    settings = Settings(run_migrations=False)
    dead = postgres_at(f"postgres://root@127.0.0.1:{free_port()}/postgres")
    events = idle_events(dead)
    state = AppState(settings, dead, events, SessionService(dead, LocalNamer(), events))
    app = create_app(settings)
    transport = httpx.ASGITransport(app=with_state(app, {"inbox": state}))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        samples = await scrape(http)

    # Unknown, rather than a count that is no longer true.
    assert math.isnan(value(samples, "session_inbox_outbox_backlog"))


# The pool and streams


async def test_the_pool_is_measured(
    client: httpx.AsyncClient, db: Database, engine_kind: str
) -> None:
    async with db.transaction():
        await db.execute("SELECT 1")
        held = await scrape(client)

    if engine_kind == "postgres":
        assert value(held, "session_inbox_db_pool_max") == db.pool_size
        assert value(held, "session_inbox_db_pool_in_use") >= 1
        assert value(held, "session_inbox_db_pool_size") >= value(
            held, "session_inbox_db_pool_in_use"
        )
    else:
        assert value(held, "session_inbox_db_pool_max") == 0
        assert value(held, "session_inbox_db_pool_size") == 0


async def test_streams_open_counts_while_a_stream_is_open(
    client: httpx.AsyncClient, app_state: AppState
) -> None:
    # A stream, as the REST unpaged list reads one, holding its slot until it is closed.
    rows = app_state.db.stream("SELECT 1 AS one")
    await anext(rows)
    during = await scrape(client)
    await rows.aclose()
    after = await scrape(client)

    assert value(during, "session_inbox_streams_open") == 1
    assert value(after, "session_inbox_streams_open") == 0


# Several worker processes


async def test_two_workers_add_up_in_one_scrape(
    tmp_path: Path, database_urls: dict[str, str]
) -> None:
    redis_dir, metrics_dir = tmp_path / "redis", tmp_path / "metrics"
    redis_dir.mkdir()
    metrics_dir.mkdir()
    requests = 60
    with (
        RedisServer(redis_dir) as redis,
        Servers(
            tmp_path / "servers",
            DATABASE_URL=database_urls["postgres"],
            REDIS_URL=redis.url,
            PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        ) as servers,
    ):
        server = await servers.start("w", "--workers", "2")

        async def probe() -> int:
            # A connection each, at the same time, so that both workers take some.
            async with httpx.AsyncClient(base_url=server.base_url, trust_env=False) as http:
                return (await http.get("/healthz")).status_code

        assert set(await asyncio.gather(*(probe() for _ in range(requests)))) == {200}
        async with httpx.AsyncClient(base_url=server.base_url, trust_env=False) as http:
            scrapes = [parse((await http.get("/metrics")).text) for _ in range(4)]
        by_process = [
            value(parse_file(path), "session_inbox_requests_total", **HEALTHZ)
            for path in metrics_dir.glob("counter_*.db")
        ]
        live_while_running = len(list(metrics_dir.glob("gauge_livesum_*.db")))
    live_after_stop = len(list(metrics_dir.glob("gauge_livesum_*.db")))

    # Each worker answered some; every scrape, whichever worker answers it, adds them up.
    assert len(by_process) == 2
    assert all(count > 0 for count in by_process), by_process
    assert sum(by_process) == requests
    assert [value(s, "session_inbox_requests_total", **HEALTHZ) for s in scrapes] == [requests] * 4
    # What each holds is summed over the live processes (a pool of 10 each), and a process
    # that stops takes its share away.
    assert [value(s, "session_inbox_db_pool_max") for s in scrapes] == [20] * 4
    assert (live_while_running, live_after_stop) == (2, 0)


HEALTHZ = {"route": "/healthz", "method": "GET", "status": "200"}


def parse_file(path: Path) -> Samples:
    """The samples one process wrote to its file in the multiprocess directory."""
    found: Samples = {}
    entries = MmapedDict.read_all_values_from_file(str(path))  # type: ignore[no-untyped-call]
    for key, sample, _timestamp, _position in entries:
        _metric, name, labels, _help = orjson.loads(key)
        found[name, frozenset(labels.items())] = sample
    return found


# What `serve` sets up for its workers


def test_several_workers_get_a_fresh_directory_removed_at_the_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(MULTIPROC_DIR, raising=False)

    with multiprocess_directory(2) as directory:
        assert directory is not None
        assert os.environ[MULTIPROC_DIR] == str(directory)
        assert directory.is_dir()
        assert list(directory.iterdir()) == []

    assert MULTIPROC_DIR not in os.environ
    assert not directory.exists()


def test_one_worker_needs_no_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MULTIPROC_DIR, raising=False)

    with multiprocess_directory(1) as directory:
        assert directory is None
        assert MULTIPROC_DIR not in os.environ


def test_the_operators_directory_is_emptied_of_an_earlier_run_and_kept(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    given = tmp_path / "metrics"
    given.mkdir()
    (given / "counter_123.db").write_bytes(b"an earlier run's counts")
    (given / "README").write_text("not ours")
    monkeypatch.setenv(MULTIPROC_DIR, str(given))

    with multiprocess_directory(1) as directory:
        assert directory == given
        assert [path.name for path in given.iterdir()] == ["README"]

    assert os.environ[MULTIPROC_DIR] == str(given)
    assert given.is_dir()
