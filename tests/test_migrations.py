"""The migrations build the table, and the database itself enforces the contract's rules."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from piccolo.apps.migrations.commands.base import BaseMigrationManager
from piccolo.apps.migrations.commands.forwards import run_forwards

from app.config import load_settings
from app.db import Database, IntegrityError, make_engine
from app.main import create_app
from app.migrate import APP_NAME, MIGRATION_LOCK, MigrationReport, bind_engine, migrate
from app.piccolo_app import APP_CONFIG
from tests.conftest import POSTGRES_SERVER, until_a_lock_is_waited_for

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# The ids of the migrations in piccolo_migrations/, found as Piccolo finds them, in the order
# it applies them.
MIGRATION_IDS = tuple(
    sorted(BaseMigrationManager().get_migration_modules(APP_CONFIG.resolved_migrations_folder_path))
)
ALL_APPLIED = f"applied {len(MIGRATION_IDS)} migrations: " + ", ".join(MIGRATION_IDS)


async def _insert(db: Database, **overrides: Any) -> uuid.UUID:
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "repo": "r",
        "target_branch": "main",
        "title": "t",
        "branch": f"b-{uuid.uuid4().hex[:8]}",
        "inbox_status": "active",
        "parent": None,
        "created_at": now,
        "updated_at": now,
    }
    values.update(overrides)
    columns = ", ".join(values)
    marks = ", ".join("{}" for _ in values)
    await db.execute(f"INSERT INTO session ({columns}) VALUES ({marks})", *values.values())
    session_id: uuid.UUID = values["id"]
    return session_id


@pytest.mark.parametrize(
    "overrides",
    [
        {"inbox_status": "done"},
        {"inbox_status": "Active"},
        {"repo": ""},
        {"target_branch": ""},
        {"parent": uuid.uuid4()},
    ],
)
async def test_database_refuses_rows_that_break_the_rules(
    db: Database, overrides: dict[str, Any]
) -> None:
    with pytest.raises(IntegrityError):
        await _insert(db, **overrides)


async def test_database_refuses_self_parent_and_duplicate_branch(db: Database) -> None:
    first = await _insert(db, branch="feature")
    with pytest.raises(IntegrityError):
        await db.execute("UPDATE session SET parent = id WHERE id = {}", first)
    with pytest.raises(IntegrityError):
        await _insert(db, branch="feature")
    await _insert(db, branch="feature", repo="another")
    await _insert(db, idempotency_key="k", branch="x1")
    with pytest.raises(IntegrityError):
        await _insert(db, idempotency_key="k", branch="x2")


async def test_deleting_a_parent_row_sets_children_parent_null(db: Database) -> None:
    parent = await _insert(db)
    child = await _insert(db, parent=parent)
    await db.execute("DELETE FROM session WHERE id = {}", parent)
    row = await db.fetchrow("SELECT parent FROM session WHERE id = {}", child)
    assert row is not None
    assert row["parent"] is None


async def test_indexes_exist(db: Database) -> None:
    if db.is_postgres:
        rows = await db.fetch(
            "SELECT indexname AS name FROM pg_indexes WHERE tablename = 'session'"
        )
    else:
        rows = await db.fetch(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'session'"
        )
    names = {row["name"] for row in rows}
    assert {
        "session_repo_branch_key",
        "session_created_at_id_idx",
        "session_updated_at_id_idx",
        "session_title_id_idx",
        "session_parent_created_at_idx",
        "session_status_created_at_idx",
        "session_repo_created_at_idx",
    } <= names


@pytest.fixture
async def empty_postgres() -> AsyncIterator[str]:
    name = f"session_inbox_migrations_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(f"{POSTGRES_SERVER}/postgres")
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{POSTGRES_SERVER}/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(params=["postgres", "sqlite"])
def empty_database(request: pytest.FixtureRequest, empty_postgres: str, tmp_sqlite_url: str) -> str:
    return empty_postgres if request.param == "postgres" else tmp_sqlite_url


async def test_migrate_reports_what_it_applied_then_that_nothing_was_pending(
    empty_database: str,
) -> None:
    settings = replace(load_settings(environ={}, env_file=None), database_url=empty_database)
    first = await migrate(make_engine(settings))
    assert first == MigrationReport(applied=MIGRATION_IDS, total=len(MIGRATION_IDS))
    assert str(first) == ALL_APPLIED
    second = await migrate(make_engine(settings))
    assert second == MigrationReport(applied=(), total=len(MIGRATION_IDS))
    assert str(second) == f"schema up to date ({len(MIGRATION_IDS)} migrations)"


async def test_migrate_reports_only_the_migrations_that_were_pending(empty_database: str) -> None:
    settings = replace(load_settings(environ={}, env_file=None), database_url=empty_database)
    bind_engine(make_engine(settings))
    with contextlib.redirect_stdout(io.StringIO()):
        assert (await run_forwards(APP_NAME, migration_id=MIGRATION_IDS[0])).success
    report = await migrate(make_engine(settings))
    assert report == MigrationReport(applied=MIGRATION_IDS[1:], total=len(MIGRATION_IDS))
    assert str(report) == f"applied {len(MIGRATION_IDS) - 1} migrations: " + ", ".join(
        MIGRATION_IDS[1:]
    )


async def test_first_start_logs_the_migrations_it_applied(
    empty_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = replace(load_settings(environ={}, env_file=None), database_url=empty_database)
    app = create_app(settings)
    with caplog.at_level(logging.INFO, logger="app.main"):
        async with app.router.lifespan_context(app):
            pass
    messages = [record.getMessage() for record in caplog.records if record.name == "app.main"]
    assert ALL_APPLIED in messages
    assert not any("not yet run" in message for message in messages)


def _run(command: list[str], database_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url}
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


async def test_piccolo_cli_applies_the_migrations(empty_database: str) -> None:
    result = _run([str(BIN / "piccolo"), "migrations", "forwards", "session_inbox"], empty_database)
    assert result.returncode == 0, result.stderr
    check = _run([str(BIN / "piccolo"), "migrations", "check"], empty_database)
    assert check.returncode == 0, check.stderr
    assert "False" not in check.stdout


async def test_session_inbox_migrate_command_prints_the_report(empty_database: str) -> None:
    result = _run([str(BIN / "session-inbox"), "migrate"], empty_database)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ALL_APPLIED + "\n"
    again = _run([str(BIN / "session-inbox"), "migrate"], empty_database)
    assert again.returncode == 0, again.stderr
    assert again.stdout == f"schema up to date ({len(MIGRATION_IDS)} migrations)\n"


async def test_migrations_wait_for_another_process_longer_than_the_statement_timeout(
    empty_postgres: str,
) -> None:
    """Two servers starting at once take turns; the one that waits is not cut off by
    DB_STATEMENT_TIMEOUT_MS, which is for the API's queries."""
    settings = replace(
        load_settings(environ={}, env_file=None),
        database_url=empty_postgres,
        db_statement_timeout_ms=100,
    )
    holder = await asyncpg.connect(empty_postgres)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
        waiting = asyncio.create_task(migrate(make_engine(settings, for_migrations=True)))
        await until_a_lock_is_waited_for(holder, waiting, "migrate")
        # Held well past the statement timeout before letting go.
        await asyncio.sleep(0.5)
        await holder.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
        report = await asyncio.wait_for(waiting, timeout=30)
    finally:
        await holder.close()
    assert report.applied == MIGRATION_IDS


# The migration that rebuilds SQLite's session table with its JSON documents declared TEXT.
TEXT_DOCUMENTS = "2026-12-02T05:30:00:000000"


async def _sqlite_schema(db: Database) -> dict[str, str]:
    rows = await db.fetch(
        "SELECT name, sql FROM sqlite_master WHERE tbl_name = 'session' AND sql IS NOT NULL"
    )
    return {row["name"]: row["sql"] for row in rows}


async def test_sqlite_json_documents_become_text_and_the_table_keeps_all_else(
    tmp_sqlite_url: str,
) -> None:
    settings = replace(load_settings(environ={}, env_file=None), database_url=tmp_sqlite_url)
    engine = make_engine(settings)
    bind_engine(engine)
    previous = MIGRATION_IDS[MIGRATION_IDS.index(TEXT_DOCUMENTS) - 1]
    with contextlib.redirect_stdout(io.StringIO()):
        assert (await run_forwards(APP_NAME, migration_id=previous)).success
    db = Database(engine)
    root = await _insert(db, messages='[{"role": "user"}]', sbx_config='{"image": "py"}')
    child = await _insert(db, parent=root, messages="1.2345678901234567", sbx_config="7")
    grandchild = await _insert(db, parent=child, idempotency_key="k")
    # What the bug did: a bare number became a REAL, its digits already lost.
    stored = await db.fetchrow("SELECT typeof(messages) AS type FROM session WHERE id = {}", child)
    assert stored == {"type": "real"}
    rows = await db.fetch("SELECT * FROM session ORDER BY id")
    events = await db.fetch("SELECT * FROM session_outbox ORDER BY id")
    schema = await _sqlite_schema(db)

    report = await migrate(make_engine(settings))

    assert TEXT_DOCUMENTS in report.applied
    # Every row and event as it was; the lost digits stay lost, now as text.
    assert await db.fetch("SELECT * FROM session ORDER BY id") == rows
    assert await db.fetch("SELECT * FROM session_outbox ORDER BY id") == events
    kept = await db.fetchrow(
        "SELECT CAST(messages AS TEXT) AS messages, typeof(messages) AS type, "
        "typeof(sbx_config) AS sbx_type FROM session WHERE id = {}",
        child,
    )
    assert kept == {"messages": "1.23456789012346", "type": "text", "sbx_type": "text"}
    # The same indexes and triggers, to the letter; the table differs in the two declared types.
    after = await _sqlite_schema(db)
    old_table, new_table = schema.pop("session"), after.pop("session")
    assert after == schema
    assert new_table == old_table.replace("CREATE TABLE IF NOT EXISTS", "CREATE TABLE").replace(
        '"messages" JSONB', '"messages" TEXT'
    ).replace('"sbx_config" JSONB', '"sbx_config" TEXT')
    assert await db.fetch("PRAGMA foreign_key_check") == []

    # A bare number is now kept as the text it was written as, in the row and in its event.
    exact = await _insert(db, messages="1.2345678901234567")
    row = await db.fetchrow(
        "SELECT messages, typeof(messages) AS type FROM session WHERE id = {}", exact
    )
    assert row == {"messages": "1.2345678901234567", "type": "text"}
    event = await db.fetchrow(
        "SELECT kind, data FROM session_outbox WHERE session_id = {} ORDER BY id DESC", exact
    )
    assert event is not None
    assert event["kind"] == "CREATED"
    assert '"messages":1.2345678901234567' in event["data"]
    # The rules still hold: a bad status, a duplicate branch and a missing parent are refused.
    with pytest.raises(IntegrityError):
        await _insert(db, inbox_status="done")
    with pytest.raises(IntegrityError):
        await _insert(db, idempotency_key="k")
    with pytest.raises(IntegrityError):
        await _insert(db, parent=uuid.uuid4())
    # The parents survived the rebuild, and deleting one still sets its child's parent null.
    parents = await db.fetch(
        "SELECT id, parent FROM session WHERE id IN ({}, {})", child, grandchild
    )
    assert {row["id"]: row["parent"] for row in parents} == {child: root, grandchild: child}
    await db.execute("DELETE FROM session WHERE id = {}", child)
    orphan = await db.fetchrow("SELECT parent FROM session WHERE id = {}", grandchild)
    assert orphan == {"parent": None}
    deleted = await db.fetchrow(
        "SELECT kind FROM session_outbox WHERE session_id = {} ORDER BY id DESC", child
    )
    assert deleted == {"kind": "DELETED"}


async def test_postgres_keeps_its_json_documents_as_jsonb(empty_postgres: str) -> None:
    settings = replace(load_settings(environ={}, env_file=None), database_url=empty_postgres)
    engine = make_engine(settings)
    await migrate(engine)
    rows = await Database(engine).fetch(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = 'session' AND column_name IN ('messages', 'sbx_config')"
    )
    assert {row["column_name"]: row["data_type"] for row in rows} == {
        "messages": "jsonb",
        "sbx_config": "jsonb",
    }
