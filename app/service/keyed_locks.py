"""`KeyedLocks`: one asyncio lock per key (a session's id), for work on one thing that must not
interleave within this process while work on other things goes on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass(slots=True)
class _Entry:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # The tasks holding or waiting for the lock.
    users: int = 0


class KeyedLocks(Generic[K]):
    """A lock per key, made when first wanted and dropped once nobody holds or waits for it, so
    only the keys in use take memory."""

    def __init__(self) -> None:
        self._entries: dict[K, _Entry] = {}

    @asynccontextmanager
    async def hold(self, key: K) -> AsyncIterator[None]:
        """Hold the lock of `key`: waits while another task holds it, first come first served."""
        entry = self._entries.setdefault(key, _Entry())
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if not entry.users:
                del self._entries[key]

    def __len__(self) -> int:
        """How many keys are held or waited for."""
        return len(self._entries)
