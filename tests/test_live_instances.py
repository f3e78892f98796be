"""Events across real server processes: several `session-inbox serve` instances on one PostgreSQL
database (of this module's own, built by `session-inbox migrate`) and a private Redis, with the
faults the outbox is there for: Redis going away and coming back, and an instance that
acknowledged writes and died before relaying them. PostgreSQL only: one instance is all SQLite
serves.

Subscriptions have no acknowledgement in `graphql-transport-ws`, so a test knows one is live when
an event of a change made for that purpose (a poke) reaches it; every other wait is on a condition,
with a deadline."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest
from redis import Redis

from app.store.outbox import RELAY_LOCK
from tests.conftest import POSTGRES_SERVER, admin_sql
from tests.ports import free_port
from tests.redis_server import RedisServer
from tests.servers import BIN, INHERITED, GraphQLSocket, Next, Operation, Server, Servers

WATCH = """
subscription Watch($id: UUID, $after: String) {
  sessionEvents(id: $id, after: $after) { eventId kind sessionId session { id version title } }
}
"""
# The one timing bound of the issue: a change through one instance reaches a subscriber of
# another within this much time after its HTTP answer.
DELIVERY_BOUND_S = 1.0
# How long an event may take to arrive when something has to recover first (a Redis restart, a
# relay taking over): generous, for these are deadlines, not measurements.
RECOVERY_S = 10.0
# How long a poke waits for its event before poking again.
POKE_WAIT_S = 1.0

T = TypeVar("T")

# A session's change as a subscriber dedupes it: (session id, version).
Change = tuple[str, int]


@pytest.fixture(scope="module")
async def database_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """A database of this module's own in this process, migrated by the command line."""
    name = f"session_inbox_live_{os.getpid()}"
    await admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin_sql(f'CREATE DATABASE "{name}"')
    url = f"{POSTGRES_SERVER}/{name}"
    try:
        env = {key: os.environ[key] for key in INHERITED if key in os.environ}
        migrating = await asyncio.create_subprocess_exec(
            str(BIN / "session-inbox"),
            "migrate",
            cwd=tmp_path_factory.mktemp("migrate"),
            env={**env, "DATABASE_URL": url},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            async with asyncio.timeout(120):
                output, _ = await migrating.communicate()
        finally:
            if migrating.returncode is None:
                migrating.kill()
                await migrating.wait()
        assert migrating.returncode == 0, output.decode(errors="replace")
        yield url
    finally:
        await admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Any]:
    """A connection to the module's database, emptied for this test."""
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute("TRUNCATE session, session_outbox")
        yield connection
    finally:
        await connection.close()


@pytest.fixture
def servers(tmp_path: Path, database_url: str, db: Any) -> Iterator[Servers]:
    with Servers(tmp_path / "servers", DATABASE_URL=database_url) as started:
        yield started


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10.0, trust_env=False) as client:
        yield client


# -- REST and GraphQL over HTTP ---------------------------------------------------------------


async def create(http: httpx.AsyncClient, server: Server) -> Change:
    response = await http.post(
        f"{server.base_url}/sessions",
        json={"repo": "acme/app", "target_branch": "main", "messages": {"content": "Live"}},
    )
    assert response.status_code == 201, response.text
    return response.json()["id"], 1


async def retitle(http: httpx.AsyncClient, server: Server, session_id: str) -> Change:
    response = await http.patch(
        f"{server.base_url}/sessions/{session_id}", json={"title": f"Title {uuid.uuid4().hex[:8]}"}
    )
    assert response.status_code == 200, response.text
    return session_id, response.json()["session"]["version"]


async def graphql(http: httpx.AsyncClient, server: Server, query: str) -> dict[str, Any]:
    response = await http.post(f"{server.base_url}/graphql", json={"query": query})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body
    data: dict[str, Any] = body["data"]
    return data


async def event_cursor(http: httpx.AsyncClient, server: Server) -> str:
    cursor: str = (await graphql(http, server, "{ eventCursor }"))["eventCursor"]
    return cursor


# -- events -----------------------------------------------------------------------------------


def change_of(received: Next) -> Change:
    event = received.data["sessionEvents"]
    return event["sessionId"], event["session"]["version"]


def kind_of(received: Next) -> str:
    kind: str = received.data["sessionEvents"]["kind"]
    return kind


def event_id_of(received: Next) -> str:
    event_id: str = received.data["sessionEvents"]["eventId"]
    return event_id


async def event_of(operation: Operation, change: Change, timeout_s: float = RECOVERY_S) -> Next:
    """The event of `change`, skipping the others."""
    async with asyncio.timeout(timeout_s):
        while True:
            received = await operation.next(timeout_s)
            if kind_of(received) != "RESYNC" and change_of(received) == change:
                return received


async def events_of(
    operation: Operation,
    changes: Sequence[Change],
    timeout_s: float = RECOVERY_S,
    *,
    resyncs: list[Next] | None = None,
) -> list[Change]:
    """The changes `operation` receives until it has had all of `changes`, without duplicates,
    in the order they came (at least once: a subscriber drops what it has seen). A RESYNC fails
    it, unless `resyncs` is given to collect them."""
    seen: list[Change] = []
    async with asyncio.timeout(timeout_s):
        while not set(changes) <= set(seen):
            received = await operation.next(timeout_s)
            if kind_of(received) == "RESYNC":
                assert resyncs is not None, received
                assert not seen, "a RESYNC after the changes it could have lost"
                resyncs.append(received)
                continue
            if change_of(received) not in seen:
                seen.append(change_of(received))
    return seen


async def live(operation: Operation, poke: Callable[[], Awaitable[Change]]) -> Next:
    """Pokes until `operation` receives the event of a poke, then once more: the event of that
    last poke, after which `operation` receives every event in log order."""
    pokes: set[Change] = set()
    async with asyncio.timeout(RECOVERY_S):
        while True:
            pokes.add(await poke())
            if await _receives_one_of(operation, pokes, POKE_WAIT_S):
                break
    return await event_of(operation, await poke())


async def _receives_one_of(operation: Operation, changes: set[Change], timeout_s: float) -> bool:
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                received = await operation.next(timeout_s)
                if kind_of(received) != "RESYNC" and change_of(received) in changes:
                    return True
    except TimeoutError:
        return False


# -- PostgreSQL: the outbox and the relay's lock ----------------------------------------------


async def outbox_size(db: Any) -> int:
    size: int = await db.fetchval("SELECT count(*) FROM session_outbox")
    return size


async def relay_leader(db: Any) -> int | None:
    """The backend (its pid) whose connection holds the relay's advisory lock on this database;
    None when no relay leads. A bigint key is held as classid (its high half), objid (its low
    half) and objsubid 1."""
    pid: int | None = await db.fetchval(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " AND classid = $1 AND objid = $2 AND objsubid = 1",
        RELAY_LOCK >> 32,
        RELAY_LOCK & 0xFFFFFFFF,
    )
    return pid


async def new_leader(db: Any, former: int | None = None) -> int:
    """The relay's leader once one other than `former` leads."""
    leader = await eventually(lambda: relay_leader(db), lambda pid: pid not in (None, former))
    assert leader is not None
    return leader


async def until_empty(db: Any) -> None:
    await eventually(lambda: outbox_size(db), lambda size: size == 0)


async def eventually(probe: Callable[[], Awaitable[T]], accept: Callable[[T], bool]) -> T:
    """The first value of `probe` that `accept`s, asked every few milliseconds; TimeoutError
    after `RECOVERY_S`."""
    async with asyncio.timeout(RECOVERY_S):
        while True:
            value = await probe()
            if accept(value):
                return value
            await asyncio.sleep(0.01)


def dead_redis_url() -> str:
    """A Redis URL where nothing listens."""
    return f"redis://127.0.0.1:{free_port()}/0"


# -- the tests --------------------------------------------------------------------------------


async def test_a_change_through_one_instance_reaches_subscribers_of_another_within_a_second(
    servers: Servers, redis: RedisServer, http: httpx.AsyncClient
) -> None:
    a = await servers.start("a", REDIS_URL=redis.url)
    b = await servers.start("b", REDIS_URL=redis.url)
    probe, _ = await create(http, a)
    async with GraphQLSocket.connect(b.graphql_ws_url) as socket:
        everything = await socket.subscribe(WATCH)
        await live(everything, lambda: retitle(http, a, probe))

        created = await create(http, a)
        created_answered = time.monotonic()
        session_id, _ = created
        creation = await event_of(everything, created)
        assert kind_of(creation) == "CREATED"

        one = await socket.subscribe(WATCH, {"id": session_id})
        await live(one, lambda: retitle(http, a, session_id))
        updated = await retitle(http, a, session_id)
        updated_answered = time.monotonic()
        update_to_one = await event_of(one, updated)
        update_to_everything = await event_of(everything, updated)

    assert kind_of(update_to_one) == kind_of(update_to_everything) == "UPDATED"
    latencies = {
        "CREATED, no arguments": creation.at - created_answered,
        "UPDATED, by id": update_to_one.at - updated_answered,
        "UPDATED, no arguments": update_to_everything.at - updated_answered,
    }
    assert max(latencies.values()) < DELIVERY_BOUND_S, latencies


@pytest.mark.parametrize("persistent", [False, True], ids=["redis-without-data", "redis-kept-data"])
async def test_changes_during_a_redis_outage_reach_subscribers_once_it_is_back(
    servers: Servers,
    redis: RedisServer,
    db: Any,
    http: httpx.AsyncClient,
    persistent: bool,
) -> None:
    a = await servers.start("a", REDIS_URL=redis.url)
    first, _ = await create(http, a)
    second, _ = await create(http, a)
    async with GraphQLSocket.connect(a.graphql_ws_url) as socket:
        watching = await socket.subscribe(WATCH)
        last_seen = event_id_of(await live(watching, lambda: retitle(http, a, first)))

        if persistent:
            # Redis with persistence, stopped cleanly: what it held is on disk when it stops and
            # read back when it starts (the private server writes no file of its own accord).
            with Redis.from_url(redis.url) as client:
                client.save()
        redis.stop()

        # Reads do not need the event log.
        read = await http.get(f"{a.base_url}/sessions/{first}")
        assert read.status_code == 200, read.text
        listed = await graphql(http, a, "{ sessions(first: 10) { nodes { id } } }")
        assert {node["id"] for node in listed["sessions"]["nodes"]} == {first, second}

        # Writes succeed, their events wait in the outbox.
        during = [
            await retitle(http, a, first),
            await retitle(http, a, second),
            await retitle(http, a, first),
            await create(http, a),
            await retitle(http, a, second),
        ]
        assert await outbox_size(db) == len(during)

        redis.start()
        resyncs: list[Next] = []
        assert await events_of(watching, during, resyncs=resyncs) == during
        # A Redis that kept its data lost nothing; one that came back empty may have lost
        # entries this process's reader had not read yet, and its subscribers are told first.
        assert len(resyncs) == (0 if persistent else 1)

    async with GraphQLSocket.connect(a.graphql_ws_url) as socket:
        resumed = await socket.subscribe(WATCH, {"after": last_seen})
        if persistent:
            assert [change_of(await resumed.next(RECOVERY_S)) for _ in during] == during
        else:
            # The stream was born again empty: the log cannot tell what it lost, so the client
            # is told to re-read (RESYNC) rather than given what came after as if nothing was.
            resync = await resumed.next(RECOVERY_S)
            assert kind_of(resync) == "RESYNC", resync
        after = await retitle(http, a, first)
        # Nothing else comes before the next change.
        assert change_of(await resumed.next(RECOVERY_S)) == after


async def test_writes_of_an_instance_killed_before_relaying_them_are_relayed_by_another(
    servers: Servers, redis: RedisServer, db: Any, http: httpx.AsyncClient
) -> None:
    # A leads the relay (it starts alone) but cannot publish: its Redis does not exist.
    a = await servers.start("a", REDIS_URL=dead_redis_url())
    a_leads = await new_leader(db)
    b = await servers.start("b", REDIS_URL=redis.url)
    cursor = await event_cursor(http, b)

    session_id, _ = created = await create(http, a)
    acknowledged = [created] + [await retitle(http, a, session_id) for _ in range(4)]
    assert await outbox_size(db) == len(acknowledged)
    assert await relay_leader(db) == a_leads

    async with GraphQLSocket.connect(b.graphql_ws_url) as socket:
        watching = await socket.subscribe(WATCH, {"after": cursor})
        a.kill()
        await new_leader(db, former=a_leads)
        assert await events_of(watching, acknowledged) == acknowledged
    await until_empty(db)


async def test_another_instance_relays_once_the_leader_stops(
    servers: Servers, redis: RedisServer, db: Any, http: httpx.AsyncClient
) -> None:
    a = await servers.start("a", REDIS_URL=redis.url)
    a_leads = await new_leader(db)
    b = await servers.start("b", REDIS_URL=redis.url)
    probe, _ = await create(http, b)
    async with GraphQLSocket.connect(b.graphql_ws_url) as socket:
        watching = await socket.subscribe(WATCH)
        await live(watching, lambda: retitle(http, b, probe))

        # A clean stop: uvicorn shuts down and the command exits 0.
        assert a.stop() == 0, a.output()
        assert "Application shutdown complete" in a.output()
        session_id, _ = created = await create(http, b)
        after_stop = [created, await retitle(http, b, session_id)]
        assert await events_of(watching, after_stop) == after_stop
    assert await new_leader(db, former=a_leads)
