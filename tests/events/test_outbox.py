"""The outbox and its relay: every change writes its event in its own transaction (none for one
that rolled back), the relay moves them to the log in order and removes them, one relay leads
at a time on PostgreSQL and another takes over when it goes, and a subscriber that falls behind
is told to resync instead of holding memory."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import orjson
import pytest

from app.config import Settings
from app.db import Database, make_engine
from app.errors import BranchTaken, VersionConflict
from app.events import EventKind, EventLogUnavailable, Events, MemoryLog
from app.events import fanout as fanout_module
from app.events import relay as relay_module
from app.events.fanout import Fanout
from app.events.log import START, Record
from app.model import NewSession, SessionChanges
from app.naming import LocalNamer
from app.service import SessionService
from app.store.outbox import OutboxStore
from tests.conftest import idle_events
from tests.watching import DEADLINE_S


@pytest.fixture
def quiet(db: Database) -> SessionService:
    """A service whose events stay in the outbox (no relay runs)."""
    return SessionService(db, LocalNamer(), idle_events(db))


async def outbox(db: Database) -> list[tuple[str, Any, dict[str, Any]]]:
    pending = await OutboxStore(db).pending(1000)
    return [(p.kind, p.session_id, orjson.loads(p.data)) for p in pending]


async def test_every_change_writes_its_event_in_order(quiet: SessionService) -> None:
    parent = (await quiet.create(NewSession(repo="r", target_branch="main"))).session
    child = (
        await quiet.create(NewSession(repo="r", target_branch="main", parent=parent["id"]))
    ).session
    await quiet.update(child["id"], SessionChanges(title="Renamed", messages=[]))
    await quiet.append_messages(child["id"], [{"text": "more"}])
    await quiet.delete(parent["id"])

    events = await outbox(quiet.db)
    assert [(kind, session_id) for kind, session_id, _ in events] == [
        ("CREATED", parent["id"]),
        ("CREATED", child["id"]),
        ("UPDATED", child["id"]),
        ("UPDATED", child["id"]),
        ("UPDATED", child["id"]),  # orphaned by its parent's delete
        ("DELETED", parent["id"]),
    ]
    sessions = [data["session"] for _, _, data in events]
    # A delete is a change: its event has the next version.
    assert [s["version"] for s in sessions] == [1, 1, 2, 3, 4, 2]
    assert sessions[2]["title"] == "Renamed"
    assert events[2][2]["previous"]["title"] == child["title"]
    assert "messages" not in events[2][2]["previous"]
    assert sessions[3]["messages"] == [{"text": "more"}]
    assert sessions[4]["parent"] is None
    assert events[4][2]["previous"]["parent"] == str(parent["id"])
    assert all("idempotency_key" not in s for s in sessions)


async def test_a_refused_change_writes_no_event(quiet: SessionService) -> None:
    row = (await quiet.create(NewSession(repo="r", target_branch="main"))).session
    other = (await quiet.create(NewSession(repo="r", target_branch="dev"))).session
    before = await outbox(quiet.db)
    with pytest.raises(VersionConflict):
        await quiet.update(row["id"], SessionChanges(title="Stale"), expected_version=7)
    with pytest.raises(BranchTaken):
        await quiet.update(row["id"], SessionChanges(branch=other["branch"]))
    assert await outbox(quiet.db) == before


async def test_a_rolled_back_transaction_leaves_no_event(quiet: SessionService) -> None:
    row = (await quiet.create(NewSession(repo="r", target_branch="main"))).session
    before = await outbox(quiet.db)

    class Abandoned(Exception):
        pass

    async def write_then_fail() -> None:
        async with quiet.store.transaction():
            await quiet.store.update(row["id"], {"title": "Never"}, updated_at=row["updated_at"])
            raise Abandoned

    with pytest.raises(Abandoned):
        await write_then_fail()
    assert await outbox(quiet.db) == before
    stored = await quiet.get(row["id"])
    assert stored is not None
    assert stored["title"] == row["title"]


async def test_the_relay_moves_events_to_the_log_in_order_and_empties_the_outbox(
    db: Database, quiet: SessionService
) -> None:
    made = [
        (await quiet.create(NewSession(repo="r", target_branch=f"b{n}"))).session for n in range(5)
    ]
    events_log = MemoryLog(100)
    events = Events(db, events_log)
    events.start()
    try:
        async with asyncio.timeout(DEADLINE_S):
            await events.relay.caught_up()
    finally:
        await events.stop()
    entries = await events_log.read(START, 100)
    assert [entry.record.session_id for entry in entries] == [str(row["id"]) for row in made]
    assert [entry.id for entry in entries] == sorted(entry.id for entry in entries)
    assert await OutboxStore(db).backlog() == 0


async def test_one_relay_leads_and_another_takes_over_when_it_stops(
    settings: Settings, db: Database
) -> None:
    if not db.is_postgres:
        pytest.skip("SQLite serves one instance: its relay always leads")
    other_db = Database(make_engine(settings), pool_size=2)
    await other_db.open()
    first, second = Events(db, MemoryLog(100)), Events(other_db, MemoryLog(100))
    try:
        first.start()
        async with asyncio.timeout(DEADLINE_S):
            await first.relay.caught_up()
        second.start()
        service = SessionService(other_db, LocalNamer(), second)
        # A change through the instance that does not lead reaches the leader's log.
        row = (await service.create(NewSession(repo="r", target_branch="main"))).session
        assert await first.log.wait(START, 10, DEADLINE_S)
        assert not second.relay.leads
        await first.stop()
        await service.update(row["id"], SessionChanges(title="After the leader left"))
        assert await second.log.wait(START, 10, DEADLINE_S)
        assert second.relay.leads
        [entry] = await second.log.read(START, 10)
        assert orjson.loads(entry.record.data)["session"]["title"] == "After the leader left"
    finally:
        await first.stop()
        await second.stop()
        await other_db.close()


async def test_a_subscriber_that_falls_behind_gets_a_resync_and_goes_on(
    quiet: SessionService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fanout_module, "BUFFER", 5)
    row = (await quiet.create(NewSession(repo="r", target_branch="main"))).session
    [(kind, session_id, data)] = await outbox(quiet.db)
    record = Record(kind, str(session_id), orjson.dumps(data).decode())
    events_log = MemoryLog(100)
    fanout = Fanout(events_log)
    fanout.start()
    stream = fanout.subscribe(await events_log.position(), lambda event: True)
    try:
        # The first event is read from the log; then the subscriber stops reading.
        await events_log.append([record])
        first = await anext(stream)
        assert (first.kind, first.session_id) == (EventKind.CREATED, row["id"])
        await events_log.append([record] * 12)
        last = await events_log.position()
        async with asyncio.timeout(DEADLINE_S):
            resync = await anext(stream)
            assert resync.kind is EventKind.RESYNC
            rest = [await anext(stream) for _ in range(5)]
        # It kept the newest it could hold, and lost the others, not the memory.
        assert [event.kind for event in rest] == [EventKind.CREATED] * 5
        assert rest[-1].id == last
        assert all(resync.id < event.id for event in rest)
    finally:
        await stream.aclose()
        await fanout.stop()


class UnreachableLog(MemoryLog):
    """An in-process log that no append reaches."""

    async def append(self, records: Sequence[Record]) -> None:
        raise EventLogUnavailable("out of reach")


async def test_a_leader_cut_off_from_the_log_lets_another_instance_relay(
    settings: Settings, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not db.is_postgres:
        pytest.skip("SQLite serves one instance: its relay always leads")
    monkeypatch.setattr(relay_module, "HANDOVER_S", 0.2)
    other_db = Database(make_engine(settings), pool_size=2)
    await other_db.open()
    cut_off, reaching = Events(db, UnreachableLog(100)), Events(other_db, MemoryLog(100))
    try:
        cut_off.start()
        async with asyncio.timeout(DEADLINE_S):
            await cut_off.relay.caught_up()  # it drains, so it leads
        reaching.start()
        service = SessionService(db, LocalNamer(), cut_off)
        row = (await service.create(NewSession(repo="r", target_branch="main"))).session
        [entry] = await reaching.log.wait(START, 10, DEADLINE_S)
        assert entry.record.session_id == str(row["id"])
        assert reaching.relay.leads
        assert not cut_off.relay.leads
    finally:
        await cut_off.stop()
        await reaching.stop()
        await other_db.close()
