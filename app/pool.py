"""`Lender`: asyncpg's pool, with its connections lent out again without going back to it.

asyncpg's `acquire` and `release` cost about 13 µs of CPU a statement when no one waits: a
holder object, a future, and on release a task (`asyncio.shield`) for the reset. The app returns
every connection in the state it was lent (its transactions end, and a connection whose session
may keep state is terminated, see `app.db`), so nothing needs resetting: once taken from
asyncpg's pool, a connection stays here, idle or lent, until it is closed. A closed connection,
or one somehow left inside a transaction, goes back to asyncpg's pool, which rolls back or
discards it and opens another when one is needed.

Waiters are served first come, first served, each for at most the seconds it asks for: the bound
is a timer on the waiter's future (one `call_later`), not `asyncio.timeout`, whose context
manager, task lookup and rescheduling cost a loaded server several µs a request that waits."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import asyncpg


class Lender:
    """At most `size` connections of `pool`, lent one at a time. A connection given back to
    `pool` has `release_timeout` seconds for its rollback."""

    def __init__(self, pool: asyncpg.Pool, size: int, release_timeout: float) -> None:
        self._pool = pool
        self._size = size
        self._release_timeout = release_timeout
        # Taken from asyncpg's pool: idle here, lent, or being opened (`_opening`).
        self._taken = 0
        self._opening = 0
        self._idle: deque[Any] = deque()
        # Each gets a connection, or None: a place is free to take one from asyncpg's pool.
        self._waiters: deque[asyncio.Future[Any]] = deque()
        # Once closed, a connection given back goes to asyncpg's pool, which is closing.
        self._closed = False

    @property
    def size(self) -> int:
        return self._size

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @property
    def lent(self) -> int:
        """Connections lent out now (not those still being opened)."""
        return self._taken - len(self._idle) - self._opening

    def idle(self) -> Any | None:
        """An idle connection at once, when one is open and no one waits before us; else
        None (then `acquire` waits)."""
        while self._idle and not self._waiters:
            # The most recently used: its server process is the warmest.
            connection = self._idle.pop()
            if _open(connection):
                return connection
            # Taken back by asyncpg's pool already (see `_open`): its place is free.
            self._taken -= 1
        return None

    async def acquire(self, timeout: float) -> Any:  # noqa: ASYNC109 - a timer, see above
        """A connection, within `timeout` seconds (else TimeoutError): an idle one, one handed
        over by `release`, or a new one from asyncpg's pool."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._idle:
            connection = self._idle.pop()
            if _open(connection):
                return connection
            await self._give_back(connection)
        if self._taken >= self._size or self._waiters:
            connection = await self._wait(loop, timeout)
            if connection is not None:
                return connection
        else:
            self._taken += 1
        self._opening += 1
        try:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError
            return await self._pool.acquire(timeout=remaining)
        except BaseException:
            self._taken -= 1
            self._free_place()
            raise
        finally:
            self._opening -= 1

    async def _wait(self, loop: asyncio.AbstractEventLoop, timeout: float) -> Any:  # noqa: ASYNC109
        """A connection handed over by `release`, or None once a place is free (counted as
        taken already); TimeoutError when neither comes within `timeout` seconds."""
        waiter: asyncio.Future[Any] = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_later(timeout, _time_out, waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # Handed over just as the wait ended: passed on.
                handed = waiter.result()
                if handed is None:
                    self._taken -= 1
                    self._free_place()
                else:
                    await self.release(handed)
            raise
        finally:
            timer.cancel()
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    async def release(self, connection: Any) -> None:
        if self._closed or not _open(connection) or connection.is_in_transaction():
            await self._give_back(connection)
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        self._idle.append(connection)

    async def _give_back(self, connection: Any) -> None:
        """`connection` returned to asyncpg's pool, which rolls it back or discards it (a
        closed one it has taken back itself)."""
        self._taken -= 1
        try:
            if _open(connection):
                await self._pool.release(connection, timeout=self._release_timeout)
        finally:
            self._free_place()

    def _free_place(self) -> None:
        """A waiter told that it may take a connection from asyncpg's pool."""
        while self._waiters and self._taken < self._size:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._taken += 1
                waiter.set_result(None)
                return

    async def close(self) -> None:
        """Every idle connection back to asyncpg's pool (which its `close` then closes), and
        each one lent now when it is released."""
        self._closed = True
        while self._idle:
            await self._give_back(self._idle.pop())


def _time_out(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


def _open(connection: Any) -> bool:
    """Whether `connection` (asyncpg's proxy) is still open. A closed one (terminated, or
    dropped by the server) has been taken back by asyncpg's pool already, and its proxy
    refuses every call."""
    try:
        return not connection.is_closed()
    except asyncpg.InterfaceError:
        return False
