"""`Relay`: moves committed events from the outbox to the event log, oldest first, then removes
them from the outbox. Every process runs one; one at a time leads (the others wait to take
over), so a session's events enter the log in the order of its versions. An event is removed
only once the log has it: a crash or an outage between the two sends it again (delivery is at
least once; clients drop duplicates by session and version)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from app.events.log import EventLog, EventLogUnavailable, Record
from app.store.outbox import Leadership, OutboxStore

log = logging.getLogger(__name__)

# Events moved per round trip.
BATCH = 500
# How often the relay looks at the outbox when nothing woke it, and how often a process that
# does not lead tries to: a safety net, for commits wake the leader at once.
POLL_S = 1.0
# Waits between attempts while the log or the database cannot be reached.
FIRST_RETRY_S = 0.05
LAST_RETRY_S = 2.0
# How often an outage's backlog is logged while it lasts.
REPORT_S = 30.0
# How long a leader that cannot reach the log keeps leading before it lets another instance
# (which may reach it) lead, and waits before trying to lead again.
HANDOVER_S = 5.0
# How long a stopping process gives the outbox's backlog to reach the log (the process's
# shutdown waits that much at most for it).
FLUSH_S = 2.0


class Relay:
    """The outbox's relay in this process."""

    def __init__(self, outbox: OutboxStore, events_log: EventLog, *, shared: bool) -> None:
        self.outbox = outbox
        self.log = events_log
        # Whether other processes read `events_log` (Redis) or only this one (in-process).
        self.shared = shared
        # Counts for the metrics (`app.metrics` reads them when scraped): events appended to
        # the log, appends the log refused, and rounds the database failed.
        self.relayed = 0
        self.publish_failures = 0
        self.database_failures = 0
        self._wake = asyncio.Event()
        self._leadership: Leadership = outbox.leadership(self.wake)
        self._task: asyncio.Task[None] | None = None
        self._leading = False
        self._warned = False
        # Until when this process lets others lead, having handed over.
        self._standing_by_until = 0.0
        # Since when relaying has failed (None while it works), and when the backlog was last
        # reported during the outage.
        self._outage_since: float | None = None
        self._reported = 0.0
        # Drains that ended with the outbox empty, for `caught_up`.
        self._emptied = 0
        self._emptied_changed = asyncio.Condition()

    def wake(self) -> None:
        """Look at the outbox now: something committed events to it."""
        self._wake.set()

    @property
    def leads(self) -> bool:
        """Whether this process's relay leads now."""
        return self._leading and self._leadership.held

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self, *, flush_s: float = FLUSH_S) -> None:
        """Stop relaying; first give the backlog `flush_s` to reach the log, unless another
        process leads (it relays it). A process that handed its lead over during an outage of
        the log takes it back for this, for there may be no other to relay."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        try:
            if flush_s > 0:
                async with asyncio.timeout(flush_s):
                    if not self.leads:
                        self._leading = await self._leadership.try_acquire()
                    if self._leading:
                        await self.drain()
        except (TimeoutError, EventLogUnavailable) as error:
            log.warning(
                "stopped with events left in the outbox (%s): another instance, or the next "
                "start, relays them",
                str(error) or "the event log did not take them in time",
            )
        except Exception as error:  # the database, mostly
            log.warning(
                "could not flush the outbox at stop: %s", str(error) or type(error).__name__
            )
        finally:
            self._leading = False
            await self._leadership.release()

    async def _run(self) -> None:
        delay = 0.0
        while True:
            try:
                if (not self._leadership.held or not self._leading) and (
                    time.monotonic() >= self._standing_by_until
                ):
                    self._leading = await self._leadership.try_acquire()
                    if self._leading:
                        log.info("this process relays the outbox's events")
                    elif not self.shared and not self._warned:
                        self._warned = True
                        log.warning(
                            "another process relays the outbox's events, and without REDIS_URL "
                            "they never reach this one's subscribers: set REDIS_URL"
                        )
                if self._leading:
                    await self.drain()
                delay = 0.0
            except EventLogUnavailable as error:
                delay = await self._failed(delay, error)
                await self._hand_over_after_a_long_outage()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the database, mostly: it comes back
                self._leading = False
                await self._leadership.release()
                delay = await self._failed(delay, error, database=True)
            if delay:
                await asyncio.sleep(delay)
                continue
            # Not `wait_for`: on Python 3.11 it can swallow a cancellation that comes as the
            # event is set, and `stop` would wait for this task for ever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_S):
                    await self._wake.wait()

    async def _hand_over_after_a_long_outage(self) -> None:
        """Another instance may reach the log that this one cannot: past `HANDOVER_S`, let it
        lead (what this one left in the outbox, it relays oldest first)."""
        since = self._outage_since
        if self._leading and since is not None and time.monotonic() - since > HANDOVER_S:
            log.warning("the event log is out of reach: letting another instance relay")
            self._leading = False
            self._standing_by_until = time.monotonic() + HANDOVER_S
            await self._leadership.release()

    async def _failed(self, delay: float, error: Exception, *, database: bool = False) -> float:
        """The wait before the next attempt; the outage logged when it starts, and its backlog
        every `REPORT_S` while it lasts."""
        if database:
            self.database_failures += 1
        else:
            self.publish_failures += 1
        now = time.monotonic()
        if self._outage_since is None:
            self._outage_since = now
            if database:
                log.warning("the outbox relay cannot reach the database (%s): retrying", error)
            else:
                log.warning(
                    "the event log cannot be reached (%s): events wait in the outbox", error
                )
        if not database and now - self._reported >= REPORT_S:
            self._reported = now
            try:
                backlog = await self.outbox.backlog()
            except Exception:
                log.debug("could not count the outbox", exc_info=True)
            else:
                log.warning("%d event(s) wait in the outbox for the event log", backlog)
        return min(max(delay * 2, FIRST_RETRY_S), LAST_RETRY_S)

    async def caught_up(self) -> None:
        """Wait until every event committed before this call has been relayed (while this
        process leads: another leader's progress is not seen here)."""
        # The drain running now may have looked at the outbox before those commits; the one
        # after it starts after this call.
        target = self._emptied + 2
        self.wake()
        async with self._emptied_changed:
            await self._emptied_changed.wait_for(lambda: self._emptied >= target)

    async def drain(self) -> int:
        """Move every event in the outbox to the log, oldest first; how many were moved."""
        moved = 0
        while True:
            self._wake.clear()
            pending = await self.outbox.pending(BATCH)
            if not pending:
                self._emptied += 1
                async with self._emptied_changed:
                    self._emptied_changed.notify_all()
                break
            await self.log.append(
                [Record(event.kind, str(event.session_id), event.data) for event in pending]
            )
            self.relayed += len(pending)
            await self.outbox.remove([event.id for event in pending])
            moved += len(pending)
        if self._outage_since is not None:
            log.warning(
                "the outbox relay works again after %.1f s: relayed %d waiting event(s)",
                time.monotonic() - self._outage_since,
                moved,
            )
            self._outage_since = None
        return moved
