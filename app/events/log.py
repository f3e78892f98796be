"""The event log: where committed changes wait for subscribers, in order, for a while.

An `EventLog` is a Redis stream (`app.events.redis_log`) or, with no Redis, `MemoryLog` in this
process; both keep at least the last `retention` entries and name each by its position, an
`EventId`, which is what clients see as `eventId` and give back as `after`."""

from __future__ import annotations

import asyncio
import bisect
import itertools
import re
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol


class EventLogUnavailable(Exception):
    """The log cannot be reached now; what was asked of it did not happen."""


class EventId(NamedTuple):
    """A position in the log, `<milliseconds>-<sequence>` as Redis streams write it; positions
    compare in log order."""

    ms: int
    seq: int

    def __str__(self) -> str:
        return f"{self.ms}-{self.seq}"

    @classmethod
    def parse(cls, text: str) -> EventId:
        """The position `text` names; ValueError when it names none."""
        match = _EVENT_ID.fullmatch(text)
        if match is None:
            raise ValueError(f"{text!r} is not an event id")
        ms, seq = int(match[1]), int(match[2])
        if ms >= 2**64 or seq >= 2**64:
            raise ValueError(f"{text!r} is not an event id")
        return cls(ms, seq)


# The position before every event.
START = EventId(0, 0)
_EVENT_ID = re.compile(r"(\d{1,20})-(\d{1,20})")


@dataclass(frozen=True, slots=True)
class Record:
    """A change to announce, as the outbox holds it: its kind, the session's id, and `data`,
    the JSON text the outbox's trigger wrote (the session, and the fields it had before)."""

    kind: str
    session_id: str
    data: str


@dataclass(frozen=True, slots=True)
class Entry:
    """A record in the log, at its position."""

    id: EventId
    record: Record


class EventLog(Protocol):
    """What the relay writes to and subscribers read from. Every method raises
    `EventLogUnavailable` when the log cannot be reached."""

    async def append(self, records: Sequence[Record]) -> None:
        """Add `records` at the end, in order, trimming the oldest beyond the retention."""

    async def position(self) -> EventId:
        """The position of the newest entry: a position after which nothing is missing."""

    async def holds_all_after(self, position: EventId) -> bool:
        """Whether no entry after `position` has been trimmed away."""

    async def read(self, after: EventId, count: int) -> list[Entry]:
        """At most `count` entries after `after`, oldest first, without waiting."""

    async def wait(self, after: EventId, count: int, timeout_s: float) -> list[Entry]:
        """As `read`, but waits up to `timeout_s` for an entry when there is none yet."""

    async def close(self) -> None: ...


def _position(entry: Entry) -> EventId:
    return entry.id


class MemoryLog:
    """The log in this process's memory, for a single instance without Redis. It starts empty
    at every start, so a position from an earlier run counts as trimmed (its subscriber is told
    to resync), exactly as if the entries had aged out."""

    def __init__(self, retention: int) -> None:
        self._entries: deque[Entry] = deque(maxlen=retention)
        self._last = EventId(int(time.time() * 1000), 0)
        # Everything up to here is gone: earlier runs, then what the retention dropped.
        self._trimmed = self._last
        self._appended = asyncio.Condition()

    async def append(self, records: Sequence[Record]) -> None:
        entries = self._entries
        for record in records:
            ms = int(time.time() * 1000)
            self._last = (
                EventId(ms, 0) if ms > self._last.ms else EventId(self._last.ms, self._last.seq + 1)
            )
            if len(entries) == entries.maxlen:
                self._trimmed = entries[0].id
            entries.append(Entry(self._last, record))
        async with self._appended:
            self._appended.notify_all()

    async def position(self) -> EventId:
        return self._last

    async def holds_all_after(self, position: EventId) -> bool:
        return position >= self._trimmed

    def _newest(self) -> EventId:
        return self._entries[-1].id if self._entries else START

    async def read(self, after: EventId, count: int) -> list[Entry]:
        entries = self._entries
        if not entries or entries[-1].id <= after:
            return []
        start = bisect.bisect_right(entries, after, key=_position)
        return list(itertools.islice(entries, start, start + count))

    async def wait(self, after: EventId, count: int, timeout_s: float) -> list[Entry]:
        async with self._appended:
            try:
                async with asyncio.timeout(timeout_s):
                    await self._appended.wait_for(lambda: self._newest() > after)
            except TimeoutError:
                return []
        return await self.read(after, count)

    async def close(self) -> None:
        return None
