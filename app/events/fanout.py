"""`Fanout`: one reader of the event log per process, and every subscriber of the process fed
from it. A subscriber that asks for a position first reads the log from there (its catch-up),
then goes on with what the reader hands it, without a gap or a duplicate at the switch."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import msgspec

from app.events.codec import Event, EventKind, decode
from app.events.log import START, Entry, EventId, EventLog, EventLogUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

# Entries read from the log at a time, by the reader and by a catch-up.
PAGE = 200
# How long the reader's blocking read waits before it asks again.
WAIT_S = 5.0
# Events a subscriber may have waiting; beyond, it loses the oldest and is sent a RESYNC.
BUFFER = 1000
# Waits between attempts while the log cannot be reached.
FIRST_RETRY_S = 0.05
LAST_RETRY_S = 2.0

Match = Callable[[Event], bool]


class _Subscriber:
    """What the reader has handed one subscriber and it has not taken yet."""

    __slots__ = ("lost", "queue", "ready")

    def __init__(self) -> None:
        self.queue: deque[Event] = deque()
        # The newest event dropped because the subscriber fell behind.
        self.lost: EventId | None = None
        self.ready = asyncio.Event()

    def offer(self, events: Sequence[Event]) -> None:
        queue = self.queue
        for event in events:
            if len(queue) >= BUFFER:
                self.lost = queue.popleft().id
            queue.append(event)
        self.ready.set()


class Fanout:
    """The process's subscribers to `events_log`, all fed by one reader task, whatever their
    number."""

    def __init__(self, events_log: EventLog) -> None:
        self.log = events_log
        self._subscribers: set[_Subscriber] = set()
        self._reader: asyncio.Task[None] | None = None
        # Set once the reader knows where it starts: a subscriber registered before that could
        # miss what is appended between its registration and that position.
        self._reading = asyncio.Event()

    def __len__(self) -> int:
        """How many subscribers there are."""
        return len(self._subscribers)

    def start(self) -> None:
        if self._reader is None:
            self._reader = asyncio.create_task(self._read(), name="event-fanout")

    async def stop(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    async def _read(self) -> None:
        last = await _patiently(self.log.position)
        self._reading.set()
        outage = _Outage("the event log's reader")
        while True:
            try:
                entries = await self.log.wait(last, PAGE, WAIT_S)
            except EventLogUnavailable as error:
                await outage.wait(error)
                continue
            if outage.over() and not await _patiently(self.log.holds_all_after, last):
                # The log came back without what it held (Redis lost its data), maybe with
                # entries this reader had not read yet: every subscriber here is told, then goes
                # on with what the log holds now (its ids all come after `last`).
                log.warning("the event log lost events while it was away: subscribers resync")
                for subscriber in tuple(self._subscribers):
                    subscriber.offer([Event(last, EventKind.RESYNC)])
            if not entries:
                continue
            last = entries[-1].id
            # Events are decoded once for every subscriber, and not at all without one.
            if self._subscribers:
                events = _decoded(entries)
                for subscriber in tuple(self._subscribers):
                    subscriber.offer(events)

    async def subscribe(self, after: EventId | None, match: Match) -> AsyncGenerator[Event, None]:
        """The events that `match` accepts, and RESYNCs. With `after`: first every one after
        that position (or a RESYNC, when the log no longer holds them all), then live ones."""
        subscriber = _Subscriber()
        await self._reading.wait()
        # Registered before the catch-up reads, so nothing committed meanwhile is missed.
        self._subscribers.add(subscriber)
        try:
            last = START
            if after is not None:
                last = after
                async for event in self._catch_up(after):
                    last = event.id
                    if event.kind is EventKind.RESYNC or match(event):
                        yield event
            while True:
                await subscriber.ready.wait()
                subscriber.ready.clear()
                lost, subscriber.lost = subscriber.lost, None
                if lost is not None and lost > last:
                    last = lost
                    log.warning("an event subscriber fell behind: it was sent a RESYNC")
                    yield Event(lost, EventKind.RESYNC)
                queue = subscriber.queue
                while queue:
                    event = queue.popleft()
                    if event.kind is EventKind.RESYNC:
                        yield event
                        continue
                    if event.id <= last:
                        continue  # already read by the catch-up
                    last = event.id
                    if match(event):
                        yield event
        finally:
            self._subscribers.discard(subscriber)

    async def _catch_up(self, after: EventId) -> AsyncGenerator[Event, None]:
        """Every event after `after` that the log holds, or a RESYNC at the log's position now
        when it does not hold them all (or does not know `after`)."""
        last = after
        # A position past the log's end is one it does not know (its data was lost since).
        known = after <= await _patiently(self.log.position)
        while True:
            entries = await _patiently(self.log.read, last, PAGE)
            # Asked after the read: nothing after `last` trimmed yet means the read missed none.
            if not known or not await _patiently(self.log.holds_all_after, last):
                yield Event(await _patiently(self.log.position), EventKind.RESYNC)
                return
            for event in _decoded(entries):
                yield event
            if len(entries) < PAGE:
                return
            last = entries[-1].id


def _decoded(entries: Sequence[Entry]) -> list[Event]:
    events = []
    for entry in entries:
        try:
            events.append(decode(entry))
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
            log.exception("skipped event %s: its data cannot be read", entry.id)
    return events


class _Outage:
    """Waits between attempts at reaching the log, longer each time, logging once when an
    outage starts and once when it ends."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.delay = 0.0

    async def wait(self, error: Exception) -> None:
        if not self.delay:
            log.warning("%s cannot reach the event log (%s): retrying", self.what, error)
        self.delay = min(max(self.delay * 2, FIRST_RETRY_S), LAST_RETRY_S)
        await asyncio.sleep(self.delay)

    def over(self) -> bool:
        """Whether an outage just ended."""
        if not self.delay:
            return False
        log.info("%s reaches the event log again", self.what)
        self.delay = 0.0
        return True


async def _patiently(call: Callable[..., Awaitable[T]], *args: Any) -> T:
    """`call(*args)`, tried again while the log cannot be reached."""
    outage = _Outage("a reader of the event log")
    while True:
        try:
            result = await call(*args)
        except EventLogUnavailable as error:
            await outage.wait(error)
            continue
        outage.over()
        return result
