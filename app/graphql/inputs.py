"""The query inputs (filter, order), and their translation into the service's terms. The
mutations' inputs are derived from the declaration, in `commands`."""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar
from uuid import UUID

import strawberry

from app import listing
from app.errors import InvalidInput
from app.graphql.enums import InboxStatus, SessionSortField, SortDirection

T = TypeVar("T")


def given(value: T) -> T | None:
    """`value`, or None when the client left the field out."""
    return None if value is strawberry.UNSET else value


def _filter_text(name: str, value: str | None) -> str | None:
    # PostgreSQL cannot hold a NUL character in text, so no stored session could match it.
    if value is not None and "\x00" in value:
        raise InvalidInput(f"filter.{name} must not contain NUL characters", "filter")
    return value


@strawberry.input(description="Which sessions to list: those that match every field given.")
class SessionFilter:
    inbox_status: list[InboxStatus] | None = strawberry.field(
        default=strawberry.UNSET, description="Sessions in any of these statuses."
    )
    repo: str | None = strawberry.field(
        default=strawberry.UNSET, description="Sessions of this repository (the exact text)."
    )
    parent_id: UUID | None = strawberry.field(
        default=strawberry.UNSET, description="The children of this session."
    )
    is_root: bool | None = strawberry.field(
        default=strawberry.UNSET,
        description="true: sessions without a parent; false: sessions with one.",
    )
    title_contains: str | None = strawberry.field(
        default=strawberry.UNSET,
        description="Sessions whose title contains this text, in any letter case.",
    )
    created_after: datetime | None = strawberry.field(
        default=strawberry.UNSET, description="Sessions created after this time (not at it)."
    )
    created_before: datetime | None = strawberry.field(
        default=strawberry.UNSET, description="Sessions created before this time (not at it)."
    )

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


@strawberry.input(description="The order of a list of sessions; newest first unless told.")
class SessionOrder:
    field: SessionSortField = strawberry.field(
        default=SessionSortField.CREATED_AT, description="What the sessions are ordered by."
    )
    direction: SortDirection = strawberry.field(
        default=SortDirection.DESC, description="Which end comes first."
    )

    def to_domain(self) -> listing.SessionOrder:
        return listing.SessionOrder(self.field, descending=self.direction is SortDirection.DESC)
