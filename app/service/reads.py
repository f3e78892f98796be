"""Every query that reads sessions. Rows are returned as read-only mappings straight from the
driver (no ORM object per row), with `messages` and `sbx_config` left as JSON text, so a reader
can pass them through unparsed."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from typing import Any
from uuid import UUID

from app.db import Database, Row
from app.errors import InvalidInput
from app.listing import (
    MAX_PAGE,
    NEWEST_FIRST,
    Page,
    SessionFilter,
    SessionOrder,
    decode_cursor,
    keyset_condition,
    page_size,
)

COLUMNS = (
    "id, repo, target_branch, title, branch, messages, inbox_status, sbx_config, parent, "
    "created_at, updated_at, version"
)
# A chain longer than this is treated as a cycle: no sane inbox nests that deep.
MAX_ANCESTRY = 1000


class SessionReads:
    """Reads: one session, many, pages, counts, a stream, children and ancestry."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, session_id: UUID) -> Row | None:
        return await self.db.fetchrow(f"SELECT {COLUMNS} FROM session WHERE id = {{}}", session_id)

    async def get_many(self, ids: Sequence[UUID]) -> dict[UUID, Row]:
        if not ids:
            return {}
        marks = ", ".join("{}" for _ in ids)
        rows = await self.db.fetch(f"SELECT {COLUMNS} FROM session WHERE id IN ({marks})", *ids)
        return {UUID(str(row["id"])): row for row in rows}

    async def list_page(
        self,
        filter: SessionFilter | None = None,
        order: SessionOrder = NEWEST_FIRST,
        *,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        max_page: int = MAX_PAGE,
    ) -> Page:
        """One page in keyset order: `first` rows after `after`, or `last` rows before
        `before`; at most `max_page` rows."""
        if first is not None and last is not None:
            raise InvalidInput("give first or last, not both", "last")
        backward = last is not None or (before is not None and first is None)
        limit = page_size(last if backward else first, "last" if backward else "first", max_page)
        conditions, args = (filter or SessionFilter()).where()
        for argument, value, is_after in (("after", after, True), ("before", before, False)):
            if value is not None:
                cursor = decode_cursor(value, order.field, argument)
                condition, extra = keyset_condition(
                    cursor, after=is_after, descending=order.descending
                )
                conditions.append(condition)
                args.extend(extra)
        # Walking backward reads the order reversed, then turns the page around.
        descending = order.descending != backward
        rows = await self.db.fetch(
            self._select(conditions, order.field.value, descending) + " LIMIT {}",
            *args,
            limit + 1,
        )
        more = len(rows) > limit
        rows = rows[:limit]
        if backward:
            rows.reverse()
            return Page(rows, has_next=before is not None, has_previous=more, order=order)
        return Page(rows, has_next=more, has_previous=after is not None, order=order)

    async def count(self, filter: SessionFilter | None = None) -> int:
        conditions, args = (filter or SessionFilter()).where()
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        row = await self.db.fetchrow(f"SELECT count(*) AS n FROM session{where}", *args)
        return int(row["n"]) if row else 0

    async def stream(self, filter: SessionFilter | None = None) -> AsyncGenerator[Row, None]:
        """Every matching session, newest first, from a server-side cursor."""
        conditions, args = (filter or SessionFilter()).where()
        async for row in self.db.stream(self._select(conditions, "created_at", True), args):
            yield row

    @staticmethod
    def _select(conditions: list[str], field: str, descending: bool) -> str:
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        direction = "DESC" if descending else "ASC"
        return f"SELECT {COLUMNS} FROM session{where} ORDER BY {field} {direction}, id {direction}"

    async def children_pages(
        self, parent_ids: Sequence[UUID], first: int | None = None, after: str | None = None
    ) -> dict[UUID, Page]:
        """The first page of children (newest first) of each parent, in one statement."""
        limit = page_size(first, "first")
        keyset = ""
        keyset_args: list[Any] = []
        if after is not None:
            condition, keyset_args = keyset_condition(
                decode_cursor(after, NEWEST_FIRST.field, "after"), after=True, descending=True
            )
            keyset = f" AND {condition}"
        if self.db.is_postgres:
            # Each parent's page read straight off the (parent, created_at, id) index, however
            # many children it has.
            rows = await self.db.fetch(
                "SELECT c.* FROM unnest({}::uuid[]) AS p(parent_id) CROSS JOIN LATERAL ("
                f"SELECT {COLUMNS} FROM session WHERE parent = p.parent_id{keyset} "
                "ORDER BY created_at DESC, id DESC LIMIT {}) AS c "
                "ORDER BY c.parent, c.created_at DESC, c.id DESC",
                list(parent_ids),
                *keyset_args,
                limit + 1,
            )
        else:
            marks = ", ".join("{}" for _ in parent_ids)
            rows = await self.db.fetch(
                f"SELECT * FROM (SELECT {COLUMNS}, row_number() OVER ("
                "PARTITION BY parent ORDER BY created_at DESC, id DESC) AS position "
                f"FROM session WHERE parent IN ({marks}){keyset}) AS ranked "
                "WHERE position <= {} ORDER BY parent, position",
                *parent_ids,
                *keyset_args,
                limit + 1,
            )
        grouped: dict[UUID, list[Row]] = {parent: [] for parent in parent_ids}
        for row in rows:
            grouped[UUID(str(row["parent"]))].append(row)
        return {
            parent: Page(
                children[:limit],
                has_next=len(children) > limit,
                has_previous=after is not None,
                order=NEWEST_FIRST,
            )
            for parent, children in grouped.items()
        }

    async def children_counts(self, parent_ids: Sequence[UUID]) -> dict[UUID, int]:
        marks = ", ".join("{}" for _ in parent_ids)
        rows = await self.db.fetch(
            f"SELECT parent, count(*) AS n FROM session WHERE parent IN ({marks}) GROUP BY parent",
            *parent_ids,
        )
        counts = dict.fromkeys(parent_ids, 0)
        counts.update({UUID(str(row["parent"])): int(row["n"]) for row in rows})
        return counts

    async def ancestors(self, session_id: UUID) -> list[Row]:
        """The chain of parents, nearest first, up to the root, in one recursive query."""
        return (await self.ancestors_many([session_id]))[session_id]

    async def ancestors_many(self, ids: Sequence[UUID]) -> dict[UUID, list[Row]]:
        """The chain of parents of each of `ids` (nearest first, up to the root; empty for a
        root or an unknown id), in one recursive query whatever their number."""
        chains: dict[UUID, list[Row]] = {session_id: [] for session_id in ids}
        if not chains:
            return chains
        marks = ", ".join("{}" for _ in chains)
        columns = ", ".join(f"s.{name.strip()}" for name in COLUMNS.split(","))
        # Each step carries the session it started from, so one walk serves every chain.
        rows = await self.db.fetch(
            "WITH RECURSIVE chain(origin, id, depth) AS ("
            f" SELECT id, parent, 1 FROM session WHERE id IN ({marks}) AND parent IS NOT NULL"
            " UNION ALL"
            " SELECT c.origin, s.parent, c.depth + 1 FROM session s JOIN chain c ON s.id = c.id"
            " WHERE s.parent IS NOT NULL AND c.depth < {}"
            f") SELECT c.origin AS origin, {columns} FROM chain c JOIN session s ON s.id = c.id"
            " ORDER BY c.depth",
            *chains,
            MAX_ANCESTRY,
        )
        for row in rows:
            chain = chains[UUID(str(row["origin"]))]
            chain.append({name: value for name, value in row.items() if name != "origin"})
        return chains
