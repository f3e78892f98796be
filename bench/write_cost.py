"""What a write costs, in this process, on a fresh PostgreSQL database built by the migrations:
the round trips and the CPU of one create and one update through `SessionService`, and
`POST /sessions` through our whole app against the raw baseline's (`bench/raw_server.py`, one
`INSERT … RETURNING`).

    python -m bench.write_cost                      # every part, 2,000 writes a round, 5 rounds
    python -m bench.write_cost --part service --count 5000
    python -m bench.write_cost --profile service    # cProfile of service creates, by own time
    python -m bench.write_cost --profile rest       # the same for POST /sessions

Round trips are the operations `Database` sends and waits for (statements, BEGIN, COMMIT), counted
where every one passes (`Database._timed`), with the outbox's relay stopped so that only the
write's own are counted. The service part then times `--count` sequential writes (CPU of this
process per write, the relay still stopped: it is measured with the app). The REST part runs both
apps as ASGI applications with their lifespans (ours with its middleware, metrics and relay), so
no socket or HTTP parsing is measured, `--concurrency` tasks each, alternating which goes first;
its ratio is the median of the rounds' rates, ours / raw. Bodies carry about 550 bytes of
messages, each with its own first line (so each gets its own branch), as `bench.scenarios` sends
them. PostgreSQL shares the machine with this process. Nothing is asserted."""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import orjson
import uvloop
from starlette.applications import Starlette

from app.config import load_settings
from app.db import Database, make_engine
from app.events import Events, MemoryLog
from app.logs import configure_logging
from app.main import create_app
from app.model import NewSession, SessionChanges
from app.naming.local import LocalNamer
from app.service import SessionService
from app.tables import InboxStatus
from bench import seed
from bench.scenarios import MESSAGES

Call = Callable[[int], Awaitable[Any]]


def messages(i: int) -> list[dict[str, str]]:
    first = {**MESSAGES[0], "content": f"Job {i} " + MESSAGES[0]["content"].split(" ", 2)[2]}
    return [first, *MESSAGES[1:]]


def create_body(i: int) -> bytes:
    return orjson.dumps({"repo": "bench/create", "target_branch": "main", "messages": messages(i)})


class Trips:
    """The round trips `db` waits for (every one goes through `Database._timed`)."""

    def __init__(self, db: Database) -> None:
        self.count = 0
        timed = db._timed

        async def counted(connection: Any, operation: Awaitable[Any]) -> Any:
            self.count += 1
            return await timed(connection, operation)

        db._timed = counted  # type: ignore[method-assign]

    def taken(self) -> int:
        count, self.count = self.count, 0
        return count


async def request(
    app: Any, state: dict[str, Any], method: str, path: str, body: bytes = b""
) -> tuple[int, bytes]:
    """`method path` with `body` through the ASGI app `app`: its status and body."""
    headers = [(b"host", b"bench"), (b"content-type", b"application/json")]
    headers.append((b"content-length", str(len(body)).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 80),
        "state": dict(state),
    }
    received = False
    status = 0
    answer = bytearray()

    async def receive() -> dict[str, Any]:
        nonlocal received
        if not received:
            received = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client never hangs up
        raise AssertionError  # pragma: no cover

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            answer.extend(message.get("body", b""))

    await app(scope, receive, send)
    return status, bytes(answer)


@asynccontextmanager
async def running(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    async with app.router.lifespan_context(app) as state:
        yield dict(state or {})


async def timed(call: Call, count: int, concurrency: int, start: int) -> tuple[float, float]:
    """Wall and CPU seconds of this process for `count` calls from `concurrency` tasks."""
    numbers = iter(range(start, start + count))

    async def worker() -> None:
        for i in numbers:
            await call(i)

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - wall, time.process_time() - cpu


def profiled(profile: cProfile.Profile | None) -> None:
    if profile is not None:
        pstats.Stats(profile).sort_stats("tottime").print_stats(35)


async def service_part(url: str, args: argparse.Namespace) -> None:
    settings = replace(load_settings(environ={}, env_file=None), database_url=url)
    db = Database(make_engine(settings))
    await db.open()
    # A relay that never runs: what the writes put in the outbox stays there.
    service = SessionService(db, LocalNamer(), Events(db, MemoryLog(1000)))
    trips = Trips(db)
    try:
        parent = (await service.create(NewSession("bench/p", "main", messages(-1)))).session
        target = (await service.create(NewSession("bench/u", "main", messages(-2)))).session
        keyed = NewSession("bench/k", "main", messages(-3))
        await service.create(keyed, idempotency_key="bench-key")
        same = NewSession("bench/same", "main", messages(-4))
        await service.create(same)
        version = target["version"]

        async def create(i: int) -> None:
            await service.create(NewSession("bench/create", "main", messages(i)))

        async def create_child(i: int) -> None:
            await service.create(NewSession("bench/child", "main", messages(i), parent["id"]))

        async def create_keyed(i: int) -> None:
            key = f"k-{i}-{uuid.uuid4()}"
            await service.create(
                NewSession("bench/keyed", "main", messages(i)), idempotency_key=key
            )

        async def replay(i: int) -> None:
            assert (await service.create(keyed, idempotency_key="bench-key")).replayed

        async def create_same(i: int) -> None:
            await service.create(same)

        async def update(i: int) -> None:
            nonlocal version
            changes = SessionChanges(title=f"Title {i}", inbox_status=InboxStatus.COMPLETED)
            row = await service.update(
                target["id"], changes, expected_version=version, merge_json=True
            )
            version = row["version"]

        async def update_unversioned(i: int) -> None:
            await service.update(target["id"], SessionChanges(title=f"T {i}"), merge_json=True)

        async def merge(i: int) -> None:
            await service.update(
                target["id"], SessionChanges(sbx_config={"run": i}), merge_json=True
            )

        async def move(i: int) -> None:
            await service.update(target["id"], SessionChanges(parent=parent["id"]))
            await service.update(target["id"], SessionChanges(parent=None))

        writes: dict[str, Call] = {
            "create": create,
            "create under a parent": create_child,
            "create with a new key": create_keyed,
            "idempotent replay": replay,
            "create, branch taken": create_same,
            "update (If-Match)": update,
            "update": update_unversioned,
            "update merging sbx_config": merge,
            "move to a parent and back (2)": move,
        }
        start = 0
        print(f"{'service write':<32} {'trips':>6} {'cpu us':>8} {'wall us':>8}")
        for name, call in writes.items():
            # Warm: each connection of the pool has prepared the statements.
            await timed(call, 200, 1, start)
            start += 200
            trips.taken()
            await timed(call, 20, 1, start)
            start += 20
            counted = trips.taken() / 20
            profile = cProfile.Profile() if args.profile == "service" and name == "create" else None
            if profile is not None:
                profile.enable()
            runs = []
            for _ in range(args.rounds):
                runs.append(await timed(call, args.count, 1, start))
                start += args.count
            if profile is not None:
                profile.disable()
            wall = statistics.median(w for w, _ in runs) / args.count * 1e6
            cpu = statistics.median(c for _, c in runs) / args.count * 1e6
            print(f"{name:<32} {counted:>6.2f} {cpu:>8.0f} {wall:>8.0f}", flush=True)
            profiled(profile)
    finally:
        await db.close()


async def rest_part(url: str, raw_url: str, args: argparse.Namespace) -> None:
    settings = replace(
        load_settings(environ={}, env_file=None), database_url=url, run_migrations=False
    )
    if args.logs:
        # As `session-inbox serve` logs: an access line per request, at info, to stderr.
        configure_logging(settings)
    # The raw server on a database of its own: our relay would otherwise relay its events too.
    os.environ["DATABASE_URL"] = raw_url
    from bench import raw_server

    ours_app = create_app(settings)
    raw_app = raw_server.app
    async with running(ours_app) as ours, running(raw_app) as raw:

        async def ours_post(i: int) -> None:
            status, body = await request(ours_app, ours, "POST", "/sessions", create_body(i))
            if status != 201:
                raise SystemExit(f"ours: {status} {body[:300]!r}")

        async def raw_post(i: int) -> None:
            status, body = await request(raw_app, raw, "POST", "/sessions", create_body(i))
            if status != 201:
                raise SystemExit(f"raw: {status} {body[:300]!r}")

        trips = Trips(ours["inbox"].db)
        await ours["inbox"].events.relay.stop(flush_s=0)
        await timed(ours_post, 100, 1, 10**8)
        print(f"POST /sessions: {trips.taken() / 100:.2f} round trips (ours, relay stopped)")
        ours["inbox"].events.relay.start()
        calls = {"ours": ours_post, "raw": raw_post}
        start = 0
        for call in calls.values():
            await timed(call, args.count // 2, args.concurrency, start)
            start += args.count
        if args.profile == "rest":
            profile = cProfile.Profile()
            profile.enable()
            await timed(ours_post, args.count, args.concurrency, start)
            profile.disable()
            profiled(profile)
            return
        results: dict[str, list[tuple[float, float]]] = {"ours": [], "raw": []}
        for round_ in range(args.rounds):
            order = list(calls.items())
            if round_ % 2:
                order.reverse()
            for server, call in order:
                results[server].append(await timed(call, args.count, args.concurrency, start))
                start += args.count
        print(f"\n{'POST /sessions':<16} {'req/s':>8} {'cpu us/req':>11}")
        for server, runs in results.items():
            wall = statistics.median(w for w, _ in runs)
            cpu = statistics.median(c for _, c in runs)
            print(f"{server:<16} {args.count / wall:>8.0f} {cpu / args.count * 1e6:>11.0f}")
        ratios = [raw_w / ours_w for (ours_w, _), (raw_w, _) in zip(*results.values(), strict=True)]
        shown = ", ".join(f"{r:.2f}" for r in ratios)
        print(f"ours/raw rate {statistics.median(ratios):.2f} (rounds: {shown})")


async def run(args: argparse.Namespace) -> None:
    url = await seed.fresh_postgres(f"bench_write_cost_{os.getpid()}")
    raw_url = await seed.fresh_postgres(f"bench_write_cost_raw_{os.getpid()}")
    try:
        if args.part in ("service", "all") and args.profile != "rest":
            await service_part(url, args)
        if args.part in ("rest", "all") and args.profile != "service":
            await rest_part(url, raw_url, args)
    finally:
        await seed.drop(url)
        await seed.drop(raw_url)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--part", choices=("service", "rest", "all"), default="all")
    parser.add_argument("--count", type=int, default=2000, help="writes per scenario and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=16, help="tasks, for the REST part")
    parser.add_argument("--logs", action="store_true", help="info logs to stderr, as served")
    parser.add_argument("--profile", choices=("service", "rest"), help="cProfile instead")
    # The server's loop (uvicorn runs on uvloop).
    uvloop.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
