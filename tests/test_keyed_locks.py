"""`KeyedLocks`: one lock per key, taken in turn, gone once nobody wants it."""

from __future__ import annotations

import asyncio

import pytest

from app.service.keyed_locks import KeyedLocks


async def test_tasks_on_one_key_take_turns_in_the_order_they_came() -> None:
    locks: KeyedLocks[str] = KeyedLocks()
    inside: list[int] = []
    order: list[int] = []

    async def work(n: int) -> None:
        async with locks.hold("a"):
            inside.append(n)
            assert len(inside) == 1
            await asyncio.sleep(0)
            order.append(n)
            inside.remove(n)

    await asyncio.gather(*(work(n) for n in range(10)))

    assert order == list(range(10))
    assert len(locks) == 0


async def test_other_keys_do_not_wait() -> None:
    locks: KeyedLocks[str] = KeyedLocks()
    async with locks.hold("a"), asyncio.timeout(1), locks.hold("b"):
        assert len(locks) == 2
    assert len(locks) == 0


async def test_a_failure_or_a_cancel_gives_the_lock_back() -> None:
    locks: KeyedLocks[str] = KeyedLocks()
    with pytest.raises(RuntimeError):
        async with locks.hold("a"):
            raise RuntimeError("boom")
    assert len(locks) == 0

    holding = asyncio.Event()

    async def hold_forever() -> None:
        async with locks.hold("a"):
            holding.set()
            await asyncio.Event().wait()

    holder = asyncio.create_task(hold_forever())
    await holding.wait()
    waiter = asyncio.create_task(hold_forever())
    await asyncio.sleep(0)
    waiter.cancel()
    holder.cancel()
    await asyncio.gather(holder, waiter, return_exceptions=True)
    assert len(locks) == 0
    async with asyncio.timeout(1), locks.hold("a"):
        pass
