"""Creations and updates in as few round trips as their rules allow: one statement each with the
local namer, the outbox row written in it exactly once, and the parent lock still shared."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import pytest

from app.config import Settings
from app.db import Database
from app.model import NewSession, SessionChanges
from app.service import PARENT_LOCK, SessionService
from tests.conftest import SessionFactory


class Trips:
    """The statements and transactions the service sends through `db`, but the relay's."""

    def __init__(self, db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
        self.statements: list[str] = []
        self.transactions = 0
        fetch, transaction = db.fetch, db.transaction

        async def counted_fetch(query: Any, *args: Any) -> Any:
            if "session_outbox" not in str(query):
                self.statements.append(str(query))
            return await fetch(query, *args)

        def counted_transaction() -> Any:
            self.transactions += 1
            return transaction()

        monkeypatch.setattr(db, "fetch", counted_fetch)
        monkeypatch.setattr(db, "transaction", counted_transaction)

    def taken(self) -> tuple[int, int]:
        counts = len(self.statements), self.transactions
        self.statements.clear()
        self.transactions = 0
        return counts


@pytest.fixture
def trips(db: Database, monkeypatch: pytest.MonkeyPatch) -> Trips:
    return Trips(db, monkeypatch)


async def outbox_kinds(db: Database) -> list[str]:
    rows = await db.fetch("SELECT kind FROM session_outbox ORDER BY id")
    return [row["kind"] for row in rows]


async def test_a_create_is_one_statement_whatever_its_branch_or_parent(
    db: Database, service: SessionService, trips: Trips
) -> None:
    service.events.relay.wake = lambda: None  # type: ignore[method-assign]
    new = NewSession(repo="acme/app", target_branch="main", messages=["Same task"])
    first = await service.create(new)
    assert trips.taken() == (1, 0)
    # The generated branch is taken now: the same statement picks a suffixed one.
    second = await service.create(new)
    assert trips.taken() == (1, 0)
    assert second.session["branch"].startswith(first.session["branch"] + "-")
    child = NewSession(repo="acme/app", target_branch="main", parent=first.session["id"])
    await service.create(child)
    assert trips.taken() == (1, 0)
    assert await outbox_kinds(db) == ["CREATED"] * 3


async def test_an_idempotent_retry_writes_no_event(
    db: Database, service: SessionService, trips: Trips
) -> None:
    service.events.relay.wake = lambda: None  # type: ignore[method-assign]
    new = NewSession(repo="acme/app", target_branch="main", messages=["x"])
    first = await service.create(new, idempotency_key="k")
    assert trips.taken() == (1, 0)
    again = await service.create(new, idempotency_key="k")
    assert again.replayed
    assert again.session["id"] == first.session["id"]
    # PostgreSQL finds the first session in the insert's own statement; SQLite reads it after.
    assert trips.taken() == ((1, 0) if db.is_postgres else (2, 0))
    assert await outbox_kinds(db) == ["CREATED"]


async def test_an_update_that_reads_nothing_first_is_one_statement(
    service: SessionService, make_session: SessionFactory, trips: Trips
) -> None:
    parent = await make_session()
    row = await make_session(parent=parent["id"])
    trips.taken()
    changed = await service.update(row["id"], SessionChanges(title="New"), expected_version=1)
    assert trips.taken() == (1, 0)
    # A PUT sends the parent it keeps: still one statement.
    kept = await service.update(row["id"], SessionChanges(parent=parent["id"], title="Kept"))
    assert trips.taken() == (1, 0)
    assert (changed["version"], kept["version"], kept["parent"]) == (2, 3, parent["id"])


async def test_a_create_under_a_parent_waits_for_a_delete_holding_the_parent_lock(
    db: Database, service: SessionService, make_session: SessionFactory, settings: Settings
) -> None:
    if not db.is_postgres:
        pytest.skip("SQLite serializes every writer; the parent lock is PostgreSQL's")
    parent = await make_session()
    holder = await asyncpg.connect(settings.database_url)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", PARENT_LOCK)
        child = NewSession(repo="acme/app", target_branch="main", parent=parent["id"])
        create = asyncio.create_task(service.create(child))
        deadline = time.monotonic() + 10
        while not await holder.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        ):
            assert time.monotonic() < deadline, "the create never waited for the parent lock"
            assert not create.done()
            await asyncio.sleep(0.02)
        await holder.execute("SELECT pg_advisory_unlock($1)", PARENT_LOCK)
        created = await asyncio.wait_for(create, timeout=10)
    finally:
        await holder.close()
    assert created.session["parent"] == parent["id"]
