"""The query inputs (filter, order), and their translation into the service's terms. The
mutations' inputs are derived from the declaration, in `commands`."""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar
from uuid import UUID

import strawberry
from strawberry.utils.str_converters import to_camel_case

from app import listing
from app.errors import InvalidInput
from app.graphql.enums import InboxStatus, SessionSortField, SortDirection

T = TypeVar("T")


def given(value: T) -> T | None:
    """`value`, or None when the client left the field out."""
    return None if value is strawberry.UNSET else value


def _in_filter(error: InvalidInput) -> InvalidInput:
    """A refusal of the listing's filter field `inbox_status` as one of the argument `filter`,
    naming its field as the client wrote it: `filter.inboxStatus lists 5 statuses; …`."""
    field = error.field or ""
    message = error.message
    if field and message.startswith(field):
        message = f"filter.{to_camel_case(field)}{message.removeprefix(field)}"
    return InvalidInput(message, "filter")


@strawberry.input(description="Which sessions to list: those that match every field given.")
class SessionFilter:
    inbox_status: list[InboxStatus] | None = strawberry.field(
        default=strawberry.UNSET,
        description=f"Sessions in any of these statuses: at most {listing.MAX_STATUSES}, as "
        "there are; one listed twice counts once.",
    )
    repo: str | None = strawberry.field(
        default=strawberry.UNSET,
        description="Sessions of this repository (the exact text, at most "
        f"{listing.REPO_MAX} characters).",
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
        description="Sessions whose title contains this text, in any letter case (at most "
        f"{listing.TITLE_CONTAINS_MAX} characters, as a title).",
    )
    created_after: datetime | None = strawberry.field(
        default=strawberry.UNSET, description="Sessions created after this time (not at it)."
    )
    created_before: datetime | None = strawberry.field(
        default=strawberry.UNSET, description="Sessions created before this time (not at it)."
    )

    def to_domain(self) -> listing.SessionFilter:
        """The service's filter; InvalidInput naming `filter` for a value past the listing's
        bounds (no session could match it)."""
        statuses = given(self.inbox_status)
        try:
            return listing.SessionFilter(
                inbox_status=None if statuses is None else tuple(statuses),
                repo=given(self.repo),
                parent_id=given(self.parent_id),
                is_root=given(self.is_root),
                title_contains=given(self.title_contains),
                created_after=given(self.created_after),
                created_before=given(self.created_before),
            )
        except InvalidInput as error:
            raise _in_filter(error) from None


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
