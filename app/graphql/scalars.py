"""The custom scalars, by the contract's names: `UUID`, `JSON` and `DateTime`.

Strawberry's own definitions are replaced where they would print more than `scalar <Name>` (a
description, `@specifiedBy`), and `DateTime` refuses a time without an offset, which the
database could only guess."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import strawberry
from strawberry.scalars import JSON
from strawberry.types.scalar import ScalarDefinition


def _identity(value: Any) -> Any:
    return value


def _parse_datetime(value: object) -> datetime:
    if not isinstance(value, str):
        raise ValueError("a DateTime is an ISO 8601 string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no UTC offset (e.g. 2026-01-31T08:00:00Z)")
    try:
        # Stored times are UTC; one that UTC cannot hold (year 0 or 10000) is no time at all.
        return parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{value!r} is out of range") from None


def _parse_uuid(value: object) -> UUID:
    if not isinstance(value, str):
        raise ValueError("a UUID is a string")
    try:
        return UUID(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a UUID") from None


SCALARS: dict[object, ScalarDefinition] = {
    UUID: strawberry.scalar(name="UUID", serialize=str, parse_value=_parse_uuid),
    JSON: strawberry.scalar(name="JSON", serialize=_identity, parse_value=_identity),
    # ISO 8601 with the offset, as the database returns it: 2026-11-26T08:00:00.123456+00:00.
    datetime: strawberry.scalar(
        name="DateTime", serialize=datetime.isoformat, parse_value=_parse_datetime
    ),
}
