"""The database handle: a Piccolo engine for PostgreSQL or SQLite, its transactions, and streams
on connections of their own. It runs what it is given; the statements themselves, and what the
two dialects say differently, are in `app.store`. Ad-hoc SQL (tests, maintenance) is written
with Piccolo's `{}` placeholders."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from contextlib import aclosing, asynccontextmanager
from typing import Any

import asyncpg
from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine, TransactionType
from piccolo.querystring import QueryString

from app.config import Settings, load_settings

Row = Mapping[str, Any]

# How long a streamed read may wait for its client before PostgreSQL ends it.
STREAM_IDLE_TIMEOUT_MS = 60_000
# How long a new stream waits for one of the process's stream slots before it is refused.
STREAM_SLOT_WAIT_S = 2.0


class DatabaseBusy(Exception):
    """The database cannot take this work now; the caller may retry shortly."""


# SQLite gives a column declared JSONB numeric affinity: a JSON document that is a bare number
# would come back as an int or a float. Read every JSONB value back as the text it was written as
# (a top-level float keeps SQLite's 15 significant digits).
sqlite3.register_converter("JSONB", bytes.decode)

# Errors that mean "the database refused this write" on either engine.
IntegrityError = (asyncpg.IntegrityConstraintViolationError, sqlite3.IntegrityError)


def make_engine(settings: Settings | None = None, *, for_migrations: bool = False) -> Engine[Any]:
    """An engine for `settings.database_url`; no connection is opened here. One for migrations
    has no statement timeout: a migration, or waiting for another process's, may take longer."""
    settings = settings or load_settings()
    if settings.is_postgres:
        server_settings = {"application_name": "session-inbox"}
        if settings.db_statement_timeout_ms and not for_migrations:
            server_settings["statement_timeout"] = str(settings.db_statement_timeout_ms)
        return PostgresEngine(
            config={"dsn": settings.database_url, "server_settings": server_settings},
            log_queries=False,
        )
    # `timeout` is how long a writer waits for SQLite's single write lock.
    return SQLiteEngine(path=settings.sqlite_path, timeout=30)


class Database:
    """Runs queries on a Piccolo engine: in its pool, in its transactions, or streamed."""

    def __init__(self, engine: Engine[Any], *, pool_size: int = 10, max_streams: int = 8) -> None:
        self.engine = engine
        self.is_postgres = isinstance(engine, PostgresEngine)
        self.pool_size = pool_size
        # Streams read on connections of their own, so a client that stops reading can never
        # take the pool away from other requests; this bounds how many there are at once.
        self._streams = asyncio.Semaphore(max_streams)
        # Streams holding a slot now (for /metrics).
        self.streams_open = 0

    async def open(self) -> None:
        if isinstance(self.engine, PostgresEngine):
            await self.engine.start_connection_pool(min_size=1, max_size=self.pool_size)
        else:
            # WAL lets readers go on while one writer writes; it is stored in the file.
            await self.execute("PRAGMA journal_mode=WAL")

    async def close(self) -> None:
        if isinstance(self.engine, PostgresEngine) and self.engine.pool is not None:
            await self.engine.close_connection_pool()

    async def ping(self) -> None:
        """Asks the database for `SELECT 1`; raises whatever the engine raises when it cannot."""
        await self.engine.run_querystring(QueryString("SELECT 1"))

    def pool_usage(self) -> tuple[int, int]:
        """The pool's connections now, and how many of them are lent out (PostgreSQL's pool;
        (0, 0) on SQLite, which has none, and before `open`)."""
        pool = self.engine.pool if isinstance(self.engine, PostgresEngine) else None
        if pool is None:
            return 0, 0
        size: int = pool.get_size()
        return size, size - pool.get_idle_size()

    # A query is a `QueryString` (a bound statement of `app.store`, mostly), or SQL text with
    # `{}` placeholders for `args`. Rows are typed by the caller, which knows what it selected
    # (`app.model.Session`, mostly).
    async def fetch(self, query: str | QueryString, *args: Any) -> list[Any]:
        rows: list[Any] = await self.engine.run_querystring(_querystring(query, args))
        return rows

    async def fetchrow(self, query: str | QueryString, *args: Any) -> Any:
        rows = await self.fetch(query, *args)
        return rows[0] if rows else None

    async def execute(self, query: str | QueryString, *args: Any) -> None:
        await self.engine.run_querystring(_querystring(query, args))

    def transaction(self) -> Any:
        """A write transaction. On SQLite it takes the write lock at BEGIN (IMMEDIATE), so
        read-check-write sequences cannot interleave."""
        if isinstance(self.engine, SQLiteEngine):
            return self.engine.transaction(transaction_type=TransactionType.immediate)
        return self.engine.transaction()

    async def connect(self, **server_settings: str) -> asyncpg.Connection:
        """A PostgreSQL connection of the caller's own, outside the pool, with the engine's
        settings and `server_settings` over them."""
        assert isinstance(self.engine, PostgresEngine)
        config = dict(self.engine.config)
        settings = dict(config.pop("server_settings", None) or {})
        settings.update(server_settings)
        connection: asyncpg.Connection = await asyncpg.connect(**config, server_settings=settings)
        return connection

    @asynccontextmanager
    async def _stream_connection(self) -> AsyncIterator[Any]:
        if isinstance(self.engine, PostgresEngine):
            # A stalled reader's transaction is ended by the server, which frees its connection.
            connection = await self.connect(
                idle_in_transaction_session_timeout=str(STREAM_IDLE_TIMEOUT_MS)
            )
            try:
                yield connection
            finally:
                await connection.close()
        elif isinstance(self.engine, SQLiteEngine):
            connection = await self.engine.get_connection()
            try:
                yield connection
            finally:
                await connection.close()
        else:  # pragma: no cover
            raise TypeError(f"unsupported engine {self.engine!r}")

    async def stream(
        self, query: str | QueryString, args: Sequence[Any] = (), *, batch_size: int = 500
    ) -> AsyncGenerator[Row, None]:
        """Rows of `query` from a server-side cursor, `batch_size` at a time, so memory stays
        flat however many rows there are."""
        sql, sql_args = _querystring(query, args).compile_string(
            engine_type=self.engine.engine_type
        )
        try:
            await asyncio.wait_for(self._streams.acquire(), STREAM_SLOT_WAIT_S)
        except TimeoutError:
            raise DatabaseBusy("too many sessions are being listed at once") from None
        self.streams_open += 1
        try:
            # Each layer closes the one inside it when it is closed (a client that hangs up), so
            # the cursor ends before its connection closes and the slot is free at once.
            async with (
                self._stream_connection() as connection,
                aclosing(self._rows(connection, sql, sql_args, batch_size)) as rows,
            ):
                async for row in rows:
                    yield row
        finally:
            self.streams_open -= 1
            self._streams.release()

    def streams_busy(self) -> bool:
        """Whether every stream slot is taken (a new stream would wait)."""
        return self._streams.locked()

    async def _rows(
        self, connection: Any, query: str, query_args: Sequence[Any], batch_size: int
    ) -> AsyncGenerator[Row, None]:
        if self.is_postgres:
            async with connection.transaction(readonly=True):
                async for record in connection.cursor(query, *query_args, prefetch=batch_size):
                    yield record
        else:
            async with connection.execute(query, query_args) as cursor:
                while batch := await cursor.fetchmany(batch_size):
                    for row in batch:
                        yield row


def _querystring(query: str | QueryString, args: Sequence[Any]) -> QueryString:
    if isinstance(query, QueryString):
        if args:
            raise TypeError("a QueryString carries its own arguments")
        return query
    return QueryString(query, *args)
