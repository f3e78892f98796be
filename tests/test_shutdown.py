"""Graceful shutdown of a real `session-inbox serve` process (PostgreSQL with a private Redis,
one worker or two; SQLite with its events in the process): a SIGTERM (or SIGINT) while requests
are in flight and subscriptions are open. The server stops accepting, answers every request in
flight, closes every WebSocket with 1001 (going away), relays the events those requests
committed, and exits 0, within its grace period.

The requests are held in flight by the fake Anthropic server, which answers their naming only when
the test lets it, after the signal; every wait is on a condition, with a deadline."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, closing
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from redis import Redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from app.config import load_settings
from app.db import make_engine
from app.events.relay import FLUSH_S, HANDOVER_S
from app.migrate import migrate
from app.server import GOING_AWAY, SHUTDOWN_GRACE_S
from tests.conftest import POSTGRES_SERVER, admin_sql
from tests.fake_anthropic import FakeAnthropic, FakeResponse
from tests.redis_server import RedisServer
from tests.servers import GRAPHQL_TRANSPORT_WS, Server, Servers

REQUESTS = 50
SUBSCRIPTIONS = 10
WATCH = """
subscription Watch($after: String) {
  sessionEvents(after: $after) { kind sessionId }
}
"""
# How long the test waits for what should happen at once (a socket closed, a port refused).
PROMPTLY_S = 5.0
# From the signal to the exit: the grace period, the relay's flush, and a start-up's worth of
# margin for a loaded machine.
EXIT_WITHIN_S = SHUTDOWN_GRACE_S + 10.0


@pytest.fixture(scope="module")
async def database_url() -> AsyncIterator[str]:
    """A database of this module's own (its outbox is the test's to count)."""
    name = f"session_inbox_shutdown_{os.getpid()}"
    await admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin_sql(f'CREATE DATABASE "{name}"')
    url = f"{POSTGRES_SERVER}/{name}"
    try:
        settings = replace(load_settings(environ={}, env_file=None), database_url=url)
        await migrate(make_engine(settings))
        yield url
    finally:
        await admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def fake_anthropic() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
async def emptied(database_url: str) -> str:
    """The module's database, its outbox emptied of an earlier test's events."""
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute("TRUNCATE session_outbox")
    finally:
        await connection.close()
    return database_url


@pytest.fixture
def servers(
    tmp_path: Path, emptied: str, redis: RedisServer, fake_anthropic: FakeAnthropic
) -> Iterator[Servers]:
    with Servers(
        tmp_path / "servers",
        DATABASE_URL=emptied,
        REDIS_URL=redis.url,
        ANTHROPIC_API_KEY="sk-ant-test",
        ANTHROPIC_BASE_URL=fake_anthropic.url,
        # Longer than the test holds a naming: every request is answered with the model's name.
        NAMING_TIMEOUT_S="60",
    ) as started:
        yield started


class Subscriber:
    """One `graphql-transport-ws` connection running one subscription to every session's
    events, from a position of the log."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    @asynccontextmanager
    async def open(cls, server: Server, after: str) -> AsyncIterator[Subscriber]:
        async with connect(
            server.graphql_ws_url,
            subprotocols=[GRAPHQL_TRANSPORT_WS],
            open_timeout=PROMPTLY_S,
            close_timeout=1.0,
            proxy=None,
        ) as connection:
            await connection.send(json.dumps({"type": "connection_init", "payload": {}}))
            async with asyncio.timeout(PROMPTLY_S):
                ack = json.loads(await connection.recv())
            assert ack["type"] == "connection_ack", ack
            subscriber = cls(connection)
            payload = {"query": WATCH, "variables": {"after": after}}
            await connection.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
            try:
                yield subscriber
            finally:
                subscriber._reader.cancel()
                await asyncio.gather(subscriber._reader, return_exceptions=True)

    async def next_event(self) -> dict[str, Any]:
        async with asyncio.timeout(PROMPTLY_S):
            message = await self.messages.get()
        assert message["type"] == "next", message
        event: dict[str, Any] = message["payload"]["data"]["sessionEvents"]
        return event

    async def closed(self) -> tuple[int | None, str | None]:
        """The code and reason the server closed the connection with, once it has."""
        async with asyncio.timeout(PROMPTLY_S):
            await self.connection.wait_closed()
        return self.connection.close_code, self.connection.close_reason

    async def _read(self) -> None:
        try:
            async for raw in self.connection:
                message = json.loads(raw)
                if message.get("type") == "ping":
                    await self.connection.send(json.dumps({"type": "pong"}))
                else:
                    self.messages.put_nowait(message)
        except ConnectionClosed:
            pass


async def create(http: httpx.AsyncClient, number: int) -> httpx.Response:
    return await http.post(
        "/sessions",
        json={"repo": "acme/app", "target_branch": "main", "messages": {"content": f"#{number}"}},
    )


async def outbox_backlog(database_url: str) -> int:
    if database_url.startswith("sqlite:///"):
        path = database_url.removeprefix("sqlite:///")
        with closing(sqlite3.connect(path)) as sqlite:
            backlog: int = sqlite.execute("SELECT count(*) FROM session_outbox").fetchone()[0]
        return backlog
    connection = await asyncpg.connect(database_url)
    try:
        count: int = await connection.fetchval("SELECT count(*) FROM session_outbox")
    finally:
        await connection.close()
    return count


def logged_creations(redis: RedisServer) -> set[str]:
    """The sessions whose CREATED event the event log (the Redis stream) has."""
    with Redis.from_url(redis.url) as client:
        entries = client.xrange("session-inbox:events")
    return {fields[b"session"].decode() for _id, fields in entries if fields[b"kind"] == b"CREATED"}


async def until(condition: Callable[[], bool], timeout_s: float) -> None:
    """Returns once `condition()` holds; TimeoutError after `timeout_s`."""
    async with asyncio.timeout(timeout_s):
        while True:
            if condition():
                return
            await asyncio.sleep(0.05)


async def event_cursor(http: httpx.AsyncClient) -> str:
    response = await http.post("/graphql", json={"query": "{ eventCursor }"})
    assert response.status_code == 200, response.text
    cursor: str = response.json()["data"]["eventCursor"]
    return cursor


async def refused(server: Server) -> bool:
    """Whether a new connection to `server` is refused, within `PROMPTLY_S`."""
    deadline = time.monotonic() + PROMPTLY_S
    while time.monotonic() < deadline:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=1.0, trust_env=False) as h:
            try:
                await h.get("/healthz")
            except httpx.ConnectError:
                return True
        await asyncio.sleep(0.05)
    return False


async def exit_status(server: Server) -> tuple[int | None, float]:
    """The process's exit status and when it exited; None if it still runs after
    `EXIT_WITHIN_S`."""
    try:
        status: int | None = await asyncio.to_thread(server.process.wait, EXIT_WITHIN_S)
    except subprocess.TimeoutExpired:
        status = None
    return status, time.monotonic()


@pytest.mark.parametrize(
    ("stop_signal", "arguments", "engine"),
    [
        pytest.param(signal.SIGTERM, (), "postgres", id="SIGTERM"),
        pytest.param(signal.SIGINT, (), "postgres", id="SIGINT"),
        pytest.param(signal.SIGTERM, ("--workers", "2"), "postgres", id="SIGTERM-2-workers"),
        # One process, its events in the process (no Redis), on a file it migrates itself.
        pytest.param(signal.SIGTERM, (), "sqlite", id="SIGTERM-sqlite"),
    ],
)
async def test_a_signal_answers_the_requests_in_flight_closes_sockets_with_1001_and_exits_0(
    servers: Servers,
    fake_anthropic: FakeAnthropic,
    redis: RedisServer,
    database_url: str,
    tmp_path: Path,
    stop_signal: signal.Signals,
    arguments: tuple[str, ...],
    engine: str,
) -> None:
    if engine == "sqlite":
        database_url = f"sqlite:///{tmp_path / 'inbox.sqlite3'}"
        environ = {"DATABASE_URL": database_url, "REDIS_URL": "", "RUN_MIGRATIONS": "true"}
    else:
        environ = {}
    server = await servers.start("s", *arguments, **environ)
    limits = httpx.Limits(max_connections=REQUESTS + 10, max_keepalive_connections=0)
    async with (
        httpx.AsyncClient(
            base_url=server.base_url, timeout=60.0, limits=limits, trust_env=False
        ) as http,
        AsyncExitStack() as sockets,
    ):
        # Ten subscriptions from a position, so that a session created now is seen by each
        # (a subscription has no acknowledgement): once each has its event, all ten are live.
        after = await event_cursor(http)
        subscribers = [
            await sockets.enter_async_context(Subscriber.open(server, after))
            for _ in range(SUBSCRIPTIONS)
        ]
        poke = await create(http, 0)
        assert poke.status_code == 201, poke.text
        for subscriber in subscribers:
            assert await subscriber.next_event() == {
                "kind": "CREATED",
                "sessionId": poke.json()["id"],
            }

        # Fifty creations, each held in flight by its naming until the test lets it go.
        fake_anthropic.default = FakeResponse.tool_use(held=True)
        in_flight = [asyncio.create_task(create(http, n)) for n in range(1, REQUESTS + 1)]
        try:
            await fake_anthropic.requests_arrived(1 + REQUESTS, timeout_s=30.0)
            assert not any(task.done() for task in in_flight)

            server.process.send_signal(stop_signal)
            signalled = time.monotonic()

            # At once, with the requests still in flight: every socket is closed, going away.
            closes = await asyncio.gather(*(subscriber.closed() for subscriber in subscribers))
            assert closes == [(GOING_AWAY, "the server is shutting down")] * SUBSCRIPTIONS
            assert not any(task.done() for task in in_flight)
            if not arguments:
                # And no connection is taken any more. (With workers, the supervisor holds the
                # listening socket to the end: connections wait in its backlog, and are reset.)
                assert await refused(server)

            fake_anthropic.release()
            answers = await asyncio.gather(*in_flight)
        finally:
            # Whatever failed, nothing is left running.
            fake_anthropic.release()
            for task in in_flight:
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)
    status, exited = await exit_status(server)

    assert [answer.status_code for answer in answers] == [201] * REQUESTS, [
        answer.text for answer in answers if answer.status_code != 201
    ]
    assert status == 0, server.output()
    assert exited - signalled < EXIT_WITHIN_S
    output = server.output()
    assert "Traceback" not in output, output
    assert "graceful shutdown exceeded" not in output, output
    # Every event committed was relayed before the exit: none is left in the outbox, and the
    # event log has every creation.
    assert await outbox_backlog(database_url) == 0
    if engine == "postgres":
        assert logged_creations(redis) == {answer.json()["id"] for answer in [poke, *answers]}


async def test_events_waiting_for_the_event_log_at_a_sigterm_are_flushed_when_it_answers(
    servers: Servers, redis: RedisServer, database_url: str
) -> None:
    """The relay gave up leading while Redis was away (so that another instance could relay),
    and nothing relays the backlog before the signal: the last flush at stop does, as Redis
    answers again."""
    server = await servers.start("s")
    redis.stop()
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30.0, trust_env=False) as http:
        answers = [await create(http, n) for n in range(5)]
    assert [answer.status_code for answer in answers] == [201] * 5
    await until(lambda: "letting another instance relay" in server.output(), HANDOVER_S + 10)
    redis.start()
    assert await outbox_backlog(database_url) == 5

    server.process.send_signal(signal.SIGTERM)
    status, _exited = await exit_status(server)

    assert status == 0, server.output()
    assert await outbox_backlog(database_url) == 0
    assert logged_creations(redis) == {answer.json()["id"] for answer in answers}


async def test_with_the_event_log_away_a_sigterm_exits_0_and_the_next_start_relays(
    servers: Servers, redis: RedisServer, database_url: str
) -> None:
    server = await servers.start("s")
    redis.stop()
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30.0, trust_env=False) as http:
        answers = [await create(http, n) for n in range(5)]
    assert [answer.status_code for answer in answers] == [201] * 5

    server.process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    status, exited = await exit_status(server)

    # The flush is bounded: the process does not wait for Redis, and loses nothing.
    assert status == 0, server.output()
    assert exited - signalled < FLUSH_S + PROMPTLY_S
    assert "events left in the outbox" in server.output()
    assert await outbox_backlog(database_url) == 5
    redis.start()
    await servers.start("again")
    async with asyncio.timeout(PROMPTLY_S):
        while True:
            if await outbox_backlog(database_url) == 0:
                break
            await asyncio.sleep(0.05)
    assert logged_creations(redis) == {answer.json()["id"] for answer in answers}


async def test_requests_that_outlast_the_grace_period_are_cut_and_the_exit_is_not_held_up(
    servers: Servers, fake_anthropic: FakeAnthropic
) -> None:
    server = await servers.start("s")
    # Namings that never end (until the test is over): their requests cannot finish.
    fake_anthropic.default = FakeResponse.tool_use(held=True)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60.0, trust_env=False) as http:
        in_flight = [asyncio.create_task(create(http, n)) for n in range(3)]
        try:
            await fake_anthropic.requests_arrived(3, timeout_s=30.0)
            server.process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            answers = await asyncio.gather(*in_flight)
        finally:
            for task in in_flight:
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)
    status, exited = await exit_status(server)

    # Cut at the end of the grace period, each with an answer (500), not a dropped connection.
    assert [answer.status_code for answer in answers] == [500] * 3
    assert status == 0, server.output()
    assert SHUTDOWN_GRACE_S <= exited - signalled < SHUTDOWN_GRACE_S + FLUSH_S + PROMPTLY_S
