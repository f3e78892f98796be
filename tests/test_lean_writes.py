"""Creations and updates in as few round trips as their rules allow: with the local namer a
create is one statement, under a parent or with an idempotency key too; an update that reads
nothing first is one; each writes its one event to the outbox in that statement. A namer that
asks a model is still asked only for a creation that can happen, with no connection held.

The services here have a relay that never runs, so the outbox keeps what the writes put in it
and can be counted without racing a drain."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from typing import Any

import asyncpg
import pytest

from app.config import Settings
from app.db import Database
from app.errors import IdempotencyMismatch, ParentNotFound, VersionConflict
from app.model import NewSession, SessionChanges
from app.naming import Names
from app.naming.local import LocalNamer
from app.service import PARENT_LOCK, SessionService
from tests.conftest import idle_events, until_a_lock_is_waited_for

NEW = NewSession(repo="acme/app", target_branch="main", messages=["Fix the login page"])
# An id no session has.
NEW_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")


class Trips:
    """The round trips `db` waits for: statements, BEGIN and COMMIT all go through `_timed`
    (PostgreSQL; SQLite runs in the process)."""

    def __init__(self, db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        timed = db._timed

        async def counted(connection: Any, operation: Awaitable[Any]) -> Any:
            self.count += 1
            return await timed(connection, operation)

        monkeypatch.setattr(db, "_timed", counted)

    def taken(self) -> int:
        count, self.count = self.count, 0
        return count


@pytest.fixture
def quiet(db: Database) -> SessionService:
    """The service with the local namer and a relay that never runs."""
    return SessionService(db, LocalNamer(), idle_events(db))


@pytest.fixture
def trips(db: Database, monkeypatch: pytest.MonkeyPatch) -> Trips:
    if not db.is_postgres:
        pytest.skip("round trips are PostgreSQL's; SQLite runs in the process")
    return Trips(db, monkeypatch)


async def events_of(db: Database) -> list[tuple[str, str]]:
    rows = await db.fetch("SELECT kind, session_id FROM session_outbox ORDER BY id")
    return [(row["kind"], str(row["session_id"])) for row in rows]


async def test_a_create_is_one_round_trip_under_a_parent_and_with_a_key_too(
    db: Database, quiet: SessionService, trips: Trips
) -> None:
    root = (await quiet.create(NEW)).session
    assert trips.taken() == 1
    child = (await quiet.create(NewSession("acme/app", "main", ["Child"], root["id"]))).session
    assert trips.taken() == 1
    keyed = await quiet.create(NewSession("acme/app", "main", ["Keyed"]), idempotency_key="k")
    assert trips.taken() == 1
    # A retry: the insert finds the key taken, and the first session is read.
    again = await quiet.create(NewSession("acme/app", "main", ["Keyed"]), idempotency_key="k")
    assert trips.taken() == 2
    assert again.replayed
    assert dict(again.session) == dict(keyed.session)
    assert child["parent"] == root["id"]
    made = [str(root["id"]), str(child["id"]), str(keyed.session["id"])]
    assert await events_of(db) == [("CREATED", session_id) for session_id in made]


async def test_a_taken_branch_gets_a_suffix_and_one_event(
    db: Database, quiet: SessionService
) -> None:
    first = (await quiet.create(NEW)).session
    second = (await quiet.create(NEW)).session
    assert second["branch"].startswith(first["branch"] + "-")
    assert await events_of(db) == [("CREATED", str(first["id"])), ("CREATED", str(second["id"]))]


async def test_a_missing_parent_or_another_body_under_a_key_writes_nothing(
    db: Database, quiet: SessionService
) -> None:
    missing = NewSession("acme/app", "main", ["Orphan"], parent=NEW_ID)
    with pytest.raises(ParentNotFound):
        await quiet.create(missing)
    first = await quiet.create(NEW, idempotency_key="key")
    with pytest.raises(IdempotencyMismatch):
        await quiet.create(NewSession("acme/app", "main", ["Other"]), idempotency_key="key")
    assert await events_of(db) == [("CREATED", str(first.session["id"]))]


async def test_an_update_that_reads_nothing_first_is_one_round_trip(
    db: Database, quiet: SessionService, trips: Trips
) -> None:
    parent = (await quiet.create(NEW)).session
    row = (await quiet.create(NewSession("acme/app", "main", ["Child"], parent["id"]))).session
    trips.taken()
    changed = await quiet.update(
        row["id"], SessionChanges(title="New"), expected_version=1, merge_json=True
    )
    assert trips.taken() == 1
    # A PUT sends the parent it keeps: still one.
    kept = await quiet.update(row["id"], SessionChanges(parent=parent["id"], title="Kept"))
    assert trips.taken() == 1
    assert (changed["version"], kept["version"], kept["parent"]) == (2, 3, parent["id"])
    # An object merged into the stored one is read first, in a transaction.
    merged = await quiet.update(row["id"], SessionChanges(sbx_config={"a": 1}), merge_json=True)
    assert trips.taken() == 4
    assert merged["version"] == 4
    kinds = [kind for kind, session_id in await events_of(db) if session_id == str(row["id"])]
    assert kinds == ["CREATED", "UPDATED", "UPDATED", "UPDATED"]


async def test_the_full_path_still_tells_a_stale_version_and_moves_the_parent(
    quiet: SessionService,
) -> None:
    one = (await quiet.create(NEW)).session
    two = (await quiet.create(NewSession("acme/app", "main", ["Two"]))).session
    with pytest.raises(VersionConflict):
        await quiet.update(two["id"], SessionChanges(title="x"), expected_version=7)
    moved = await quiet.update(two["id"], SessionChanges(parent=one["id"]), expected_version=1)
    assert (moved["parent"], moved["version"]) == (one["id"], 2)


async def test_a_create_under_a_parent_waits_for_a_delete_holding_the_parent_lock(
    db: Database, quiet: SessionService, settings: Settings
) -> None:
    if not db.is_postgres:
        pytest.skip("SQLite serializes every writer; the parent lock is PostgreSQL's")
    parent = (await quiet.create(NEW)).session
    holder = await asyncpg.connect(settings.database_url)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", PARENT_LOCK)
        child = NewSession("acme/app", "main", ["Child"], parent["id"])
        create = asyncio.create_task(quiet.create(child))
        await until_a_lock_is_waited_for(holder, create, "the create")
        await holder.execute("SELECT pg_advisory_unlock($1)", PARENT_LOCK)
        created = await asyncio.wait_for(create, timeout=10)
    finally:
        await holder.close()
    assert created.session["parent"] == parent["id"]


class ModelNamer:
    """A namer that does I/O, as the Anthropic one: each naming counted, and whether a
    database connection was lent out while it named."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.calls = 0
        self.held_connections: list[int] = []

    async def name(self, repo: str, target_branch: str, messages: Any) -> Names:
        self.calls += 1
        self.held_connections.append(self.db.pool_usage()[1])
        await asyncio.sleep(0)
        return LocalNamer().name_now(repo, target_branch, messages)


async def test_a_model_is_asked_only_for_a_creation_that_can_happen_and_holds_no_connection(
    db: Database,
) -> None:
    namer = ModelNamer(db)
    service = SessionService(db, namer, idle_events(db))
    assert not service.names_instantly
    first = await service.create(NEW, idempotency_key="m")
    again = await service.create(NEW, idempotency_key="m")
    with pytest.raises(ParentNotFound):
        await service.create(NewSession("acme/app", "main", ["x"], parent=NEW_ID))
    parent = first.session["id"]
    await service.create(NewSession("acme/app", "main", ["Child"], parent=parent))
    assert again.replayed
    assert namer.calls == 2
    assert namer.held_connections == [0, 0]


async def test_a_move_takes_the_parent_lock_after_one_missed_statement(
    quiet: SessionService, trips: Trips
) -> None:
    one = (await quiet.create(NEW)).session
    two = (await quiet.create(NewSession("acme/app", "main", ["Two"]))).session
    trips.taken()
    moved = await quiet.update(two["id"], SessionChanges(parent=one["id"]))
    # The statement that keeps the parent finds none to keep; then BEGIN, the parent lock,
    # the row's, the walk up from the new parent, the update, COMMIT.
    assert trips.taken() == 7
    assert (moved["parent"], moved["version"]) == (one["id"], 2)
    # Clearing the parent moves it under none: one statement.
    cleared = await quiet.update(two["id"], SessionChanges(parent=None))
    assert trips.taken() == 1
    assert (cleared["parent"], cleared["version"]) == (None, 3)
