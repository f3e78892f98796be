"""What clients get while the database cannot answer, and that the server comes back by itself.

Each PostgreSQL test runs the app, served by uvicorn, over a cluster of its own
(`tests.pg_cluster`), which it stops, freezes or holds up: every request is answered, 503 with
`Retry-After` (REST, CORS headers included) or SERVICE_UNAVAILABLE (GraphQL), within the statement
timeout plus the pool wait; within 5 s of the database's return only successes; every write a
client was told of is in the table; the outage is logged in a few lines, not one per request."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from piccolo.engine.sqlite import SQLiteEngine

from app.config import Settings, load_settings
from app.db import CLIENT_DEADLINE_MARGIN_S, POOL_WAIT_S, Database, DatabaseUnavailable, make_engine
from app.main import create_app
from tests.loopback import serve_on_loopback
from tests.pg_cluster import Cluster, private_cluster

ORIGIN = "https://inbox.example"
NEW_SESSION = {"repo": "acme/app", "target_branch": "main", "messages": {"content": "Fix it"}}
CREATE = """mutation { createSession(input: {repo: "acme/app", targetBranch: "main"}) {
  session { id } userErrors { code } } }"""
READ = "query { sessions(first: 5) { edges { node { id title } } } }"
# The recovery the issue asks for, once the database is back.
BACK_WITHIN_S = 5.0
# Time an answer may take beyond its bound on a loaded machine (HTTP, scheduling).
SLACK_S = 1.0
# As long as the issue's: longer than the statement timeout and the pool wait many times over.
FREEZE_S = 20.0


@dataclass
class Answer:
    kind: str
    started: float
    ended: float
    status: int | None = None
    headers: httpx.Headers = field(default_factory=httpx.Headers)
    body: Any = None
    # Why no HTTP answer came (a dropped connection), when none did.
    failure: str | None = None

    @property
    def graphql(self) -> bool:
        return self.kind.startswith("graphql")

    def succeeded(self) -> bool:
        if self.graphql:
            return self.status == 200 and "errors" not in self.body
        return self.status in (200, 201)

    def unavailable(self) -> bool:
        """The contract's answer for a database that cannot answer."""
        if self.graphql:
            errors = self.body.get("errors") if isinstance(self.body, dict) else None
            return bool(errors) and all(
                error["extensions"] == {"code": "SERVICE_UNAVAILABLE"} for error in errors or ()
            )
        return (
            self.status == 503
            and self.headers.get("retry-after", "").isdigit()
            and self.headers.get("access-control-allow-origin") == "*"
            and isinstance(self.body, dict)
            and set(self.body) == {"err", "msg", "code"}
            and self.body["err"] == "Service Unavailable"
            and self.body["code"] == "SERVICE_UNAVAILABLE"
        )

    def created_id(self) -> str | None:
        if not self.succeeded():
            return None
        if self.kind == "rest-create":
            return str(self.body["id"])
        if self.kind == "graphql-create":
            return str(self.body["data"]["createSession"]["session"]["id"])
        return None


def _settings(cluster: Cluster, **overrides: Any) -> Settings:
    base = load_settings(environ={}, env_file=None)
    return replace(base, database_url=cluster.url, **overrides)


@asynccontextmanager
async def _served(settings: Settings) -> AsyncIterator[str]:
    # No log_config: the test's own log capture stays in place.
    async with serve_on_loopback(create_app(settings), settings=settings, log_config=None) as base:
        yield base


async def _ask(client: httpx.AsyncClient, kind: str, session_id: str | None = None) -> Answer:
    started = time.monotonic()
    headers = {"Origin": ORIGIN}
    try:
        if kind == "rest-create":
            response = await client.post("/sessions", json=NEW_SESSION, headers=headers)
        elif kind == "rest-read":
            response = await client.get("/sessions", params={"limit": 5}, headers=headers)
        elif kind == "rest-update":
            response = await client.patch(
                f"/sessions/{session_id}", json={"title": "renamed"}, headers=headers
            )
        else:
            query = CREATE if kind == "graphql-create" else READ
            response = await client.post("/graphql", json={"query": query}, headers=headers)
    except httpx.HTTPError as error:
        return Answer(kind, started, time.monotonic(), failure=repr(error))
    return Answer(
        kind, started, time.monotonic(), response.status_code, response.headers, response.json()
    )


class Load:
    """Clients that each send one kind of request after another, on a keep-alive connection,
    until stopped; every answer kept."""

    KINDS = ("rest-create", "rest-read", "graphql-create", "graphql-read")

    def __init__(self, base: str, per_kind: int = 2) -> None:
        self.base = base
        self.answers: list[Answer] = []
        self.connections: set[int] = set()
        self._stop = asyncio.Event()
        self._tasks = [
            asyncio.create_task(self._client(kind)) for kind in self.KINDS for _ in range(per_kind)
        ]

    async def _client(self, kind: str) -> None:
        async with httpx.AsyncClient(base_url=self.base, timeout=15) as client:
            while not self._stop.is_set():
                self.answers.append(await _ask(client, kind))
                await asyncio.sleep(0.02)

    async def stop(self) -> list[Answer]:
        self._stop.set()
        async with asyncio.timeout(20):
            await asyncio.gather(*self._tasks)
        return self.answers

    def since(self, moment: float) -> list[Answer]:
        return [answer for answer in self.answers if answer.started >= moment]


async def _wait_for(condition: Callable[[], Awaitable[bool]], deadline_s: float) -> None:
    async with asyncio.timeout(deadline_s):
        while not await condition():  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def _some_succeeded(load: Load) -> None:
    """Until the load's clients have had answers (the server is warm)."""

    async def answered() -> bool:
        return sum(a.succeeded() for a in load.answers) >= 8

    await _wait_for(answered, 10)


async def _stored_ids(cluster: Cluster) -> set[str]:
    connection = await asyncpg.connect(cluster.url)
    try:
        return {str(row["id"]) for row in await connection.fetch("SELECT id FROM session")}
    finally:
        await connection.close()


def _check_outage(answers: list[Answer], start: float, end: float) -> None:
    """Every answer is a success or the contract's 503; none is missing; during [start, end]
    none succeeds, and some were refused."""
    dropped = [answer.failure for answer in answers if answer.failure is not None]
    assert dropped == []
    odd = [(a.kind, a.status, a.body) for a in answers if not (a.succeeded() or a.unavailable())]
    assert odd == []
    during = [a for a in answers if a.started >= start and a.ended <= end]
    assert during, "no request was made during the outage"
    assert all(a.unavailable() for a in during)
    assert {a.kind for a in during} == set(Load.KINDS)


async def _check_back(load: Load, back: float, cluster: Cluster) -> None:
    """Within 5 s of `back` every request succeeds; every write acknowledged is stored."""
    await asyncio.sleep(max(0.0, back + BACK_WITHIN_S + 1.5 - time.monotonic()))
    answers = await load.stop()
    after = [a for a in answers if a.started >= back + BACK_WITHIN_S]
    assert after
    assert [(a.kind, a.status, a.body) for a in after if not a.succeeded()] == []
    acknowledged = {a.created_id() for a in answers} - {None}
    assert acknowledged
    assert acknowledged <= await _stored_ids(cluster)


def _outage_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.levelno >= logging.WARNING]


async def test_a_stopped_database_is_answered_503_and_the_server_comes_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with private_cluster() as cluster, _served(_settings(cluster)) as base:
        caplog.set_level(logging.INFO)
        caplog.clear()  # what the server said at start
        load = Load(base)
        await _some_succeeded(load)
        await cluster.stop()
        stopped = time.monotonic()
        await asyncio.sleep(2.0)
        restarting = time.monotonic()
        await cluster.start()
        back = time.monotonic()
        await _check_back(load, back, cluster)
        _check_outage(load.answers, stopped, restarting)
        refused = [a for a in load.answers if a.unavailable()]
        assert len(refused) >= 20
        # A few lines for the outage, whatever the number of requests refused: no traceback
        # per request.
        lines = _outage_lines(caplog)
        assert len(lines) <= 4, [record.getMessage() for record in lines]
        db_lines = [r for r in caplog.records if r.name == "app.db"]
        assert [r.levelname for r in db_lines][:2] == ["WARNING", "INFO"]
        assert len(db_lines) <= 4
        # A 503 is an answer like any other: the connection stays open for the next request.
        assert all(a.headers.get("connection") != "close" for a in load.answers)


async def test_a_frozen_database_is_answered_503_within_the_bound_and_comes_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    timeout_ms = 500
    bound = timeout_ms / 1000 + CLIENT_DEADLINE_MARGIN_S + POOL_WAIT_S
    async with (
        private_cluster() as cluster,
        _served(_settings(cluster, db_statement_timeout_ms=timeout_ms)) as base,
    ):
        caplog.set_level(logging.INFO)
        caplog.clear()  # what the server said at start
        load = Load(base)
        await _some_succeeded(load)
        cluster.freeze()
        frozen = time.monotonic()
        try:
            # The freeze itself lasts this long: the load runs meanwhile.
            await asyncio.sleep(FREEZE_S)
        finally:
            thawing = time.monotonic()
            cluster.thaw()
        await _check_back(load, thawing, cluster)
        # Every request, however the freeze caught it, answered within the bound.
        slowest = max(a.ended - a.started for a in load.answers)
        assert slowest <= bound + SLACK_S
        # A request started in the freeze, with time to be answered before the thaw: refused.
        _check_outage(load.answers, frozen, thawing)
        assert len(_outage_lines(caplog)) <= 4


async def test_a_statement_past_the_timeout_is_503_and_the_pool_stays_usable() -> None:
    async with private_cluster() as cluster:
        settings = _settings(cluster, db_statement_timeout_ms=1000)
        async with _served(settings) as base, httpx.AsyncClient(base_url=base) as client:
            created = await client.post("/sessions", json=NEW_SESSION)
            assert created.status_code == 201
            session_id = created.json()["id"]
            # Another connection holds the row: the app's UPDATE waits for it past the timeout.
            holder = await asyncpg.connect(cluster.url)
            try:
                await holder.execute("BEGIN")
                await holder.execute("SELECT 1 FROM session WHERE id = $1 FOR UPDATE", session_id)
                answer = await _ask(client, "rest-update", session_id)
                assert answer.unavailable(), (answer.status, answer.body)
                assert 1.0 <= answer.ended - answer.started <= 1.0 + SLACK_S
            finally:
                await holder.execute("ROLLBACK")
                await holder.close()
            # The pool is whole: as many requests at once as it has connections, and more.
            answers = await asyncio.gather(
                *(_ask(client, "rest-update", session_id) for _ in range(15))
            )
            assert [a.status for a in answers] == [200] * 15
        # The same at the Database's own level, on a statement that is slow by itself.
        db = Database(make_engine(settings), pool_size=2)
        await db.open()
        try:
            started = time.monotonic()
            with pytest.raises(DatabaseUnavailable, match="did not answer in time"):
                await db.fetch("SELECT pg_sleep(3)")
            assert time.monotonic() - started < 1.0 + SLACK_S
            assert [dict(row) for row in await db.fetch("SELECT 1 AS one")] == [{"one": 1}]
        finally:
            await db.close()


async def test_an_exhausted_pool_is_503_within_the_wait() -> None:
    async with (
        private_cluster() as cluster,
        _served(_settings(cluster, db_statement_timeout_ms=10_000)) as base,
        httpx.AsyncClient(base_url=base) as client,
        AsyncExitStack() as stack,
    ):
        created = await client.post("/sessions", json=NEW_SESSION)
        session_id = created.json()["id"]
        holder = await asyncpg.connect(cluster.url)
        try:
            await holder.execute("BEGIN")
            await holder.execute("SELECT 1 FROM session WHERE id = $1 FOR UPDATE", session_id)
            # Ten updates wait for the row, each holding one of the pool's ten connections.
            clients = [
                await stack.enter_async_context(httpx.AsyncClient(base_url=base, timeout=15))
                for _ in range(10)
            ]
            updates = [
                asyncio.create_task(_ask(each, "rest-update", session_id)) for each in clients
            ]

            async def pool_taken() -> bool:
                metrics = (await client.get("/metrics")).text
                return "session_inbox_db_pool_in_use 10.0" in metrics.splitlines()

            await _wait_for(pool_taken, 10)
            for kind in ("rest-read", "graphql-read"):
                answer = await _ask(client, kind)
                assert answer.unavailable(), (answer.status, answer.body)
                assert POOL_WAIT_S <= answer.ended - answer.started <= POOL_WAIT_S + SLACK_S
        finally:
            await holder.execute("ROLLBACK")
            await holder.close()
        # Released, the ten waiting updates go through, and so does the rest.
        answers = await asyncio.gather(*updates)
        assert [a.status for a in answers] == [200] * 10
        assert (await _ask(client, "rest-read")).succeeded()


async def test_sqlite_locked_past_the_busy_timeout_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "locked.sqlite3"
    db = Database(SQLiteEngine(path=str(path), timeout=0.2))
    await db.open()
    await db.execute("CREATE TABLE t (n INTEGER)")
    # Another process's writer holds SQLite's one write lock.
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(DatabaseUnavailable, match="cannot be reached"):
            await db.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(DatabaseUnavailable):
            async with db.transaction():
                await db.execute("INSERT INTO t VALUES (2)")
        other.execute("ROLLBACK")
    finally:
        other.close()
    async with db.transaction():
        await db.execute("INSERT INTO t VALUES (3)")
    assert [dict(row) for row in await db.fetch("SELECT n FROM t")] == [{"n": 3}]
    # A wrong statement is still an error of its own, not an outage.
    with pytest.raises(sqlite3.OperationalError):
        await db.execute("SELECT * FROM missing")
