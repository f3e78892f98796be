"""`Lender` over asyncpg's pool, on PostgreSQL: never more connections than its size, waiters
served in the order they came, a waiter that gives up costs no connection, and a connection
closed or left inside a transaction is never lent again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from app.pool import Lender

SIZE = 2
WAIT_S = 10


@pytest.fixture
async def lender(database_urls: dict[str, str]) -> AsyncIterator[Lender]:
    pool = await asyncpg.create_pool(database_urls["postgres"], min_size=0, max_size=SIZE)
    lender = Lender(pool, SIZE, release_timeout=WAIT_S)
    try:
        yield lender
    finally:
        await lender.close()
        await pool.close()


async def backend(connection: asyncpg.Connection) -> int:
    pid: int = await connection.fetchval("SELECT pg_backend_pid()")
    return pid


async def test_a_connection_given_back_is_lent_again(lender: Lender) -> None:
    first = await lender.acquire(WAIT_S)
    pid = await backend(first)
    await lender.release(first)

    again = await lender.acquire(WAIT_S)

    assert await backend(again) == pid
    assert lender.lent == 1
    await lender.release(again)
    assert lender.lent == 0


async def test_no_more_than_its_size_are_lent_and_waiters_are_served_in_order(
    lender: Lender,
) -> None:
    held = [await lender.acquire(WAIT_S) for _ in range(SIZE)]
    served: list[str] = []

    async def wait_then_give_back(name: str) -> None:
        connection = await lender.acquire(WAIT_S)
        served.append(name)
        await lender.release(connection)

    async with asyncio.timeout(WAIT_S):
        waiting = [asyncio.create_task(wait_then_give_back(name)) for name in "abc"]
        # Each runs until it waits (acquire awaits nothing else when none is free).
        await asyncio.sleep(0)
        assert lender.waiting == 3
        assert served == []
        assert lender.lent == SIZE
        for connection in held:
            await lender.release(connection)
        await asyncio.gather(*waiting)

    assert served == ["a", "b", "c"]
    assert lender.lent == 0


async def test_a_wait_past_its_timeout_is_a_timeout_and_costs_no_connection(
    lender: Lender,
) -> None:
    held = [await lender.acquire(WAIT_S) for _ in range(SIZE)]
    async with asyncio.timeout(WAIT_S):
        with pytest.raises(TimeoutError):
            await lender.acquire(0.05)
        assert lender.waiting == 0
        # Handed over after the wait ended: kept for the next, not lost with the waiter.
        await lender.release(held.pop())
        assert lender.lent == SIZE - 1
        again = await lender.acquire(WAIT_S)

    assert lender.lent == SIZE
    for connection in [*held, again]:
        await lender.release(connection)
    assert lender.lent == 0


async def test_a_waiter_that_gives_up_costs_no_connection(lender: Lender) -> None:
    held = [await lender.acquire(WAIT_S) for _ in range(SIZE)]
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await lender.acquire(WAIT_S)
    for connection in held:
        await lender.release(connection)

    async with asyncio.timeout(WAIT_S):
        again = [await lender.acquire(WAIT_S) for _ in range(SIZE)]

    assert lender.lent == SIZE
    for connection in again:
        await lender.release(connection)


async def test_a_closed_connection_is_replaced(lender: Lender) -> None:
    connection = await lender.acquire(WAIT_S)
    pid = await backend(connection)
    connection.terminate()
    await lender.release(connection)

    async with asyncio.timeout(WAIT_S):
        fresh = await lender.acquire(WAIT_S)

    assert await backend(fresh) != pid
    await lender.release(fresh)


async def test_a_place_freed_by_a_closed_connection_goes_to_a_waiter(lender: Lender) -> None:
    held = [await lender.acquire(WAIT_S) for _ in range(SIZE)]
    async with asyncio.timeout(WAIT_S):
        waiter = asyncio.create_task(lender.acquire(WAIT_S))
        await asyncio.sleep(0)
        assert lender.waiting == 1
        held[0].terminate()
        await lender.release(held[0])
        fresh = await waiter

    assert await fresh.fetchval("SELECT 1") == 1
    await lender.release(fresh)
    await lender.release(held[1])


async def test_a_connection_left_in_a_transaction_is_rolled_back_before_it_is_lent(
    lender: Lender,
) -> None:
    connection = await lender.acquire(WAIT_S)
    await connection.execute("BEGIN; CREATE TEMP TABLE left_open (x int)")
    await lender.release(connection)

    again = await lender.acquire(WAIT_S)

    assert not again.is_in_transaction()
    assert await again.fetchval("SELECT to_regclass('pg_temp.left_open')") is None
    await lender.release(again)


async def test_a_connection_being_opened_is_not_counted_as_lent(lender: Lender) -> None:
    # asyncpg's pool counts it once it is open: `lent` never says more than it holds.
    held = await lender.acquire(WAIT_S)
    await held.close()
    async with asyncio.timeout(WAIT_S):
        await lender.release(held)
        opening = asyncio.create_task(lender.acquire(WAIT_S))
        await asyncio.sleep(0)
        assert lender.lent == 0
        fresh = await opening
    assert lender.lent == 1
    await lender.release(fresh)


async def test_a_connection_released_after_close_goes_back_so_the_pool_can_close(
    database_urls: dict[str, str],
) -> None:
    pool = await asyncpg.create_pool(database_urls["postgres"], min_size=0, max_size=SIZE)
    lender = Lender(pool, SIZE, release_timeout=WAIT_S)
    try:
        lent = await lender.acquire(WAIT_S)
        await lender.close()
        # A statement that ends after the app closed its database.
        await lender.release(lent)
    finally:
        # asyncpg's close waits for every connection it lent: one kept idle here would hold it.
        async with asyncio.timeout(WAIT_S):
            await pool.close()
    assert lender.lent == 0
