"""Throughput of our REST reads against a raw Starlette + asyncpg server, in one run.

    python -m bench.rest_vs_raw                      # fresh database of 100,000 sessions
    python -m bench.rest_vs_raw --reuse --rounds 5 --duration 5

Both servers are uvicorn single workers on 127.0.0.1 over the same PostgreSQL database: ours
(`session-inbox serve`) and bench/raw_server.py, which answers the same bodies byte for byte.
Load comes from `wrk` (one thread, a fixed number of connections, a fixed duration), a separate
process; `apt-get install -y wrk` if it is missing. Scenarios:

  GET /sessions/{id}        one session by id, cycling through 1,000 ids
  GET /sessions?limit=50    the first page, newest first, with its next cursor
  GET /sessions (stream)    the whole table streamed once, read by this process

Rounds alternate which server goes first, so a slow moment of a shared machine lands on both;
each ratio is the median of the per-round ratios ours/raw. Alongside requests per second, the
server's CPU time per request is reported: it is steadier than throughput on a busy machine.
Nothing is asserted; the exit status is non-zero only when a run failed."""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx

from bench import seed
from bench.server import Server, cpu_seconds, serve
from bench.stream_memory import BodyCounter

SAMPLE_IDS = 1000
BY_ID = "GET /sessions/{id}"
PAGE = "GET /sessions?limit=50"
STREAM = "GET /sessions (stream)"
LUA = """
local ids = {%s}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", "/sessions/" .. ids[(i %% #ids) + 1])
end
"""


@dataclass(frozen=True, slots=True)
class Result:
    scenario: str
    server: str
    round: int
    requests: int
    per_s: float
    p50_ms: float
    p99_ms: float
    # Server CPU time per request (per row, for the stream).
    cpu_us: float
    error: str | None = None


def _latency(out: str, percentile: str) -> float:
    match = re.search(rf"^\s*{percentile}%\s+([\d.]+)(us|ms|s)\b", out, re.MULTILINE)
    if match is None:
        return 0.0
    return float(match.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]


def _wrk_error(completed: subprocess.CompletedProcess[str], requests: int) -> str | None:
    out = completed.stdout
    if completed.returncode != 0:
        return f"wrk failed: {completed.stderr.strip() or out.strip()}"
    if bad := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        return f"{bad.group(1)} non-2xx responses"
    if socket := re.search(r"Socket errors: (.*)", out):
        return f"socket errors: {socket.group(1)}"
    return None if requests else "no requests completed"


def wrk(
    scenario: str,
    server: Server,
    round_: int,
    path: str,
    *,
    script: Path | None,
    connections: int,
    duration: float,
) -> Result:
    """`wrk` against `server` for `duration` seconds."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency"]
    if script is not None:
        command += ["-s", str(script)]
    before = cpu_seconds(server.pid)
    completed = subprocess.run(
        [*command, server.base_url + path],
        capture_output=True,
        text=True,
        timeout=duration + 30,
        check=False,
    )
    cpu = cpu_seconds(server.pid) - before
    found = re.search(r"(\d+) requests in", completed.stdout)
    rate = re.search(r"Requests/sec:\s*([\d.]+)", completed.stdout)
    requests = int(found.group(1)) if found else 0
    return Result(
        scenario=scenario,
        server=server.name,
        round=round_,
        requests=requests,
        per_s=float(rate.group(1)) if rate else 0.0,
        p50_ms=_latency(completed.stdout, "50"),
        p99_ms=_latency(completed.stdout, "99"),
        cpu_us=cpu / requests * 1e6 if requests else 0.0,
        error=_wrk_error(completed, requests),
    )


def stream(server: Server, round_: int, expected: int) -> Result:
    """The whole table streamed once; `per_s` counts rows."""
    counter = BodyCounter()
    before = cpu_seconds(server.pid)
    started = time.perf_counter()
    with (
        httpx.Client(base_url=server.base_url, timeout=120.0) as client,
        client.stream("GET", "/sessions") as response,
    ):
        for chunk in response.iter_raw():
            counter.feed(chunk)
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds(server.pid) - before
    error = counter.error() if response.status_code == 200 else f"HTTP {response.status_code}"
    if error is None and counter.sessions != expected:
        error = f"count {counter.sessions:,} != {expected:,}"
    rows = counter.sessions
    return Result(
        scenario=STREAM,
        server=server.name,
        round=round_,
        requests=1,
        per_s=rows / elapsed,
        p50_ms=elapsed * 1000,
        p99_ms=elapsed * 1000,
        cpu_us=cpu / rows * 1e6 if rows else 0.0,
        error=error,
    )


async def _sample_ids(url: str) -> list[str]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            "SELECT id FROM session ORDER BY md5(id::text) LIMIT $1", SAMPLE_IDS
        )
    finally:
        await connection.close()
    return [str(row["id"]) for row in rows]


def _median_ratio(results: list[Result], scenario: str, value: Callable[[Result], float]) -> str:
    """Median over rounds of ours/raw for `value`, with the range."""
    ratios = []
    for round_ in sorted({r.round for r in results if r.round > 0}):
        pair = {r.server: value(r) for r in results if r.scenario == scenario and r.round == round_}
        if pair.get("raw"):
            ratios.append(pair["ours"] / pair["raw"])
    if not ratios:
        return "n/a"
    return f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"


def print_table(results: list[Result]) -> None:
    header = (
        f"{'scenario':<25}{'server':<7}{'round':>6}{'requests':>10}{'req/s':>15}"
        f"{'p50 ms':>9}{'p99 ms':>9}{'cpu us':>9}  result"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        per_s = f"{r.per_s:,.0f}" + (" rows" if r.scenario == STREAM else "")
        print(
            f"{r.scenario:<25}{r.server:<7}{r.round:>6}{r.requests:>10,}{per_s:>15}"
            f"{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}{r.cpu_us:>9.0f}  {r.error or 'ok'}"
        )
    print()
    print(f"{'ours/raw (median of rounds, range)':<36}{'throughput':<22}{'server CPU per request'}")
    for scenario in (BY_ID, PAGE, STREAM):
        throughput = _median_ratio(results, scenario, lambda r: r.per_s)
        cpu = _median_ratio(results, scenario, lambda r: r.cpu_us)
        print(f"{scenario:<36}{throughput:<22}{cpu}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.rest_vs_raw", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--rows", type=int, default=100_000, help="sessions to seed")
    parser.add_argument("--postgres-db", help="database name (default bench_rest_<rows>)")
    parser.add_argument("--reuse", action="store_true", help="keep and reuse the seeded database")
    parser.add_argument("--url", help="use this migrated, seeded PostgreSQL database as it is")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--log-level", default="info", help="both servers' log level")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        sys.exit("rest_vs_raw: wrk is not installed (apt-get install -y wrk)")

    if args.url:
        url: str = args.url
        drop = False
    else:
        target = args.postgres_db or f"bench_rest_{args.rows}"
        url = asyncio.run(seed.prepare("postgres", target, args.rows, reuse=args.reuse))
        drop = not args.reuse
    results: list[Result] = []
    try:
        expected = asyncio.run(seed.count(url))
        ids = asyncio.run(_sample_ids(url))
        with tempfile.TemporaryDirectory(prefix="session-inbox-bench-") as workdir:
            script = Path(workdir) / "by_id.lua"
            script.write_text(LUA % ", ".join(f'"{i}"' for i in ids))
            with (
                serve("ours", url, log_level=args.log_level) as ours,
                serve("raw", url, raw=True, log_level=args.log_level) as raw,
            ):
                # Round 0 warms both servers up and is left out of the ratios.
                for round_ in range(args.rounds + 1):
                    duration = 1.0 if round_ == 0 else args.duration
                    order = (ours, raw) if round_ % 2 else (raw, ours)
                    for server in order:
                        results.append(
                            wrk(
                                BY_ID,
                                server,
                                round_,
                                "/sessions/",
                                script=script,
                                connections=args.connections,
                                duration=duration,
                            )
                        )
                    for server in order:
                        results.append(
                            wrk(
                                PAGE,
                                server,
                                round_,
                                "/sessions?limit=50",
                                script=None,
                                connections=args.connections,
                                duration=duration,
                            )
                        )
                    for server in order:
                        results.append(stream(server, round_, expected))
    finally:
        if drop:
            asyncio.run(seed.drop(url))
    results.sort(key=lambda r: ((BY_ID, PAGE, STREAM).index(r.scenario), r.round, r.server))
    print_table(results)
    return 0 if all(r.error is None for r in results) else 2


if __name__ == "__main__":
    sys.exit(main())
