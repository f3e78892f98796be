"""`Subscription.sessionEvents` and `Query.eventCursor` through `schema.subscribe`: what a
subscriber receives for changes made through either API, resuming from a position, a RESYNC when
the log no longer holds it, and refused arguments. The WebSocket wiring is in
`test_subscriptions_ws`."""

from __future__ import annotations

import asyncio
import gc
import itertools
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import strawberry
from graphql.execution.collect_fields import FieldDetails

from app.db import Database
from app.events import EventId, EventLogUnavailable, Events, MemoryLog
from app.graphql.context import Context
from app.naming import LocalNamer
from app.service import SessionService
from tests.conftest import SessionFactory
from tests.graphql.conftest import Result

DEADLINE_S = 10.0

EVENT = "eventId kind sessionId session { id title inboxStatus messages version }"
SUBSCRIBE = f"""subscription ($id: UUID, $filter: SessionFilter, $after: String) {{
  sessionEvents(id: $id, filter: $filter, after: $after) {{ {EVENT} }}
}}"""
UPDATE = """mutation ($id: UUID!, $input: UpdateSessionInput!) {
  updateSession(id: $id, input: $input) { session { version } userErrors { code } }
}"""
APPEND = """mutation ($id: UUID!, $messages: [JSON!]!) {
  appendMessages(id: $id, messages: $messages) { session { version } userErrors { code } }
}"""
CREATE = """mutation ($input: CreateSessionInput!) {
  createSession(input: $input) { session { id } userErrors { code } }
}"""
DELETE = "mutation ($id: UUID!) { deleteSession(id: $id) { deletedId userErrors { code } } }"

Event = dict[str, Any]


async def run(
    schema: strawberry.Schema, service: SessionService, query: str, **variables: Any
) -> Result:
    result = await schema.execute(query, variable_values=variables, context_value=Context(service))
    return Result(result.data, [dict(error.formatted) for error in result.errors or []])


class Received:
    """What one subscription has sent so far, as a client sees each result."""

    def __init__(self) -> None:
        self.results: list[Result] = []
        self._arrived = asyncio.Condition()

    async def collect(self, stream: AsyncIterator[Any]) -> None:
        async for result in stream:
            errors = [dict(error.formatted) for error in result.errors or []]
            self.results.append(Result(result.data, errors))
            async with self._arrived:
                self._arrived.notify_all()

    async def until(self, done: Callable[[list[Result]], bool]) -> list[Result]:
        """The results, once `done` says they are enough (TimeoutError past the deadline)."""
        async with asyncio.timeout(DEADLINE_S), self._arrived:
            await self._arrived.wait_for(lambda: done(self.results))
        return list(self.results)

    async def events(self, n: int) -> list[Event]:
        """The first `n` events, once there are that many."""
        results = await self.until(lambda results: len(results) >= n)
        return [result.ok()["sessionEvents"] for result in results[:n]]

    async def through(self, session_id: str, kind: str) -> list[Event]:
        """Every event up to and including the first `kind` event of `session_id`."""

        def reached(results: list[Result]) -> bool:
            return any(_is(result, session_id, kind) for result in results)

        results = await self.until(reached)
        end = next(i for i, result in enumerate(results) if _is(result, session_id, kind))
        return [result.ok()["sessionEvents"] for result in results[: end + 1]]


def _is(result: Result, session_id: str, kind: str) -> bool:
    event = (result.data or {}).get("sessionEvents") or {}
    return bool(event.get("sessionId") == session_id and event.get("kind") == kind)


@asynccontextmanager
async def subscribed(
    schema: strawberry.Schema, service: SessionService, query: str = SUBSCRIBE, **variables: Any
) -> AsyncIterator[Received]:
    """A subscription to `query` through the schema, as a connection's would run, collected
    while the block runs and closed after it."""
    stream = await schema.subscribe(
        query, variable_values=variables, context_value=Context(service)
    )
    received = Received()
    task = asyncio.create_task(received.collect(stream))
    try:
        yield received
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await stream.aclose()


async def cursor(schema: strawberry.Schema, service: SessionService) -> str:
    """`Query.eventCursor`, once the changes made so far are in the log: from it, a
    subscription sees only what the test does next."""
    async with asyncio.timeout(DEADLINE_S):
        await service.events.relay.caught_up()
    value: str = (await run(schema, service, "{ eventCursor }")).ok()["eventCursor"]
    return value


async def subscribers(events: Events, n: int) -> None:
    """Wait until the process's fan-out has `n` subscribers: a subscription without `after`
    sees only what is committed once it has registered."""
    async with asyncio.timeout(DEADLINE_S):
        # The fan-out announces no new subscriber: its count is all there is to watch.
        while len(events.fanout) != n:  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def update(
    schema: strawberry.Schema, service: SessionService, session_id: Any, **fields: Any
) -> int:
    """Changes the session through `updateSession`; its new version."""
    data = (await run(schema, service, UPDATE, id=str(session_id), input=fields)).ok()
    payload = data["updateSession"]
    assert payload["userErrors"] == []
    version: int = payload["session"]["version"]
    return version


def in_log_order(events: Sequence[Event]) -> bool:
    """Whether each event's position in the log is after the one before."""
    positions = [EventId.parse(event["eventId"]) for event in events]
    return all(a < b for a, b in itertools.pairwise(positions))


async def test_event_cursor_is_the_event_logs_position(
    schema: strawberry.Schema, service: SessionService, events: Events
) -> None:
    value = (await run(schema, service, "{ eventCursor }")).ok()["eventCursor"]
    assert EventId.parse(value) == await events.position()


class UnreachableLog(MemoryLog):
    async def position(self) -> EventId:
        raise EventLogUnavailable("connection refused")


async def test_event_cursor_when_the_log_cannot_be_reached_is_service_unavailable(
    schema: strawberry.Schema, db: Database
) -> None:
    service = SessionService(db, LocalNamer(), Events(db, UnreachableLog(10)))
    result = await run(schema, service, "{ eventCursor }")
    assert result.data is None
    assert result.error_codes() == ["SERVICE_UNAVAILABLE"]
    assert result.errors[0]["message"] == "the event log cannot be reached now; try again"


async def test_a_subscriber_by_id_sees_every_change_to_its_session_from_either_api_in_order(
    schema: strawberry.Schema,
    service: SessionService,
    client: httpx.AsyncClient,
    make_session: SessionFactory,
) -> None:
    watched, other = await make_session(), await make_session()
    id = str(watched["id"])
    async with subscribed(schema, service, id=id, after=await cursor(schema, service)) as sub:
        await update(schema, service, id, title="Through GraphQL")
        await update(schema, service, other["id"], title="Not watched")
        put = {"inbox_status": "pending", "messages": [{"role": "user", "content": "Put"}]}
        assert (await client.put(f"/sessions/{id}", json=put)).status_code == 200
        patch = {"title": "Through PATCH"}
        assert (await client.patch(f"/sessions/{id}", json=patch)).status_code == 200
        appended = await run(schema, service, APPEND, id=id, messages=[{"content": "More"}])
        assert appended.ok()["appendMessages"]["userErrors"] == []
        await update(schema, service, other["id"], title="Still not watched")
        assert (await run(schema, service, DELETE, id=id)).ok()["deleteSession"]["deletedId"]
        seen = await sub.through(id, "DELETED")

    assert [(e["kind"], e["session"]["version"]) for e in seen] == [
        ("UPDATED", 2),
        ("UPDATED", 3),
        ("UPDATED", 4),
        ("UPDATED", 5),
        # As the session was just before it was deleted, at the version the delete is.
        ("DELETED", 6),
    ]
    assert {e["sessionId"] for e in seen} == {id}
    assert {e["session"]["id"] for e in seen} == {id}
    assert [e["session"]["title"] for e in seen[:3]] == [
        "Through GraphQL",
        "Through GraphQL",
        "Through PATCH",
    ]
    assert seen[1]["session"]["inboxStatus"] == "PENDING"
    assert seen[3]["session"]["messages"] == [
        {"role": "user", "content": "Put"},
        {"content": "More"},
    ]
    assert in_log_order(seen)


async def test_each_event_reads_its_sessions_relations_as_they_are_when_it_is_sent(
    schema: strawberry.Schema, service: SessionService, make_session: SessionFactory
) -> None:
    parent = await make_session()
    child = await make_session(parent=parent["id"])
    query = """subscription ($id: UUID, $after: String) {
      sessionEvents(id: $id, after: $after) {
        session { version parent { title } ancestors { title } }
      }
    }"""
    after = await cursor(schema, service)
    async with subscribed(schema, service, query, id=str(child["id"]), after=after) as sub:
        await update(schema, service, child["id"], title="First change")
        await sub.events(1)
        await update(schema, service, parent["id"], title="Renamed parent")
        await update(schema, service, child["id"], title="Second change")
        first, second = await sub.events(2)

    assert first["session"]["parent"] == {"title": parent["title"]}
    assert first["session"]["ancestors"] == [{"title": parent["title"]}]
    assert second["session"]["parent"] == {"title": "Renamed parent"}
    assert second["session"]["ancestors"] == [{"title": "Renamed parent"}]


async def test_operations_sharing_a_connections_context_each_read_the_data_anew(
    schema: strawberry.Schema, service: SessionService, make_session: SessionFactory
) -> None:
    session = await make_session()
    # One context for every operation, as a WebSocket connection has.
    context = Context(service)
    query = "query ($id: UUID!) { session(id: $id) { title } }"
    variables = {"id": str(session["id"])}
    before = await schema.execute(query, variable_values=variables, context_value=context)
    await update(schema, service, session["id"], title="Renamed")
    after = await schema.execute(query, variable_values=variables, context_value=context)
    assert before.data == {"session": {"title": session["title"]}}
    assert after.data == {"session": {"title": "Renamed"}}


async def test_a_filter_subscriber_sees_the_sessions_that_match_and_one_leaving(
    schema: strawberry.Schema, service: SessionService, make_session: SessionFactory
) -> None:
    joining, unmatched, sentinel = await make_session(), await make_session(), await make_session()
    after = await cursor(schema, service)
    pending = {"inboxStatus": ["PENDING"]}
    async with subscribed(schema, service, filter=pending, after=after) as sub:
        await update(schema, service, joining["id"], inboxStatus="PENDING")
        await update(schema, service, unmatched["id"], title="Still active")
        await update(schema, service, joining["id"], title="Pending, renamed")
        await update(schema, service, joining["id"], inboxStatus="COMPLETED")
        await update(schema, service, joining["id"], title="Gone from the filter")
        await update(schema, service, unmatched["id"], inboxStatus="ARCHIVED")
        await update(schema, service, sentinel["id"], inboxStatus="PENDING")
        seen = await sub.through(str(sentinel["id"]), "UPDATED")

    assert [
        (e["sessionId"], e["session"]["version"], e["session"]["inboxStatus"]) for e in seen
    ] == [
        (str(joining["id"]), 2, "PENDING"),
        (str(joining["id"]), 3, "PENDING"),
        # Matched before the change: the subscriber sees it leave.
        (str(joining["id"]), 4, "COMPLETED"),
        (str(sentinel["id"]), 2, "PENDING"),
    ]


async def test_a_subscriber_by_id_and_filter_sees_that_session_while_the_filter_matches(
    schema: strawberry.Schema, service: SessionService, make_session: SessionFactory
) -> None:
    watched, other = await make_session(), await make_session()
    after = await cursor(schema, service)
    pending = {"inboxStatus": ["PENDING"]}
    id = str(watched["id"])
    async with subscribed(schema, service, id=id, filter=pending, after=after) as sub:
        await update(schema, service, id, title="Active still")
        await update(schema, service, other["id"], inboxStatus="PENDING")
        await update(schema, service, id, inboxStatus="PENDING")
        await update(schema, service, id, inboxStatus="ARCHIVED")
        await update(schema, service, id, title="Archived, renamed")
        await update(schema, service, id, inboxStatus="PENDING")
        seen = await sub.events(3)

    assert [(e["session"]["version"], e["session"]["inboxStatus"]) for e in seen] == [
        (3, "PENDING"),
        (4, "ARCHIVED"),
        (6, "PENDING"),
    ]


async def test_a_subscriber_without_arguments_sees_sessions_created_from_then_on(
    schema: strawberry.Schema, service: SessionService, events: Events
) -> None:
    async with subscribed(schema, service) as sub:
        await subscribers(events, 1)
        created = []
        for repo in ("acme/one", "acme/two"):
            input = {"repo": repo, "targetBranch": "main", "messages": "Something to do"}
            result = await run(schema, service, CREATE, input=input)
            created.append(result.ok()["createSession"]["session"]["id"])
        seen = await sub.through(created[1], "CREATED")

    assert [(e["kind"], e["sessionId"], e["session"]["version"]) for e in seen] == [
        ("CREATED", created[0], 1),
        ("CREATED", created[1], 1),
    ]
    assert in_log_order(seen)


async def test_a_closed_subscription_leaves_the_fanout(
    schema: strawberry.Schema, service: SessionService, events: Events
) -> None:
    async with subscribed(schema, service, after=await cursor(schema, service)):
        await subscribers(events, 1)
    assert len(events.fanout) == 0


async def test_a_subscriber_from_a_position_gets_what_it_missed_then_live_events(
    schema: strawberry.Schema, service: SessionService, make_session: SessionFactory
) -> None:
    session = await make_session()
    start = await cursor(schema, service)
    versions = [await update(schema, service, session["id"], title=f"Change {n}") for n in range(5)]

    async with subscribed(schema, service, after=start) as sub:
        missed = await sub.events(5)
    assert [e["session"]["version"] for e in missed] == versions
    assert [e["session"]["title"] for e in missed] == [f"Change {n}" for n in range(5)]
    assert in_log_order(missed)

    async with subscribed(schema, service, after=missed[2]["eventId"]) as sub:
        assert await sub.events(2) == missed[3:]
        sixth = await update(schema, service, session["id"], title="Change 5")
        seen = await sub.events(3)
    assert seen[:2] == missed[3:]
    assert seen[2]["session"]["version"] == sixth
    assert in_log_order(seen)


async def test_a_position_the_log_no_longer_holds_gives_a_resync_then_live_events(
    schema: strawberry.Schema, db: Database
) -> None:
    events = Events(db, MemoryLog(10))
    events.start()
    try:
        service = SessionService(db, LocalNamer(), events)
        input = {"repo": "acme/app", "targetBranch": "main", "messages": "Busy session"}
        created = await run(schema, service, CREATE, input=input)
        id = created.ok()["createSession"]["session"]["id"]
        start = await cursor(schema, service)
        for n in range(50):
            await update(schema, service, id, title=f"Change {n}")
        async with asyncio.timeout(DEADLINE_S):
            await events.relay.caught_up()

        async with subscribed(schema, service, after=start) as sub:
            (resync,) = await sub.events(1)
            later = await update(schema, service, id, title="After the resync")
            _, live = await sub.events(2)
    finally:
        await events.stop()

    assert resync["kind"] == "RESYNC"
    assert resync["sessionId"] is None
    assert resync["session"] is None
    assert EventId.parse(resync["eventId"]) > EventId.parse(start)
    assert live["kind"] == "UPDATED"
    assert live["session"]["version"] == later
    assert in_log_order([resync, live])


@pytest.mark.parametrize("after", ["nope", "1-2-3", "-1-0", ""])
async def test_a_malformed_after_is_bad_user_input(
    schema: strawberry.Schema, service: SessionService, events: Events, after: str
) -> None:
    async with subscribed(schema, service, after=after) as sub:
        (result,) = await sub.until(lambda results: len(results) >= 1)
    assert result.data is None
    assert result.error_codes() == ["BAD_USER_INPUT"]
    assert result.errors[0]["message"] == "after is not an event id"
    assert len(events.fanout) == 0


async def test_a_filter_no_session_can_match_is_bad_user_input(
    schema: strawberry.Schema, service: SessionService
) -> None:
    async with subscribed(schema, service, filter={"repo": "a\x00b"}) as sub:
        (result,) = await sub.until(lambda results: len(results) >= 1)
    assert result.error_codes() == ["BAD_USER_INPUT"]


def field_details() -> int:
    """How many of graphql-core's collected-field records are alive."""
    gc.collect()
    return sum(1 for obj in gc.get_objects() if type(obj) is FieldDetails)


async def test_a_long_subscription_keeps_no_memory_per_event(
    schema: strawberry.Schema, service: SessionService, make_session: SessionFactory
) -> None:
    """Each event's execution leaves nothing behind in the subscription (graphql-core 3.3.2
    kept every event's collected fields in a cache shared by all of them)."""
    row = await make_session()
    query = (
        "subscription ($id: UUID, $after: String) { sessionEvents(id: $id, after: $after) "
        "{ eventId kind session { id title version parent { id } } } }"
    )
    after = await cursor(schema, service)
    async with subscribed(schema, service, query, id=str(row["id"]), after=after) as sub:
        for n in range(10):
            await update(schema, service, row["id"], title=f"Warm-up {n}")
        await sub.events(10)
        before = field_details()
        for n in range(40):
            await update(schema, service, row["id"], title=f"Change {n}")
        await sub.events(50)
        assert field_details() <= before
