"""Streams that cannot be held hostage: a client that stops reading a streamed list loses it
within the write deadline (its cursor, connection and slot freed), over a real uvicorn and raw
sockets that never read."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
import pytest

from app.config import Settings
from app.db import Database
from app.main import create_app
from app.rest import render, streaming
from app.state import AppState
from tests.conftest import SessionFactory, with_state
from tests.loopback import serve_on_loopback

# Short enough for a test.
WRITE_TIMEOUT_S = 2.0
CHUNK = 4096
# What the kernel is asked to give a stalled client's receive buffer.
TINY_RCVBUF = 2048
# A list of about 5 MB: more than the buffers between the app and a client that does not read
# hold (measured on loopback: about 2.2 MB, the server's send buffer growing to its maximum).
SESSIONS = 300
MESSAGE = "x" * 16_000
DEADLINE_S = 20.0


@pytest.fixture(autouse=True)
def short_deadlines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streaming, "STREAM_WRITE_TIMEOUT_S", WRITE_TIMEOUT_S)
    monkeypatch.setattr(render, "STREAM_CHUNK", CHUNK)


@asynccontextmanager
async def served(settings: Settings, state: AppState) -> AsyncIterator[str]:
    app = with_state(create_app(settings), {"inbox": state})
    async with serve_on_loopback(app, settings=settings, log_config=None) as base:
        yield base


async def stalled_client(base: str) -> socket.socket:
    """A socket that asks for every session and never reads a byte of the answer."""
    port = int(base.rsplit(":", 1)[1])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, TINY_RCVBUF)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    await loop.sock_sendall(sock, b"GET /sessions HTTP/1.1\r\nHost: test\r\n\r\n")
    return sock


async def until(condition: Callable[[], bool], deadline_s: float) -> None:
    """Waits for `condition` (a counter of the database's, which signals nothing) until the
    deadline."""
    async with asyncio.timeout(deadline_s):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def seed(make_session: SessionFactory, count: int) -> set[str]:
    ids: set[str] = set()
    for _ in range(count):
        row = await make_session(messages={"content": MESSAGE})
        ids.add(str(row["id"]))
    return ids


async def test_eight_clients_that_do_not_read_give_their_slots_back_within_the_deadline(
    settings: Settings, db: Database, app_state: AppState, make_session: SessionFactory
) -> None:
    ids = await seed(make_session, SESSIONS)
    async with served(settings, app_state) as base, AsyncExitStack() as sockets:
        for _ in range(8):
            sockets.enter_context(await stalled_client(base))
        await until(lambda: db.streams_open == 8, DEADLINE_S)
        held = time.monotonic()
        # Each stream ends once a chunk has waited the write deadline for its client.
        await until(lambda: db.streams_open == 0, WRITE_TIMEOUT_S + 5.0)
        freed_after = time.monotonic() - held
        async with httpx.AsyncClient(base_url=base, timeout=DEADLINE_S) as client:
            ninth = await client.get("/sessions")
    assert ninth.status_code == 200
    assert {s["id"] for s in ninth.json()["sessions"]} == ids
    assert freed_after < WRITE_TIMEOUT_S + 5.0
    assert db.streams_open == 0
