"""The subscription: the changes to sessions as they are committed, from a position in the event
log when asked, each rendered with the data as it is when its event is sent."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Annotated
from uuid import UUID

import strawberry

from app.errors import InvalidInput
from app.events import Event, EventKind
from app.graphql.context import Context, Info
from app.graphql.enums import domain_enum
from app.graphql.errors import bad_user_input
from app.graphql.inputs import SessionFilter, given
from app.graphql.types import Session

# The domain's enum, by the name the schema gives it.
SessionEventKind = EventKind

domain_enum(
    SessionEventKind,
    name="SessionEventKind",
    description="What an event tells.",
    values={
        SessionEventKind.CREATED: "The session was created.",
        SessionEventKind.UPDATED: "The session changed, through either API.",
        SessionEventKind.DELETED: "The session was deleted.",
        SessionEventKind.RESYNC: "The events after the requested position are no longer all "
        "kept: re-query, then go on.",
    },
)


@strawberry.type(description="A change to a session, at its position in the event log.")
class SessionEvent:
    event_id: str = strawberry.field(
        description="This event's position in the event log, usable as `after`."
    )
    kind: SessionEventKind = strawberry.field(description="What happened.")
    session_id: UUID | None = strawberry.field(
        description="The id of the session that changed; null for RESYNC."
    )
    session: Session | None = strawberry.field(
        description="The session as it is after the change; for DELETED, as it was just "
        "before, at the next version (a delete is a change); null for RESYNC. Its relations "
        "(`parent`, `children`, `ancestors`) are read when the event is sent."
    )

    @classmethod
    def from_event(cls, event: Event) -> SessionEvent:
        row = event.session
        return cls(
            event_id=str(event.id),
            kind=event.kind,
            session_id=event.session_id,
            session=None if row is None else Session.from_row(row),
        )


# The resolver is a plain function, not a generator, so that a refused argument is an error
# of the subscription itself, before any event, rather than of its stream.


def _session_events(
    info: Info,
    id: Annotated[
        UUID | None, strawberry.argument(description="Only the events of this session.")
    ] = strawberry.UNSET,
    filter: Annotated[
        SessionFilter | None,
        strawberry.argument(
            description="Only the events of sessions that match, before or after the change."
        ),
    ] = strawberry.UNSET,
    after: Annotated[
        str | None,
        strawberry.argument(
            description="An `eventId`, or `Query.eventCursor`: first every matching event "
            "after this position. Without it, only the events from now on."
        ),
    ] = strawberry.UNSET,
) -> AsyncGenerator[SessionEvent, None]:
    try:
        criteria = filter.to_domain() if filter else None
        events = info.context.service.watch(
            session_id=given(id), filter=criteria, after=given(after)
        )
    except InvalidInput as error:
        raise bad_user_input(error) from None
    return _rendered(events, info.context)


async def _rendered(
    events: AsyncGenerator[Event, None], context: Context
) -> AsyncGenerator[SessionEvent, None]:
    async with aclosing(events):
        async for event in events:
            # The event's relations are read when it is sent, not from what a loader of the
            # connection read for an earlier event.
            context.renew_loaders()
            yield SessionEvent.from_event(event)


@strawberry.type(description="What can be watched.")
class Subscription:
    session_events: AsyncGenerator[SessionEvent, None] = strawberry.subscription(
        resolver=_session_events,
        description="Every change to one session (`id`), to any session matching `filter`, or, "
        "with neither, to any session; from every server instance. Given both `id` and "
        "`filter`, the changes to that session that the filter matches. A session matches "
        "`filter` when it does before or after its change, so a session leaving the filter is "
        "seen leaving. With `after` (an `eventId`, or `Query.eventCursor`), first every "
        "matching event after that position, in order, then live ones: a client that "
        "reconnects with the last `eventId` it saw misses nothing; when the log no longer "
        "holds them all, a RESYNC comes first. Delivery is at least once: drop duplicates by "
        "(`sessionId`, `session.version`). A malformed `after` is a BAD_USER_INPUT error.",
    )
