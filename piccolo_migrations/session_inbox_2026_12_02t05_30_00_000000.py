"""SQLite only: `messages` and `sbx_config` declared TEXT rather than JSONB. SQLite gives a column
declared JSONB numeric affinity, so a JSON document that is one bare number was stored as a REAL
and read back with 15 significant digits; a TEXT column keeps the text it is given. PostgreSQL
keeps its JSONB columns, and this migration does nothing there.

SQLite cannot change a column's type, so the table is rebuilt by its documented procedure
("Making Other Kinds Of Table Schema Changes", https://sqlite.org/lang_altertable.html): with
foreign keys off (else dropping the old table would set every copied row's parent to null), in
one transaction, a new table is made, the rows copied, the old table dropped, the new one
renamed, its indexes and triggers made again from the migrations that first made them, and the
foreign keys checked. PRAGMA foreign_keys cannot change inside a transaction, and Piccolo's
SQLite engine turns foreign keys on for every connection and statement, so the migration runs
outside Piccolo's transaction, on a connection of its own.

A bare number already stored as a REAL lost its digits when it was written: the copy stores it
as the text SQLite prints for it (15 significant digits), and nothing better can be done."""

import importlib

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine

ID = "2026-12-02T05:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "SQLite: session's JSON documents declared TEXT"


async def forwards() -> MigrationManager:
    manager = MigrationManager(
        migration_id=ID,
        app_name="session_inbox",
        description=DESCRIPTION,
        wrap_in_transaction=False,
    )
    manager.add_raw(_json_columns_as_text)
    return manager


# The table as the first migration made it, but for the two JSON documents' declared type.
_CREATE = (
    'CREATE TABLE "session_new" ('
    '"id" UUID PRIMARY KEY NOT NULL DEFAULT None, '
    "\"repo\" TEXT NOT NULL DEFAULT '', "
    "\"target_branch\" TEXT NOT NULL DEFAULT '', "
    "\"title\" TEXT NOT NULL DEFAULT '', "
    "\"branch\" TEXT NOT NULL DEFAULT '', "
    '"messages" TEXT DEFAULT null, '
    "\"inbox_status\" VARCHAR(50) NOT NULL DEFAULT 'active', "
    '"sbx_config" TEXT DEFAULT null, '
    '"parent" UUID REFERENCES "session" ("id") ON DELETE SET NULL ON UPDATE CASCADE DEFAULT null, '
    '"created_at" TIMESTAMPTZ NOT NULL DEFAULT current_timestamp, '
    '"updated_at" TIMESTAMPTZ NOT NULL DEFAULT current_timestamp, '
    '"version" INTEGER NOT NULL DEFAULT 1, '
    '"idempotency_key" TEXT UNIQUE DEFAULT null, '
    '"idempotency_fingerprint" TEXT DEFAULT null)'
)

_COLUMNS = (
    "id, repo, target_branch, title, branch, messages, inbox_status, sbx_config, parent, "
    "created_at, updated_at, version, idempotency_key, idempotency_fingerprint"
)


def _rebuild() -> list[str]:
    """Steps 4 to 8 of SQLite's procedure. The TEXT columns store a REAL or an INTEGER they are
    given as its text. Piccolo has put the migrations folder on `sys.path` to import this one."""
    constraints = importlib.import_module("session_inbox_2026_11_26t09_05_00_000000")
    outbox = importlib.import_module("session_inbox_2026_12_02t01_09_00_000000")
    return [
        _CREATE,
        f"INSERT INTO session_new ({_COLUMNS}) SELECT {_COLUMNS} FROM session",
        "DROP TABLE session",
        "ALTER TABLE session_new RENAME TO session",
        *constraints._INDEXES,
        *constraints._SQLITE,
        *outbox._SQLITE,
    ]


async def _json_columns_as_text() -> None:
    engine = engine_finder()
    if isinstance(engine, PostgresEngine):
        return
    if not isinstance(engine, SQLiteEngine):  # pragma: no cover
        raise RuntimeError(f"unsupported engine {engine!r}")
    connection = await engine.get_connection()
    try:
        await connection.execute("PRAGMA foreign_keys = OFF")
        await connection.execute("BEGIN IMMEDIATE")
        try:
            for statement in _rebuild():
                await connection.execute(statement)
            async with connection.execute("PRAGMA foreign_key_check") as cursor:
                broken = await cursor.fetchall()
            if broken:
                raise RuntimeError(f"foreign keys broken by the rebuild: {broken}")
        except BaseException:
            await connection.execute("ROLLBACK")
            raise
        await connection.execute("COMMIT")
        await connection.execute("PRAGMA foreign_keys = ON")
    finally:
        await connection.close()
