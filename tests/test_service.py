"""The service's rules, on both engines."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import asyncpg
import orjson
import pytest

from app.config import Settings
from app.db import Database, make_engine
from app.errors import (
    BranchTaken,
    IdempotencyMismatch,
    InvalidInput,
    NotAList,
    NotFound,
    ParentCycle,
    ParentNotFound,
    VersionConflict,
)
from app.events import EventKind, EventLogUnavailable, Events, MemoryLog
from app.events.log import Record
from app.listing import SessionFilter, SessionOrder, SortField
from app.model import NewSession, SessionChanges
from app.naming import LocalNamer, is_valid_branch
from app.service import PARENT_LOCK, Created, SessionService
from app.tables import InboxStatus
from tests.conftest import SessionFactory, idle_events, until_a_lock_is_waited_for
from tests.watching import watching


async def test_create_sets_defaults_and_names(service: SessionService) -> None:
    created = await service.create(
        NewSession(
            repo="acme/app", target_branch="main", messages={"content": "Fix the login redirect"}
        )
    )
    row = created.session
    assert not created.replayed
    assert row["inbox_status"] == "active"
    assert row["sbx_config"] is None
    assert row["parent"] is None
    assert row["version"] == 1
    assert row["title"] == "Fix the login redirect"
    assert row["branch"] == "fix-the-login-redirect"
    assert orjson.loads(row["messages"]) == {"content": "Fix the login redirect"}
    assert row["created_at"] == row["updated_at"]
    assert uuid.UUID(str(row["id"])).version == 4


async def test_same_names_in_one_repo_get_distinct_valid_branches(
    make_session: SessionFactory,
) -> None:
    rows = [await make_session(messages={"content": "Same task"}) for _ in range(5)]
    branches = {row["branch"] for row in rows}
    assert len(branches) == 5
    assert all(is_valid_branch(branch) for branch in branches)


async def test_concurrent_creations_with_one_name_all_succeed(service: SessionService) -> None:
    results = await asyncio.gather(
        *(
            service.create(
                NewSession(repo="acme/app", target_branch="main", messages=["Same task"])
            )
            for _ in range(10)
        )
    )
    assert len({result.session["branch"] for result in results}) == 10


@pytest.mark.parametrize("key", ["", "   ", "k\x00", "k" * 256])
async def test_create_refuses_a_bad_idempotency_key(service: SessionService, key: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        await service.create(NewSession(repo="acme/app", target_branch="main"), idempotency_key=key)
    assert refused.value.field == "idempotency_key"
    assert await service.count() == 0


@pytest.mark.parametrize(
    "messages", ["a string", "", 0, 2.5, True, False, None, [], {}, [1, "two", None]]
)
async def test_create_stores_messages_of_any_json_value(
    service: SessionService, messages: object
) -> None:
    created = await service.create(
        NewSession(repo="acme/app", target_branch="main", messages=messages)
    )
    stored = await service.get(created.session["id"])
    assert stored is not None
    for row in (created.session, stored):
        assert (None if row["messages"] is None else orjson.loads(row["messages"])) == messages


async def test_create_with_unknown_parent_is_refused(service: SessionService) -> None:
    with pytest.raises(ParentNotFound):
        await service.create(NewSession(repo="r", target_branch="main", parent=uuid.uuid4()))
    assert await service.count() == 0


async def test_idempotent_retry_returns_first_session(service: SessionService) -> None:
    first = await service.create(
        NewSession(repo="r", target_branch="main", messages=["hello"]), idempotency_key="k1"
    )
    again = await service.create(
        NewSession(repo="r", target_branch="main", messages=["hello"]), idempotency_key="k1"
    )
    assert again.replayed
    assert again.session["id"] == first.session["id"]
    with pytest.raises(IdempotencyMismatch):
        await service.create(
            NewSession(repo="r", target_branch="main", messages=["other"]), idempotency_key="k1"
        )
    assert await service.count() == 1


async def test_concurrent_idempotent_creations_make_one_session(service: SessionService) -> None:
    results = await asyncio.gather(
        *(
            service.create(
                NewSession(repo="r", target_branch="main", messages=["x"]), idempotency_key="k"
            )
            for _ in range(10)
        )
    )
    assert len({result.session["id"] for result in results}) == 1
    assert sum(not result.replayed for result in results) == 1
    assert await service.count() == 1


async def test_update_bumps_version_and_checks_expected_version(
    service: SessionService, make_session: SessionFactory
) -> None:
    row = await make_session()
    updated = await service.update(
        row["id"],
        SessionChanges(inbox_status=InboxStatus.COMPLETED, title="Renamed"),
        expected_version=1,
    )
    assert updated["version"] == 2
    assert updated["inbox_status"] == "completed"
    assert updated["title"] == "Renamed"
    assert updated["updated_at"] > row["updated_at"]
    with pytest.raises(VersionConflict):
        await service.update(row["id"], SessionChanges(title="Stale"), expected_version=1)
    stored = await service.get(row["id"])
    assert stored is not None
    assert stored["title"] == "Renamed"
    assert stored["version"] == 2


async def test_update_of_missing_session_is_not_found(service: SessionService) -> None:
    with pytest.raises(NotFound):
        await service.update(uuid.uuid4(), SessionChanges(title="x"))


@pytest.mark.parametrize("field", ["repo", "target_branch", "title", "branch", "inbox_status"])
async def test_update_refuses_null_for_a_field_that_cannot_be_null(
    service: SessionService, make_session: SessionFactory, field: str
) -> None:
    """Decoded commands refuse such a null already (tests/test_model.py); the service keeps
    the rule for a command built by hand, which msgspec does not type-check."""
    row = await make_session()
    changes = SessionChanges(**{field: None})  # type: ignore[arg-type]
    with pytest.raises(InvalidInput) as refused:
        await service.update(row["id"], changes)
    assert refused.value.field == field
    stored = await service.get(row["id"])
    assert stored is not None
    assert stored["version"] == 1


@pytest.mark.parametrize("field", ["messages", "sbx_config", "parent"])
async def test_update_clears_a_nullable_field_with_null(
    service: SessionService, make_session: SessionFactory, field: str
) -> None:
    parent = await make_session()
    row = await make_session(parent=parent["id"])
    await service.update(row["id"], SessionChanges(sbx_config={"cpu": 2}))
    cleared = await service.update(row["id"], SessionChanges.convert({field: None}))
    assert cleared[field] is None  # type: ignore[literal-required]
    assert cleared["version"] == 3


async def test_update_stores_messages_of_any_json_value(
    service: SessionService, make_session: SessionFactory
) -> None:
    row = await make_session()
    values: list[object] = ["a string", 7, False, [], {"a": [1]}]
    for messages in values:
        updated = await service.update(row["id"], SessionChanges(messages=messages))
        assert orjson.loads(updated["messages"]) == messages


async def test_branch_taken_in_same_repo(
    service: SessionService, make_session: SessionFactory
) -> None:
    first = await make_session(repo="r")
    second = await make_session(repo="r")
    other_repo = await make_session(repo="other")
    with pytest.raises(BranchTaken):
        await service.update(second["id"], SessionChanges(branch=first["branch"]))
    moved = await service.update(other_repo["id"], SessionChanges(branch=first["branch"]))
    assert moved["branch"] == first["branch"]


async def test_merge_patch_of_json_fields(
    service: SessionService, make_session: SessionFactory
) -> None:
    row = await make_session(messages={"a": 1, "b": {"c": 2}})
    await service.update(row["id"], SessionChanges(sbx_config={"cpu": 2, "env": {"A": "1"}}))
    merged = await service.update(
        row["id"],
        SessionChanges(messages={"b": {"d": 3}, "a": None}, sbx_config={"env": {"B": "2"}}),
        merge_json=True,
    )
    assert orjson.loads(merged["messages"]) == {"b": {"c": 2, "d": 3}}
    assert orjson.loads(merged["sbx_config"]) == {"cpu": 2, "env": {"A": "1", "B": "2"}}


async def test_parent_rules(service: SessionService, make_session: SessionFactory) -> None:
    a = await make_session()
    b = await make_session(parent=a["id"])
    c = await make_session(parent=b["id"])
    with pytest.raises(ParentCycle):
        await service.update(a["id"], SessionChanges(parent=c["id"]))
    with pytest.raises(ParentCycle):
        await service.update(a["id"], SessionChanges(parent=a["id"]))
    with pytest.raises(ParentNotFound):
        await service.update(a["id"], SessionChanges(parent=uuid.uuid4()))
    stored = await service.get(a["id"])
    assert stored is not None
    assert stored["parent"] is None
    assert stored["version"] == 1
    chain = await service.ancestors(c["id"])
    assert [row["id"] for row in chain] == [b["id"], a["id"]]


async def test_concurrent_opposite_parent_changes_never_make_a_cycle(
    service: SessionService, make_session: SessionFactory
) -> None:
    for _ in range(5):
        a = await make_session()
        b = await make_session()
        results = await asyncio.gather(
            service.update(a["id"], SessionChanges(parent=b["id"])),
            service.update(b["id"], SessionChanges(parent=a["id"])),
            return_exceptions=True,
        )
        assert sum(isinstance(result, ParentCycle) for result in results) == 1
        stored_a, stored_b = await service.get(a["id"]), await service.get(b["id"])
        assert stored_a is not None
        assert stored_b is not None
        assert not (stored_a["parent"] == b["id"] and stored_b["parent"] == a["id"])


async def test_delete_orphans_children(
    service: SessionService, make_session: SessionFactory
) -> None:
    parent = await make_session()
    children = [await make_session(parent=parent["id"]) for _ in range(3)]
    deleted = await service.delete(parent["id"])
    assert deleted["id"] == parent["id"]
    assert await service.get(parent["id"]) is None
    for child in children:
        stored = await service.get(child["id"])
        assert stored is not None
        assert stored["parent"] is None
        assert stored["version"] == 2
    with pytest.raises(NotFound):
        await service.delete(parent["id"])


async def test_events_follow_committed_changes_only(
    service: SessionService, make_session: SessionFactory
) -> None:
    async with watching(service) as watcher:
        row = await make_session()
        await service.update(row["id"], SessionChanges(title="New title"))
        with pytest.raises(VersionConflict):
            await service.update(row["id"], SessionChanges(title="Stale"), expected_version=1)
        with pytest.raises(ParentCycle):
            await service.update(row["id"], SessionChanges(parent=row["id"]))
        await service.delete(row["id"])
        sentinel = await make_session()
        seen = await watcher.through(sentinel["id"])
    assert [(event.kind, event.session_id) for event in seen] == [
        (EventKind.CREATED, row["id"]),
        (EventKind.UPDATED, row["id"]),
        (EventKind.DELETED, row["id"]),
        (EventKind.CREATED, sentinel["id"]),
    ]
    assert seen[0].session == row
    assert [event.session["version"] for event in seen[:3]] == [1, 2, 3]  # type: ignore[index]
    assert seen[2].session["title"] == "New title"  # type: ignore[index]
    assert [e.id for e in seen] == sorted({e.id for e in seen})


class DownLog(MemoryLog):
    """An in-process log that refuses appends while `down` is set."""

    def __init__(self, retention: int) -> None:
        super().__init__(retention)
        self.down = True
        self.refused = asyncio.Event()

    async def append(self, records: Sequence[Record]) -> None:
        if self.down:
            self.refused.set()
            raise EventLogUnavailable("down")
        await super().append(records)


async def test_an_unreachable_event_log_delays_events_and_loses_no_write(db: Database) -> None:
    events_log = DownLog(100)
    events = Events(db, events_log)
    events.start()
    try:
        service = SessionService(db, LocalNamer(), events)
        async with watching(service) as watcher:
            created = await service.create(NewSession(repo="r", target_branch="main"))
            assert await service.get(created.session["id"]) is not None
            async with asyncio.timeout(10):
                await events_log.refused.wait()
            events_log.down = False
            [event] = await watcher.count(1)
        assert (event.kind, event.session) == (EventKind.CREATED, dict(created.session))
    finally:
        await events.stop()


async def test_filters(service: SessionService, make_session: SessionFactory) -> None:
    root = await make_session(repo="a", messages=["Deploy Pipeline"])
    child = await make_session(repo="a", parent=root["id"], messages=["Fix 100% CPU"])
    other = await make_session(repo="b", messages=["Write docs"])
    await service.update(other["id"], SessionChanges(inbox_status=InboxStatus.ARCHIVED))

    async def ids(**criteria: object) -> set[object]:
        page = await service.list_page(SessionFilter(**criteria))  # type: ignore[arg-type]
        return {row["id"] for row in page.rows}

    assert await ids(repo="a") == {root["id"], child["id"]}
    assert await ids(inbox_status=(InboxStatus.ARCHIVED,)) == {other["id"]}
    assert await ids(inbox_status=(InboxStatus.ACTIVE, InboxStatus.ARCHIVED)) == {
        root["id"],
        child["id"],
        other["id"],
    }
    assert await ids(parent_id=root["id"]) == {child["id"]}
    assert await ids(is_root=True) == {root["id"], other["id"]}
    assert await ids(is_root=False) == {child["id"]}
    assert await ids(title_contains="pipeline") == {root["id"]}
    assert await ids(title_contains="100%") == {child["id"]}
    assert await ids(title_contains="_") == set()
    assert await ids(created_after=child["created_at"]) == {other["id"]}
    assert await ids(created_before=child["created_at"]) == {root["id"]}
    assert await service.count(SessionFilter(repo="a")) == 2


async def test_keyset_pages_cover_everything_once(
    service: SessionService, make_session: SessionFactory
) -> None:
    made = [await make_session(messages=[f"Task {i:02d}"]) for i in range(23)]
    for order in (
        SessionOrder(),
        SessionOrder(SortField.TITLE, descending=False),
        SessionOrder(SortField.UPDATED_AT, descending=True),
    ):
        seen: list[object] = []
        after = None
        while True:
            page = await service.list_page(order=order, first=5, after=after)
            seen.extend(row["id"] for row in page.rows)
            if not page.has_next:
                break
            after = page.cursor(page.rows[-1])
        assert sorted(map(str, seen)) == sorted(str(row["id"]) for row in made)
        assert len(seen) == len(made)


async def test_bad_cursors_are_refused(
    service: SessionService, make_session: SessionFactory
) -> None:
    await make_session()
    page = await service.list_page(first=1)
    cursor = page.cursor(page.rows[0])
    with pytest.raises(InvalidInput):
        await service.list_page(first=1, after="not-a-cursor")
    with pytest.raises(InvalidInput):
        await service.list_page(order=SessionOrder(SortField.TITLE), first=1, after=cursor)
    with pytest.raises(InvalidInput):
        await service.list_page(first=101)


async def test_stream_yields_every_row_newest_first(
    service: SessionService, make_session: SessionFactory
) -> None:
    made = [await make_session() for _ in range(7)]
    streamed = [row["id"] async for row in service.stream()]
    assert streamed == [row["id"] for row in reversed(made)]


async def test_stalled_streams_do_not_take_the_pool(
    settings: Settings, make_session: SessionFactory
) -> None:
    """Readers that stop reading hold connections of their own, never the pool's."""
    await make_session()
    db = Database(make_engine(settings), pool_size=2)
    await db.open()
    service = SessionService(db, LocalNamer(), idle_events(db))
    streams = [service.stream() for _ in range(4)]
    try:
        for stream in streams:
            assert await anext(stream) is not None
        page = await asyncio.wait_for(service.list_page(first=1), timeout=10)
        assert len(page.rows) == 1
    finally:
        for stream in streams:
            await stream.aclose()
        await db.close()


async def test_update_without_fields_changes_nothing(
    service: SessionService, make_session: SessionFactory
) -> None:
    row = await make_session()
    same = await service.update(row["id"], SessionChanges(), expected_version=1)
    assert same["version"] == 1
    assert same["updated_at"] == row["updated_at"]
    with pytest.raises(VersionConflict):
        await service.update(row["id"], SessionChanges(), expected_version=2)
    with pytest.raises(NotFound):
        await service.update(uuid.uuid4(), SessionChanges())


async def test_children_created_while_their_parent_is_deleted_are_never_silently_orphaned(
    service: SessionService, make_session: SessionFactory
) -> None:
    """Each child is refused, or made first and then orphaned by the delete (a change: its
    version goes up), never left by the foreign key with a null parent and version 1."""
    for _ in range(5):
        parent = await make_session()
        results = await asyncio.gather(
            *(
                service.create(NewSession(repo="r", target_branch="main", parent=parent["id"]))
                for _ in range(8)
            ),
            service.delete(parent["id"]),
            return_exceptions=True,
        )
        for result in results[:-1]:
            if isinstance(result, ParentNotFound):
                continue
            assert isinstance(result, Created), result
            stored = await service.get(result.session["id"])
            assert stored is not None
            assert stored["parent"] is None
            assert stored["version"] == 2


async def test_only_a_move_to_another_parent_waits_for_the_parent_lock(
    db: Database, service: SessionService, make_session: SessionFactory, settings: Settings
) -> None:
    """PUT sends the parent every time; keeping it must not queue behind every parent change
    and delete in the system."""
    if not db.is_postgres:
        pytest.skip("SQLite serializes every writer; the parent lock is PostgreSQL's")
    parent = await make_session()
    other = await make_session()
    child = await make_session(parent=parent["id"])
    holder = await asyncpg.connect(settings.database_url)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", PARENT_LOCK)
        kept = await asyncio.wait_for(
            service.update(child["id"], SessionChanges(parent=parent["id"], title="Kept")),
            timeout=10,
        )
        assert kept["title"] == "Kept"
        move = asyncio.create_task(service.update(child["id"], SessionChanges(parent=other["id"])))
        await until_a_lock_is_waited_for(holder, move, "the move")
        await holder.execute("SELECT pg_advisory_unlock($1)", PARENT_LOCK)
        moved = await asyncio.wait_for(move, timeout=10)
    finally:
        await holder.close()
    assert moved["parent"] == other["id"]


# Appending to messages -------------------------------------------------------------------------


async def stored(service: SessionService, session_id: uuid.UUID) -> dict[str, object]:
    """The session as stored now, as a dict (whatever row type the driver gives)."""
    row = await service.get(session_id)
    assert row is not None
    return dict(row)


def nested(levels: int) -> object:
    """A JSON value `levels` lists deep: `[[0]]` is 2."""
    value: object = 0
    for _ in range(levels):
        value = [value]
    return value


async def test_appending_to_null_messages_starts_the_list(
    service: SessionService, make_session: SessionFactory
) -> None:
    row = await make_session(messages=None)

    appended = await service.append_messages(row["id"], [{"role": "user", "content": "Hi"}])

    assert orjson.loads(appended["messages"]) == [{"role": "user", "content": "Hi"}]
    assert appended["version"] == 2
    assert appended["updated_at"] > row["updated_at"]
    assert await stored(service, row["id"]) == dict(appended)


async def test_appending_adds_each_message_at_the_end_in_order(
    service: SessionService, make_session: SessionFactory
) -> None:
    row = await make_session(messages=["one"])
    more = ["two", {"n": 3, "nested": {"a": [1, 2]}}, [4], 5.5, True, None, 'é\u2028"\\', 2**62]

    appended = await service.append_messages(row["id"], more)

    assert orjson.loads(appended["messages"]) == ["one", *more]
    again = await service.append_messages(row["id"], [{"last": True}])
    assert orjson.loads(again["messages"]) == ["one", *more, {"last": True}]
    assert again["version"] == 3


async def test_appending_to_an_empty_list(
    service: SessionService, make_session: SessionFactory
) -> None:
    row = await make_session(messages=[])
    appended = await service.append_messages(row["id"], [[], {}])
    assert orjson.loads(appended["messages"]) == [[], {}]


@pytest.mark.parametrize(
    ("value", "holds"),
    [
        ({"content": "Fix it"}, "an object"),
        ("Fix it", "a string"),
        (42, "a number"),
        (1.5, "a number"),
        (False, "a boolean"),
    ],
)
async def test_appending_to_messages_that_are_not_a_list_changes_nothing(
    service: SessionService, make_session: SessionFactory, value: object, holds: str
) -> None:
    row = await make_session(messages=value)

    for messages in (["more"], []):
        with pytest.raises(NotAList) as refused:
            await service.append_messages(row["id"], messages)
        assert refused.value.field == "messages"
        assert holds in refused.value.message

    unchanged = await stored(service, row["id"])
    assert unchanged == row
    assert orjson.loads(str(unchanged["messages"])) == value


async def test_appending_to_an_unknown_session_is_not_found(service: SessionService) -> None:
    for messages in (["hello"], []):
        with pytest.raises(NotFound):
            await service.append_messages(uuid.uuid4(), messages)


async def test_appending_nothing_changes_nothing(
    service: SessionService, make_session: SessionFactory
) -> None:
    row = await make_session(messages=["one"])
    async with watching(service) as watcher:
        same = await service.append_messages(row["id"], [])
        sentinel = await make_session()
        seen = await watcher.through(sentinel["id"])
    assert [event.session_id for event in seen] == [sentinel["id"]]
    assert dict(same) == row


@pytest.mark.parametrize(
    "messages",
    [["he\x00llo"], [{"a\x00": 1}], [{"text": ["\x00"]}], [2**63], [nested(64)]],
    ids=["nul", "nul-key", "nested-nul", "too-large", "too-deep"],
)
async def test_appending_a_message_the_declaration_refuses_changes_nothing(
    service: SessionService, make_session: SessionFactory, messages: list[object]
) -> None:
    row = await make_session(messages=["one"])
    with pytest.raises(InvalidInput) as refused:
        await service.append_messages(row["id"], ["fine", *messages])
    assert refused.value.field == "messages"
    assert await stored(service, row["id"]) == row


async def test_appended_messages_are_as_deep_as_the_declaration_lets_messages_be(
    service: SessionService, make_session: SessionFactory
) -> None:
    """The stored list holds each message one level down: a message may be one level less deep
    than a `messages` given whole."""
    whole = await make_session(messages=nested(64))
    assert whole["messages"] is not None
    row = await make_session(messages=None)
    appended = await service.append_messages(row["id"], [nested(63)])
    assert orjson.loads(appended["messages"]) == nested(64)


async def test_an_append_announces_the_session_as_it_is_after_it(
    service: SessionService, make_session: SessionFactory
) -> None:
    row = await make_session(messages=None)
    async with watching(service) as watcher:
        appended = await service.append_messages(row["id"], ["one"])
        with pytest.raises(NotFound):
            await service.append_messages(uuid.uuid4(), ["two"])
        sentinel = await make_session()
        seen = await watcher.through(sentinel["id"])
    assert [(e.kind, e.session_id, e.session) for e in seen[:-1]] == [
        (EventKind.UPDATED, row["id"], dict(appended))
    ]


async def test_an_append_after_a_change_to_a_list_reads_the_new_list(
    service: SessionService, make_session: SessionFactory
) -> None:
    row = await make_session(messages={"content": "Fix it"})
    with pytest.raises(NotAList):
        await service.append_messages(row["id"], ["more"])
    await service.update(row["id"], SessionChanges(messages=["first"]))
    appended = await service.append_messages(row["id"], ["more"])
    assert orjson.loads(appended["messages"]) == ["first", "more"]
    assert appended["version"] == 3


async def test_appends_from_two_services_at_once_all_land(
    settings: Settings, service: SessionService, make_session: SessionFactory
) -> None:
    """As two server processes would: each with its own pool, nothing shared but the database."""
    other_db = Database(make_engine(settings), pool_size=10)
    await other_db.open()
    try:
        other = SessionService(other_db, LocalNamer(), idle_events(other_db))
        row = await make_session(messages=None)
        results = await asyncio.gather(
            *((service if n % 2 else other).append_messages(row["id"], [n]) for n in range(40))
        )
    finally:
        await other_db.close()
    now = await stored(service, row["id"])
    assert sorted(orjson.loads(str(now["messages"]))) == list(range(40))
    assert now["version"] == 41
    assert sorted(result["version"] for result in results) == list(range(2, 42))
