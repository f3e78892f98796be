"""Streams that cannot be held hostage: a client that stops reading a streamed list loses it
within the write deadline (its cursor, connection and slot freed), over a real uvicorn and raw
sockets that never read."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
import orjson
import pytest

from app.config import Settings
from app.db import Database, Pages
from app.listing import NEWEST_FIRST, SessionFilter
from app.main import create_app
from app.rest import render, streaming
from app.state import AppState
from app.store import listing
from app.store.dialect import dialect_of
from app.store.sessions import SessionStore
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


async def stalled_client(base: str, *, close: bool = False) -> socket.socket:
    """A socket that asks for every session and reads nothing of the answer (until the test
    says so); with `close`, the server closes the connection after the answer."""
    port = int(base.rsplit(":", 1)[1])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, TINY_RCVBUF)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    connection = b"Connection: close\r\n" if close else b""
    await loop.sock_sendall(
        sock, b"GET /sessions HTTP/1.1\r\nHost: test\r\n" + connection + b"\r\n"
    )
    return sock


async def read_to_the_end(sock: socket.socket) -> bytes:
    """Everything the server sent on `sock`, once it has closed the connection."""
    loop = asyncio.get_running_loop()
    received = bytearray()
    while data := await loop.sock_recv(sock, 65536):
        received += data
    return bytes(received)


def chunked_body(answer: bytes) -> bytes:
    """The body of a whole HTTP/1.1 answer in chunked transfer coding."""
    rest = answer.partition(b"\r\n\r\n")[2]
    body = bytearray()
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return bytes(body)
        body += rest[:size]
        rest = rest[size + 2 :]


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
        stalled = [sockets.enter_context(await stalled_client(base)) for _ in range(8)]
        await until(lambda: db.streams_open == 8, DEADLINE_S)
        held = time.monotonic()
        # Each stream ends once a chunk has waited the write deadline for its client.
        await until(lambda: db.streams_open == 0, WRITE_TIMEOUT_S + 5.0)
        freed_after = time.monotonic() - held
        async with httpx.AsyncClient(base_url=base, timeout=DEADLINE_S) as client:
            ninth = await client.get("/sessions")
        # A stalled client that reads at last finds the answer cut short and the connection
        # closed: it cannot take part of the list for all of it.
        async with asyncio.timeout(DEADLINE_S):
            received = await read_to_the_end(stalled[0])
    assert received.startswith(b"HTTP/1.1 200 ")
    assert not received.endswith(b"0\r\n\r\n")
    assert ninth.status_code == 200
    assert {s["id"] for s in ninth.json()["sessions"]} == ids
    assert freed_after < WRITE_TIMEOUT_S + 5.0
    assert db.streams_open == 0


def keyset_pages(db: Database) -> Pages:
    """Pages of every session, newest first, as `SessionStore.stream` hands them the database."""
    return SessionStore(db).pages(SessionFilter(), NEWEST_FIRST)


def size_of(path: str) -> int:
    return os.stat(path).st_size


WRITES = 3000
# SQLite checkpoints the WAL back to its start once it passes 1,000 pages (4 MB); held back by
# a reader, it grew past 200 MB beside these writes.
WAL_BOUND_BYTES = 8_000_000


async def largest_wal_beside_writes(make_session: SessionFactory, wal: str) -> int:
    """The largest the WAL file at `wal` grew while WRITES sessions were created (looked at
    every 100 writes and at the end)."""
    largest = 0
    for n in range(WRITES):
        await make_session()
        if n % 100 == 0:
            largest = max(largest, size_of(wal))
    return max(largest, size_of(wal))


async def test_a_stalled_sqlite_stream_lets_the_wal_be_checkpointed(
    settings: Settings, db: Database, make_session: SessionFactory
) -> None:
    if db.is_postgres:
        pytest.skip("SQLite's WAL")
    wal = settings.sqlite_path + "-wal"
    seeded = [str((await make_session())["id"]) for _ in range(300)]
    everything = listing.select(listing.shape(SessionFilter()), NEWEST_FIRST, limited=False)
    rows = db.stream(everything.bind(dialect_of(db.engine)), batch_size=100, pages=keyset_pages(db))
    try:
        # The reader takes one row and stalls, its batch of 100 read.
        listed = [str((await anext(rows))["id"])]
        largest = await largest_wal_beside_writes(make_session, wal)
        listed += [str(row["id"]) async for row in rows]
    finally:
        await rows.aclose()
    assert largest < WAL_BOUND_BYTES
    # Read on after the writes: every row once, the ones there throughout all in, in order.
    assert len(listed) == len(set(listed))
    assert [i for i in listed if i in set(seeded)] == seeded[::-1]


async def test_a_stalled_http_stream_on_sqlite_lets_the_wal_be_checkpointed(
    settings: Settings,
    db: Database,
    app_state: AppState,
    make_session: SessionFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if db.is_postgres:
        pytest.skip("SQLite's WAL")
    # The client stalls for longer than the writes take: only the pages can free the WAL.
    monkeypatch.setattr(streaming, "STREAM_WRITE_TIMEOUT_S", 60.0)
    wal = settings.sqlite_path + "-wal"
    # More than a page (500 rows) and more than the buffers hold (6 MB), so the stream stalls
    # in the middle of the list.
    seeded = [
        str((await make_session(messages={"content": "y" * 4000}))["id"]) for _ in range(1500)
    ]
    async with served(settings, app_state) as base:
        stalled = await stalled_client(base, close=True)
        await until(lambda: db.streams_open == 1, DEADLINE_S)
        largest = await largest_wal_beside_writes(make_session, wal)
        async with asyncio.timeout(DEADLINE_S):
            answer = await read_to_the_end(stalled)
        stalled.close()
    assert largest < WAL_BOUND_BYTES
    listed = [s["id"] for s in orjson.loads(chunked_body(answer))["sessions"]]
    assert len(listed) == len(set(listed))
    assert [i for i in listed if i in set(seeded)] == seeded[::-1]
