"""Which rule the database enforced when it refused a write, read from either driver's error."""

from __future__ import annotations

import enum

import asyncpg


class Constraint(enum.Enum):
    # The (repo, branch) unique index.
    BRANCH = "branch"
    # The unique idempotency key.
    IDEMPOTENCY = "idempotency"
    # The parent foreign key: the parent does not exist (any more).
    PARENT = "parent"


class Conflict(Exception):
    """The database refused a write because of `constraint`; the driver's error is the cause."""

    def __init__(self, constraint: Constraint) -> None:
        super().__init__(constraint.value)
        self.constraint = constraint


def constraint_of(error: Exception) -> Constraint | None:
    """The constraint behind an integrity error; None for any other (a CHECK)."""
    if isinstance(error, asyncpg.ForeignKeyViolationError):
        return Constraint.PARENT
    if isinstance(error, asyncpg.UniqueViolationError):
        name = error.constraint_name or ""
        return Constraint.IDEMPOTENCY if "idempotency" in name else Constraint.BRANCH
    if isinstance(error, asyncpg.PostgresError):
        return None
    # SQLite names the rule in the message only.
    text = str(error)
    if "FOREIGN KEY" in text:
        return Constraint.PARENT
    if "idempotency_key" in text:
        return Constraint.IDEMPOTENCY
    if "UNIQUE" in text:
        return Constraint.BRANCH
    return None
