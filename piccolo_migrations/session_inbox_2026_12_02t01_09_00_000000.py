"""The outbox's triggers: every insert, update and delete of a session writes its event to
`session_outbox` in the same transaction, whichever statement made the change, so a change and
its event commit or roll back together. On PostgreSQL a commit that wrote events also notifies
`session_outbox`, which wakes the relay of whichever instance leads.

An event's `data` holds `session` (the row after the change; for a delete, the row before it with
the version the delete is, one more, so that a client dropping duplicates by session and version
keeps it) and, for an update, `previous` (the row before it, without its JSON documents), both
without the idempotency columns. A later migration that adds a column to `session` adds it to
the SQLite triggers here (PostgreSQL's take the whole row)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine

ID = "2026-12-02T01:09:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "outbox triggers"


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="session_inbox", description=DESCRIPTION)
    manager.add_raw(_outbox_triggers)
    return manager


_PRIVATE = "- 'idempotency_key' - 'idempotency_fingerprint'"

_POSTGRES = [
    f"""
    CREATE FUNCTION session_outbox_write() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' THEN
            INSERT INTO session_outbox (kind, session_id, data)
            VALUES ('DELETED', OLD.id,
                    jsonb_build_object('session', to_jsonb(OLD) {_PRIVATE}
                        || jsonb_build_object('version', OLD.version + 1))::text);
            RETURN OLD;
        END IF;
        INSERT INTO session_outbox (kind, session_id, data)
        VALUES (
            CASE TG_OP WHEN 'INSERT' THEN 'CREATED' ELSE 'UPDATED' END,
            NEW.id,
            jsonb_build_object(
                'session', to_jsonb(NEW) {_PRIVATE},
                'previous', CASE WHEN TG_OP = 'UPDATE'
                    THEN to_jsonb(OLD) {_PRIVATE} - 'messages' - 'sbx_config' END
            )::text
        );
        RETURN NEW;
    END
    $$
    """,
    "CREATE TRIGGER session_outbox_write AFTER INSERT OR UPDATE OR DELETE ON session "
    "FOR EACH ROW EXECUTE FUNCTION session_outbox_write()",
    """
    CREATE FUNCTION session_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('session_outbox', '');
        RETURN NULL;
    END
    $$
    """,
    "CREATE TRIGGER session_outbox_notify AFTER INSERT ON session_outbox "
    "FOR EACH STATEMENT EXECUTE FUNCTION session_outbox_notify()",
]


def _row(row: str, *, documents: bool = True) -> str:
    """A session row as a JSON object, in SQLite."""
    fields = ["id", "repo", "target_branch", "title", "branch"]
    fields += ["inbox_status", "parent", "created_at", "updated_at", "version"]
    pairs = [f"'{name}', {row}.{name}" for name in fields]
    if documents:
        pairs += [f"'{name}', json({row}.{name})" for name in ("messages", "sbx_config")]
    return f"json_object({', '.join(pairs)})"


def _sqlite_trigger(event: str, kind: str, data: str) -> str:
    row = "OLD" if event == "DELETE" else "NEW"
    return (
        f"CREATE TRIGGER session_outbox_{event.lower()} AFTER {event} ON session BEGIN "
        f"INSERT INTO session_outbox (kind, session_id, data) VALUES ('{kind}', {row}.id, {data}); "
        "END"
    )


_SQLITE = [
    _sqlite_trigger("INSERT", "CREATED", f"json_object('session', {_row('NEW')})"),
    _sqlite_trigger(
        "UPDATE",
        "UPDATED",
        f"json_object('session', {_row('NEW')}, 'previous', {_row('OLD', documents=False)})",
    ),
    _sqlite_trigger(
        "DELETE",
        "DELETED",
        f"json_object('session', json_set({_row('OLD')}, '$.version', OLD.version + 1))",
    ),
]


async def _outbox_triggers() -> None:
    engine = engine_finder()
    if isinstance(engine, PostgresEngine):
        statements = _POSTGRES
    elif isinstance(engine, SQLiteEngine):
        statements = _SQLITE
    else:  # pragma: no cover
        raise RuntimeError(f"unsupported engine {engine!r}")
    for statement in statements:
        await engine.run_ddl(statement)
