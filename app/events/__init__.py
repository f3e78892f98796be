"""Change events: written to the outbox by the database in each change's transaction, moved to
the event log by the relay, and fanned out to each process's subscribers.

`Events` is what the service talks to: it wakes the relay after a commit, tells the log's
position, and subscribes."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from app.config import Settings
from app.db import Database
from app.events.codec import Event, EventKind
from app.events.fanout import Fanout, Match
from app.events.log import EventId, EventLog, EventLogUnavailable, MemoryLog
from app.events.relay import Relay
from app.store.outbox import OutboxStore

__all__ = [
    "Event",
    "EventId",
    "EventKind",
    "EventLog",
    "EventLogUnavailable",
    "Events",
    "MemoryLog",
]


class Events:
    """The events of one process on `db`: its relay and its fan-out over `events_log`."""

    def __init__(self, db: Database, events_log: EventLog) -> None:
        self.log = events_log
        self.relay = Relay(
            OutboxStore(db), events_log, shared=not isinstance(events_log, MemoryLog)
        )
        self.fanout = Fanout(events_log)

    @classmethod
    def for_settings(cls, db: Database, settings: Settings) -> Events:
        """On a Redis stream with `REDIS_URL`, in this process otherwise."""
        events_log: EventLog
        if settings.redis_url:
            from app.events.redis_log import RedisLog

            events_log = RedisLog(settings.redis_url, settings.event_retention)
        else:
            events_log = MemoryLog(settings.event_retention)
        return cls(db, events_log)

    def start(self) -> None:
        self.relay.start()
        self.fanout.start()

    async def stop(self) -> None:
        await self.fanout.stop()
        await self.relay.stop()
        await self.log.close()

    def committed(self) -> None:
        """Events were committed to the outbox: relay them now."""
        self.relay.wake()

    async def position(self) -> EventId:
        """The log's position now (`EventLogUnavailable` when it cannot be reached)."""
        return await self.log.position()

    def subscribe(self, after: EventId | None, match: Match) -> AsyncGenerator[Event, None]:
        return self.fanout.subscribe(after, match)
