"""Every rule and every query about sessions: reads in `reads`, changes and the rules they keep
in `changes`. The REST and GraphQL faces call `SessionService` and nothing else."""

from app.service.changes import (
    BRANCH_ATTEMPTS,
    JSON_FIELDS,
    NULLABLE,
    PARENT_LOCK,
    UPDATABLE,
    Created,
    SessionService,
)
from app.service.reads import COLUMNS, MAX_ANCESTRY, SessionReads

__all__ = [
    "BRANCH_ATTEMPTS",
    "COLUMNS",
    "JSON_FIELDS",
    "MAX_ANCESTRY",
    "NULLABLE",
    "PARENT_LOCK",
    "UPDATABLE",
    "Created",
    "SessionReads",
    "SessionService",
]
