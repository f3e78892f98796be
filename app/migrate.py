"""Applies the Piccolo migrations in `piccolo_migrations/` to a given engine."""

from __future__ import annotations

import contextlib
import io
from typing import Any

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


async def migrate(engine: Engine[Any]) -> str:
    """Apply every pending migration to `engine`; returns Piccolo's report."""
    bind_engine(engine)
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        if isinstance(engine, PostgresEngine):
            lock = await engine.get_new_connection()
            try:
                await lock.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
                result = await run_forwards(app_name=APP_NAME)
            finally:
                await lock.close()
        else:
            result = await run_forwards(app_name=APP_NAME)
    report = output.getvalue().strip()
    if not result.success:
        raise MigrationError(f"migrations failed: {result.message}\n{report}")
    return report
