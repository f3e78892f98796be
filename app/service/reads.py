"""Every read of sessions, and the rules of paging: cursors, page sizes, directions; and the
reads of what changes, as events from a position in the event log. Rows come
from the store as the driver gives them (no ORM object per row), with `messages` and
`sbx_config` left as JSON text, so a reader can pass them through unparsed."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from uuid import UUID

from app.db import Database
from app.errors import InvalidInput
from app.events import Event, EventId, Events
from app.listing import (
    MAX_PAGE,
    NEWEST_FIRST,
    Page,
    SessionFilter,
    SessionOrder,
    decode_cursor,
    page_size,
)
from app.listing import paging as listing_paging
from app.model import Session
from app.store import SessionStore

# A chain longer than this is treated as a cycle: no sane inbox nests that deep.
MAX_ANCESTRY = 1000


class SessionReads:
    """Reads: one session, many, pages, counts, a stream, children and ancestry."""

    def __init__(self, db: Database, events: Events) -> None:
        # The handle is kept for whoever hands it on; every statement goes through the store.
        self.db = db
        self.store = SessionStore(db)
        self.events = events

    async def event_cursor(self) -> str:
        """The event log's position now: read it before reading sessions, then watch from it,
        and no change after the read is missed. `EventLogUnavailable` when the log cannot be
        reached."""
        return str(await self.events.position())

    def watch(
        self,
        *,
        session_id: UUID | None = None,
        filter: SessionFilter | None = None,
        after: str | None = None,
    ) -> AsyncGenerator[Event, None]:
        """The events of one session (`session_id`), of the sessions that match `filter`
        before or after their change, or of all; with `after` (an event's id, or an
        `event_cursor`), every one after that position first. RESYNC events come whatever the
        match: the client re-reads what it shows, then goes on."""
        position = None
        if after is not None:
            try:
                position = EventId.parse(after)
            except ValueError:
                raise InvalidInput("after is not an event id", "after") from None

        def match(event: Event) -> bool:
            if session_id is not None and event.session_id != session_id:
                return False
            if filter is None:
                return True
            session, previous = event.session, event.previous
            return (session is not None and filter.matches(session)) or (
                previous is not None and filter.matches(previous)
            )

        return self.events.subscribe(position, match)

    async def get(self, session_id: UUID) -> Session | None:
        return await self.store.get(session_id)

    async def get_many(self, ids: Sequence[UUID]) -> dict[UUID, Session]:
        return await self.store.get_many(ids)

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
        paging = listing_paging(
            order, first=first, after=after, last=last, before=before, max_page=max_page
        )
        backward, limit = paging.backward, paging.limit
        # Walking backward reads the order reversed, then turns the page around; one row more
        # than the page tells whether there is another.
        rows = await self.store.page(
            filter or SessionFilter(),
            order,
            after=paging.after,
            before=paging.before,
            backward=backward,
            limit=limit + 1,
        )
        more = len(rows) > limit
        rows = rows[:limit]
        if backward:
            rows.reverse()
            return Page(rows, has_next=before is not None, has_previous=more, order=order)
        return Page(rows, has_next=more, has_previous=after is not None, order=order)

    async def count(self, filter: SessionFilter | None = None) -> int:
        return await self.store.count(filter or SessionFilter())

    def stream(self, filter: SessionFilter | None = None) -> AsyncGenerator[Session, None]:
        """Every matching session, newest first, from a server-side cursor. Closing it closes
        the cursor and frees its stream slot at once. (The store's generator itself, not one
        wrapped around it: a layer per row costs on a stream of a million.)"""
        return self.store.stream(filter or SessionFilter(), NEWEST_FIRST)

    async def children_pages(
        self, parent_ids: Sequence[UUID], first: int | None = None, after: str | None = None
    ) -> dict[UUID, Page]:
        """The first page of children (newest first) of each parent, in one statement."""
        limit = page_size(first, "first")
        cursor = None if after is None else decode_cursor(after, NEWEST_FIRST.field, "after")
        grouped = await self.store.children(parent_ids, after=cursor, limit=limit + 1)
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
        return await self.store.children_counts(parent_ids)

    async def ancestors(self, session_id: UUID) -> list[Session]:
        """The chain of parents, nearest first, up to the root, in one recursive query."""
        return (await self.ancestors_many([session_id]))[session_id]

    async def ancestors_many(self, ids: Sequence[UUID]) -> dict[UUID, list[Session]]:
        """The chain of parents of each of `ids` (nearest first, up to the root; empty for a
        root or an unknown id), in one recursive query whatever their number."""
        return await self.store.ancestors(ids, MAX_ANCESTRY)
