"""Shared fixtures: a real database of each engine, built by the migrations, and the app over it.

Every test that asks for `db`, `service` or `client` runs twice, once on PostgreSQL (a database
of its own per xdist worker on the local server, `TEST_POSTGRES_URL`) and once on SQLite (a file
per worker). Each test starts from an empty table."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, MutableMapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette

from app.config import Settings, load_settings
from app.db import Database, make_engine
from app.events import Events, MemoryLog
from app.main import create_app
from app.migrate import migrate
from app.model import NewSession
from app.naming import LocalNamer
from app.service import SessionService
from app.state import AppState
from tests.openapi_check import ResponseCheck
from tests.redis_server import RedisServer

ENGINES = ("postgres", "sqlite")
POSTGRES_SERVER = os.environ.get("TEST_POSTGRES_URL", "postgres://root@127.0.0.1:5432")


async def admin_sql(sql: str) -> None:
    """Runs `sql` on the server's `postgres` database (to make and drop test databases)."""
    admin = await asyncpg.connect(f"{POSTGRES_SERVER}/postgres")
    try:
        await admin.execute(sql)
    finally:
        await admin.close()


@pytest.fixture(scope="session")
async def database_urls(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[dict[str, str]]:
    """One migrated database per engine for this test process, dropped at the end."""
    name = f"session_inbox_test_{os.getpid()}"
    await admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin_sql(f'CREATE DATABASE "{name}"')
    urls = {
        "postgres": f"{POSTGRES_SERVER}/{name}",
        "sqlite": f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'test.sqlite3'}",
    }
    for url in urls.values():
        settings = replace(load_settings(environ={}, env_file=None), database_url=url)
        await migrate(make_engine(settings))
    yield urls
    await admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session", params=ENGINES)
def engine_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture(scope="session")
def settings(engine_kind: str, database_urls: dict[str, str]) -> Settings:
    """Test settings: only the database differs from the defaults."""
    base = load_settings(environ={}, env_file=None)
    return replace(base, database_url=database_urls[engine_kind], run_migrations=False)


@pytest.fixture(scope="session")
async def session_db(settings: Settings) -> AsyncIterator[Database]:
    db = Database(make_engine(settings), pool_size=10)
    await db.open()
    yield db
    await db.close()


@pytest.fixture
async def db(session_db: Database) -> Database:
    """The database, emptied for this test."""
    if session_db.is_postgres:
        await session_db.execute("TRUNCATE session, session_outbox")
    else:
        await session_db.execute("DELETE FROM session")
        await session_db.execute("DELETE FROM session_outbox")
    return session_db


def idle_events(db: Database) -> Events:
    """Events whose relay does not run: what changes write stays in the outbox."""
    return Events(db, MemoryLog(1000))


@pytest.fixture
async def events(db: Database) -> AsyncIterator[Events]:
    """This process's events over an in-process log, relayed and fanned out as in the server."""
    events = Events(db, MemoryLog(1000))
    events.start()
    yield events
    await events.stop()


@pytest.fixture
def service(db: Database, events: Events) -> SessionService:
    return SessionService(db, LocalNamer(), events)


SessionFactory = Callable[..., Awaitable[MutableMapping[str, Any]]]


@pytest.fixture
def make_session(service: SessionService) -> SessionFactory:
    """Creates a session through the service; keyword arguments override the defaults."""

    async def make(**overrides: Any) -> MutableMapping[str, Any]:
        fields: dict[str, Any] = {
            "repo": "acme/app",
            "target_branch": "main",
            "messages": {"content": f"Task {uuid.uuid4().hex[:8]}"},
        }
        fields.update(overrides)
        key = fields.pop("idempotency_key", None)
        created = await service.create(NewSession.convert(fields), idempotency_key=key)
        return dict(created.session)

    return make


def with_state(app: Starlette, state: dict[str, Any]) -> Any:
    """`app` with the lifespan state handed to each request, as Starlette does when it runs the
    lifespan itself (httpx's ASGI transport does not run lifespans)."""

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        scope["state"] = dict(state)
        await app(scope, receive, send)

    return asgi


@pytest.fixture
async def app_state(
    settings: Settings, db: Database, service: SessionService, events: Events
) -> AppState:
    return AppState(settings, db, events, service)


@pytest.fixture
async def client(settings: Settings, app_state: AppState) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the app, over the test's database and service. Every answer it gets
    is checked against the served OpenAPI document."""
    app = create_app(settings)
    transport = httpx.ASGITransport(app=with_state(app, {"inbox": app_state}))
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://testserver",
        event_hooks={"response": [ResponseCheck(transport)]},
    ) as http:
        yield http


@pytest.fixture
def tmp_sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'fresh.sqlite3'}"


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own, on a free port, which it may stop and start again."""
    directory = tmp_path / "redis"
    directory.mkdir()
    with RedisServer(directory) as server:
        yield server


async def until_a_lock_is_waited_for(
    holder: asyncpg.Connection, task: asyncio.Task[Any], what: str, timeout_s: float = 10
) -> None:
    """Returns once some session waits for an advisory lock (the one `holder` holds), failing
    when `task` ends first or `timeout_s` passes (`what` names the waiter)."""
    deadline = time.monotonic() + timeout_s
    while not await holder.fetchval(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    ):
        assert time.monotonic() < deadline, f"{what} never waited for the lock"
        assert not task.done(), task
        await asyncio.sleep(0.02)
