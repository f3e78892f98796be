"""The `session` table and the inbox status enum. Queries live in `app.service`."""

from __future__ import annotations

import enum

from piccolo.columns import (
    JSONB,
    UUID,
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
