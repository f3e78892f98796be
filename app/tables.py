"""The `session` table, its `session_outbox`, and the inbox status enum. Queries live in
`app.store`."""

from __future__ import annotations

import enum

from piccolo.columns import (
    JSONB,
    UUID,
    BigSerial,
    ForeignKey,
    Integer,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.base import OnDelete, OnUpdate
from piccolo.table import Table


class InboxStatus(enum.StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    COMPLETED = "completed"
    ARCHIVED = "archived"

    @classmethod
    def _missing_(cls, value: object) -> InboxStatus | None:
        # Read in any letter case, around whitespace: "Active" is what older clients send.
        if isinstance(value, str):
            folded = value.strip().lower()
            if folded != value:
                return cls._value2member_map_.get(folded)  # type: ignore[return-value]
        return None


class Session(Table, tablename="session"):
    """One unit of agent work. The CHECK constraints, the `(repo, branch)` unique index and the
    secondary indexes are created by the migration in `piccolo_migrations/`."""

    id = UUID(primary_key=True)
    repo = Text(null=False)
    target_branch = Text(null=False)
    title = Text(null=False)
    branch = Text(null=False)
    messages = JSONB(null=True, default=None)
    inbox_status = Varchar(length=50, null=False, default=InboxStatus.ACTIVE.value)
    sbx_config = JSONB(null=True, default=None)
    parent: ForeignKey[Session] = ForeignKey(
        "self", null=True, default=None, on_delete=OnDelete.set_null, on_update=OnUpdate.cascade
    )
    created_at = Timestamptz(null=False)
    updated_at = Timestamptz(null=False)
    version = Integer(null=False, default=1)
    idempotency_key = Text(null=True, default=None, unique=True)
    # A digest of the first creation's request, so a retry with another body is refused.
    idempotency_fingerprint = Text(null=True, default=None)


class SessionOutbox(Table, tablename="session_outbox"):
    """Events of committed changes that the relay has not yet moved to the event log. Triggers
    made by the migration write a row here for every insert, update and delete of a session,
    in the change's own transaction, so there is no change without its event and no event
    without its change."""

    id = BigSerial(primary_key=True)
    kind = Varchar(length=16, null=False)
    session_id = UUID(null=False)
    # JSON text: {"session": the row after the change (before it, for a delete),
    #             "previous": on an update, the row's fields before it but its JSON documents}.
    data = Text(null=False)
