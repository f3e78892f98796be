"""Queries: the event log's position, one session by id, and pages of sessions in keyset order."""

from __future__ import annotations

from functools import partial
from typing import Annotated
from uuid import UUID

import strawberry

from app import listing
from app.errors import InvalidInput
from app.events import EventLogUnavailable
from app.graphql.context import Info
from app.graphql.errors import bad_user_input, service_unavailable
from app.graphql.inputs import SessionFilter, SessionOrder, given
from app.graphql.types import Session, SessionConnection
from app.listing import DEFAULT_PAGE, MAX_PAGE

_PAGE = f"(default {DEFAULT_PAGE}, at most {MAX_PAGE})"

# The resolvers are module functions handed to `strawberry.field(resolver=...)`: the decorator
# form with a description is untyped for mypy.


async def _event_cursor(info: Info) -> str:
    try:
        return await info.context.service.event_cursor()
    except EventLogUnavailable:
        raise service_unavailable("the event log") from None


async def _session(
    info: Info, id: Annotated[UUID, strawberry.argument(description="Its id.")]
) -> Session | None:
    row = await info.context.loaders.session.load(id)
    return None if row is None else Session.from_row(row)


async def _sessions(
    info: Info,
    filter: Annotated[
        SessionFilter | None,
        strawberry.argument(description="Only the sessions that match; all without it."),
    ] = strawberry.UNSET,
    order_by: Annotated[
        SessionOrder | None,
        strawberry.argument(description="Newest first (by createdAt) without it."),
    ] = strawberry.UNSET,
    first: Annotated[
        int | None, strawberry.argument(description=f"Paging forward: how many {_PAGE}.")
    ] = strawberry.UNSET,
    after: Annotated[
        str | None, strawberry.argument(description="Paging forward: after this cursor.")
    ] = strawberry.UNSET,
    last: Annotated[
        int | None, strawberry.argument(description=f"Paging backward: how many {_PAGE}.")
    ] = strawberry.UNSET,
    before: Annotated[
        str | None, strawberry.argument(description="Paging backward: before this cursor.")
    ] = strawberry.UNSET,
) -> SessionConnection:
    service = info.context.service
    order = order_by.to_domain() if order_by else listing.NEWEST_FIRST
    try:
        criteria = filter.to_domain() if filter else None
        page = await service.list_page(
            criteria,
            order,
            first=given(first),
            after=given(after),
            last=given(last),
            before=given(before),
        )
    except InvalidInput as error:
        raise bad_user_input(error) from None
    return SessionConnection(page=page, count=partial(service.count, criteria))


@strawberry.type(description="What can be read.")
class Query:
    event_cursor: str = strawberry.field(
        resolver=_event_cursor,
        description="The event log's position now: query it before reading data, then "
        "subscribe to `sessionEvents` with `after:` it, and no change made after the read is "
        "missed.",
    )
    session: Session | None = strawberry.field(
        resolver=_session, description="The session with this id, or null when there is none."
    )
    sessions: SessionConnection = strawberry.field(
        resolver=_sessions,
        description="A page of sessions. Page forward with `first` and `after` (the last "
        "page's `endCursor`), or backward with `last` and `before`. A cursor is made for one "
        "`orderBy`; it stays valid however many sessions are created.",
    )
