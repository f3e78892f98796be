"""`watching`: collects the events a `SessionService.watch` yields, from the event log's position
when it starts, so nothing the test does afterwards is missed, whenever the watch registers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from app.events import Event, EventKind
from app.service import SessionService

DEADLINE_S = 10.0


class Watcher:
    def __init__(self) -> None:
        self.seen: list[Event] = []
        self._arrived = asyncio.Condition()

    async def collect(self, events: Any) -> None:
        async for event in events:
            self.seen.append(event)
            async with self._arrived:
                self._arrived.notify_all()

    async def until(
        self, done: Callable[[list[Event]], bool], deadline_s: float = DEADLINE_S
    ) -> list[Event]:
        """What was seen, once `done` says it is enough (TimeoutError past the deadline)."""
        async with asyncio.timeout(deadline_s), self._arrived:
            await self._arrived.wait_for(lambda: done(self.seen))
        return list(self.seen)

    async def count(self, n: int, deadline_s: float = DEADLINE_S) -> list[Event]:
        """The first `n` events seen, once there are that many."""
        return (await self.until(lambda seen: len(seen) >= n, deadline_s))[:n]

    async def through(self, session_id: Any, kind: EventKind = EventKind.CREATED) -> list[Event]:
        """Everything seen up to and including a `kind` event of `session_id`: make a change
        to another session after the ones under test, and this shows that nothing else came."""

        def reached(seen: list[Event]) -> bool:
            return any(e.session_id == session_id and e.kind is kind for e in seen)

        seen = await self.until(reached)
        end = next(i for i, e in enumerate(seen) if e.session_id == session_id and e.kind is kind)
        return seen[: end + 1]


@asynccontextmanager
async def watching(service: SessionService, **watch: Any) -> AsyncIterator[Watcher]:
    """A watcher of `service.watch(**watch)`, from the log's position now unless `after` is
    given."""
    if "after" not in watch:
        # From where the changes made so far end, so that none of theirs shows up late.
        async with asyncio.timeout(DEADLINE_S):
            await service.events.relay.caught_up()
        watch["after"] = await service.event_cursor()
    watcher = Watcher()
    stream = service.watch(**watch)
    task = asyncio.create_task(watcher.collect(stream))
    try:
        yield watcher
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await stream.aclose()
