"""The database handle: a Piccolo engine for PostgreSQL or SQLite, its transactions, and streams
on connections of their own. It runs what it is given; the statements themselves, and what the
two dialects say differently, are in `app.store`. Ad-hoc SQL (tests, maintenance) is written
with Piccolo's `{}` placeholders.

Every statement is bounded in time, and what says the database cannot answer now (unreachable,
too slow, frozen, no connection free, SQLite locked) is raised as one error, `DatabaseUnavailable`,
which clients get as a 503; an outage is logged once. The module is long because that boundary
needs the pool, the transactions and the streams in one place."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import re
import sqlite3
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import aclosing, asynccontextmanager
from typing import Any, TypeVar

import asyncpg
from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine, TransactionType
from piccolo.querystring import QueryString

from app.config import Settings, load_settings
from app.pool import Lender

Row = Mapping[str, Any]
# The statement of at most `n` rows of a stream that follow a row (the first `n`, given None).
Pages = Callable[[Row | None, int], QueryString]
T = TypeVar("T")

log = logging.getLogger(__name__)

# How long a streamed read may wait for its client before PostgreSQL ends it.
STREAM_IDLE_TIMEOUT_MS = 60_000
# How long a new stream waits for one of the process's stream slots before it is refused.
STREAM_SLOT_WAIT_S = 2.0
# How long a statement waits for one of the pool's connections before it is refused (503).
POOL_WAIT_S = 2.0
# How long past DB_STATEMENT_TIMEOUT_MS the client waits for the server's answer: the server
# ends a statement at its timeout, but a frozen server answers nothing, ever.
CLIENT_DEADLINE_MARGIN_S = 0.5
# How long a connection of the caller's own (`connect`) may take to open.
CONNECT_TIMEOUT_S = 5.0


class DatabaseBusy(Exception):
    """The database cannot take this work now; the caller may retry shortly."""


class DatabaseUnavailable(DatabaseBusy):
    """The database cannot be reached, did not answer in time, or has no connection free; the
    statement did not run, or its transaction was not committed."""


# What says the database is out of reach or too slow, rather than that a statement is wrong.
# (TimeoutError and ConnectionRefusedError are OSErrors.)
_UNREACHABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    # 57xxx: statement timeout, server shutting down or starting up.
    asyncpg.exceptions.OperatorInterventionError,
    # 53xxx: too many connections, out of memory or disk.
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.LockNotAvailableError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    sqlite3.OperationalError,
)
# SQLite's OperationalErrors that mean "not now" (any other is a wrong statement).
_SQLITE_UNAVAILABLE = ("database is locked", "database table is locked", "unable to open")


# What a statement may leave on its session past its transaction (settings, cursors WITH HOLD,
# LISTEN, session advisory locks, prepared statements, temporary tables): the pool resets
# nothing between leases (asyncpg's reset query is a round trip per statement), so a lease that
# ran one of these ends with its connection closed. The store's statements have none of them.
_SESSION_STATE = re.compile(
    r"(?:^|;)\s*(?:SET|RESET|LISTEN|DECLARE|PREPARE|DO)\b"
    r"|\bCREATE\s+(?:(?:GLOBAL|LOCAL)\s+)?TEMP(?:ORARY)?\b"
    r"|\bset_config\s*\(|\bpg_(?:try_)?advisory_lock(?:_shared)?\s*\(",
    re.IGNORECASE,
)


@functools.lru_cache(maxsize=1024)
def _leaves_session_state(sql: str) -> bool:
    return _SESSION_STATE.search(sql) is not None


async def _nothing_to_reset(_connection: asyncpg.Connection) -> None:
    """The pool's reset: asyncpg still rolls back a transaction left open (none is: every
    transaction here ends, or its connection is terminated); nothing else is set (see
    `_SESSION_STATE`)."""


# SQLite gives a column declared JSONB numeric affinity: a JSON document that is a bare number
# would come back as an int or a float. Read every JSONB value back as text. Only a file not yet
# at the fifth migration has such columns: it declares `messages` and `sbx_config` TEXT, which
# keeps a bare number's every digit.
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
        # The connection of the PostgreSQL transaction this task is in (`transaction`).
        self._current: contextvars.ContextVar[Any] = contextvars.ContextVar(
            "connection", default=None
        )
        # How long the client waits for a statement (None: for ever, as the server does).
        self._deadline_s = _deadline_of(engine)
        # When the outage going on began (None: none is), how many statements it refused, and
        # when the last was: only a statement begun after it says the database is back.
        self._down_since: float | None = None
        self._refused = 0
        self._refused_at = 0.0
        # The leased connections that ran a statement leaving session state (`_SESSION_STATE`).
        self._stateful: set[Any] = set()
        # The pool's connections, lent without going back to asyncpg's pool (`app.pool`).
        self._lender: Lender | None = None

    async def open(self) -> None:
        if isinstance(self.engine, PostgresEngine):
            # No floor of connections: asyncpg would keep trying to restore it through an
            # outage, a warning with its traceback each time. One is opened here all the same,
            # so that a server that cannot reach its database does not start.
            await self.engine.start_connection_pool(
                min_size=0, max_size=self.pool_size, reset=_nothing_to_reset
            )
            pool = self.engine.pool
            assert pool is not None
            self._lender = Lender(pool, self.pool_size, self._deadline_s or POOL_WAIT_S)
            async with pool.acquire():
                pass
        else:
            # WAL lets readers go on while one writer writes; it is stored in the file.
            await self.execute("PRAGMA journal_mode=WAL")

    async def close(self) -> None:
        if isinstance(self.engine, PostgresEngine) and self.engine.pool is not None:
            if self._lender is not None:
                await self._lender.close()
                self._lender = None
            await self.engine.close_connection_pool()

    async def ping(self) -> None:
        """Asks the database for `SELECT 1`; `DatabaseUnavailable` when it cannot answer."""
        await self.execute("SELECT 1")

    def pool_usage(self) -> tuple[int, int]:
        """The pool's connections now, and how many of them are lent out (PostgreSQL's pool;
        (0, 0) on SQLite, which has none, and before `open`)."""
        pool = self.engine.pool if isinstance(self.engine, PostgresEngine) else None
        if pool is None:
            return 0, 0
        size: int = pool.get_size()
        lent = self._lender.lent if self._lender is not None else size - pool.get_idle_size()
        return size, lent

    # A query is a `QueryString` (a bound statement of `app.store`, mostly), or SQL text with
    # `{}` placeholders for `args`. Rows are typed by the caller, which knows what it selected
    # (`app.model.Session`, mostly).
    #
    # Every statement is bounded in time (the server's statement timeout, and a deadline of the
    # client's a little after it), and so is the wait for a connection; what says the database
    # cannot answer now is raised as `DatabaseUnavailable`, which clients get as a 503.
    async def fetch(self, query: str | QueryString, *args: Any) -> list[Any]:
        querystring = _querystring(query, args)
        if self._lender is not None:
            sql, sql_args = querystring.compile_string(engine_type=self.engine.engine_type)
            rows: list[Any] = await self._run(sql, sql_args, value=False)
            return rows
        started = time.monotonic()
        with self._faults():
            rows = await self.engine.run_querystring(querystring)
        self._answered(started)
        return rows

    async def fetch_value(self, sql: str, *args: Any) -> Any:
        """The first column of the first row of `sql` (None without a row): PostgreSQL text
        with `$n` placeholders, prepared once per connection (asyncpg's statement cache), in
        the bounds `fetch` keeps. For statements made whole elsewhere (`app.graphql.compiled`)."""
        assert self._lender is not None, "PostgreSQL only, once open"
        return await self._run(sql, args, value=True)

    async def _run(self, sql: str, args: Sequence[Any], *, value: bool) -> Any:
        """`sql` on PostgreSQL, on the connection of the transaction this task is in or on one
        leased for it alone: its rows, or with `value` the first column of its first row. Its
        faults are turned as `_faults` turns them, written out: this runs for every statement."""
        started = time.monotonic()
        connection = self._current.get()
        lender = None if connection is not None else self._lender
        try:
            if lender is not None:
                connection = await self._take(lender)
            try:
                if _leaves_session_state(sql):
                    self._stateful.add(connection)
                run = connection.fetchval if value else connection.fetch
                result = await self._timed(connection, run(sql, *args))
            finally:
                if lender is not None:
                    await self._give(lender, connection)
        except _UNREACHABLE as error:
            if (unavailable := self._unavailable_for(error)) is None:
                raise
            raise unavailable from error
        self._answered(started)
        return result

    async def fetchrow(self, query: str | QueryString, *args: Any) -> Any:
        rows = await self.fetch(query, *args)
        return rows[0] if rows else None

    async def execute(self, query: str | QueryString, *args: Any) -> None:
        await self.fetch(query, *args)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """A write transaction; one inside another is part of it. On SQLite it takes the write
        lock at BEGIN (IMMEDIATE), so read-check-write sequences cannot interleave. Leaving the
        block without an error means it is committed: a commit that fails raises."""
        started = time.monotonic()
        if isinstance(self.engine, PostgresEngine) and self.engine.pool is not None:
            if self._current.get() is not None:
                yield
                return
            async with self._lease() as connection, self._pg_transaction(connection):
                yield
        else:
            if isinstance(self.engine, SQLiteEngine):
                transaction = self.engine.transaction(transaction_type=TransactionType.immediate)
            else:
                transaction = self.engine.transaction()
            with self._faults():
                await transaction.__aenter__()
            try:
                yield
            except BaseException as error:
                with self._faults():
                    await transaction.__aexit__(type(error), error, error.__traceback__)
                raise
            with self._faults():
                await transaction.__aexit__(None, None, None)
        self._answered(started)

    @asynccontextmanager
    async def _pg_transaction(self, connection: Any) -> AsyncIterator[None]:
        token = self._current.set(connection)
        try:
            transaction = connection.transaction()
            with self._faults():
                await self._timed(connection, transaction.start())
            try:
                yield
            except BaseException:
                # The error that ended the block is what the caller hears of, not this. A
                # connection terminated in the block (`_timed`) is detached from the pool's
                # proxy, whose every method, `is_closed` too, then raises InterfaceError.
                with contextlib.suppress(Exception):
                    if not connection.is_closed():
                        await self._timed(connection, transaction.rollback())
                raise
            with self._faults():
                await self._timed(connection, transaction.commit())
        finally:
            self._current.reset(token)

    @asynccontextmanager
    async def _lease(self) -> AsyncIterator[Any]:
        """One of the pool's connections, waited for at most `POOL_WAIT_S`."""
        lender = self._lender
        assert lender is not None, "the database is not open"
        connection = await self._take(lender)
        try:
            yield connection
        finally:
            await self._give(lender, connection)

    async def _take(self, lender: Lender) -> Any:
        """An idle connection of `lender` at once, else one waited for at most `POOL_WAIT_S`.
        (`_lease` without its context manager: `_run`, for each statement, takes and gives
        itself.)"""
        connection = lender.idle()
        if connection is not None:
            return connection
        with self._faults():
            try:
                return await lender.acquire(POOL_WAIT_S)
            except TimeoutError:
                # Every connection is lent out, or a new one takes too long to open.
                raise self._unavailable(
                    "every database connection is busy",
                    f"no database connection within {POOL_WAIT_S:g} s",
                ) from None

    async def _give(self, lender: Lender, connection: Any) -> None:
        """`connection`, taken from `lender` by `_take`, back to it (even if the database was
        closed meanwhile: then asyncpg's pool, closing, waits for it)."""
        if self._stateful and connection in self._stateful:
            self._stateful.discard(connection)
            # Its session may hold what the next lease must not find: closed, not reset.
            connection.terminate()
        try:
            await lender.release(connection)
        except Exception:
            # asyncpg has terminated it; the pool opens another when one is needed.
            log.debug("a connection could not be reset: discarded", exc_info=True)

    async def _timed(self, connection: Any, operation: Awaitable[T]) -> T:
        """`operation` on `connection`, within the client's deadline. A connection whose
        statement is abandoned (the deadline, or the caller cancelled) is terminated, so it
        never goes back to the pool in the middle of a statement.

        The deadline is a timer that cancels this task, not `asyncio.timeout` (a context
        manager and its timeout handle, about 9 us of CPU a statement): one `call_later` and
        its cancel."""
        deadline = self._deadline_s
        expired = False
        timer: asyncio.TimerHandle | None = None
        task = asyncio.current_task() if deadline is not None else None
        if deadline is not None and task is not None:

            def expire() -> None:
                nonlocal expired
                expired = True
                assert task is not None
                task.cancel()

            timer = asyncio.get_running_loop().call_later(deadline, expire)
        try:
            return await operation
        except asyncio.CancelledError:
            connection.terminate()
            # The timer's own cancellation is a timeout; another one (the caller's) goes on.
            if expired and task is not None and task.uncancel() == 0:
                raise self._unavailable(
                    "the database did not answer in time",
                    f"no answer within {deadline:g} s: connection discarded",
                ) from None
            raise
        except (asyncpg.InterfaceError, asyncpg.InternalClientError):
            # A connection the server dropped, or whose protocol lost its place (a shutdown's
            # unsolicited error): discarded, not handed to the next statement.
            connection.terminate()
            raise
        finally:
            if timer is not None:
                timer.cancel()

    @contextlib.contextmanager
    def _faults(self) -> Iterator[None]:
        """Turns what says the database cannot answer now into `DatabaseUnavailable`, and logs
        an outage when it begins."""
        try:
            yield
        except _UNREACHABLE as error:
            if (unavailable := self._unavailable_for(error)) is None:
                raise
            raise unavailable from error

    def _unavailable_for(self, error: BaseException) -> DatabaseUnavailable | None:
        """The `DatabaseUnavailable` that `error` (one of `_UNREACHABLE`) is, or None when it
        says something else (it is raised as it is)."""
        if isinstance(error, sqlite3.OperationalError) and not str(error).startswith(
            _SQLITE_UNAVAILABLE
        ):
            return None
        if isinstance(error, asyncpg.InterfaceError) and "closed" not in str(error):
            return None
        if isinstance(error, asyncpg.exceptions.QueryCanceledError):
            return self._unavailable("the database did not answer in time", _reason(error))
        return self._unavailable("the database cannot be reached", _reason(error))

    def _unavailable(self, what: str, detail: str) -> DatabaseUnavailable:
        """The error to raise: `what` is told to the client, `detail` (the driver's words,
        addresses included) only to the log, when an outage begins."""
        self._refused += 1
        self._refused_at = time.monotonic()
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("the database cannot answer (%s): requests get 503 until it does", detail)
        return DatabaseUnavailable(f"{what}; try again shortly")

    def _answered(self, started: float) -> None:
        """A statement begun at `started` was answered: the outage, if any, is over (unless a
        statement was refused since it began, as when a server is going down)."""
        if self._down_since is not None and started > self._refused_at:
            log.info(
                "the database answers again, after %.1f s (%d statement(s) refused)",
                time.monotonic() - self._down_since,
                self._refused,
            )
            self._down_since, self._refused = None, 0

    async def connect(self, **server_settings: str) -> asyncpg.Connection:
        """A PostgreSQL connection of the caller's own, outside the pool, with the engine's
        settings and `server_settings` over them."""
        assert isinstance(self.engine, PostgresEngine)
        config = dict(self.engine.config)
        settings = dict(config.pop("server_settings", None) or {})
        settings.update(server_settings)
        config.setdefault("timeout", CONNECT_TIMEOUT_S)
        with self._faults():
            connection: asyncpg.Connection = await asyncpg.connect(
                **config, server_settings=settings
            )
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
        self,
        query: str | QueryString,
        args: Sequence[Any] = (),
        *,
        batch_size: int = 500,
        pages: Pages | None = None,
    ) -> AsyncGenerator[Row, None]:
        """Rows of `query`, `batch_size` at a time, so memory stays flat however many rows there
        are: on PostgreSQL from a server-side cursor, in one snapshot.

        On SQLite with `pages` (the statement of the `n` rows that follow a row, or of the first
        `n` given None), each batch is a statement of its own, read to its end before its rows
        are handed on: a reader that stalls holds no read transaction, so checkpoints go on and
        the WAL stays small. The rows are then consistent by the keyset rather than one
        snapshot: none twice, none left out that existed throughout, in order. Without `pages`,
        one cursor, whose snapshot lasts as long as its reader."""
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
                aclosing(self._rows(connection, sql, sql_args, batch_size, pages)) as rows,
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
        self,
        connection: Any,
        query: str,
        query_args: Sequence[Any],
        batch_size: int,
        pages: Pages | None,
    ) -> AsyncGenerator[Row, None]:
        if self.is_postgres:
            async with connection.transaction(readonly=True):
                async for record in connection.cursor(query, *query_args, prefetch=batch_size):
                    yield record
        elif pages is not None:
            last: Row | None = None
            while True:
                sql, sql_args = pages(last, batch_size).compile_string(
                    engine_type=self.engine.engine_type
                )
                # Outside a transaction, SQLite's read ends with the statement.
                async with connection.execute(sql, sql_args) as cursor:
                    batch = await cursor.fetchall()
                for row in batch:
                    yield row
                if len(batch) < batch_size:
                    return
                last = batch[-1]
        else:
            async with connection.execute(query, query_args) as cursor:
                while batch := await cursor.fetchmany(batch_size):
                    for row in batch:
                        yield row


def _deadline_of(engine: Engine[Any]) -> float | None:
    """The client's deadline for a statement: a little after the server's statement timeout
    (None without one, and on SQLite, whose statements run in the process)."""
    if not isinstance(engine, PostgresEngine):
        return None
    timeout_ms = (engine.config.get("server_settings") or {}).get("statement_timeout")
    if not timeout_ms or int(timeout_ms) <= 0:
        return None
    return int(timeout_ms) / 1000 + CLIENT_DEADLINE_MARGIN_S


def _reason(error: BaseException) -> str:
    """What the log says of `error`: its kind and the driver's words, on one line."""
    text = " ".join(str(error).split()) or "no detail"
    return f"{type(error).__name__}: {text}"[:200]


def _querystring(query: str | QueryString, args: Sequence[Any]) -> QueryString:
    if isinstance(query, QueryString):
        if args:
            raise TypeError("a QueryString carries its own arguments")
        return query
    return QueryString(query, *args)
