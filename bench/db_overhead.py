"""What `app.db.Database` costs per statement, against a bare asyncpg pool on the same database.

    python -m bench.db_overhead                      # fresh database, 1,000 rows, dropped after
    python -m bench.db_overhead --rev HEAD~1         # also app/db.py as it was at HEAD~1
    python -m bench.db_overhead --rounds 7 --statements 3000

One task runs statements one after another, so each costs a full round trip and the process's
CPU time per statement is what the client side spends on it (the server is another process).
Three statements: `SELECT 1`; one session by id (the store's `queries.GET`); the 50 newest
(the store's first page of `listing.select`). Each runs through:

- `asyncpg`: `pool.fetch` on a pool made as `bench/raw_server.py` makes it, whose release runs
  asyncpg's reset query (a round trip) each time: the raw baseline of the HTTP benchmarks;
- `asyncpg-noreset`: the same with `reset=` a no-op, the floor for any pool of asyncpg;
- `db`: `Database.fetch` of the tree as it is (pool lease, deadline, fault boundary);
- `db@REV` with `--rev`: `app/db.py` as it was at REV, on the same statements.

Rounds alternate the variants (in a rotating order) and each figure is the best round, so a
busy neighbour on a shared machine inflates no variant more than another. Times are µs per
statement: CPU of this process, and wall clock (the round trip included)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import statistics
import subprocess
import sys
import time
import types
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from app.db import Database, make_engine
from app.listing import NEWEST_FIRST
from app.store import listing, queries
from app.store.dialect import POSTGRES
from bench.seed import POSTGRES_SERVER, drop, fresh_postgres, seed

Run = Callable[[], Awaitable[Any]]
SERVER_SETTINGS = {"application_name": "session-inbox-bench", "statement_timeout": "5000"}


@dataclass
class Figures:
    cpu_us: list[float] = field(default_factory=list)
    wall_us: list[float] = field(default_factory=list)


def _db_module_at(rev: str) -> types.ModuleType:
    """`app/db.py` as it was at `rev`, imported as a module of its own."""
    root = Path(__file__).resolve().parent.parent
    source = subprocess.run(
        ["git", "show", f"{rev}:app/db.py"], cwd=root, check=True, capture_output=True, text=True
    ).stdout
    spec = importlib.util.spec_from_loader(f"db_at_{rev}", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    exec(compile(source, f"app/db.py@{rev}", "exec"), module.__dict__)
    return module


async def _noop_reset(_connection: Any) -> None:
    return None


async def _measure(run: Run, statements: int) -> tuple[float, float]:
    gc.collect()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(statements):
        await run()
    return (
        (time.process_time() - cpu) / statements * 1e6,
        (time.perf_counter() - wall) / statements * 1e6,
    )


async def bench(url: str, *, rounds: int, statements: int, rev: str | None) -> None:
    settings = _settings(url)
    pools = {
        "asyncpg": await asyncpg.create_pool(
            url, min_size=1, max_size=10, server_settings=SERVER_SETTINGS
        ),
        "asyncpg-noreset": await asyncpg.create_pool(
            url, min_size=1, max_size=10, server_settings=SERVER_SETTINGS, reset=_noop_reset
        ),
    }
    databases = {"db": Database(make_engine(settings))}
    if rev is not None:
        old = _db_module_at(rev)
        databases[f"db@{rev}"] = old.Database(old.make_engine(settings))
    for db in databases.values():
        await db.open()
    try:
        one = await pools["asyncpg"].fetchval("SELECT id FROM session LIMIT 1")
        session_id = uuid.UUID(str(one))
        by_id = queries.GET.bind(POSTGRES, id=session_id)
        page = listing.select((), NEWEST_FIRST).bind(POSTGRES, limit=50)
        shapes: dict[str, tuple[str, list[Any], Callable[[Database], Run]]] = {
            "SELECT 1": ("SELECT 1", [], lambda db: lambda: db.fetch("SELECT 1")),
            "by id": (by_id.sql, [session_id], lambda db: lambda: db.fetch(by_id)),
            "page of 50": (page.sql, [50], lambda db: lambda: db.fetch(page)),
        }
        runs: dict[tuple[str, str], Run] = {}
        for shape, (sql, args, through_db) in shapes.items():
            for name, pool in pools.items():
                runs[shape, name] = _pool_run(pool, sql, args)
            for name, db in databases.items():
                runs[shape, name] = through_db(db)
        names = [*pools, *databases]
        figures = {key: Figures() for key in runs}
        for run in runs.values():  # warm: every connection open, every statement prepared
            for _ in range(200):
                await run()
        for round_ in range(rounds):
            for shape in shapes:
                order = names[round_ % len(names) :] + names[: round_ % len(names)]
                for name in order:
                    cpu, wall = await _measure(runs[shape, name], statements)
                    figures[shape, name].cpu_us.append(cpu)
                    figures[shape, name].wall_us.append(wall)
        _report(figures, shapes, names, rounds, statements)
    finally:
        for pool in pools.values():
            await pool.close()
        for db in databases.values():
            await db.close()


def _pool_run(pool: asyncpg.Pool, sql: str, args: list[Any]) -> Run:
    return lambda: pool.fetch(sql, *args)


def _report(
    figures: dict[tuple[str, str], Figures],
    shapes: Any,
    names: list[str],
    rounds: int,
    statements: int,
) -> None:
    print(f"best of {rounds} rounds x {statements:,} statements; us per statement")
    print(f"{'statement':<12} {'through':<16} {'CPU':>7} {'median':>7} {'wall':>7}  CPU/asyncpg")
    for shape in shapes:
        floor = min(figures[shape, "asyncpg"].cpu_us)
        for name in names:
            each = figures[shape, name]
            cpu = min(each.cpu_us)
            print(
                f"{shape:<12} {name:<16} {cpu:7.1f} {statistics.median(each.cpu_us):7.1f}"
                f" {min(each.wall_us):7.1f}  {cpu / floor:5.2f}"
            )


def _settings(url: str) -> Any:
    from dataclasses import replace

    from app.config import load_settings

    return replace(load_settings(environ={}, env_file=None), database_url=url)


async def main_async(args: argparse.Namespace) -> None:
    url = args.url
    fresh = url is None
    if fresh:
        url = await fresh_postgres("bench_db_overhead")
        await seed(url, args.rows)
    try:
        await bench(url, rounds=args.rounds, statements=args.statements, rev=args.rev)
    finally:
        if fresh:
            await drop(url)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--url", help=f"a seeded database (default: a fresh one on {POSTGRES_SERVER})"
    )
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--statements", type=int, default=2000)
    parser.add_argument("--rev", help="also measure app/db.py as it was at this git revision")
    asyncio.run(main_async(parser.parse_args(argv)))


if __name__ == "__main__":
    main(sys.argv[1:])
