"""The probes: `/healthz` answers whatever the dependencies do; `/readyz` is 200 while the
database (and Redis, when configured) answer, and 503 with what failed while one does not.

A PostgreSQL that stops and comes back is played by a TCP relay of the test's own in front of the
shared server (it refuses connections and cuts the open ones, then accepts again on the same
port); a Redis that stops is a private `redis-server` (`tests/redis_server.py`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any, cast
from urllib.parse import urlsplit

import httpx
import pytest
from piccolo.engine.postgres import PostgresEngine

from app.config import Settings
from app.db import Database, make_engine
from app.events import Events, MemoryLog
from app.events.redis_log import RedisLog
from app.health import READY_TIMEOUT_S, RETRY_AFTER_S, HealthzShortcut
from app.main import create_app
from app.naming import LocalNamer
from app.service import SessionService
from app.state import AppState
from tests.conftest import POSTGRES_SERVER, with_state
from tests.ports import free_port
from tests.redis_server import RedisServer

DEADLINE_S = 10.0
HEALTH_LOGGER = "app.health"


@asynccontextmanager
async def app_client(state: AppState) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app whose requests see `state`."""
    app = create_app(state.settings)
    transport = httpx.ASGITransport(app=with_state(app, {"inbox": state}))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


def postgres_at(url: str, **options: Any) -> Database:
    """A Database whose connections go to `url`. Its engine is made for the shared server and
    then pointed at `url`: Piccolo's engine asks for the server's version when it is made,
    synchronously, which would wait on (or warn about) a server that does not answer."""
    engine = make_engine(Settings(database_url=f"{POSTGRES_SERVER}/postgres"))
    assert isinstance(engine, PostgresEngine)
    engine.config = {**engine.config, "dsn": url}
    return Database(engine, **options)


def postgres_settings(url: str = f"{POSTGRES_SERVER}/postgres") -> Settings:
    return Settings(database_url=url, run_migrations=False)


def state_over(settings: Settings, db: Database, events: Events | None = None) -> AppState:
    events = events or Events(db, MemoryLog(10))
    return AppState(settings, db, events, SessionService(db, LocalNamer(), events))


async def until(probe: Callable[[], Any], accept: Callable[[Any], bool]) -> Any:
    """`await probe()` again until `accept` takes its value (TimeoutError past the deadline)."""
    async with asyncio.timeout(DEADLINE_S):
        while True:
            value = await probe()
            if accept(value):
                return value
            await asyncio.sleep(0.05)


class TcpRelay:
    """127.0.0.1:<port> relayed to `target`, which can be taken down (connections refused, the
    open ones cut) and brought back on the same port."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
        for pipe in tuple(self._pipes):
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._pipes.add(task)
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
            try:
                await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
            finally:
                upstream_writer.close()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self._pipes.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


# /healthz


async def test_healthz_is_200(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_healthz_answers_as_its_route_does(settings: Settings, method: str) -> None:
    # GET /healthz is answered before the router (`HealthzShortcut`): the same bytes as the
    # route's answer, through the same middleware, and named by its route.
    async def answer(app: Any) -> tuple[list[dict[str, Any]], Any]:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b""}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        headers = [(b"host", b"t"), (b"x-request-id", b"probe-1")]
        scope = {
            "type": "http",
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": "/healthz",
            "raw_path": b"/healthz",
            "root_path": "",
            "query_string": b"",
            "headers": headers,
        }
        await app(scope, receive, send)
        return sent, getattr(scope.get("route"), "path", None)

    routed = create_app(settings)
    routed.user_middleware = [
        m for m in routed.user_middleware if cast(object, m.cls) is not HealthzShortcut
    ]

    assert await answer(create_app(settings)) == await answer(routed)
    assert (await answer(routed))[1] == "/healthz"


async def test_healthz_is_200_while_the_database_is_unreachable() -> None:
    dead = postgres_at(dead_postgres_url())

    async with app_client(state_over(postgres_settings(), dead)) as http:
        assert (await http.get("/readyz")).status_code == 503
        response = await http.get("/healthz")

    assert response.status_code == 200


# /readyz and the database


async def test_readyz_is_200_with_the_database_checked(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok"}}


def dead_postgres_url() -> str:
    """A PostgreSQL URL where nothing listens."""
    return f"postgres://root@127.0.0.1:{free_port()}/postgres"


async def test_readyz_is_503_when_the_database_is_unreachable() -> None:
    dead = postgres_at(dead_postgres_url())

    async with app_client(state_over(postgres_settings(), dead)) as http:
        response = await http.get("/readyz")

    assert response.status_code == 503
    assert response.headers["retry-after"] == str(RETRY_AFTER_S)
    body = response.json()
    assert body["code"] == "SERVICE_UNAVAILABLE"
    assert body["err"] == "Service Unavailable"
    assert body["checks"]["database"].startswith("unreachable")
    assert body["msg"].startswith("database: unreachable")


@pytest.fixture
async def relayed_postgres(
    database_urls: dict[str, str],
) -> AsyncIterator[tuple[TcpRelay, Settings]]:
    """The test database reached through a `TcpRelay`, and settings that name it."""
    url = urlsplit(database_urls["postgres"])
    relay = TcpRelay(url.hostname or "127.0.0.1", url.port or 5432)
    await relay.start()
    relayed = url._replace(netloc=f"{url.username}@127.0.0.1:{relay.port}").geturl()
    try:
        yield relay, postgres_settings(relayed)
    finally:
        await relay.stop()


async def test_readyz_follows_postgresql_going_away_and_coming_back(
    relayed_postgres: tuple[TcpRelay, Settings], caplog: pytest.LogCaptureFixture
) -> None:
    relay, settings = relayed_postgres
    db = postgres_at(settings.database_url, pool_size=2)
    await db.open()
    try:
        async with app_client(state_over(settings, db)) as http:
            assert (await http.get("/readyz")).status_code == 200

            with caplog.at_level(logging.INFO, logger=HEALTH_LOGGER):
                await relay.stop()
                down = await until(lambda: http.get("/readyz"), lambda r: r.status_code == 503)
                # Probed again while it lasts: one warning for the outage, not one a probe.
                assert (await http.get("/readyz")).status_code == 503

                await relay.start()
                up = await until(lambda: http.get("/readyz"), lambda r: r.status_code == 200)
    finally:
        await db.close()

    assert down.json()["checks"]["database"] != "ok"
    assert up.json() == {"status": "ok", "checks": {"database": "ok"}}
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == HEALTH_LOGGER]
    assert [level for level, _ in lines] == [logging.WARNING, logging.INFO]
    assert lines[0][1].startswith("not ready: database")


async def test_readyz_is_503_within_its_deadline_when_the_database_does_not_answer() -> None:
    # A server that accepts connections and never answers: a frozen database.
    silent = await asyncio.start_server(_say_nothing, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    frozen = postgres_at(f"postgres://root@127.0.0.1:{port}/postgres")
    loop = asyncio.get_running_loop()
    try:
        async with app_client(state_over(postgres_settings(), frozen)) as http:
            started = loop.time()
            response = await http.get("/readyz")
            took = loop.time() - started
    finally:
        silent.close()
        await silent.wait_closed()

    assert response.status_code == 503
    assert response.json()["checks"]["database"] == f"no answer within {READY_TIMEOUT_S:g} s"
    assert READY_TIMEOUT_S <= took < READY_TIMEOUT_S + 1.0


async def _say_nothing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        await reader.read()
    writer.close()


# /readyz and Redis


async def test_readyz_follows_redis_stopping_and_starting(
    settings: Settings, db: Database, redis: RedisServer
) -> None:
    settings = replace(settings, redis_url=redis.url)
    events_log = RedisLog(redis.url, 10)
    state = state_over(settings, db, Events(db, events_log))
    try:
        async with app_client(state) as http:
            ready = await http.get("/readyz")
            redis.stop()
            down = await until(lambda: http.get("/readyz"), lambda r: r.status_code == 503)
            redis.start()
            up = await until(lambda: http.get("/readyz"), lambda r: r.status_code == 200)
    finally:
        await events_log.close()

    assert ready.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}
    assert down.headers["retry-after"] == str(RETRY_AFTER_S)
    assert down.json()["checks"]["database"] == "ok"
    assert down.json()["checks"]["redis"] != "ok"
    assert down.json()["msg"].startswith("redis: ")
    assert up.json() == ready.json()


async def test_the_probes_and_metrics_are_open_when_tokens_are_required(
    settings: Settings, db: Database
) -> None:
    settings = replace(settings, api_tokens=("s3cret-token",))

    async with app_client(state_over(settings, db)) as http:
        health = await http.get("/healthz")
        ready = await http.get("/readyz")
        metrics = await http.get("/metrics")
        sessions = await http.get("/sessions")

    assert (health.status_code, ready.status_code, metrics.status_code) == (200, 200, 200)
    assert sessions.status_code == 401
