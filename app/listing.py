"""Filters, sort orders and keyset cursors for listing sessions, as data (`app.store.listing`
turns them into SQL), with the bounds of every argument a listing takes.

A cursor is opaque to clients: base64url of `[field, value, id]` of the row it points at. Rows
are always ordered by `(field, id)`, so a cursor stays valid however many rows are inserted
before or after it.

The bounds are what a stored session could match, no more: one of each status, a repo or title
text no longer than the declaration lets one be (`app.model`), a cursor no longer than the longest
the server makes. A filter or cursor past them is refused (InvalidInput naming the field) before
any statement runs; both faces derive their checks and documentation from these."""

from __future__ import annotations

import base64
import binascii
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson

from app.errors import InvalidInput
from app.naming import TITLE_MAX
from app.tables import InboxStatus
from app.validation import TEXT_MAX

DEFAULT_PAGE = 50
MAX_PAGE = 100
# A status filter lists at most one of each status; one listed twice counts once.
MAX_STATUSES = len(InboxStatus)
# Longest filter texts: no stored repo or title is longer (see `app.model`).
REPO_MAX = TEXT_MAX
TITLE_CONTAINS_MAX = TITLE_MAX


class SortField(enum.StrEnum):
    CREATED_AT = "created_at"
    UPDATED_AT = "updated_at"
    TITLE = "title"


@dataclass(frozen=True, slots=True)
class SessionOrder:
    field: SortField = SortField.CREATED_AT
    descending: bool = True


NEWEST_FIRST = SessionOrder()


@dataclass(frozen=True, slots=True)
class SessionFilter:
    """Which sessions a listing holds: each condition given is ANDed; None leaves it out."""

    inbox_status: tuple[InboxStatus, ...] | None = None
    repo: str | None = None
    parent_id: UUID | None = None
    is_root: bool | None = None
    title_contains: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None

    def __post_init__(self) -> None:
        """Refuses a condition past its bound (InvalidInput naming the field: `inbox_status`,
        `repo`, `title_contains`), and lists each status once."""
        statuses = self.inbox_status
        if statuses is not None:
            if len(statuses) > MAX_STATUSES:
                raise InvalidInput(
                    f"inbox_status lists {len(statuses)} statuses; there are {MAX_STATUSES}",
                    "inbox_status",
                )
            # Frozen, so set as the dataclass itself sets fields.
            object.__setattr__(self, "inbox_status", tuple(dict.fromkeys(statuses)))
        _check_text("repo", self.repo, REPO_MAX)
        _check_text("title_contains", self.title_contains, TITLE_CONTAINS_MAX)

    def matches(self, row: Mapping[str, Any]) -> bool:
        """Whether the session `row` is among those a listing with this filter holds (as the
        store's SQL decides, for an event that no query reads)."""
        if self.inbox_status is not None and row["inbox_status"] not in self.inbox_status:
            return False
        if self.repo is not None and row["repo"] != self.repo:
            return False
        if self.parent_id is not None and row["parent"] != self.parent_id:
            return False
        if self.is_root is not None and (row["parent"] is None) is not self.is_root:
            return False
        if self.title_contains and self.title_contains.lower() not in row["title"].lower():
            return False
        created_at = row["created_at"]
        if self.created_after is not None and not created_at > self.created_after:
            return False
        return self.created_before is None or created_at < self.created_before


def _check_text(field: str, value: str | None, max_length: int) -> None:
    # Text no stored session holds could match none: PostgreSQL text cannot hold NUL, and no
    # value is stored longer than `max_length`.
    if value is None:
        return
    if len(value) > max_length:
        raise InvalidInput(f"{field} must be at most {max_length} characters", field)
    if "\x00" in value:
        raise InvalidInput(f"{field} must not contain NUL characters", field)


@dataclass(frozen=True, slots=True)
class Cursor:
    field: SortField
    value: Any
    id: UUID


def encode_cursor(field: SortField, row: Any) -> str:
    value = row[field.value]
    if isinstance(value, datetime):
        value = value.isoformat()
    raw = orjson.dumps([field.value, value, str(row["id"])])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, field: SortField, argument: str = "cursor") -> Cursor:
    """The position `cursor` names; refused when malformed, longer than any the server makes,
    or made for another sort field."""
    if len(cursor) > CURSOR_MAX:
        raise InvalidInput(f"{argument} is not a valid cursor: too long", argument)
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        name, value, ident = orjson.loads(raw)
        parsed_field = SortField(name)
        parsed_id = UUID(str(ident))
        if parsed_field is not SortField.TITLE:
            # Compared with stored UTC times: a naive time is taken as UTC, and one that UTC
            # cannot hold is refused (the driver would fail on it).
            value = datetime.fromisoformat(value)
            value = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
        elif not isinstance(value, str) or "\x00" in value:
            raise ValueError(value)
    except (binascii.Error, ValueError, TypeError, OverflowError, orjson.JSONDecodeError):
        raise InvalidInput(f"{argument} is not a valid cursor", argument) from None
    if parsed_field is not field:
        raise InvalidInput(f"{argument} was made for another sort order", argument)
    return Cursor(parsed_field, value, parsed_id)


def _longest_cursor() -> int:
    """The length of the longest cursor `encode_cursor` makes: a title of TITLE_MAX characters,
    each four bytes of UTF-8, or the latest time."""
    longest_title = "\U0010ffff" * TITLE_MAX
    latest = datetime.max.replace(tzinfo=UTC)
    return max(
        len(encode_cursor(field, {field.value: value, "id": UUID(int=0)}))
        for field, value in (
            (SortField.TITLE, longest_title),
            (SortField.CREATED_AT, latest),
            (SortField.UPDATED_AT, latest),
        )
    )


CURSOR_MAX = _longest_cursor()


def page_size(value: int | None, argument: str, maximum: int = MAX_PAGE) -> int:
    if value is None:
        return DEFAULT_PAGE
    if not 0 <= value <= maximum:
        raise InvalidInput(f"{argument} must be between 0 and {maximum}", argument)
    return value


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[Any]
    has_next: bool
    has_previous: bool
    order: SessionOrder

    def cursor(self, row: Any) -> str:
        return encode_cursor(self.order.field, row)


@dataclass(frozen=True, slots=True)
class Paging:
    """How a page is read, as the paging arguments decide: `limit` rows past the cursors,
    walking backward (then turned around) or forward."""

    limit: int
    backward: bool
    after: Cursor | None
    before: Cursor | None


def paging(
    order: SessionOrder,
    *,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
    max_page: int = MAX_PAGE,
) -> Paging:
    """The reading of `first` rows after `after`, or `last` rows before `before`; InvalidInput
    naming the argument for a size out of range, both sizes, or a cursor that is not one."""
    if first is not None and last is not None:
        raise InvalidInput("give first or last, not both", "last")
    backward = last is not None or (before is not None and first is None)
    limit = page_size(last if backward else first, "last" if backward else "first", max_page)
    after_cursor = None if after is None else decode_cursor(after, order.field, "after")
    before_cursor = None if before is None else decode_cursor(before, order.field, "before")
    return Paging(limit, backward, after_cursor, before_cursor)
