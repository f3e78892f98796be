"""The custom scalars, by the contract's names: `UUID`, `JSON` and `DateTime`.

Each is described for GraphiQL's docs pane and names its format's specification
(`@specifiedBy`); `DateTime` refuses a time without an offset, which the database could only
guess.

A value a scalar refuses raises `GraphQLError`, not `ValueError`: graphql-core then reports it
as the client's mistake, in a literal (`session(id: "nope")`, refused at validation) as in a
variable. A plain exception from a literal would reach the client masked, as a server error."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

import strawberry
from graphql import GraphQLError, StringValueNode, ValueNode, print_ast
from graphql.pyutils import inspect
from strawberry.scalars import JSON
from strawberry.types.scalar import ScalarDefinition

T = TypeVar("T")


def _identity(value: Any) -> Any:
    return value


def _text(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise GraphQLError(f"{name} cannot represent a non-string value: {inspect(value)}")
    return value


def _refused(name: str, value: str, reason: str) -> GraphQLError:
    return GraphQLError(f"{name} cannot represent {value!r}: {reason}")


def _parse_datetime(value: object) -> datetime:
    text = _text("DateTime", value)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise _refused("DateTime", text, "not an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        raise _refused("DateTime", text, "no UTC offset (e.g. 2026-01-31T08:00:00Z)")
    try:
        # Stored times are UTC; one that UTC cannot hold (year 0 or 10000) is no time at all.
        return parsed.astimezone(UTC)
    except OverflowError:
        raise _refused("DateTime", text, "out of range") from None


def _parse_uuid(value: object) -> UUID:
    text = _text("UUID", value)
    try:
        return UUID(text)
    except ValueError:
        raise _refused("UUID", text, "not a UUID") from None


def _literal(name: str, parse: Callable[[object], T]) -> Callable[..., T]:
    """A literal parser for a scalar written as a string: `parse` applied to the string, with
    the refusal pointing at the literal in the document."""

    def parse_literal(node: ValueNode, _variables: dict[str, Any] | None = None) -> T:
        if not isinstance(node, StringValueNode):
            raise GraphQLError(
                f"{name} cannot represent a non-string value: {print_ast(node)}", nodes=node
            )
        try:
            return parse(node.value)
        except GraphQLError as error:
            raise GraphQLError(error.message, nodes=node) from None

    return parse_literal


SCALARS: dict[object, ScalarDefinition] = {
    UUID: strawberry.scalar(
        name="UUID",
        description="A UUID as text, e.g. `0e9a8d3c-5b7f-4d2a-9c61-3f0b2a7e4d15`; a session's "
        "id is a version 4 UUID.",
        specified_by_url="https://www.rfc-editor.org/rfc/rfc9562",
        serialize=str,
        parse_value=_parse_uuid,
        parse_literal=_literal("UUID", _parse_uuid),
    ),
    JSON: strawberry.scalar(
        name="JSON",
        description="Any JSON value: an object, an array, a string, a number, a boolean or "
        "null; as a literal in a document, written in GraphQL's syntax.",
        specified_by_url="https://www.rfc-editor.org/rfc/rfc8259",
        serialize=_identity,
        parse_value=_identity,
    ),
    # ISO 8601 with the offset, as the database returns it: 2026-11-26T08:00:00.123456+00:00.
    datetime: strawberry.scalar(
        name="DateTime",
        description="A date and time with its UTC offset (RFC 3339), e.g. "
        "`2026-11-26T08:00:00.123456+00:00`; served in UTC. A time without an offset is "
        "refused.",
        specified_by_url="https://www.rfc-editor.org/rfc/rfc3339",
        serialize=datetime.isoformat,
        parse_value=_parse_datetime,
        parse_literal=_literal("DateTime", _parse_datetime),
    ),
}
