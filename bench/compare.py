"""The comparison of issue 11, in one command: our GraphQL and REST against a raw Starlette +
asyncpg + orjson server and, with `--postgraphile`, PostGraphile 5.1.5, on the same database.

    .venv/bin/python -m bench.compare --postgraphile            # everything, about 25 minutes
    .venv/bin/python -m bench.compare --postgraphile --markdown # the tables of bench/RESULTS.md
    .venv/bin/python -m bench.compare --no-stream --no-fanout --rounds 3 --duration 5

What it does, in order:

1. builds a database with the project's migrations and seeds it deterministically (10,000
   sessions, 30% with a parent, messages of about 1 KB);
2. starts a private Redis and the servers: ours as users run it (a bearer token, REDIS_URL,
   request logs at `info`, metrics, the outbox and its relay, the local namer), the raw baseline
   (bench/raw_server.py, uvicorn at `warning`) and PostGraphile (bench/postgraphile/), each one
   process with a pool of 10;
3. checks a sample of every server's answers against the database (bench/scenarios.py), so a
   fast wrong answer cannot count;
4. runs each scenario (by id, the newest 50 with their parent's title, create) with wrk
   (`-t1 -c32`, a warm-up, then the timed run; every answer checked by wrk's script), the servers
   taking turns and the order of the turns rotated each round; between runs it waits until the
   outbox is empty, and after each create run it deletes the created sessions;
5. streams `GET /sessions` of 1,000,000 rows from ours and from the raw server, alternately,
   sampling each one's resident memory (bench/stream_memory.py);
6. fans one change out to 1,000 `sessionEvents` subscribers (bench/subscribers.py);
7. prints the machine, the medians, the ratios the issue names and every run.

Nothing is asserted. The exit status is 2 when any answer was refused, any run failed or any
event went undelivered."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import orjson

from bench import postgraphile_server, report, scenarios, seed, stream_memory, subscribers
from bench.load import Load, unique_prefix, wrk
from bench.machine import Machine, load_average, postgres_version
from bench.scenarios import CREATE, GRAPHQL, POSTGRAPHILE, RAW, REST, SCENARIOS, Truth
from bench.server import MB, Server, serve
from tests.redis_server import RedisServer

DATABASE = "bench_compare"
TOKEN = "bench-compare-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SAMPLE_IDS = 1000
CHECKED = 20
OUTBOX_WAIT_S = 120.0


@dataclass
class Outcome:
    machine: Machine
    servers: list[str]
    scenarios: list[str]
    results: list[report.Measured] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    streams: list[stream_memory.Run] = field(default_factory=list)
    fanouts: list[subscribers.Fanout] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(
            self.checks
            or any(r.failures for r in self.results)
            or any(not run.ok for run in self.streams)
            or subscribers.failed(self.fanouts, None)
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.compare", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--postgraphile", action="store_true", help="PostGraphile 5.1.5 too")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=int, default=10, help="seconds of each timed run")
    parser.add_argument("--warm-up", type=int, default=3, help="seconds before each timed run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--parent-share", type=float, default=0.3)
    parser.add_argument("--message-bytes", type=int, default=1000)
    parser.add_argument(
        "--scenarios",
        type=lambda v: [name for name in v.split(",") if name],
        default=list(SCENARIOS),
        help="by-id,list,create (empty: none)",
    )
    parser.add_argument("--stream-rows", type=int, default=1_000_000)
    parser.add_argument("--no-stream", action="store_true", help="skip the streamed list")
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--no-fanout", action="store_true", help="skip the fan-out")
    parser.add_argument(
        "--database", default=DATABASE, help="its name; the stream's gets a _stream suffix"
    )
    parser.add_argument("--reuse", action="store_true", help="keep databases holding --rows")
    parser.add_argument("--drop", action="store_true", help="drop the databases at the end")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    parser.add_argument("--json", action="store_true", help="print the outcome as JSON")
    args = parser.parse_args(argv)
    if unknown := set(args.scenarios) - set(SCENARIOS):
        parser.error(f"unknown scenarios {sorted(unknown)}: choose from {', '.join(SCENARIOS)}")
    return args


async def _truth(url: str) -> tuple[list[str], Truth]:
    """A deterministic sample of ids, and what the database holds for it and the newest page."""
    connection = await asyncpg.connect(url)
    try:
        sample = await connection.fetch("SELECT id FROM session ORDER BY id LIMIT $1", SAMPLE_IDS)
        newest = await connection.fetch(
            "SELECT id FROM session ORDER BY created_at DESC, id DESC LIMIT $1", scenarios.PAGE
        )
        ids = [str(row["id"]) for row in sample]
        rows = await connection.fetch(
            "SELECT s.id, s.title, s.parent, p.title AS parent_title FROM session s "
            "LEFT JOIN session p ON p.id = s.parent WHERE s.id = ANY($1::uuid[])",
            [row["id"] for row in [*sample, *newest]],
        )
    finally:
        await connection.close()
    sessions = {
        str(r["id"]): (r["title"], None if r["parent"] is None else str(r["parent"])) for r in rows
    }
    titles = {str(r["parent"]): r["parent_title"] for r in rows if r["parent"] is not None}
    return ids, Truth(sessions, titles, [str(row["id"]) for row in newest])


def _check(
    server: str,
    base_url: str,
    loads: dict[tuple[str, str], Load],
    truth: Truth,
    url: str,
    *,
    creates: bool,
) -> list[str]:
    """Why some of `server`'s answers are wrong: a sample of each read, or with `creates`, one
    create whose session must then be in the database."""
    problems = []
    headers = AUTH if server in (GRAPHQL, REST) else {}
    with httpx.Client(base_url=base_url, headers=headers, timeout=30.0) as client:
        for (scenario, who), load in loads.items():
            if who != server or (scenario == CREATE) != creates:
                continue
            tags = list(load.tags[:CHECKED]) or [unique_prefix()]
            for tag in tags:
                method, path, body = load.render(tag)
                response = client.request(
                    method, path, content=body, headers={"Content-Type": "application/json"}
                )
                try:
                    answer = response.json()
                except ValueError:
                    answer = response.text
                if scenario == CREATE:
                    created, why = scenarios.created_id(server, response.status_code, answer)
                    if created is not None and not asyncio.run(_exists(url, created)):
                        why = f"created {created}, which the database does not hold"
                else:
                    why = scenarios.check_read(
                        server, scenario, tag, response.status_code, answer, truth
                    )
                if why:
                    problems.append(f"{server} {scenario}: {why}")
                    break
    return problems


async def _exists(url: str, session_id: str) -> bool:
    connection = await asyncpg.connect(url)
    try:
        return bool(
            await connection.fetchval("SELECT 1 FROM session WHERE id = $1::uuid", session_id)
        )
    finally:
        await connection.close()


async def _settle(url: str, *, delete_created: bool) -> None:
    """Deletes the sessions the create runs made (when asked), then waits until our relay has
    emptied the outbox, which every server's writes fill (its trigger is the database's)."""
    connection = await asyncpg.connect(url)
    try:
        if delete_created:
            await connection.execute("DELETE FROM session WHERE repo = $1", scenarios.CREATE_REPO)
        deadline = time.monotonic() + OUTBOX_WAIT_S
        while await connection.fetchval("SELECT count(*) FROM session_outbox"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the outbox did not empty in {OUTBOX_WAIT_S:.0f} s")
            await asyncio.sleep(0.1)
        if delete_created:
            await connection.execute("VACUUM ANALYZE session")
    finally:
        await connection.close()


@contextmanager
def _servers(url: str, names: Sequence[str], redis_url: str) -> Iterator[dict[str, Server]]:
    """Every server of `names` over `url`, ours once for GraphQL and REST."""
    with ExitStack() as stack:
        running: dict[str, Server] = {}
        if RAW in names:
            running[RAW] = stack.enter_context(serve(RAW, url, raw=True, log_level="warning"))
        if GRAPHQL in names or REST in names:
            ours = stack.enter_context(
                serve(
                    "ours",
                    url,
                    log_level="info",
                    env={"API_TOKENS": TOKEN, "REDIS_URL": redis_url},
                    headers=AUTH,
                )
            )
            running.update({name: ours for name in (GRAPHQL, REST) if name in names})
        if POSTGRAPHILE in names:
            running[POSTGRAPHILE] = stack.enter_context(postgraphile_server.serve(url))
        yield running


def _requests(args: argparse.Namespace, outcome: Outcome, url: str, redis_url: str) -> None:
    ids, truth = asyncio.run(_truth(url))
    loads = scenarios.loads(ids)
    with _servers(url, outcome.servers, redis_url) as running:
        # Every read first: a create changes the newest page.
        for creates in (False, True):
            for server in outcome.servers:
                base_url = running[server].base_url
                outcome.checks += _check(server, base_url, loads, truth, url, creates=creates)
        asyncio.run(_settle(url, delete_created=True))
        for round_ in range(1, args.rounds + 1):
            # Each round starts with another server, so a slow moment lands on each in turn.
            shift = (round_ - 1) % len(outcome.servers)
            order = outcome.servers[shift:] + outcome.servers[:shift]
            for scenario in outcome.scenarios:
                for server in order:
                    outcome.results.append(
                        _timed(args, running[server], server, scenario, round_, loads)
                    )
                    asyncio.run(_settle(url, delete_created=scenario == CREATE))
                    done = outcome.results[-1]
                    print(
                        f"  round {round_} {scenario} {server}: {done.run.per_s:,.0f}/s, "
                        f"{done.failures:,} failures",
                        file=sys.stderr,
                    )


def _timed(
    args: argparse.Namespace,
    server: Server,
    name: str,
    scenario: str,
    round_: int,
    loads: dict[tuple[str, str], Load],
) -> report.Measured:
    load = loads[scenario, name]
    headers = {"Content-Type": "application/json"}
    if name in (GRAPHQL, REST):
        headers |= AUTH
    warm_up_failures = 0
    if args.warm_up:
        warm = wrk(
            server.base_url, load, headers, seconds=args.warm_up, connections=args.connections
        )
        warm_up_failures = warm.failures
    run = wrk(server.base_url, load, headers, seconds=args.duration, connections=args.connections)
    return report.Measured(scenario, name, round_, run, warm_up_failures)


def _streams(args: argparse.Namespace, outcome: Outcome) -> None:
    url = asyncio.run(
        seed.prepare(
            "postgres",
            f"{args.database}_stream",
            args.stream_rows,
            reuse=args.reuse,
            parent_share=args.parent_share,
            message_bytes=args.message_bytes,
        )
    )
    with _private_redis() as redis_url, _dropped(url, args.drop):
        env = {"API_TOKENS": TOKEN, "REDIS_URL": redis_url}
        for round_ in range(1, args.rounds + 1):
            order = [RAW, REST] if round_ % 2 else [REST, RAW]
            for name in order:
                with (
                    serve(RAW, url, raw=True, log_level="warning")
                    if name == RAW
                    else serve("ours", url, env=env, headers=AUTH)
                ) as server:
                    headers = AUTH if name == REST else None
                    [run] = stream_memory.measure(
                        server, "postgres", args.stream_rows, 1, 0.05, headers=headers
                    )
                    outcome.streams.append(run)


@contextmanager
def _dropped(url: str, drop: bool) -> Iterator[None]:
    """The database at `url` dropped at the end, with `drop`."""
    try:
        yield
    finally:
        if drop:
            asyncio.run(seed.drop(url))


@contextmanager
def _private_redis() -> Iterator[str]:
    """The URL of a Redis of our own, on a free port, gone at the end (the event stream's key is
    fixed, so a shared Redis is left alone)."""
    with (
        tempfile.TemporaryDirectory(prefix="session-inbox-bench-") as workdir,
        RedisServer(Path(workdir)) as redis,
    ):
        yield redis.url


def _fanout(args: argparse.Namespace, outcome: Outcome) -> None:
    options = ["--subscribers", str(args.subscribers), "--relay-events", "0", "--variants", "id"]
    fanouts, _relay = subscribers.run(subscribers.parse_args(options))
    outcome.fanouts += fanouts


def measure(args: argparse.Namespace) -> Outcome:
    servers = [RAW, *([POSTGRAPHILE] if args.postgraphile else []), GRAPHQL, REST]
    if args.postgraphile:
        postgraphile_server.install()
    url = asyncio.run(
        seed.prepare(
            "postgres",
            args.database,
            args.rows,
            reuse=args.reuse,
            parent_share=args.parent_share,
            message_bytes=args.message_bytes,
        )
    )
    tools = f"wrk -t1 -c{args.connections}, {args.duration} s after {args.warm_up} s of warm-up"
    machine = Machine.describe(asyncio.run(postgres_version(url)), tools)
    outcome = Outcome(machine, servers, list(args.scenarios))
    if outcome.scenarios:
        with _private_redis() as redis_url, _dropped(url, args.drop):
            _requests(args, outcome, url, redis_url)
    if not args.no_stream:
        _streams(args, outcome)
    if not args.no_fanout:
        _fanout(args, outcome)
    machine.load_end = load_average()
    return outcome


def _stream_lines(runs: Sequence[stream_memory.Run], markdown: bool) -> list[str]:
    cells = [["stream", "round", "rows", "MB", "seconds", "rows/s", "RSS growth MB", "result"]]
    for i, run in enumerate(runs):
        cells.append(
            [
                "raw baseline" if run.server == RAW else "session-inbox REST",
                str(i // 2 + 1),
                f"{run.rows:,}",
                f"{run.bytes / MB:,.0f}",
                f"{run.seconds:.1f}",
                f"{run.rows_per_s:,.0f}",
                f"{run.growth_mb:.1f}",
                run.error or ("ok" if run.ok else f"expected {run.expected:,} rows"),
            ]
        )
    ours = [r.rows_per_s for r in runs if r.server != RAW]
    raw = [r.rows_per_s for r in runs if r.server == RAW]
    lines = report.table(cells, markdown, right=2)
    if ours and raw:
        growth = max(r.growth_mb for r in runs if r.server != RAW)
        lines.append("")
        share = statistics.median(ours) / statistics.median(raw)
        lines.append(
            f"streaming: ours / raw throughput (medians) {share:.2f}, "
            f"largest RSS growth of ours {growth:.1f} MB"
        )
    return lines


def render(outcome: Outcome, markdown: bool) -> list[str]:
    lines = [*outcome.machine.lines(), ""]
    if outcome.checks:
        lines += ["answers refused before the timed runs:", *outcome.checks, ""]
    if outcome.results:
        lines += report.summary(outcome.results, outcome.servers, outcome.scenarios, markdown)
        lines += [
            "",
            *report.targets(outcome.results, outcome.servers, outcome.scenarios, markdown),
        ]
        lines += ["", *report.runs(outcome.results, markdown)]
    if outcome.streams:
        lines += ["", *_stream_lines(outcome.streams, markdown)]
    if outcome.fanouts:
        fanout = [
            f"{f.subscribers:,} subscribers, {f.changes} changes: delivered {f.share:.1%}, "
            f"p50 {f.p50_ms:.1f} ms, p99 {f.p99_ms:.1f} ms{'' if not f.error else ', ' + f.error}"
            for f in outcome.fanouts
        ]
        lines += ["", *(f"fan-out: {line}" for line in fanout)]
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    outcome = measure(args)
    if args.json:
        print(orjson.dumps(_as_json(outcome)).decode())
    else:
        print("\n".join(render(outcome, args.markdown)))
    return 2 if outcome.failed else 0


def _as_json(outcome: Outcome) -> dict[str, object]:
    return {
        "checks": outcome.checks,
        "runs": [
            {
                "scenario": r.scenario,
                "server": r.server,
                "round": r.round,
                "requests": r.run.requests,
                "per_s": r.run.per_s,
                "failures": r.failures,
                "sample": r.run.sample,
            }
            for r in outcome.results
        ],
        "streams": [
            {"server": s.server, "rows": s.rows, "ok": s.ok, "growth_mb": s.growth_mb}
            for s in outcome.streams
        ],
        "fanouts": [
            {"subscribers": f.subscribers, "share": f.share, "error": f.error}
            for f in outcome.fanouts
        ],
        "failed": outcome.failed,
    }


if __name__ == "__main__":
    sys.exit(main())
