"""The schema's enums, each value described. `InboxStatus` and `SessionSortField` are the domain's
own enums (GraphQL names their members, rows hold their values); `SortDirection` and
`UserErrorCode` exist only in GraphQL."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import TypeVar

import strawberry
from strawberry.types.enum import StrawberryEnumDefinition

from app import listing, tables

E = TypeVar("E", bound=enum.Enum)


def domain_enum(cls: type[E], *, name: str, description: str, values: Mapping[E, str]) -> None:
    """Registers the domain's enum `cls` as the GraphQL enum `name`, with a description for each
    value. Strawberry reads a value's description only from `strawberry.enum_value()` in the
    class body, which a `StrEnum` cannot hold, so the definition it made is given them here."""
    strawberry.enum(cls, name=name, description=description)
    definition = getattr(cls, "__strawberry_definition__", None)
    if not isinstance(definition, StrawberryEnumDefinition):  # pragma: no cover - strawberry's
        raise TypeError(f"strawberry made no enum definition for {cls.__name__}")
    definition.values = [
        dataclasses.replace(value, description=values[cls(value.value)])
        for value in definition.values
    ]


# The domain's enums, by the names the schema gives them.
InboxStatus = tables.InboxStatus
SessionSortField = listing.SortField


domain_enum(
    InboxStatus,
    name="InboxStatus",
    description="Where a session stands in the inbox.",
    values={
        InboxStatus.PENDING: "Waiting: not being worked on now.",
        InboxStatus.ACTIVE: "Being worked on. Every session starts here.",
        InboxStatus.COMPLETED: "The work is done.",
        InboxStatus.ARCHIVED: "Put away: kept, but out of the inbox.",
    },
)
domain_enum(
    SessionSortField,
    name="SessionSortField",
    description="What sessions are ordered by. Ties are ordered by id, so the order is total and "
    "a cursor names one place in it.",
    values={
        SessionSortField.CREATED_AT: "When the session was created.",
        SessionSortField.UPDATED_AT: "When the session last changed.",
        SessionSortField.TITLE: "The session's title.",
    },
)


@strawberry.enum(description="The direction of an order.")
class SortDirection(enum.Enum):
    ASC = strawberry.enum_value("ASC", description="Smallest first: oldest, or A to Z.")
    DESC = strawberry.enum_value("DESC", description="Largest first: newest, or Z to A.")


@strawberry.enum(description="The kind of a `UserError`.")
class UserErrorCode(enum.Enum):
    NOT_FOUND = strawberry.enum_value("NOT_FOUND", description="No session has this id.")
    INVALID_INPUT = strawberry.enum_value(
        "INVALID_INPUT", description="A value is refused: `field` names it, `message` says why."
    )
    PARENT_NOT_FOUND = strawberry.enum_value(
        "PARENT_NOT_FOUND", description="No session has the id given as `parentId`."
    )
    PARENT_CYCLE = strawberry.enum_value(
        "PARENT_CYCLE", description="This parent would make the session its own ancestor."
    )
    VERSION_CONFLICT = strawberry.enum_value(
        "VERSION_CONFLICT",
        description="The session is no longer at `expectedVersion`: it changed since it was "
        "read. Read it again, then decide.",
    )
    BRANCH_TAKEN = strawberry.enum_value(
        "BRANCH_TAKEN", description="Another session of the same repo has this branch."
    )
    IDEMPOTENCY_MISMATCH = strawberry.enum_value(
        "IDEMPOTENCY_MISMATCH",
        description="This `idempotencyKey` was used before, to create a session from other "
        "content.",
    )
    NOT_A_LIST = strawberry.enum_value(
        "NOT_A_LIST",
        description="`messages` holds something other than a list or null, so nothing can be "
        "appended to it.",
    )
