"""The query inputs (filter, order), and their translation into the service's terms. The
mutations' inputs are derived from the declaration, in `commands`."""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar
from uuid import UUID

import strawberry

from app import listing, tables
from app.errors import InvalidInput
from app.graphql.types import SortDirection

T = TypeVar("T")


def given(value: T) -> T | None:
    """`value`, or None when the client left the field out."""
    return None if value is strawberry.UNSET else value


def _filter_text(name: str, value: str | None) -> str | None:
    # PostgreSQL cannot hold a NUL character in text, so no stored session could match it.
    if value is not None and "\x00" in value:
        raise InvalidInput(f"filter.{name} must not contain NUL characters", "filter")
    return value


@strawberry.input
class SessionFilter:
    inbox_status: list[tables.InboxStatus] | None = strawberry.UNSET
    repo: str | None = strawberry.UNSET
    parent_id: UUID | None = strawberry.UNSET
    is_root: bool | None = strawberry.UNSET
    title_contains: str | None = strawberry.field(
        default=strawberry.UNSET, description="Case-insensitive."
    )
    created_after: datetime | None = strawberry.UNSET
    created_before: datetime | None = strawberry.UNSET

    def to_domain(self) -> listing.SessionFilter:
        """The service's filter; InvalidInput for a value no session can have."""
        statuses = given(self.inbox_status)
        return listing.SessionFilter(
            inbox_status=None if statuses is None else tuple(statuses),
            repo=_filter_text("repo", given(self.repo)),
            parent_id=given(self.parent_id),
            is_root=given(self.is_root),
            title_contains=_filter_text("titleContains", given(self.title_contains)),
            created_after=given(self.created_after),
            created_before=given(self.created_before),
        )


@strawberry.input
class SessionOrder:
    field: listing.SortField = listing.SortField.CREATED_AT
    direction: SortDirection = SortDirection.DESC

    def to_domain(self) -> listing.SessionOrder:
        return listing.SessionOrder(self.field, descending=self.direction is SortDirection.DESC)
