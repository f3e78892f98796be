"""`RedisLog`: the event log as one Redis stream, shared by every instance.

One stream holds every event, so a position means the same thing on every instance. Appends
trim it to exactly `retention` entries and record the newest trimmed id as the stream's
`max-deleted-entry-id` (Redis trims without moving it), which is how `holds_all_after` knows
what is gone. A stream that is born again (Redis restarted without its data, the key was
evicted) counts everything before its first entry as trimmed, as `MemoryLog` does after a
restart. `wait` has a connection of its own: the process runs one blocking reader, whatever
its number of subscribers (`app.events.fanout`), and the other commands never queue behind it.

Nothing is retried here: a Redis that is down surfaces within about a second as
`EventLogUnavailable`, and the caller decides when to try again. Retrying an append could
write it twice."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import cast

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    ConnectionError,
    OutOfMemoryError,
    ReadOnlyError,
)
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.events.log import Entry, EventId, EventLogUnavailable, Record

CONNECT_TIMEOUT_S = 1.0
# The longest a command may take once sent; `wait` adds it to the time it blocks.
COMMAND_TIMEOUT_S = 2.0
# An idle connection is PINGed before it is used again.
HEALTH_CHECK_S = 30

# What `_reaching` turns into EventLogUnavailable: the server is down, starting, read-only after
# a failover, or out of memory. ConnectionError covers BusyLoadingError (LOADING) and a pool
# with no free connection; the builtin TimeoutError, an OSError, is `wait`'s own bound.
_UNAVAILABLE = (ConnectionError, RedisTimeoutError, ReadOnlyError, OutOfMemoryError, OSError)

# The one position that nothing can follow: XRANGE refuses an interval that starts after it.
_LAST_ID = EventId(2**64 - 1, 2**64 - 1)

# KEYS[1]: the stream. ARGV: the retention, then kind, session id and data of each record.
_APPEND = """
local key, retention = KEYS[1], tonumber(ARGV[1])
local born = redis.call('EXISTS', key) == 0
local first, last
for i = 2, #ARGV, 3 do
  last = redis.call('XADD', key, '*', 'kind', ARGV[i], 'session', ARGV[i + 1],
                    'data', ARGV[i + 2])
  first = first or last
end
local gone = born and first or nil
local excess = redis.call('XLEN', key) - retention
if excess > 0 then
  local trimmed = redis.call('XRANGE', key, '-', '+', 'COUNT', excess)
  gone = trimmed[#trimmed][1]
  redis.call('XTRIM', key, 'MAXLEN', retention)
end
if gone then
  redis.call('XSETID', key, last, 'MAXDELETEDID', gone)
end
return last
"""

# KEYS[1]: the stream. Its last-generated-id and max-deleted-entry-id: XINFO STREAM from here, so
# the first and last entries it carries stay in Redis. With no stream, an empty one is made at
# Redis's time now, with everything before it counted as gone: a position given out now is one
# after which nothing is missing, and any from a lost stream is before it.
_SUMMARY = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  local now = redis.call('TIME')
  local id = string.format('%d-0', tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000))
  redis.call('XADD', KEYS[1], id, 'born', '')
  redis.call('XDEL', KEYS[1], id)
  redis.call('XSETID', KEYS[1], id, 'MAXDELETEDID', id)
  return {id, id}
end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local field = {}
for i = 1, #info, 2 do
  field[info[i]] = info[i + 1]
end
return {field['last-generated-id'], field['max-deleted-entry-id']}
"""

_NO_RETRY = Retry(NoBackoff(), retries=0)

# Entries as XRANGE and XREAD answer them; redis-py's annotations do not know that with
# `decode_responses` every value is a str.
_Found = list[tuple[str, dict[str, str]]]


class RedisLog:
    """The event log in the Redis stream `key`, trimmed to its last `retention` entries.
    Connects on first use; `close` when done."""

    def __init__(self, url: str, retention: int, *, key: str = "session-inbox:events") -> None:
        self.key = key
        self._retention = retention
        # A blocking pool: a command waits (bounded) for a free connection rather than failing.
        self._commands = Redis.from_pool(
            BlockingConnectionPool.from_url(
                url,
                max_connections=4,
                timeout=COMMAND_TIMEOUT_S,
                socket_connect_timeout=CONNECT_TIMEOUT_S,
                socket_timeout=COMMAND_TIMEOUT_S,
                health_check_interval=HEALTH_CHECK_S,
                retry=_NO_RETRY,
                decode_responses=True,
            )
        )
        # No socket timeout: each `wait` bounds itself by the time it blocks.
        self._blocking = Redis.from_url(
            url,
            single_connection_client=True,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            socket_timeout=None,
            health_check_interval=HEALTH_CHECK_S,
            retry=_NO_RETRY,
            decode_responses=True,
        )
        self._append = self._commands.register_script(_APPEND)
        self._summary = self._commands.register_script(_SUMMARY)

    async def append(self, records: Sequence[Record]) -> None:
        if not records:
            return
        args: list[str | int] = [self._retention]
        for record in records:
            args += (record.kind, record.session_id, record.data)
        with _reaching():
            await self._append(keys=[self.key], args=args)

    async def position(self) -> EventId:
        last, _ = await self._summarize()
        return last

    async def holds_all_after(self, position: EventId) -> bool:
        _, gone = await self._summarize()
        return position >= gone

    async def read(self, after: EventId, count: int) -> list[Entry]:
        if after == _LAST_ID:
            return []
        with _reaching():
            found = await self._commands.xrange(self.key, f"({after}", "+", count=count)
        return _entries(cast(_Found, found))

    async def wait(self, after: EventId, count: int, timeout_s: float) -> list[Entry]:
        # BLOCK 0 would wait for ever.
        block_ms = max(1, round(timeout_s * 1000))
        with _reaching():
            async with asyncio.timeout(block_ms / 1000 + COMMAND_TIMEOUT_S):
                found = await self._blocking.xread(
                    {self.key: str(after)}, count=count, block=block_ms
                )
        # One stream asked, so one answers, or none after the block time.
        streams = cast(list[tuple[str, _Found]], found)
        return _entries(streams[0][1]) if streams else []

    async def ping(self) -> None:
        """PING, for readiness: raises EventLogUnavailable when Redis does not answer."""
        with _reaching():
            await self._commands.ping()

    async def close(self) -> None:
        await self._blocking.aclose()
        await self._commands.aclose()

    async def _summarize(self) -> tuple[EventId, EventId]:
        """The stream's last generated id, and the position before which it has lost entries
        (made empty when there is none)."""
        with _reaching():
            summary = await self._summary(keys=[self.key])
        last, gone = summary
        return EventId.parse(last), EventId.parse(gone)


@contextmanager
def _reaching() -> Iterator[None]:
    """Turns what says Redis cannot be reached into `EventLogUnavailable`."""
    try:
        yield
    except _UNAVAILABLE as error:
        raise EventLogUnavailable(f"Redis: {error}") from error


def _entries(found: _Found) -> list[Entry]:
    return [
        Entry(EventId.parse(id_), Record(fields["kind"], fields["session"], fields["data"]))
        for id_, fields in found
    ]
