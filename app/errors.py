"""Domain errors: what a caller did that the service refuses. No HTTP or GraphQL in here; each
API maps `code` to its own shape (REST statuses in `app.rest`, `userErrors` in GraphQL)."""

from __future__ import annotations

import enum


class ErrorCode(enum.StrEnum):
    NOT_FOUND = "NOT_FOUND"
    INVALID_INPUT = "INVALID_INPUT"
    PARENT_NOT_FOUND = "PARENT_NOT_FOUND"
    PARENT_CYCLE = "PARENT_CYCLE"
    VERSION_CONFLICT = "VERSION_CONFLICT"
    BRANCH_TAKEN = "BRANCH_TAKEN"
    IDEMPOTENCY_MISMATCH = "IDEMPOTENCY_MISMATCH"
    NOT_A_LIST = "NOT_A_LIST"


class DomainError(Exception):
    """An expected failure: nothing was changed, and `message` can be shown to the caller."""

    code: ErrorCode

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(DomainError):
    code = ErrorCode.NOT_FOUND


class InvalidInput(DomainError):
    code = ErrorCode.INVALID_INPUT


class ParentNotFound(DomainError):
    code = ErrorCode.PARENT_NOT_FOUND


class ParentCycle(DomainError):
    code = ErrorCode.PARENT_CYCLE


class VersionConflict(DomainError):
    code = ErrorCode.VERSION_CONFLICT


class BranchTaken(DomainError):
    code = ErrorCode.BRANCH_TAKEN


class IdempotencyMismatch(DomainError):
    code = ErrorCode.IDEMPOTENCY_MISMATCH


class NotAList(DomainError):
    """Messages were appended to a session whose `messages` hold a JSON value other than a list
    (or null, which counts as an empty one)."""

    code = ErrorCode.NOT_A_LIST


class MalformedId(InvalidInput):
    """A value given as a UUID that is not one."""
