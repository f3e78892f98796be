"""`GET /sessions` without paging: streams on connections of their own, bounded in number; a
stream that cannot start is refused with 503 before any body is sent."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from app.config import Settings
from app.db import Database, DatabaseBusy, make_engine
from app.main import create_app
from app.naming import LocalNamer
from app.rest.errors import RETRY_AFTER_S
from app.service import SessionService
from app.state import AppState
from tests.conftest import SessionFactory, idle_events, with_state


@pytest.fixture
async def one_slot(settings: Settings, db: Database) -> AsyncIterator[SessionService]:
    """A service whose database allows one stream at a time."""
    narrow = Database(make_engine(settings), pool_size=2, max_streams=1)
    await narrow.open()
    yield SessionService(narrow, LocalNamer(), idle_events(narrow))
    await narrow.close()


async def test_a_stream_waits_for_a_slot_then_is_refused(
    one_slot: SessionService, make_session: SessionFactory
) -> None:
    await make_session()
    held = one_slot.stream()
    assert await anext(held) is not None
    with pytest.raises(DatabaseBusy):
        await anext(one_slot.stream())
    await held.aclose()
    assert [row async for row in one_slot.stream()]


async def test_closing_a_stream_frees_its_slot_at_once(
    one_slot: SessionService, make_session: SessionFactory
) -> None:
    """A client that hangs up mid-list closes the stream: the cursor, its connection and the
    slot are released by the close itself, not later by the garbage collector."""
    for _ in range(3):
        await make_session()
    held = one_slot.stream()
    assert await anext(held) is not None
    await held.aclose()
    # No await in between: a slot left to a finalizer task would still be taken here.
    assert not one_slot.db.streams_busy()


async def test_list_is_503_with_retry_after_when_no_stream_slot_is_free(
    settings: Settings, one_slot: SessionService, make_session: SessionFactory
) -> None:
    made = await make_session()
    state = AppState(settings, one_slot.db, one_slot.events, one_slot)
    transport = httpx.ASGITransport(app=with_state(create_app(settings), {"inbox": state}))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        held = one_slot.stream()
        assert await anext(held) is not None
        refused = await client.get("/sessions")
        paged = await client.get("/sessions?limit=5")
        await held.aclose()
        listed = await client.get("/sessions")
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == str(RETRY_AFTER_S)
    assert refused.json() == {
        "err": "Service Unavailable",
        "msg": "too many sessions are being listed at once",
        "code": "SERVICE_UNAVAILABLE",
    }
    assert paged.status_code == 200
    assert listed.status_code == 200
    assert [s["id"] for s in listed.json()["sessions"]] == [str(made["id"])]


async def test_an_empty_stream_is_an_empty_list(client: httpx.AsyncClient) -> None:
    response = await client.get("/sessions")
    assert response.status_code == 200
    assert response.content == b'{"sessions":[]}'
