"""Change events: what the service announces after a change has been committed.

`EventPublisher` is the interface the service talks to. `LocalEvents` fans events out to
subscribers inside this process; a publisher never lets a delivery failure reach the writer."""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

log = logging.getLogger(__name__)


class EventKind(enum.StrEnum):
    CREATED = "CREATED"
    UPDATED = "UPDATED"
    DELETED = "DELETED"


@dataclass(frozen=True, slots=True)
class SessionEvent:
    kind: EventKind
    session_id: UUID
    # The session after the change; for DELETED, as it was just before.
    session: Any


class EventPublisher(Protocol):
    async def publish(self, events: Sequence[SessionEvent]) -> None: ...


class LocalEvents:
    """In-process fan-out. A slow subscriber loses its oldest events rather than holding up
    writers (its queue is bounded)."""

    def __init__(self, queue_size: int = 1000) -> None:
        self._queue_size = queue_size
        self._subscribers: set[asyncio.Queue[SessionEvent]] = set()

    async def publish(self, events: Sequence[SessionEvent]) -> None:
        for queue in tuple(self._subscribers):
            for event in events:
                if queue.full():
                    queue.get_nowait()
                    log.warning("event subscriber too slow: dropped its oldest event")
                queue.put_nowait(event)

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[SessionEvent]]:
        queue: asyncio.Queue[SessionEvent] = asyncio.Queue(self._queue_size)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)
