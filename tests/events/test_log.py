"""The event log's behaviour, the same on both logs: `MemoryLog`, and `RedisLog` on the shared
Redis (a stream of its own per test). Then what only Redis does: go away and come back, on a
private server (`tests.redis_server`)."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from redis.asyncio import Redis

from app.events.log import START, EventId, EventLog, EventLogUnavailable, MemoryLog, Record
from app.events.redis_log import RedisLog
from tests.redis_server import RedisServer

SHARED_REDIS = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# How long any call may take while Redis is down.
UNAVAILABLE_WITHIN_S = 3.0

MakeLog = Callable[..., EventLog]


def records(n: int, start: int = 0) -> list[Record]:
    return [Record("updated", f"session-{i}", f'{{"i": {i}}}') for i in range(start, start + n)]


def stream_key() -> str:
    return f"test-session-inbox:{uuid.uuid4().hex}"


@pytest.fixture(params=["memory", "redis"])
async def make_log(request: pytest.FixtureRequest) -> AsyncIterator[MakeLog]:
    """Makes logs of the kind under test; RedisLog streams are deleted at the end."""
    made: list[EventLog] = []
    keys: list[str] = []

    def make(retention: int = 1000) -> EventLog:
        events_log: EventLog
        if request.param == "memory":
            events_log = MemoryLog(retention)
        else:
            keys.append(stream_key())
            events_log = RedisLog(SHARED_REDIS, retention, key=keys[-1])
        made.append(events_log)
        return events_log

    yield make
    for events_log in made:
        await events_log.close()
    if keys:
        admin = Redis.from_url(SHARED_REDIS)
        await admin.delete(*keys)
        await admin.aclose()


@pytest.fixture
def events_log(make_log: MakeLog) -> EventLog:
    return make_log()


# The same behaviour on both logs.


async def test_appended_records_come_back_in_order_with_increasing_ids(
    events_log: EventLog,
) -> None:
    await events_log.append(records(3))
    await events_log.append(records(4, start=3))

    entries = await events_log.read(START, 100)

    assert [entry.record for entry in entries] == records(7)
    ids = [entry.id for entry in entries]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


async def test_appending_nothing_changes_nothing(events_log: EventLog) -> None:
    before = await events_log.position()
    await events_log.append([])
    assert await events_log.position() == before
    assert await events_log.read(START, 10) == []


async def test_read_starts_after_the_position_given_and_honours_count(
    events_log: EventLog,
) -> None:
    await events_log.append(records(5))
    everything = await events_log.read(START, 100)

    assert await events_log.read(START, 2) == everything[:2]
    assert await events_log.read(everything[1].id, 2) == everything[2:4]
    assert await events_log.read(everything[3].id, 100) == everything[4:]
    assert await events_log.read(everything[4].id, 100) == []


async def test_an_empty_log_misses_nothing_after_its_position(events_log: EventLog) -> None:
    position = await events_log.position()
    assert await events_log.read(position, 10) == []
    assert await events_log.holds_all_after(position)


async def test_position_is_the_newest_entry(events_log: EventLog) -> None:
    await events_log.append(records(3))
    newest = (await events_log.read(START, 100))[-1]
    assert await events_log.position() == newest.id
    assert await events_log.holds_all_after(newest.id)


async def test_retention_keeps_exactly_the_newest_entries(make_log: MakeLog) -> None:
    events_log = make_log(retention=10)
    ids = []
    for record in records(50):
        await events_log.append([record])
        ids.append(await events_log.position())

    kept = await events_log.read(START, 100)

    assert [entry.id for entry in kept] == ids[40:]
    assert [entry.record for entry in kept] == records(10, start=40)
    assert not await events_log.holds_all_after(START)
    assert not await events_log.holds_all_after(ids[0])
    assert not await events_log.holds_all_after(ids[38])
    # Whoever read up to the last trimmed entry has missed nothing.
    for position in ids[39:]:
        assert await events_log.holds_all_after(position)


async def test_a_batch_longer_than_the_retention_keeps_its_newest_records(
    make_log: MakeLog,
) -> None:
    events_log = make_log(retention=10)
    await events_log.append(records(3))
    before = await events_log.position()
    await events_log.append(records(25, start=3))

    kept = await events_log.read(START, 100)

    assert [entry.record for entry in kept] == records(10, start=18)
    assert not await events_log.holds_all_after(before)
    assert await events_log.holds_all_after(kept[0].id)


async def test_wait_returns_what_is_there_without_waiting(events_log: EventLog) -> None:
    await events_log.append(records(3))
    async with asyncio.timeout(5):
        entries = await events_log.wait(START, 2, timeout_s=30)
    assert [entry.record for entry in entries] == records(2)


async def test_wait_returns_as_soon_as_an_entry_is_appended(events_log: EventLog) -> None:
    await events_log.append(records(1))
    position = await events_log.position()
    waiting = asyncio.Event()

    async def wait() -> list[Record]:
        waiting.set()
        entries = await events_log.wait(position, 10, timeout_s=30)
        return [entry.record for entry in entries]

    async with asyncio.timeout(5):
        waiter = asyncio.create_task(wait())
        await waiting.wait()
        await events_log.append(records(2, start=1))
        assert await waiter == records(2, start=1)


async def test_wait_returns_nothing_once_its_timeout_has_passed(events_log: EventLog) -> None:
    await events_log.append(records(1))
    position = await events_log.position()
    started = time.monotonic()

    async with asyncio.timeout(5):
        assert await events_log.wait(position, 10, timeout_s=0.2) == []

    assert time.monotonic() - started >= 0.19


# Positions.


@pytest.mark.parametrize(
    "text",
    ["", "1", "a-b", "1-2-3", "-1-0", "1--1", " 1-0", "1-0\n", "1_0-0", "1" * 30 + "-0"],
)
def test_event_id_refuses_what_is_not_one(text: str) -> None:
    with pytest.raises(ValueError, match="is not an event id"):
        EventId.parse(text)


def test_event_id_refuses_numbers_beyond_64_bits() -> None:
    with pytest.raises(ValueError, match="is not an event id"):
        EventId.parse(f"{2**64}-0")
    with pytest.raises(ValueError, match="is not an event id"):
        EventId.parse(f"0-{2**64}")


@pytest.mark.parametrize("text", ["0-0", "1-2", "1796173850044-7", f"{2**64 - 1}-{2**64 - 1}"])
def test_event_id_round_trips_through_its_text(text: str) -> None:
    assert str(EventId.parse(text)) == text


def test_event_ids_compare_in_log_order() -> None:
    assert EventId.parse("1-10") > EventId.parse("1-9") > EventId.parse("0-99") > START


# What only Redis does.


async def test_a_redis_position_taken_before_the_stream_exists_misses_nothing_after_it() -> None:
    """What a client does on a fresh Redis: the cursor, then the data, then subscribe."""
    events_log = RedisLog(SHARED_REDIS, 10, key=stream_key())
    try:
        cursor = await events_log.position()
        assert await events_log.read(cursor, 10) == []
        await events_log.append(records(2))
        assert await events_log.holds_all_after(cursor)
        assert [entry.record for entry in await events_log.read(cursor, 10)] == records(2)
    finally:
        await events_log.close()


async def test_redis_read_after_the_last_possible_position_is_empty() -> None:
    events_log = RedisLog(SHARED_REDIS, 10, key=stream_key())
    try:
        assert await events_log.read(EventId(2**64 - 1, 2**64 - 1), 10) == []
    finally:
        await events_log.close()


CALLS: dict[str, Callable[[EventLog, EventId], Awaitable[object]]] = {
    "append": lambda log, _: log.append(records(1)),
    "position": lambda log, _: log.position(),
    "holds_all_after": lambda log, position: log.holds_all_after(position),
    "read": lambda log, position: log.read(position, 10),
    "wait": lambda log, position: log.wait(position, 10, timeout_s=1),
}


@pytest.mark.parametrize("name", CALLS)
async def test_a_call_raises_unavailable_while_redis_is_down_and_works_once_it_is_back(
    redis: RedisServer, name: str
) -> None:
    call = CALLS[name]
    events_log = RedisLog(redis.url, 10)
    try:
        await events_log.append(records(1))
        position = await events_log.position()

        redis.stop()
        async with asyncio.timeout(UNAVAILABLE_WITHIN_S):
            with pytest.raises(EventLogUnavailable):
                await call(events_log, position)

        redis.start()
        async with asyncio.timeout(5):
            await call(events_log, position)
    finally:
        await events_log.close()


async def test_the_same_log_serves_again_once_redis_is_back(redis: RedisServer) -> None:
    events_log = RedisLog(redis.url, 10)
    try:
        await events_log.append(records(1))
        redis.stop()
        with pytest.raises(EventLogUnavailable):
            await events_log.append(records(1))

        redis.start()
        async with asyncio.timeout(5):
            await events_log.append(records(2, start=1))
            entries = await events_log.read(START, 10)
            assert [entry.record for entry in entries] == records(2, start=1)
            assert await events_log.position() == entries[-1].id
            assert await events_log.wait(entries[0].id, 10, timeout_s=1) == entries[1:]
    finally:
        await events_log.close()


async def test_a_wait_under_way_raises_unavailable_when_redis_stops(
    redis: RedisServer,
) -> None:
    events_log = RedisLog(redis.url, 10)
    try:
        await events_log.append(records(1))
        position = await events_log.position()
        waiter = asyncio.create_task(events_log.wait(position, 10, timeout_s=30))
        # Until the wait has its connection, stopping would test connecting, not waiting.
        async with asyncio.timeout(5):
            # Asking the server is the only way to know; nothing here can be awaited instead.
            while await _blocked_clients(redis.url) == 0:  # noqa: ASYNC110
                await asyncio.sleep(0.01)

        redis.stop()

        async with asyncio.timeout(UNAVAILABLE_WITHIN_S):
            with pytest.raises(EventLogUnavailable):
                await waiter
    finally:
        await events_log.close()


async def test_a_stream_lost_by_redis_counts_as_trimmed(redis: RedisServer) -> None:
    events_log = RedisLog(redis.url, 10)
    try:
        await events_log.append(records(2))
        seen = await events_log.position()

        # The private server keeps no data: the stream is gone with the restart. (The failed
        # call lets the log see its connection closed, as it would while Redis is down for
        # longer than this test takes to start it again.)
        redis.stop()
        with pytest.raises(EventLogUnavailable):
            await events_log.position()
        redis.start()

        assert await events_log.position() > seen
        assert not await events_log.holds_all_after(seen)
        await events_log.append(records(2, start=2))
        first, _ = await events_log.read(START, 10)
        assert not await events_log.holds_all_after(seen)
        assert await events_log.holds_all_after(first.id)
    finally:
        await events_log.close()


async def _blocked_clients(url: str) -> int:
    admin = Redis.from_url(url)
    try:
        info = await admin.info("clients")
    finally:
        await admin.aclose()
    blocked: int = info["blocked_clients"]
    return blocked
