"""Fills a database with N realistic sessions, fast, for the benchmarks.

    python -m bench.seed postgres bench_1m --rows 1000000   # a fresh database on the local server
    python -m bench.seed sqlite /tmp/bench.sqlite3 --rows 1000000  # a fresh SQLite file
    python -m bench.seed url postgres://root@127.0.0.1:5432/existing --rows 300  # append

A fresh database is built by the project's own migrations, so it has every constraint and index
the server relies on. Rows go in with one binary COPY on PostgreSQL and one executemany
transaction on SQLite. Every row looks like a real session: a ~300-byte `messages` list, one of
a few dozen repos, a branch unique in its repo, a mix of statuses, some with a sandbox
configuration, and one in twenty the child of the session created just before it
(`--parent-share` and `--message-bytes` change the last two: the issue 11 benchmark seeds 30%
children and messages of about 1 KB). No JSON
object in `messages` or `sbx_config` starts with an `id` key, so counting `{"id":"` in a
response body counts sessions.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from app.config import load_settings
from app.db import make_engine
from app.migrate import migrate

POSTGRES_SERVER = os.environ.get("BENCH_POSTGRES_URL", "postgres://root@127.0.0.1:5432")

COLUMNS = (
    "id",
    "repo",
    "target_branch",
    "title",
    "branch",
    "messages",
    "inbox_status",
    "sbx_config",
    "parent",
    "created_at",
    "updated_at",
    "version",
)
Record = tuple[Any, ...]

REPOS = 40
# By default one session in twenty is the child of the session created just before it.
PARENT_SHARE = 0.05
# The two messages each session starts with take about this many bytes of JSON; a third one
# (a tool's output) is added to reach a larger `message_bytes`.
BASE_MESSAGE_BYTES = 300
STATUSES = ("active", "active", "active", "pending", "completed", "completed", "archived")
TOPICS = ("checkout", "billing", "search", "login", "export", "upload", "cache", "queue")
SANDBOX = orjson.dumps({"image": "python:3.12-slim", "cpu": 2, "memory_mb": 4096}).decode()
# The newest seeded session; older ones go back about a second each.
NEWEST = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def session_records(
    count: int,
    *,
    seed: int = 1,
    parent_share: float = PARENT_SHARE,
    message_bytes: int = BASE_MESSAGE_BYTES,
) -> Iterator[Record]:
    """`count` sessions as tuples in COLUMNS order, newest first, deterministic for `seed`
    (ids included, so two runs with the same seed make the same rows). A share `parent_share`
    of them, evenly spread, are children of the session before them; `messages` hold about
    `message_bytes` bytes of JSON each."""
    if not 0 <= parent_share <= 1:
        raise ValueError(f"parent_share must be between 0 and 1, got {parent_share}")
    rng = random.Random(seed)
    previous: uuid.UUID | None = None
    # Distinct per seed, so appending twice to one database cannot collide on (repo, branch).
    run = f"{seed:x}"
    for i in range(count):
        session_id = uuid.UUID(int=rng.getrandbits(128), version=4)
        topic = TOPICS[i % len(TOPICS)]
        repo = f"acme/service-{i % REPOS:03d}"
        created = NEWEST - timedelta(seconds=i, microseconds=rng.randrange(1_000_000))
        conversation: list[dict[str, str]] = [
            {
                "role": "user",
                "content": f"Please fix the flaky {topic} test in {repo} (#{i}); it fails "
                f"about one run in {rng.randrange(3, 20)} on CI since the last bump.",
            },
            {
                "role": "assistant",
                "content": f"Looking at src/{topic}/fixtures.py: the {topic} fixture "
                "shares state between tests, so I will isolate it and add a regression "
                "test.",
            },
        ]
        messages = orjson.dumps(conversation).decode()
        if (room := message_bytes - len(messages)) > 64:
            conversation.append({"role": "tool", "content": _tool_output(topic, i, room - 32)})
            messages = orjson.dumps(conversation).decode()
        # Exactly round(count * parent_share) children, spread evenly: where the running share
        # passes a whole number.
        child = int((i + 1) * parent_share) > int(i * parent_share)
        parent = previous if child and previous is not None else None
        yield (
            session_id,
            repo,
            "main",
            f"Fix flaky {topic} test #{i}",
            f"claude/fix-flaky-{topic}-{run}-{i}",
            messages,
            STATUSES[i % len(STATUSES)],
            SANDBOX if i % 3 == 0 else None,
            parent,
            created,
            created + timedelta(minutes=rng.randrange(0, 120)),
            1 + rng.randrange(4),
        )
        previous = session_id


def _tool_output(topic: str, i: int, size: int) -> str:
    """About `size` characters of a test run's log, different for every session."""
    lines = []
    length = 0
    n = 0
    while length < size:
        line = f"tests/{topic}/test_{topic}_{n}.py::test_case_{i}_{n} PASSED [{n % 100:3d}%]"
        lines.append(line)
        length += len(line) + 2  # the newline, escaped in JSON
        n += 1
    return "\n".join(lines)[:size]


def _sqlite_record(record: Record) -> Record:
    """A record as the server stores it in SQLite (Piccolo's adapters): UUIDs and times as text,
    times in UTC."""
    return tuple(str(v) if isinstance(v, uuid.UUID | datetime) else v for v in record)


def _settings_for(url: str) -> Any:
    return replace(load_settings(environ={}, env_file=None), database_url=url)


def _sqlite_path(url: str) -> str:
    return str(_settings_for(url).sqlite_path)


async def _postgres_admin(sql: str) -> None:
    admin = await asyncpg.connect(f"{POSTGRES_SERVER}/postgres")
    try:
        await admin.execute(sql)
    finally:
        await admin.close()


async def fresh_postgres(name: str) -> str:
    """A new, migrated, empty database `name` on the local server (dropped first if present)."""
    await _postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await _postgres_admin(f'CREATE DATABASE "{name}"')
    url = f"{POSTGRES_SERVER}/{name}"
    await migrate(make_engine(_settings_for(url)))
    return url


async def drop(url: str) -> None:
    """Delete the database at `url`: the PostgreSQL database, or the SQLite file."""
    if is_postgres(url):
        await _postgres_admin(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    else:
        await asyncio.to_thread(remove_sqlite, Path(_sqlite_path(url)))


def remove_sqlite(path: Path) -> None:
    """Delete the SQLite database at `path`, with its write-ahead log."""
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        name.unlink(missing_ok=True)


async def fresh_sqlite(path: Path) -> str:
    """A new, migrated, empty SQLite file at `path` (replacing any file there)."""
    await asyncio.to_thread(remove_sqlite, path)
    await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
    url = f"sqlite:///{path}"
    await migrate(make_engine(_settings_for(url)))
    return url


def is_postgres(url: str) -> bool:
    return url.startswith(("postgres://", "postgresql://"))


# The outbox's last row before seeding, and the removal of the rows after it.
OUTBOX_LAST = "SELECT coalesce(max(id), 0) FROM session_outbox"
OUTBOX_SINCE = "DELETE FROM session_outbox WHERE id > ?"


async def seed(
    url: str,
    rows: int,
    *,
    seed: int = 1,
    parent_share: float = PARENT_SHARE,
    message_bytes: int = BASE_MESSAGE_BYTES,
) -> None:
    """Append `rows` sessions to the migrated database at `url` (see `session_records`). They
    are what the database held before anyone watched, not changes: the outbox rows their
    inserts made (the outbox's triggers fire on a COPY too) are removed in the same transaction,
    or a server would spend the benchmark relaying a million CREATED events."""
    records = session_records(
        rows, seed=seed, parent_share=parent_share, message_bytes=message_bytes
    )
    if is_postgres(url):
        connection = await asyncpg.connect(url)
        try:
            async with connection.transaction():
                before = await connection.fetchval(OUTBOX_LAST)
                await connection.copy_records_to_table("session", records=records, columns=COLUMNS)
                await connection.execute(OUTBOX_SINCE.replace("?", "$1"), before)
            # Sets hint bits and statistics now, so the first measured read does not pay for it.
            await connection.execute("VACUUM ANALYZE session")
        finally:
            await connection.close()
    else:
        await asyncio.to_thread(_seed_sqlite, _sqlite_path(url), records)


def _seed_sqlite(path: str, records: Iterator[Record]) -> None:
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA foreign_keys = ON")
        connection.execute("BEGIN")
        before = connection.execute(OUTBOX_LAST).fetchone()[0]
        connection.executemany(
            f"INSERT INTO session ({', '.join(COLUMNS)}) "
            f"VALUES ({', '.join('?' for _ in COLUMNS)})",
            map(_sqlite_record, records),
        )
        connection.execute(OUTBOX_SINCE, (before,))
        connection.execute("COMMIT")
        connection.execute("ANALYZE")
    finally:
        connection.close()


async def count(url: str) -> int:
    """How many sessions the database at `url` holds."""
    if is_postgres(url):
        connection = await asyncpg.connect(url)
        try:
            return int(await connection.fetchval("SELECT count(*) FROM session"))
        finally:
            await connection.close()

    def count_sqlite() -> int:
        connection = sqlite3.connect(_sqlite_path(url))
        try:
            return int(connection.execute("SELECT count(*) FROM session").fetchone()[0])
        finally:
            connection.close()

    return await asyncio.to_thread(count_sqlite)


async def prepare(
    engine: str,
    target: str,
    rows: int,
    *,
    reuse: bool = False,
    seed_value: int = 1,
    parent_share: float = PARENT_SHARE,
    message_bytes: int = BASE_MESSAGE_BYTES,
) -> str:
    """The URL of a database `target` (a PostgreSQL database name or a SQLite path) holding
    exactly `rows` seeded sessions: built fresh, or with `reuse`, kept when it already holds
    that many (whatever options seeded them)."""
    url = f"{POSTGRES_SERVER}/{target}" if engine == "postgres" else f"sqlite:///{target}"
    if reuse:
        try:
            if await count(url) == rows:
                return url
        except (OSError, asyncpg.PostgresError, sqlite3.Error):
            pass
    if engine == "postgres":
        url = await fresh_postgres(target)
    else:
        url = await fresh_sqlite(Path(target))
    await timed_seed(url, rows, seed_value, parent_share=parent_share, message_bytes=message_bytes)
    return url


async def timed_seed(
    url: str,
    rows: int,
    seed_value: int = 1,
    *,
    parent_share: float = PARENT_SHARE,
    message_bytes: int = BASE_MESSAGE_BYTES,
) -> None:
    started = time.perf_counter()
    await seed(url, rows, seed=seed_value, parent_share=parent_share, message_bytes=message_bytes)
    elapsed = time.perf_counter() - started
    print(
        f"seeded {rows:,} sessions into {url} in {elapsed:.1f} s ({rows / elapsed:,.0f} rows/s)",
        file=sys.stderr,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.seed", description=__doc__.split("\n")[0]
    )
    parser.add_argument("kind", choices=("postgres", "sqlite", "url"))
    parser.add_argument(
        "target", help="PostgreSQL database name, SQLite file path, or URL of a migrated database"
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--seed", type=int, default=1, help="random seed; appending again needs another one"
    )
    parser.add_argument(
        "--parent-share",
        type=float,
        default=PARENT_SHARE,
        help=f"share of sessions with a parent (default {PARENT_SHARE})",
    )
    parser.add_argument(
        "--message-bytes",
        type=int,
        default=BASE_MESSAGE_BYTES,
        help=f"about how many bytes of messages a session has (default {BASE_MESSAGE_BYTES})",
    )
    args = parser.parse_args(argv)
    shape = {"parent_share": args.parent_share, "message_bytes": args.message_bytes}

    async def run() -> str:
        if args.kind == "url":
            await timed_seed(args.target, args.rows, args.seed, **shape)
            return str(args.target)
        return await prepare(args.kind, args.target, args.rows, seed_value=args.seed, **shape)

    print(asyncio.run(run()))


if __name__ == "__main__":
    main()
