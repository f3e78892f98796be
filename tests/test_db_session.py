"""The pool's connections between leases: nothing a statement leaves on its session (a setting, a
cursor, a LISTEN, an advisory lock, a temporary table) reaches the next lease, while the pool,
which resets nothing, keeps each plain connection for the next statement. PostgreSQL only: SQLite
has no pool."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from app.config import load_settings
from app.db import Database, DatabaseUnavailable, make_engine
from app.store import queries
from app.store.dialect import POSTGRES

# A session lock no statement of the app takes.
LOCK = 4_242_424


@pytest.fixture
async def pg(database_urls: dict[str, str]) -> AsyncIterator[Database]:
    """A database with one connection in its pool: every lease is of the same connection, or
    of a new one when the last was closed."""
    settings = replace(
        load_settings(environ={}, env_file=None), database_url=database_urls["postgres"]
    )
    db = Database(make_engine(settings), pool_size=1)
    await db.open()
    yield db
    await db.close()


async def _backend(db: Database) -> int:
    row = await db.fetchrow("SELECT pg_backend_pid() AS pid")
    return int(row["pid"])


async def test_a_plain_statement_leaves_its_connection_to_the_next(pg: Database) -> None:
    first = await _backend(pg)
    await pg.fetch(queries.GET.bind(POSTGRES, id="00000000-0000-0000-0000-000000000000"))
    async with pg.transaction():
        await pg.execute("SELECT 1")
    assert await _backend(pg) == first


@pytest.mark.parametrize(
    "statement",
    [
        "SET application_name = 'leaked'",
        "SELECT set_config('application_name', 'leaked', false)",
        "set  application_name to 'leaked'",
    ],
)
async def test_a_setting_does_not_reach_the_next_lease(pg: Database, statement: str) -> None:
    before = await _backend(pg)
    await pg.execute(statement)
    row = await pg.fetchrow("SELECT current_setting('application_name') AS name")
    assert row["name"] == "session-inbox"
    assert await _backend(pg) != before


async def test_a_setting_made_in_a_transaction_does_not_outlive_it(pg: Database) -> None:
    async with pg.transaction():
        await pg.execute("SET statement_timeout = 1")
    row = await pg.fetchrow("SELECT current_setting('statement_timeout') AS timeout")
    assert row["timeout"] == "5s"


async def test_a_session_lock_does_not_reach_the_next_lease(pg: Database) -> None:
    await pg.execute(f"SELECT pg_advisory_lock({LOCK})")
    row = await pg.fetchrow(
        f"SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND objid = {LOCK}"
    )
    assert row["n"] == 0


async def test_a_listen_a_cursor_and_a_temporary_table_do_not_reach_the_next_lease(
    pg: Database,
) -> None:
    await pg.execute("LISTEN session_inbox_test")
    assert await pg.fetch("SELECT pg_listening_channels()") == []
    async with pg.transaction():
        await pg.execute("DECLARE held CURSOR WITH HOLD FOR SELECT 1")
    assert await pg.fetch("SELECT name FROM pg_cursors WHERE name = 'held'") == []
    await pg.execute("CREATE TEMP TABLE scratch (n int)")
    row = await pg.fetchrow("SELECT to_regclass('pg_temp.scratch') IS NULL AS gone")
    assert row["gone"] is True


async def test_a_value_s_statement_is_held_to_the_same_rule(pg: Database) -> None:
    await pg.fetch_value("SELECT set_config('application_name', $1, false)", "leaked")
    assert await pg.fetch_value("SELECT current_setting('application_name')") == "session-inbox"


async def test_a_statement_past_the_client_deadline_in_a_transaction_is_unavailable(
    pg: Database,
) -> None:
    # The client's deadline, well before the server's timeout: as when the server is frozen.
    pg._deadline_s = 0.2
    with pytest.raises(DatabaseUnavailable, match="did not answer in time"):
        async with pg.transaction():
            await pg.execute("SELECT pg_sleep(3)")
    with pytest.raises(DatabaseUnavailable, match="did not answer in time"):
        await pg.execute("SELECT pg_sleep(3)")
    # The abandoned connections were closed, and the pool gives a working one.
    pg._deadline_s = 5.0
    assert (await pg.fetchrow("SELECT 1 AS one"))["one"] == 1
