"""Resident memory of the server while `GET /sessions` streams every session.

    python -m bench.stream_memory --rows 1000000            # PostgreSQL and SQLite, fresh data
    python -m bench.stream_memory --engine postgres --rows 1000000 --reuse --check
    python -m bench.stream_memory --url postgres://…/db --rows 300 --json   # an existing database

For each engine it starts the real server (`session-inbox serve`, a uvicorn single worker) as a
subprocess, warms it up with a page of 1,000 sessions and an empty stream, takes its resident
memory as the baseline, then streams the whole table while sampling the server's RSS every
50 ms. The body is read in chunks and thrown away; sessions are counted on the fly and must
equal the rows in the table. On PostgreSQL the raw Starlette + asyncpg baseline
(bench/raw_server.py) streams the same table in the same run, for comparison.

Nothing is asserted: the table is printed, and the exit status is non-zero only when a run
failed (server error, wrong count) or, with --check, when a growth reached --limit-mb."""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import orjson

from bench import seed
from bench.server import MB, RSSSampler, Server, cpu_seconds, rss, serve

# What every session object of the body starts with (see bench/seed.py on why it is unique).
SESSION_START = b'{"id":"'
BODY_START = b'{"sessions":['
BODY_END = b"]}"


@dataclass(frozen=True, slots=True)
class Run:
    engine: str
    server: str
    attempt: int
    expected: int
    rows: int
    bytes: int
    seconds: float
    # CPU time the server process spent on the stream: steadier than `seconds` on a busy box.
    server_cpu_s: float
    first_byte_s: float
    baseline_mb: float
    peak_mb: float
    after_mb: float
    error: str | None

    @property
    def growth_mb(self) -> float:
        return self.peak_mb - self.baseline_mb

    @property
    def ok(self) -> bool:
        return self.error is None and self.rows == self.expected

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


@dataclass
class BodyCounter:
    """Counts sessions in a streamed body without keeping it: occurrences of SESSION_START,
    including those split across two chunks."""

    sessions: int = 0
    size: int = 0
    head: bytes = b""
    tail: bytes = b""

    def feed(self, chunk: bytes) -> None:
        window = self.tail + chunk
        self.sessions += window.count(SESSION_START)
        # Shorter than the pattern, so a match in the next window always takes a new byte.
        self.tail = window[-(len(SESSION_START) - 1) :]
        if len(self.head) < len(BODY_START):
            self.head = (self.head + chunk)[: len(BODY_START)]
        self.size += len(chunk)

    def error(self) -> str | None:
        if self.head != BODY_START or not self.tail.endswith(BODY_END):
            return f"malformed body: starts {self.head!r}, ends {self.tail!r}"
        return None


def _settled_rss(pid: int, interval: float) -> int:
    """RSS of the idle process: the median of five samples `interval` seconds apart."""
    samples = []
    for _ in range(5):
        time.sleep(interval)
        samples.append(rss(pid))
    return sorted(samples)[len(samples) // 2]


def _warm_up(client: httpx.Client) -> None:
    client.get("/sessions", params={"limit": 1000}).raise_for_status()
    # The streaming path itself, with no rows to send.
    client.get("/sessions", params={"repo": "bench/warm-up"}).raise_for_status()


def measure(
    server: Server,
    engine: str,
    expected: int,
    attempts: int,
    sample_s: float,
    headers: dict[str, str] | None = None,
) -> list[Run]:
    """`attempts` streams of the whole table from `server`, after its warm-up and idle RSS."""
    runs = []
    timeout = httpx.Timeout(120.0)
    with httpx.Client(base_url=server.base_url, timeout=timeout, headers=headers) as client:
        _warm_up(client)
        baseline = _settled_rss(server.pid, sample_s)
        for attempt in range(1, attempts + 1):
            counter = BodyCounter()
            error = None
            first_byte = 0.0
            cpu_before = cpu_seconds(server.pid)
            with RSSSampler(server.pid, sample_s) as sampler:
                started = time.perf_counter()
                try:
                    with client.stream("GET", "/sessions") as response:
                        for chunk in response.iter_raw():
                            if not first_byte:
                                first_byte = time.perf_counter() - started
                            counter.feed(chunk)
                    if response.status_code != 200:
                        error = f"HTTP {response.status_code}"
                    else:
                        error = counter.error()
                except httpx.HTTPError as exc:
                    error = f"{type(exc).__name__}: {exc}"
                elapsed = time.perf_counter() - started
            server_cpu = cpu_seconds(server.pid) - cpu_before
            runs.append(
                Run(
                    engine=engine,
                    server=server.name,
                    attempt=attempt,
                    expected=expected,
                    rows=counter.sessions,
                    bytes=counter.size,
                    seconds=elapsed,
                    server_cpu_s=server_cpu,
                    first_byte_s=first_byte,
                    baseline_mb=baseline / MB,
                    peak_mb=sampler.peak / MB,
                    after_mb=_settled_rss(server.pid, sample_s) / MB,
                    error=error,
                )
            )
    return runs


def run_engine(
    engine: str, url: str, expected: int, *, attempts: int, sample_s: float, raw: bool
) -> list[Run]:
    runs = []
    with serve("ours", url) as server:
        runs += measure(server, engine, expected, attempts, sample_s)
    if raw and seed.is_postgres(url):
        with serve("raw", url, raw=True) as server:
            runs += measure(server, engine, expected, attempts, sample_s)
    return runs


def print_table(runs: list[Run], limit_mb: float) -> None:
    header = (
        f"{'engine':<9}{'server':<7}{'run':>4}{'rows':>11}{'body MB':>9}{'s':>7}{'cpu s':>7}"
        f"{'rows/s':>9}{'1st byte':>9}{'base MB':>9}{'peak MB':>9}{'growth':>8}{'after':>8}  result"
    )
    print(header)
    print("-" * len(header))
    for run in runs:
        if not run.ok:
            result = run.error or f"count {run.rows:,} != {run.expected:,}"
        else:
            result = "ok" if run.growth_mb < limit_mb else f"growth >= {limit_mb:g} MB"
        print(
            f"{run.engine:<9}{run.server:<7}{run.attempt:>4}{run.rows:>11,}"
            f"{run.bytes / MB:>9.0f}{run.seconds:>7.1f}{run.server_cpu_s:>7.1f}"
            f"{run.rows_per_s:>9,.0f}{run.first_byte_s:>9.3f}{run.baseline_mb:>9.1f}{run.peak_mb:>9.1f}"
            f"{run.growth_mb:>8.1f}{run.after_mb:>8.1f}  {result}"
        )
    by_key = {(run.engine, run.server): run for run in runs if run.ok}
    for engine in dict.fromkeys(run.engine for run in runs):
        ours, raw = by_key.get((engine, "ours")), by_key.get((engine, "raw"))
        if ours and raw:
            print(
                f"{engine}: ours/raw rows/s {ours.rows_per_s / raw.rows_per_s:.2f}, "
                f"server CPU {ours.server_cpu_s / max(raw.server_cpu_s, 0.01):.2f}, "
                f"growth {ours.growth_mb:.1f} MB vs {raw.growth_mb:.1f} MB (last runs)"
            )


async def _database(args: argparse.Namespace, engine: str) -> str:
    """The URL of the database to measure for `engine`, seeded as the arguments ask."""
    if args.url:
        if args.rows:
            await seed.timed_seed(args.url, args.rows, args.seed)
        return str(args.url)
    if engine == "postgres":
        target = args.postgres_db or f"bench_stream_{args.rows}"
    else:
        default = Path(tempfile.gettempdir()) / f"session-inbox-bench/stream_{args.rows}.sqlite3"
        target = str(args.sqlite_path or default)
    return await seed.prepare(engine, target, args.rows, reuse=args.reuse, seed_value=args.seed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.stream_memory", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--engine", choices=("postgres", "sqlite", "both"), default="both")
    parser.add_argument("--rows", type=int, default=None, help="sessions (default 1,000,000)")
    parser.add_argument("--reuse", action="store_true", help="keep and reuse seeded databases")
    parser.add_argument("--postgres-db", help="database name (default bench_stream_<rows>)")
    parser.add_argument("--sqlite-path", type=Path, help="SQLite file (default in the temp dir)")
    parser.add_argument(
        "--url", help="measure this migrated database as it is (after appending --rows, if given)"
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed of appended rows")
    parser.add_argument("--repeat", type=int, default=2, help="streams per server")
    parser.add_argument("--sample-ms", type=float, default=50.0, help="RSS sampling period")
    parser.add_argument("--no-raw", action="store_true", help="skip the raw baseline server")
    parser.add_argument("--json", action="store_true", help="print the runs as JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 when growth >= --limit-mb")
    parser.add_argument("--limit-mb", type=float, default=64.0)
    args = parser.parse_args(argv)
    if args.rows is None and not args.url:
        args.rows = 1_000_000

    if args.url:
        engines = ["postgres" if seed.is_postgres(args.url) else "sqlite"]
    else:
        engines = ["postgres", "sqlite"] if args.engine == "both" else [args.engine]
    runs: list[Run] = []
    for engine in engines:
        url = asyncio.run(_database(args, engine))
        try:
            expected = asyncio.run(seed.count(url))
            runs += run_engine(
                engine,
                url,
                expected,
                attempts=args.repeat,
                sample_s=args.sample_ms / 1000,
                raw=not args.no_raw,
            )
        finally:
            # Databases built for this run go; given or reused ones stay.
            if not args.url and not args.reuse:
                asyncio.run(seed.drop(url))

    if args.json:
        print(orjson.dumps([asdict(run) | {"growth_mb": run.growth_mb} for run in runs]).decode())
    else:
        print_table(runs, args.limit_mb)
    if not all(run.ok for run in runs):
        return 2
    if args.check and any(r.server == "ours" and r.growth_mb >= args.limit_mb for r in runs):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
