"""What a write costs through the real app, in this process: `POST /sessions` against the raw
baseline's (`bench/raw_server.py`, one `INSERT … RETURNING`), and our GraphQL `createSession`
and `PATCH /sessions/{id}`, with the statements each one sends to the database.

    python -m bench.writes                          # PostgreSQL, a fresh database, 5 rounds
    python -m bench.writes --same-body --concurrency 16
    python -m bench.writes --engine sqlite          # ours only: the raw baseline is PostgreSQL's
    python -m bench.writes --profile                # cProfile of our POST, by internal time

Both apps are called as ASGI applications, with their lifespans run (ours with everything of
the contract: middleware, metrics, the outbox relay), so no HTTP parsing or socket is measured:
what is left is the cost of the layers, which is what differs between the two servers. Each round
runs `--count` requests per scenario from `--concurrency` tasks, alternating which app goes first;
the ratio is the median of the per-round ratios of requests per second (raw / ours: 0.5 means
we create at half the raw rate). Bodies carry about 550 bytes of messages; with `--same-body`
every body is the same (as a load generator sends it), so every create after a repo's first finds
its generated branch taken. The database is PostgreSQL on the same machine, so its CPU shares the
machine with this process, as it does in production. Nothing is asserted."""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette

from app.config import load_settings
from app.db import Database
from app.main import create_app
from bench import seed

MESSAGES = [
    {
        "role": "user",
        "content": "Fix the login redirect after the session times out: users land on a blank "
        "page instead of the sign-in form.",
    },
    {
        "role": "assistant",
        "content": "Looking at app/auth/redirect.py first; the timeout handler drops the next "
        "parameter.",
    },
    {
        "role": "user",
        "content": "Also keep the original query string so deep links survive the round trip "
        "through the login page.",
    },
    {"role": "assistant", "content": "Understood: a test for the deep link, then the fix."},
]
CREATE_MUTATION = (
    "mutation($input: CreateSessionInput!) { createSession(input: $input) "
    "{ session { id version } userErrors { code } } }"
)
Call = Callable[[int], Awaitable[None]]


def create_body(i: int, *, same: bool) -> bytes:
    messages = MESSAGES
    if not same:
        messages = [{**MESSAGES[0], "content": f"Task {i}: {MESSAGES[0]['content']}"}]
        messages += MESSAGES[1:]
    return orjson.dumps(
        {"repo": f"acme/app-{i % 40}", "target_branch": "main", "messages": messages}
    )


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


class Counted:
    """The statements our app sends, but the outbox relay's (which runs beside the requests)."""

    def __init__(self, db: Database) -> None:
        self.statements = 0
        self.transactions = 0
        fetch, transaction = db.fetch, db.transaction

        async def counted_fetch(query: Any, *args: Any) -> list[Any]:
            if "session_outbox" not in str(query):
                self.statements += 1
            return await fetch(query, *args)

        def counted_transaction() -> Any:
            self.transactions += 1
            return transaction()

        db.fetch = counted_fetch  # type: ignore[method-assign]
        db.transaction = counted_transaction  # type: ignore[method-assign]


async def timed(call: Call, count: int, concurrency: int, start: int) -> tuple[float, float]:
    """Wall and CPU seconds of this process for `count` calls from `concurrency` tasks."""
    numbers = iter(range(start, start + count))

    async def worker() -> None:
        for i in numbers:
            await call(i)

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - wall, time.process_time() - cpu


def checked(expected: int, status: int, body: bytes) -> None:
    if status != expected or b'"userErrors":[{' in body:
        raise SystemExit(f"expected {expected}, got {status}: {body[:300]!r}")


async def run(args: argparse.Namespace) -> None:
    name = f"bench_writes_{os.getpid()}"
    if args.engine == "postgres":
        url = await seed.fresh_postgres(name)
    else:
        url = await seed.fresh_sqlite(Path(f"/tmp/{name}.sqlite3"))
    settings = replace(
        load_settings(environ={}, env_file=None), database_url=url, run_migrations=False
    )
    os.environ["DATABASE_URL"] = url
    ours_app = create_app(settings)
    try:
        async with running(ours_app) as ours:
            inbox = ours["inbox"]
            counted = Counted(inbox.db)
            _, made = await request(
                ours_app, ours, "POST", "/sessions", create_body(-1, same=False)
            )
            target = "/sessions/" + orjson.loads(made)["id"]
            version = iter(range(2, 10**9))

            async def ours_post(i: int) -> None:
                checked(201, *await request(ours_app, ours, "POST", "/sessions", bodies[i]))

            async def ours_graphql(i: int) -> None:
                fields = orjson.loads(bodies[i])
                query = {
                    "query": CREATE_MUTATION,
                    "variables": {
                        "input": {
                            "repo": fields["repo"],
                            "targetBranch": "main",
                            "messages": fields["messages"],
                        }
                    },
                }
                status, body = await request(
                    ours_app, ours, "POST", "/graphql", orjson.dumps(query)
                )
                checked(200, status, body)

            async def ours_patch(i: int) -> None:
                patch = orjson.dumps({"title": f"Title {i}", "inbox_status": "completed"})
                checked(200, *await request(ours_app, ours, "PATCH", target, patch))
                next(version)

            scenarios: dict[str, dict[str, Call]] = {"POST /sessions": {"ours": ours_post}}
            if args.engine == "postgres":
                from bench import raw_server

                raw_app = raw_server.app
                raw_context = running(raw_app)
                raw = await raw_context.__aenter__()

                async def raw_post(i: int) -> None:
                    checked(201, *await request(raw_app, raw, "POST", "/sessions", bodies[i]))

                scenarios["POST /sessions"]["raw"] = raw_post
            scenarios["createSession (GraphQL)"] = {"ours": ours_graphql}
            scenarios["PATCH /sessions/{id}"] = {"ours": ours_patch}
            total = args.count * (args.rounds * 4 + 3)
            bodies = [create_body(i, same=args.same_body) for i in range(total)]

            start = 0
            warm_ups: tuple[Call, ...] = (ours_post, ours_graphql, ours_patch)
            for call in warm_ups:
                await timed(call, args.count // 4, args.concurrency, start)
                start += args.count // 4
            for scenario, calls in scenarios.items():
                counted.statements = counted.transactions = 0
                await timed(calls["ours"], 100, 1, start)
                start += 100
                print(
                    f"{scenario}: {counted.statements / 100:.2f} statements, "
                    f"{counted.transactions / 100:.2f} transactions per request (ours)"
                )
            if args.profile:
                profile = cProfile.Profile()
                profile.enable()
                await timed(ours_post, args.count, args.concurrency, start)
                profile.disable()
                pstats.Stats(profile).sort_stats("tottime").print_stats(40)
                return
            results: dict[tuple[str, str], list[tuple[float, float]]] = {}
            for round_ in range(args.rounds):
                for scenario, calls in scenarios.items():
                    order = list(calls.items())
                    if round_ % 2:
                        order.reverse()
                    for server, call in order:
                        wall, cpu = await timed(call, args.count, args.concurrency, start)
                        start += args.count
                        results.setdefault((scenario, server), []).append((wall, cpu))
            report(results, args.count)
    finally:
        if args.engine == "postgres" and "raw_context" in locals():
            await raw_context.__aexit__(None, None, None)
        await seed.drop(url)


def report(results: dict[tuple[str, str], list[tuple[float, float]]], count: int) -> None:
    print(f"\n{'scenario':<26} {'server':<5} {'req/s':>8} {'us/req':>8} {'cpu us/req':>11}")
    for (scenario, server), runs in results.items():
        wall = statistics.median(w for w, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        print(
            f"{scenario:<26} {server:<5} {count / wall:>8.0f} {wall / count * 1e6:>8.0f} "
            f"{cpu / count * 1e6:>11.0f}"
        )
    for scenario in {scenario for scenario, _ in results}:
        if (scenario, "raw") in results:
            ratios = [
                raw_wall / ours_wall
                for (ours_wall, _), (raw_wall, _) in zip(
                    results[(scenario, "ours")], results[(scenario, "raw")], strict=True
                )
            ]
            shown = ", ".join(f"{r:.2f}" for r in ratios)
            print(f"{scenario}: ours/raw rate {statistics.median(ratios):.2f} (rounds: {shown})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--count", type=int, default=2000, help="requests per scenario and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--same-body", action="store_true", help="every body the same")
    parser.add_argument("--profile", action="store_true", help="cProfile our POST instead")
    asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
