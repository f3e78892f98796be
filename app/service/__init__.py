"""Every rule about sessions: reads in `reads`, changes and the rules they keep in `changes`,
over the statements of `app.store`. The REST and GraphQL faces call `SessionService` and
nothing else."""

from app.service.changes import BRANCH_ATTEMPTS, Created, SessionService
from app.service.reads import MAX_ANCESTRY, SessionReads
from app.store import PARENT_LOCK

__all__ = [
    "BRANCH_ATTEMPTS",
    "MAX_ANCESTRY",
    "PARENT_LOCK",
    "Created",
    "SessionReads",
    "SessionService",
]
