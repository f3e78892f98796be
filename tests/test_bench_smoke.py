"""The streaming `GET /sessions` through a real server process, driven by the benchmark that
measures its memory (bench/stream_memory.py), so the benchmark keeps working too; and the live
updates benchmark (bench/subscribers.py) on a handful of subscribers.

The default run streams a few hundred sessions and checks the count; the million-row run, marked
slow, also checks the issue's target: resident memory growth under 64 MB. Neither times anything.
The baseline the REST benchmark compares with (bench/raw_server.py) must answer what our server
answers, byte for byte, or the comparison measures a different output.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from app.config import Settings
from app.db import Database
from bench import raw_server
from tests.conftest import SessionFactory, with_state

REPO_ROOT = Path(__file__).resolve().parent.parent
MEMORY_LIMIT_MB = 64


async def stream_memory(*args: str) -> list[dict[str, Any]]:
    """Runs `python -m bench.stream_memory ARGS --json` and returns its runs."""
    runs: list[dict[str, Any]] = await run_bench("bench.stream_memory", *args)
    return runs


async def run_bench(module: str, *args: str) -> Any:
    """Runs `python -m MODULE ARGS --json`, which must exit 0, and returns what it printed last.
    If cancelled (a timeout), the benchmark gets SIGINT first, so it stops what it started."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        *args,
        "--json",
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await process.communicate()
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(process.wait(), 20)
            except TimeoutError:
                process.kill()
                await process.wait()
    assert process.returncode == 0, (stdout + stderr).decode()
    return orjson.loads(stdout.splitlines()[-1])


async def test_streamed_list_holds_every_session_through_the_server_process(
    settings: Settings, db: Database
) -> None:
    # `db` empties the table, so the 300 seeded sessions are all the stream should hold.
    async with asyncio.timeout(120):
        runs = await stream_memory(
            "--url", settings.database_url, "--rows", "300", "--repeat", "1", "--no-raw"
        )

    [run] = runs
    assert run["error"] is None
    assert run["rows"] == run["expected"] == 300


async def test_subscribers_benchmark_delivers_every_change_to_every_subscriber() -> None:
    # Its own database, Redis and server: nothing of the test's fixtures is shared.
    async with asyncio.timeout(180):
        runs = await run_bench(
            "bench.subscribers", "--subscribers", "5", "--changes", "2", "--relay-events", "50"
        )

    assert [(run["variant"], run["share"]) for run in runs["fanout"]] == [("id", 1), ("all", 1)]
    assert runs["relay"]["delivered"] == 50


async def test_the_raw_baseline_answers_what_our_server_answers(
    settings: Settings, db: Database, client: httpx.AsyncClient, make_session: SessionFactory
) -> None:
    if not db.is_postgres:
        pytest.skip("the raw baseline is PostgreSQL only")
    parent = await make_session()
    await make_session(parent=parent["id"], messages="a string")
    await make_session(messages=None)
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    transport = httpx.ASGITransport(app=with_state(raw_server.app, {"pool": pool}))
    try:
        async with httpx.AsyncClient(transport=transport, base_url=str(client.base_url)) as raw:
            for url in (
                f"/sessions/{parent['id']}",
                "/sessions/6f1c2b8e-3d4a-4e5f-8a9b-0c1d2e3f4a5b",
                "/sessions/not-a-uuid",
                "/sessions?limit=2",
                "/sessions?limit=50&repo=acme%2Fapp",
                "/sessions",
            ):
                ours, theirs = await client.get(url), await raw.get(url)
                assert (theirs.status_code, theirs.content) == (ours.status_code, ours.content)
                for header in ("etag", "link"):
                    assert theirs.headers.get(header) == ours.headers.get(header), (url, header)
    finally:
        await pool.close()


def _slow_selected(config: pytest.Config) -> bool:
    """True when `-m` names the slow marker: the million-row runs go only when asked for."""
    return "slow" in (config.getoption("markexpr") or "")


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["postgres", "sqlite"])
async def test_streaming_a_million_sessions_grows_server_memory_by_less_than_64_mb(
    engine: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if not _slow_selected(request.config):
        pytest.skip("a million rows: run with -m slow")
    async with asyncio.timeout(1800):
        runs = await stream_memory(
            "--engine",
            engine,
            "--rows",
            "1000000",
            "--repeat",
            "1",
            "--no-raw",
            "--postgres-db",
            f"session_inbox_slow_{os.getpid()}",
            "--sqlite-path",
            str(tmp_path / "slow.sqlite3"),
        )

    [run] = runs
    assert run["rows"] == run["expected"] == 1_000_000
    assert run["growth_mb"] < MEMORY_LIMIT_MB, run


async def test_the_comparison_measures_every_server_and_scenario_without_a_refused_answer() -> None:
    # A few hundred rows and one-second runs: what the command does, not how fast. `--drop`
    # leaves no database behind; the name is this run's, so a benchmark running beside is safe.
    async with asyncio.timeout(300):
        outcome = await run_bench(
            "bench.compare",
            *("--database", f"bench_smoke_{os.getpid()}", "--drop"),
            *("--rows", "300", "--rounds", "1", "--duration", "1", "--warm-up", "0"),
            *("--stream-rows", "300", "--subscribers", "5"),
        )

    assert outcome["checks"] == []
    measured = {(run["scenario"], run["server"]) for run in outcome["runs"]}
    assert measured == {
        (scenario, server)
        for scenario in ("by-id", "list", "create")
        for server in ("raw", "graphql", "rest")
    }
    assert all(run["requests"] > 0 and run["failures"] == 0 for run in outcome["runs"])
    assert [(s["server"], s["rows"], s["ok"]) for s in outcome["streams"]] == [
        ("raw", 300, True),
        ("ours", 300, True),
    ]
    assert [(f["subscribers"], f["share"], f["error"]) for f in outcome["fanouts"]] == [
        (5, 1.0, None)
    ]
    assert outcome["failed"] is False
