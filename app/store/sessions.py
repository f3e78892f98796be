"""`SessionStore`: every statement on the `session` table, run with typed arguments and returning
typed rows. Rows come straight from the driver (no ORM object per row), JSON columns as the text
they are stored as. No rule lives here: the service decides what to read, write and refuse."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, cast
from uuid import UUID

from piccolo.querystring import QueryString

from app.db import Database, IntegrityError, Pages, Row
from app.listing import Cursor, SessionFilter, SessionOrder
from app.model import Session
from app.store import listing, queries
from app.store.dialect import dialect_of
from app.store.errors import Conflict, constraint_of
from app.store.statement import Statement

# The key of the PostgreSQL advisory lock that serializes parent changes against deletes.
PARENT_LOCK = 0x5E5511


class Idempotent(NamedTuple):
    """The session an idempotency key made, and the digest of the request that made it."""

    session: Session
    fingerprint: str | None


@dataclass(frozen=True, slots=True)
class Ancestry:
    """A walk up the parents from a session."""

    # Whether the session it started from exists.
    found: bool
    # Whether the session looked for is on the way.
    cycle: bool
    # How many steps up it went.
    depth: int


class SessionStore:
    """The `session` table on one database, in its dialect."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.dialect = dialect_of(db.engine)

    @property
    def locks_parents(self) -> bool:
        """Whether parent changes must hold the parent lock (`lock_parents`): on PostgreSQL;
        SQLite serializes every writer, so there it is a no-op."""
        return self.dialect.locks_parents

    async def _fetch(self, statement: Statement, **values: Any) -> list[Any]:
        return await self.db.fetch(statement.bind(self.dialect, **values))

    async def _fetchrow(self, statement: Statement, **values: Any) -> Any:
        rows = await self.db.fetch(statement.bind(self.dialect, **values))
        return rows[0] if rows else None

    def transaction(self) -> Any:
        """A write transaction (on SQLite, holding the write lock from its start)."""
        return self.db.transaction()

    # Reads.

    async def get(self, session_id: UUID) -> Session | None:
        row: Session | None = await self._fetchrow(queries.GET, id=session_id)
        return row

    async def get_many(self, ids: Sequence[UUID]) -> dict[UUID, Session]:
        if not ids:
            return {}
        rows = await self._fetch(queries.GET_MANY, ids=self.dialect.array(ids))
        return {row["id"]: row for row in rows}

    async def exists(self, session_id: UUID) -> bool:
        return await self._fetchrow(queries.EXISTS, id=session_id) is not None

    async def idempotent(self, key: str) -> Idempotent | None:
        """The session made with idempotency key `key`, if any."""
        row = await self._fetchrow(queries.BY_IDEMPOTENCY_KEY, idempotency_key=key)
        if row is None:
            return None
        session = {k: v for k, v in row.items() if k != "idempotency_fingerprint"}
        return Idempotent(cast(Session, session), row["idempotency_fingerprint"])

    async def page(
        self,
        filter: SessionFilter,
        order: SessionOrder,
        *,
        after: Cursor | None,
        before: Cursor | None,
        backward: bool,
        limit: int,
    ) -> list[Session]:
        """At most `limit` rows that meet `filter`, strictly between the cursors, in `order`
        (read from the other end when `backward`)."""
        statement = listing.select(
            listing.shape(filter),
            order,
            after=after is not None,
            before=before is not None,
            backward=backward,
        )
        values = listing.values(filter, self.dialect)
        values.update(listing.bounds(after, before), limit=limit)
        return await self._fetch(statement, **values)

    async def count(self, filter: SessionFilter) -> int:
        values = listing.values(filter, self.dialect)
        row = await self._fetchrow(listing.count(listing.shape(filter)), **values)
        return int(row["n"]) if row else 0

    def stream(self, filter: SessionFilter, order: SessionOrder) -> AsyncGenerator[Session, None]:
        """Every row that meets `filter`, in `order`: the database's generator itself, whose
        rows are sessions because the statement selects a row's columns. On PostgreSQL from a
        server-side cursor; on SQLite page by page (see `Database.stream`)."""
        statement = listing.select(listing.shape(filter), order, limited=False)
        bound = statement.bind(self.dialect, **listing.values(filter, self.dialect))
        rows = self.db.stream(bound, pages=self.pages(filter, order))
        return cast(AsyncGenerator[Session, None], rows)

    def pages(self, filter: SessionFilter, order: SessionOrder) -> Pages:
        """The statements of `filter`'s rows in `order`, a page at a time, each page after the
        last row of the one before."""
        shape, values = listing.shape(filter), listing.values(filter, self.dialect)
        first = listing.select(shape, order)
        after = listing.select(shape, order, after=True)

        def page(last: Row | None, limit: int) -> QueryString:
            if last is None:
                return first.bind(self.dialect, **values, limit=limit)
            cursor = Cursor(order.field, last[order.field.value], last["id"])
            bounds = listing.bounds(cursor, None)
            return after.bind(self.dialect, **values, **bounds, limit=limit)

        return page

    async def children(
        self, parent_ids: Sequence[UUID], *, after: Cursor | None, limit: int
    ) -> dict[UUID, list[Session]]:
        """The children of each parent, newest first, at most `limit` each, after `after`."""
        statement = queries.CHILDREN if after is None else queries.CHILDREN_AFTER
        rows = await self._fetch(
            statement,
            parent_ids=self.dialect.array(parent_ids),
            limit=limit,
            **listing.bounds(after, None),
        )
        grouped: dict[UUID, list[Session]] = {parent: [] for parent in parent_ids}
        for row in rows:
            grouped[row["parent"]].append(row)
        return grouped

    async def children_counts(self, parent_ids: Sequence[UUID]) -> dict[UUID, int]:
        """How many children each parent has."""
        counts = dict.fromkeys(parent_ids, 0)
        if not counts:
            return counts
        rows = await self._fetch(queries.CHILDREN_COUNTS, parent_ids=self.dialect.array(counts))
        counts.update({row["parent"]: int(row["n"]) for row in rows})
        return counts

    async def ancestors(self, ids: Sequence[UUID], max_depth: int) -> dict[UUID, list[Session]]:
        """The parents of each of `ids`, nearest first, at most `max_depth` of them (none for a
        root or an unknown id), in one walk whatever their number."""
        chains: dict[UUID, list[Session]] = {session_id: [] for session_id in ids}
        if not chains:
            return chains
        rows = await self._fetch(
            queries.ANCESTORS, ids=self.dialect.array(chains), max_depth=max_depth
        )
        for row in rows:
            session = {k: v for k, v in row.items() if k != "origin"}
            chains[row["origin"]].append(cast(Session, session))
        return chains

    async def ancestry(self, start: UUID, session_id: UUID, max_depth: int) -> Ancestry:
        """The walk up from `start`: whether it exists, whether `session_id` is on the way
        (`start` included), and how far it went (at most `max_depth`)."""
        row = await self._fetchrow(
            queries.ANCESTRY, parent=start, id=session_id, max_depth=max_depth
        )
        return Ancestry(bool(row["found"]), bool(row["cycle"]), int(row["depth"] or 0))

    # Locks, inside a transaction.

    async def lock(self, session_id: UUID) -> Session | None:
        """The row, locked against other changes until the transaction ends."""
        row: Session | None = await self._fetchrow(queries.LOCK, id=session_id)
        return row

    async def lock_parents(self) -> None:
        """Take the parent lock, exclusively: parent changes and deletes wait for each other."""
        if self.dialect.locks_parents:
            await self.db.execute(queries.LOCK_PARENTS.bind(self.dialect, key=PARENT_LOCK))

    # Writes.

    async def insert(
        self, row: Session, *, idempotency_key: str | None, fingerprint: str | None
    ) -> Session | None:
        """Insert `row`, in one statement; None when its idempotency key is already taken.
        `Conflict` when its branch is taken in the repo or its parent does not exist. Under a
        parent, the statement holds the parent lock shared (`queries.INSERT_UNDER_PARENT`)."""
        statement = queries.INSERT if row["parent"] is None else queries.INSERT_UNDER_PARENT
        try:
            created: Session | None = await self._fetchrow(
                statement,
                **row,
                parent_lock=PARENT_LOCK,
                idempotency_key=idempotency_key,
                idempotency_fingerprint=fingerprint,
            )
        except IntegrityError as error:
            constraint = constraint_of(error)
            if constraint is None:
                raise
            raise Conflict(constraint) from error
        return created

    async def update(
        self,
        session_id: UUID,
        values: Mapping[str, Any],
        *,
        updated_at: datetime,
        expected_version: int | None = None,
        keeps_parent: bool = False,
    ) -> Session | None:
        """Set the fields `values` names (JSON as text) and bump the version; None when there is
        no such row, or (given `expected_version`) it is at another version, or (`keeps_parent`)
        its parent is not `values["parent"]`. `Conflict` when the branch is taken or the parent
        does not exist."""
        statement = queries.update(
            tuple(values), versioned=expected_version is not None, keeps_parent=keeps_parent
        )
        try:
            row: Session | None = await self._fetchrow(
                statement,
                **values,
                id=session_id,
                updated_at=updated_at,
                expected_version=expected_version,
            )
        except IntegrityError as error:
            constraint = constraint_of(error)
            if constraint is None:
                raise
            raise Conflict(constraint) from error
        return row

    async def append_messages(
        self, session_id: UUID, messages: str, *, updated_at: datetime
    ) -> Session | None:
        """Append the elements of `messages`, a JSON array as text, to the row's messages and
        bump the version, in one statement; None when no row changed: there is no such row, or
        its messages are neither an array nor null (`messages_type` tells which)."""
        row: Session | None = await self._fetchrow(
            queries.APPEND_MESSAGES, messages=messages, id=session_id, updated_at=updated_at
        )
        return row

    async def messages_type(self, session_id: UUID) -> str | None:
        """The JSON type of the row's messages (`object`, `array`, `string`, `number`, `boolean`;
        a null counts as an array, as for `append_messages`); None when there is no such row."""
        row = await self._fetchrow(queries.MESSAGES_TYPE, id=session_id)
        if row is None:
            return None
        kind: str = row["type"]
        return self.dialect.json_types.get(kind, kind)

    async def orphan_children(self, parent: UUID, *, updated_at: datetime) -> list[Session]:
        """Every child of `parent` loses it, with a new version; the changed rows."""
        return await self._fetch(queries.ORPHAN, parent=parent, updated_at=updated_at)

    async def delete(self, session_id: UUID) -> None:
        await self.db.execute(queries.DELETE.bind(self.dialect, id=session_id))
