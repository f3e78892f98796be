"""Applies the Piccolo migrations in `piccolo_migrations/` to a given engine."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from typing import Any

from piccolo.apps.migrations.commands.base import MigrationResult
from piccolo.apps.migrations.commands.forwards import run_forwards
from piccolo.apps.migrations.tables import Migration
from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine

from app.tables import Session

APP_NAME = "session_inbox"
# Any constant: several server processes starting at once take turns at migrating.
MIGRATION_LOCK = 0x5E5510


class MigrationError(RuntimeError):
    """A migration failed; the database is as the last successful migration left it."""


def bind_engine(engine: Engine[Any]) -> None:
    """Point Piccolo at `engine`: our table, Piccolo's migration table, and the migration runner
    (which finds its engine through `piccolo_conf.DB`)."""
    import piccolo_conf

    piccolo_conf.DB = engine
    Session._meta.db = engine
    Migration._meta.db = engine


@dataclass(frozen=True)
class MigrationReport:
    """What `migrate` did: the ids of the migrations it applied, in the order it applied them,
    and how many the database has had applied in all, these included."""

    applied: tuple[str, ...]
    total: int

    def __str__(self) -> str:
        if not self.applied:
            return f"schema up to date ({_migrations(self.total)})"
        return f"applied {_migrations(len(self.applied))}: {', '.join(self.applied)}"


def _migrations(n: int) -> str:
    return f"{n} migration{'' if n == 1 else 's'}"


async def migrate(engine: Engine[Any]) -> MigrationReport:
    """Apply every pending migration to `engine` and report what was applied, as Piccolo's
    migration table says before and after (its own printed report counts every migration it
    knows as "already complete", even on an empty database, so it is kept only for errors)."""
    bind_engine(engine)
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        if isinstance(engine, PostgresEngine):
            lock = await engine.get_new_connection()
            try:
                await lock.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
                before, result, after = await _run_forwards()
            finally:
                await lock.close()
        else:
            before, result, after = await _run_forwards()
    if not result.success:
        raise MigrationError(f"migrations failed: {result.message}\n{output.getvalue().strip()}")
    # Piccolo applies pending migrations in the order of their ids.
    return MigrationReport(applied=tuple(sorted(set(after) - set(before))), total=len(after))


async def _run_forwards() -> tuple[list[str], MigrationResult, list[str]]:
    """The ids of the migrations applied before, Piccolo's result, and the ids after."""
    before = await _applied()
    result = await run_forwards(app_name=APP_NAME)
    return before, result, await _applied()


async def _applied() -> list[str]:
    """The ids of the migrations recorded in Piccolo's migration table."""
    if not await Migration.table_exists().run():
        return []
    names: list[str] = await Migration.get_migrations_which_ran(app_name=APP_NAME)
    return names
