"""The custom scalars, by the contract's names: `UUID`, `JSON` and `DateTime`.

Each is described for GraphiQL's docs pane and names its format's specification
(`@specifiedBy`); `DateTime` refuses a time without an offset, which the database could only
guess.

A value a scalar refuses raises `GraphQLError`, not `ValueError`: graphql-core then reports it
as the client's mistake, in a literal (`session(id: "nope")`, refused at validation) as in a
variable. A plain exception from a literal would reach the client masked, as a server error.

`JSON` holds only numbers a stored document keeps exactly (`app.validation`): a number it would
change (`1e400`, `2**64`, more digits than a 64-bit float keeps) is refused, coded
BAD_USER_INPUT, rather than stored altered. A literal's number is judged from its text. A
variable's is judged from the request's text when the request was read with `decode_json`, which
keeps a number no float holds as written as an `InexactNumber`."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

import msgspec
import strawberry
from graphql import (
    FloatValueNode,
    GraphQLError,
    IntValueNode,
    ListValueNode,
    ObjectValueNode,
    StringValueNode,
    ValueNode,
    VariableNode,
    print_ast,
    value_from_ast_untyped,
)
from graphql.pyutils import inspect
from strawberry.scalars import JSON
from strawberry.types.scalar import ScalarDefinition

from app import validation
from app.graphql.errors import BAD_USER_INPUT

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


class InexactNumber:
    """A number of a request's JSON that no 64-bit float holds as written, kept as its text so
    that the scalar reading it can refuse it, naming the variable."""

    __slots__ = ("problem", "text")

    def __init__(self, text: str, problem: str) -> None:
        self.text, self.problem = text, problem

    def __repr__(self) -> str:
        return self.text


def _float_or_inexact(text: str) -> float | InexactNumber:
    try:
        return validation.exact_float(text)
    except ValueError as error:
        return InexactNumber(text, str(error))


_request_decoder = msgspec.json.Decoder(float_hook=_float_or_inexact)


def decode_json(data: str | bytes) -> object:
    """A GraphQL request's JSON, its integers read exactly and its other numbers as floats, or
    as `InexactNumber` when no float holds them as written (orjson would round 2**64 and
    3.14159265358979323846 without a word). `json.JSONDecodeError` when it is not JSON, as
    Strawberry's views expect."""
    try:
        return _request_decoder.decode(data)
    except msgspec.DecodeError as error:
        text = data if isinstance(data, str) else data.decode("utf-8", "replace")
        raise json.JSONDecodeError(str(error), text, 0) from None


def _not_json(message: str, node: ValueNode | None = None) -> GraphQLError:
    return GraphQLError(
        f"JSON cannot represent {message}", nodes=node, extensions={"code": BAD_USER_INPUT}
    )


def _json_problem(value: object) -> str | None:
    """Why `value` (a variable's) is not a JSON value a document keeps exactly, or None."""
    if isinstance(value, InexactNumber):
        return value.problem
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return None
    if isinstance(value, int):
        return None if validation.is_json_int(value) else "an integer outside the 64-bit range"
    if isinstance(value, float):
        return None if value == value and abs(value) != float("inf") else f"the number {value}"
    if isinstance(value, dict):
        items: Any = value.values()
    elif isinstance(value, list):
        items = value
    else:
        return None
    for item in items:
        if (problem := _json_problem(item)) is not None:
            return problem
    return None


def _parse_json_value(value: object) -> object:
    problem = _json_problem(value)
    if problem is not None:
        raise _not_json(problem)
    return value


def _parse_json_literal(node: ValueNode, variables: dict[str, Any] | None = None) -> object:
    """A JSON literal, each number judged from the text the document writes it in."""
    if isinstance(node, IntValueNode):
        digits = node.value.lstrip("-")
        # Checked before Python reads it: int() refuses more than 4,300 digits with an error.
        if len(digits) > validation.JSON_INT_DIGITS or not validation.is_json_int(int(node.value)):
            raise _not_json(f"the integer {node.value[:40]}: outside the 64-bit range", node)
        return int(node.value)
    if isinstance(node, FloatValueNode):
        try:
            return validation.exact_float(node.value)
        except ValueError as error:
            raise _not_json(str(error), node) from None
    if isinstance(node, ListValueNode):
        return [_parse_json_literal(item, variables) for item in node.values]
    if isinstance(node, ObjectValueNode):
        return {f.name.value: _parse_json_literal(f.value, variables) for f in node.fields}
    if isinstance(node, VariableNode):
        return _parse_json_value(value_from_ast_untyped(node, variables))
    return value_from_ast_untyped(node, variables)


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
        "null; as a literal in a document, written in GraphQL's syntax. Numbers are kept "
        "exactly: integers of 64 bits, and others as a 64-bit float holds them; a number "
        "that would change (1e400, 2^64, more digits than a float keeps) is refused "
        "(BAD_USER_INPUT).",
        specified_by_url="https://www.rfc-editor.org/rfc/rfc8259",
        serialize=_identity,
        parse_value=_parse_json_value,
        parse_literal=_parse_json_literal,
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
