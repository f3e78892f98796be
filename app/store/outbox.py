"""The outbox's statements (`session_outbox`, written by the triggers of the migration), and the
relay's leadership: on PostgreSQL a session-level advisory lock held on a connection of its own,
which also listens for the `session_outbox` notifications of every instance's commits."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple
from uuid import UUID

from piccolo.querystring import QueryString

from app.db import Database
from app.store.dialect import Dialect, dialect_of
from app.store.statement import Param, statement
from app.tables import SessionOutbox

log = logging.getLogger(__name__)

# The key of the advisory lock that the leading relay holds.
RELAY_LOCK = 0x5E5512
# What the outbox's trigger notifies on PostgreSQL.
CHANNEL = "session_outbox"

_TABLE = QueryString(SessionOutbox._meta.tablename)
_ID = SessionOutbox.id


class Pending(NamedTuple):
    """An event in the outbox: its place there, and what the triggers wrote."""

    id: int
    kind: str
    session_id: UUID
    data: str


@statement
def _PENDING(dialect: Dialect) -> QueryString:
    return QueryString(
        "SELECT {}, {}, {}, {} FROM {} ORDER BY {} LIMIT {}",
        _ID,
        SessionOutbox.kind,
        SessionOutbox.session_id,
        SessionOutbox.data,
        _TABLE,
        _ID,
        Param("limit"),
    )


@statement
def _REMOVE(dialect: Dialect) -> QueryString:
    return QueryString(
        "DELETE FROM {} WHERE {}", _TABLE, dialect.is_in(_ID, Param("ids"), "bigint")
    )


@statement
def _BACKLOG(dialect: Dialect) -> QueryString:
    return QueryString("SELECT count(*) AS n FROM {}", _TABLE)


class OutboxStore:
    """The events waiting in the outbox, oldest first."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.dialect = dialect_of(db.engine)

    async def pending(self, limit: int) -> list[Pending]:
        rows = await self.db.fetch(_PENDING.bind(self.dialect, limit=limit))
        return [
            Pending(row["id"], row["kind"], UUID(str(row["session_id"])), row["data"])
            for row in rows
        ]

    async def remove(self, ids: Sequence[int]) -> None:
        """Remove the events `ids`: exactly those, for others may have committed among them."""
        await self.db.execute(_REMOVE.bind(self.dialect, ids=self.dialect.array(ids)))

    async def backlog(self) -> int:
        row = await self.db.fetchrow(_BACKLOG.bind(self.dialect))
        return int(row["n"]) if row else 0

    def leadership(self, on_commit: Callable[[], None]) -> Leadership:
        """The relay's leadership on this database; `on_commit` is called when another
        instance commits events (PostgreSQL; SQLite serves one instance)."""
        if self.db.is_postgres:
            return PostgresLeadership(self.db, on_commit)
        return Leadership()


class Leadership:
    """Whether this process's relay leads. With one instance (SQLite), it always does."""

    async def try_acquire(self) -> bool:
        """Lead, when no other process does; whether this one now leads."""
        return True

    @property
    def held(self) -> bool:
        return True

    async def release(self) -> None:
        return None


class PostgresLeadership(Leadership):
    """The advisory lock `RELAY_LOCK`, on a connection of its own: the database releases it
    when that connection ends, as when the process dies, so another instance takes over."""

    def __init__(self, db: Database, on_commit: Callable[[], None]) -> None:
        self.db = db
        self.on_commit = on_commit
        self._connection: Any = None

    async def try_acquire(self) -> bool:
        if self._connection is None or self._connection.is_closed():
            self._connection = await self.db.connect()
        locked = await self._connection.fetchval("SELECT pg_try_advisory_lock($1)", RELAY_LOCK)
        if locked:
            await self._connection.add_listener(CHANNEL, self._notified)
        return bool(locked)

    def _notified(self, *_args: Any) -> None:
        self.on_commit()

    @property
    def held(self) -> bool:
        return self._connection is not None and not self._connection.is_closed()

    async def release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed():
            try:
                await connection.close(timeout=2)
            except Exception:  # the lock goes with the connection, however it ends
                log.debug("closing the relay's connection failed", exc_info=True)
                connection.terminate()
