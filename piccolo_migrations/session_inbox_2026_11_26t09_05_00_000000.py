"""What Piccolo's column API cannot say: CHECK constraints (triggers on SQLite, which cannot add
a constraint to an existing table), the (repo, branch) unique index, and the indexes behind every
filter and sort of the API (keyset pagination on (created_at, id) included)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine

ID = "2026-11-26T09:05:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "constraints and indexes"


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="session_inbox", description=DESCRIPTION)
    manager.add_raw(_constraints_and_indexes)
    return manager


_STATUSES = "('pending', 'active', 'completed', 'archived')"

_INDEXES = [
    "CREATE UNIQUE INDEX session_repo_branch_key ON session (repo, branch)",
    "CREATE INDEX session_created_at_id_idx ON session (created_at, id)",
    "CREATE INDEX session_updated_at_id_idx ON session (updated_at, id)",
    "CREATE INDEX session_title_id_idx ON session (title, id)",
    "CREATE INDEX session_parent_created_at_idx ON session (parent, created_at, id)",
    "CREATE INDEX session_status_created_at_idx ON session (inbox_status, created_at, id)",
    "CREATE INDEX session_repo_created_at_idx ON session (repo, created_at, id)",
    "CREATE INDEX session_roots_created_at_idx ON session (created_at, id) WHERE parent IS NULL",
]

_POSTGRES = [
    "ALTER TABLE session ADD CONSTRAINT session_inbox_status_check "
    f"CHECK (inbox_status IN {_STATUSES})",
    "ALTER TABLE session ADD CONSTRAINT session_parent_not_self_check CHECK (parent <> id)",
    "ALTER TABLE session ADD CONSTRAINT session_repo_not_empty_check "
    "CHECK (repo <> '' AND target_branch <> '')",
    # Case-insensitive substring search on titles (titleContains).
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX session_title_trgm_idx ON session USING gin (lower(title) gin_trgm_ops)",
]

_SQLITE_CHECK = (
    f"NEW.inbox_status NOT IN {_STATUSES} OR NEW.parent = NEW.id "
    "OR NEW.repo = '' OR NEW.target_branch = ''"
)
_SQLITE = [
    f"CREATE TRIGGER session_check_{event.lower()} BEFORE {event} ON session "
    f"WHEN {_SQLITE_CHECK} BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: session'); END"
    for event in ("INSERT", "UPDATE")
]


async def _constraints_and_indexes() -> None:
    engine = engine_finder()
    if isinstance(engine, PostgresEngine):
        statements = _POSTGRES + _INDEXES
    elif isinstance(engine, SQLiteEngine):
        statements = _SQLITE + _INDEXES
    else:  # pragma: no cover
        raise RuntimeError(f"unsupported engine {engine!r}")
    for statement in statements:
        await engine.run_ddl(statement)
