"""Live updates: how soon a change reaches 1,000 `sessionEvents` subscribers, and how many
events a second the outbox relay brings to one.

    python -m bench.subscribers                                 # 1,000 subscribers, 20 changes
    python -m bench.subscribers --subscribers 100 --changes 5 --relay-events 500 --markdown

It builds a fresh PostgreSQL database with the project's migrations, starts a redis-server of
its own on a free port (the event stream's key is fixed, so a shared Redis is left alone) and
one `session-inbox serve` over both. Then, from this process:

  fan-out  N WebSockets (graphql-transport-ws), one `sessionEvents` subscription each: to one
           session (`id`), then, on N new sockets, to every session (no argument). A warm-up
           change that reaches every subscriber shows they are all live. Then `--changes`
           changes (REST PATCH of the title), one at a time, each made once the previous one
           reached every subscriber or `--timeout-s` passed. Latency runs from the PATCH's
           answer (the commit is acknowledged) to a subscriber's receipt of that version.
  relay    `--relay-events` changes by `--writers` concurrent HTTP clients, each on a session of
           its own, as fast as they go, watched by one subscriber with `after` = the
           `eventCursor` read before the first write: events relayed a second, from the first
           write to the last receipt, beside the write rate alone.

Nothing is asserted: the exit status is 2 when a run failed (an event not delivered in time, an
error on a subscription). Server, Redis and database go at the end, on an error or Ctrl-C too."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson
import uvloop
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from bench import seed
from bench.server import _CLEARED, Server, _stop, _wait_ready, cpu_seconds, free_port, ours_command
from tests.redis_server import RedisServer

DOCUMENT = """
subscription Watch($id: UUID, $after: String) {
  sessionEvents(id: $id, after: $after) {
    eventId kind sessionId
    session { id title inboxStatus version updatedAt }
  }
}
"""
GRAPHQL_TRANSPORT_WS = Subprotocol("graphql-transport-ws")
# Sockets opened at once: more would only queue in the server's listen backlog.
CONNECTING = 100
# The PATCH's answer without the session: its version is in the ETag.
MINIMAL = {"Prefer": "return=minimal"}
VARIANTS = {"id": True, "all": False}
Row = TypeVar("Row")
# What a subscriber counts: a (session id, version), the first time it comes.
Key = tuple[str, int]


class Tally:
    """How many subscribers have received each (session, version), and a way to wait for it."""

    def __init__(self) -> None:
        self.counts: Counter[Key] = Counter()
        self._changed = asyncio.Event()

    def add(self, key: Key) -> None:
        self.counts[key] += 1
        self._changed.set()

    def reached(self, key: Key, count: int) -> Callable[[], bool]:
        """Whether `count` subscribers have received `key`."""
        return lambda: self.counts[key] >= count

    async def until(self, done: Callable[[], bool], timeout_s: float) -> bool:
        """Whether `done()` came true within `timeout_s`."""
        try:
            async with asyncio.timeout(timeout_s):
                while not done():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            return done()
        return True


class Subscriber:
    """One WebSocket with one subscription, and when each (session, version) first arrived."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally
        self.received: dict[Key, float] = {}
        self.error: str | None = None
        self._socket: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None

    async def open(self, url: str, variables: dict[str, str], compression: str | None) -> None:
        self._socket = socket = await connect(
            url,
            subprotocols=[GRAPHQL_TRANSPORT_WS],
            compression=compression,
            ping_interval=None,
            open_timeout=60,
        )
        await socket.send('{"type":"connection_init"}')
        ack = orjson.loads(await socket.recv())
        if ack.get("type") != "connection_ack":
            raise RuntimeError(f"no connection_ack: {ack}")
        subscribe = {"query": DOCUMENT, "variables": variables}
        await socket.send(
            orjson.dumps({"id": "1", "type": "subscribe", "payload": subscribe}).decode()
        )
        self._task = asyncio.create_task(self._receive(socket))

    async def _receive(self, socket: ClientConnection) -> None:
        try:
            async for message in socket:
                # Stamped before anything else: the rest is this process's work, not delivery.
                now = time.perf_counter()
                frame = orjson.loads(message)
                kind = frame.get("type")
                if kind == "next" and not frame["payload"].get("errors"):
                    session = frame["payload"]["data"]["sessionEvents"]["session"]
                    key = (session["id"], session["version"]) if session else None
                    if key is not None and key not in self.received:
                        self.received[key] = now
                        self.tally.add(key)
                elif kind == "ping":
                    await socket.send('{"type":"pong"}')
                elif kind != "pong":
                    self.error = f"{kind}: {frame.get('payload')}"
        except ConnectionClosed as closed:
            self.error = self.error or f"closed: {closed}"

    async def close(self) -> None:
        if self._socket is not None:
            await self._socket.close()
        if self._task is not None:
            await self._task


@dataclass(frozen=True, slots=True)
class Fanout:
    variant: str
    subscribers: int
    changes: int
    delivered: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    # Below zero: the event reached a subscriber before the PATCH's answer reached us.
    min_ms: float
    # The PATCH's own round trip: median and slowest.
    write_ms: float
    write_max_ms: float
    # CPU time per change: the server's, and this process's per message received.
    server_cpu_ms: float
    client_cpu_us: float
    error: str | None

    @property
    def share(self) -> float:
        expected = self.subscribers * self.changes
        return self.delivered / expected if expected else 0.0


@dataclass(frozen=True, slots=True)
class Relay:
    events: int
    writers: int
    delivered: int
    write_per_s: float
    relayed_per_s: float
    # From the last write's answer to the last receipt.
    lag_ms: float
    # CPU time per event: the server's, and this process's (its writers, mostly).
    server_cpu_us: float
    client_cpu_us: float
    error: str | None


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))] if ordered else 0.0


async def _create(http: httpx.AsyncClient) -> str:
    response = await http.post(
        "/sessions", json={"repo": "bench/subscribers", "target_branch": "main"}
    )
    response.raise_for_status()
    session_id: str = response.json()["id"]
    return session_id


async def _change(http: httpx.AsyncClient, session_id: str, title: str) -> tuple[Key, float]:
    """Retitles the session; its new (id, version), from the ETag, and when the answer came."""
    response = await http.patch(f"/sessions/{session_id}", json={"title": title}, headers=MINIMAL)
    acknowledged = time.perf_counter()
    response.raise_for_status()
    return (session_id, int(response.headers["etag"].strip('"'))), acknowledged


async def _subscribe(
    server: Server, count: int, variables: dict[str, str], compression: str | None, tally: Tally
) -> list[Subscriber]:
    url = server.base_url.replace("http", "ws", 1) + "/graphql"
    subscribers = [Subscriber(tally) for _ in range(count)]
    gate = asyncio.Semaphore(CONNECTING)

    async def open_one(subscriber: Subscriber) -> None:
        async with gate:
            await subscriber.open(url, variables, compression)

    await asyncio.gather(*(open_one(s) for s in subscribers))
    return subscribers


async def fan_out(
    server: Server, http: httpx.AsyncClient, variant: str, args: argparse.Namespace
) -> Fanout:
    session_id = await _create(http)
    tally = Tally()
    variables = {"id": session_id} if VARIANTS[variant] else {}
    subscribers = await _subscribe(server, args.subscribers, variables, args.compression, tally)
    n = len(subscribers)
    # The sockets' objects are left out of this process's garbage collections, whose pauses
    # would otherwise be counted as delivery time.
    gc.collect()
    gc.freeze()
    acknowledged: dict[Key, float] = {}
    writes: list[float] = []
    error = None
    try:
        key, _ = await _change(http, session_id, "warm-up")
        if not await tally.until(tally.reached(key, n), args.timeout_s):
            error = f"only {tally.counts[key]} of {n} subscribers live"
        cpu, client_cpu = cpu_seconds(server.pid), time.process_time()
        for i in range(args.changes if error is None else 0):
            sent = time.perf_counter()
            key, acknowledged[key] = await _change(http, session_id, f"change {i + 1}")
            writes.append(acknowledged[key] - sent)
            await tally.until(tally.reached(key, n), args.timeout_s)
        cpu, client_cpu = cpu_seconds(server.pid) - cpu, time.process_time() - client_cpu
    finally:
        await asyncio.gather(*(s.close() for s in subscribers))
        gc.unfreeze()
    latencies = sorted(
        (s.received[key] - at) * 1000
        for s in subscribers
        for key, at in acknowledged.items()
        if key in s.received
    )
    errors = {s.error for s in subscribers if s.error}
    changes = len(acknowledged)
    return Fanout(
        variant=variant,
        subscribers=n,
        changes=args.changes,
        delivered=len(latencies),
        p50_ms=_percentile(latencies, 0.50),
        p99_ms=_percentile(latencies, 0.99),
        max_ms=latencies[-1] if latencies else 0.0,
        min_ms=latencies[0] if latencies else 0.0,
        write_ms=statistics.median(writes) * 1000 if writes else 0.0,
        write_max_ms=max(writes, default=0.0) * 1000,
        server_cpu_ms=cpu / changes * 1000 if changes else 0.0,
        client_cpu_us=client_cpu / len(latencies) * 1e6 if latencies else 0.0,
        error=error or (f"subscriber errors: {sorted(errors)[:3]}" if errors else None),
    )


async def relay(server: Server, http: httpx.AsyncClient, args: argparse.Namespace) -> Relay:
    # A writer with nothing to write would wait for an event it never causes.
    writers = min(args.writers, args.relay_events)
    sessions = [await _create(http) for _ in range(writers)]
    cursor = await http.post("/graphql", json={"query": "{ eventCursor }"})
    cursor.raise_for_status()
    tally = Tally()
    [watcher] = await _subscribe(
        server, 1, {"after": cursor.json()["data"]["eventCursor"]}, args.compression, tally
    )
    shares = [args.relay_events // writers] * writers
    shares[0] += args.relay_events % writers
    ours = set(sessions)

    def written() -> list[float]:
        # Not version 1: a creation may reach the log after the cursor was read.
        return [
            at for (sid, version), at in watcher.received.items() if sid in ours and version > 1
        ]

    async def write(session_id: str, count: int) -> float:
        last = 0.0
        for i in range(count):
            _, last = await _change(http, session_id, f"relay {i + 1}")
        return last

    try:
        cpu, client_cpu = cpu_seconds(server.pid), time.process_time()
        started = time.perf_counter()
        finished = max(await asyncio.gather(*map(write, sessions, shares)))
        # A session's events come in order: its last version comes after all the others.
        ends = [(session_id, 1 + count) for session_id, count in zip(sessions, shares, strict=True)]
        await tally.until(lambda: all(tally.counts[end] for end in ends), args.timeout_s)
        cpu, client_cpu = cpu_seconds(server.pid) - cpu, time.process_time() - client_cpu
    finally:
        await watcher.close()
    times = written()
    last = max(times, default=started)
    missing = args.relay_events - len(times)
    return Relay(
        events=args.relay_events,
        writers=writers,
        delivered=len(times),
        write_per_s=args.relay_events / (finished - started),
        relayed_per_s=len(times) / (last - started) if times else 0.0,
        lag_ms=(last - finished) * 1000,
        server_cpu_us=cpu / args.relay_events * 1e6,
        client_cpu_us=client_cpu / args.relay_events * 1e6,
        error=watcher.error or (f"{missing} events not delivered" if missing else None),
    )


async def measure(server: Server, args: argparse.Namespace) -> tuple[list[Fanout], Relay | None]:
    limits = httpx.Limits(max_connections=args.writers)
    async with httpx.AsyncClient(base_url=server.base_url, limits=limits, timeout=30.0) as http:
        fanouts = [await fan_out(server, http, variant, args) for variant in args.variants]
        return fanouts, (await relay(server, http, args) if args.relay_events else None)


@contextmanager
def _serve(database_url: str, redis_url: str) -> Iterator[Server]:
    """Our server over `database_url` and `redis_url`, as `bench.server.serve` starts it, which
    leaves Redis out."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key not in _CLEARED}
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        RUN_MIGRATIONS="false",
        HOST="127.0.0.1",
        PORT=str(port),
        LOG_LEVEL="warning",
    )
    with tempfile.TemporaryDirectory(prefix="session-inbox-bench-") as workdir:
        log = Path(workdir) / "server.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                ours_command(port), cwd=workdir, env=env, stdout=output, stderr=subprocess.STDOUT
            )
        server = Server("ours", process, f"http://127.0.0.1:{port}", log)
        try:
            _wait_ready(server)
            yield server
        finally:
            _stop(process)


def _raise_fd_limit(sockets: int) -> None:
    """Room for `sockets` descriptors here and in the server, which inherits the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = sockets + 256
    if soft != resource.RLIM_INFINITY and soft < wanted:
        top = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (top, hard))


FANOUT_COLUMNS: tuple[tuple[str, Callable[[Fanout], str]], ...] = (
    ("fan-out", lambda f: f"sessionEvents({'id' if VARIANTS[f.variant] else ''})"),
    ("subscribers", lambda f: f"{f.subscribers:,}"),
    ("changes", lambda f: f"{f.changes:,}"),
    ("delivered", lambda f: f"{f.share:.1%}"),
    ("p50 ms", lambda f: f"{f.p50_ms:.1f}"),
    ("p99 ms", lambda f: f"{f.p99_ms:.1f}"),
    ("max ms", lambda f: f"{f.max_ms:.1f}"),
    ("min ms", lambda f: f"{f.min_ms:.1f}"),
    ("PATCH p50 ms", lambda f: f"{f.write_ms:.1f}"),
    ("PATCH max ms", lambda f: f"{f.write_max_ms:.1f}"),
    ("server CPU ms/change", lambda f: f"{f.server_cpu_ms:.0f}"),
    ("client CPU us/msg", lambda f: f"{f.client_cpu_us:.0f}"),
    ("result", lambda f: f.error or "ok"),
)
RELAY_COLUMNS: tuple[tuple[str, Callable[[Relay], str]], ...] = (
    ("relay", lambda r: "sessionEvents(after)"),
    ("events", lambda r: f"{r.events:,}"),
    ("writers", lambda r: f"{r.writers}"),
    ("delivered", lambda r: f"{r.delivered / r.events:.1%}"),
    ("writes/s", lambda r: f"{r.write_per_s:,.0f}"),
    ("relayed/s", lambda r: f"{r.relayed_per_s:,.0f}"),
    ("lag after last write ms", lambda r: f"{r.lag_ms:.0f}"),
    ("server CPU us/event", lambda r: f"{r.server_cpu_us:.0f}"),
    ("client CPU us/event", lambda r: f"{r.client_cpu_us:.0f}"),
    ("result", lambda r: r.error or "ok"),
)


def print_table(fanouts: list[Fanout], relay: Relay | None, *, markdown: bool) -> None:
    _table(FANOUT_COLUMNS, fanouts, markdown=markdown)
    if relay is not None:
        print()
        _table(RELAY_COLUMNS, [relay], markdown=markdown)


def _table(
    columns: tuple[tuple[str, Callable[[Row], str]], ...], rows: list[Row], *, markdown: bool
) -> None:
    cells = [tuple(name for name, _ in columns)]
    cells += [tuple(show(row) for _, show in columns) for row in rows]
    if markdown:
        cells.insert(1, tuple("---" for _ in columns))
        for line in cells:
            print(f"| {' | '.join(line)} |")
        return
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    for line in cells:
        print("  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True)))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The benchmark's settings, from command-line arguments (the defaults without any)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.subscribers", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=20, help="measured changes per variant")
    parser.add_argument("--relay-events", type=int, default=5000, help="0 skips the relay run")
    parser.add_argument("--writers", type=int, default=4, help="HTTP clients of the relay run")
    parser.add_argument(
        "--variants", type=lambda v: v.split(","), default=list(VARIANTS), help="id,all"
    )
    parser.add_argument(
        "--compression",
        choices=("deflate", "none"),
        default="deflate",
        help="offer permessage-deflate, as browsers do (default), or not",
    )
    parser.add_argument("--timeout-s", type=float, default=30.0, help="wait for a delivery")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    parser.add_argument("--json", action="store_true", help="print the runs as JSON")
    args = parser.parse_args(argv)
    if unknown := set(args.variants) - set(VARIANTS):
        parser.error(f"unknown variants {sorted(unknown)}: choose from {', '.join(VARIANTS)}")
    if args.compression == "none":
        args.compression = None
    return args


def run(args: argparse.Namespace) -> tuple[list[Fanout], Relay | None]:
    """The benchmark, from its own database, Redis and server to their removal."""
    _raise_fd_limit(args.subscribers)
    url = f"{seed.POSTGRES_SERVER}/bench_subscribers_{os.getpid()}"
    try:
        asyncio.run(seed.fresh_postgres(url.rsplit("/", 1)[1]))
        with (
            tempfile.TemporaryDirectory(prefix="session-inbox-bench-") as workdir,
            RedisServer(Path(workdir)) as redis,
            _serve(url, redis.url) as server,
            asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner,
        ):
            return runner.run(measure(server, args))
    finally:
        asyncio.run(seed.drop(url))


def failed(fanouts: list[Fanout], relayed: Relay | None) -> bool:
    """Whether an event went undelivered or a subscription got an error."""
    return any(f.error or f.share < 1 for f in fanouts) or bool(relayed and relayed.error)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    fanouts, relayed = run(args)

    if args.json:
        runs: dict[str, Any] = {
            "fanout": [asdict(f) | {"share": f.share} for f in fanouts],
            "relay": None if relayed is None else asdict(relayed),
        }
        print(orjson.dumps(runs).decode())
    else:
        print_table(fanouts, relayed, markdown=args.markdown)
    return 2 if failed(fanouts, relayed) else 0


if __name__ == "__main__":
    sys.exit(main())
