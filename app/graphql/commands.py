"""The mutations' inputs, derived from the declaration's commands (`app.model`).

`CreateSessionInput` has a field for each field of `NewSession`, `UpdateSessionInput` one for each
field of `SessionChanges`, in their order: named and typed as `fields` says (`parent` is
`parentId`), described as the declaration says, non-null only where the command requires the
field. Each adds what its service call takes besides a session's fields (`idempotencyKey`,
`expectedVersion`).

The classes are made when this module is imported, so mypy cannot see their fields: resolvers see
them through `CreateFields` and `UpdateFields`, the one typed boundary."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import msgspec
import strawberry
from strawberry.utils.str_converters import to_camel_case

from app import model
from app.errors import InvalidInput

# Strawberry takes an enum it meets unregistered for a new one: the domain's enums are
# registered, with their descriptions, before the inputs below refer to them.
from app.graphql import enums  # noqa: F401
from app.graphql.fields import graphql_name, graphql_type
from app.model import C


class CommandFields(Protocol):
    """A mutation's input, as a resolver sees it."""

    # The GraphQL name of each input field, by the service's name of what it concerns (the
    # `field` of a domain error).
    NAMES: ClassVar[Mapping[str, str]]

    def given(self) -> dict[str, Any]:
        """The session's fields the client gave (explicit nulls included), by service names."""
        ...


class CreateFields(CommandFields, Protocol):
    idempotency_key: str | None  # strawberry.UNSET when omitted


class UpdateFields(CommandFields, Protocol):
    expected_version: int | None  # strawberry.UNSET when omitted


@dataclass(frozen=True, slots=True)
class _Extra:
    """An input field that is no field of a session: an argument of the service call."""

    name: str
    type: Any
    description: str
    # The service's name of what it concerns, as a domain error's `field` names it.
    concerns: str


def _input(
    command: type[msgspec.Struct], name: str, description: str, extras: tuple[_Extra, ...]
) -> type:
    """A strawberry input with the fields of `command`, then `extras`."""
    hints = typing.get_type_hints(command, include_extras=True)
    annotations: dict[str, Any] = {}
    namespace: dict[str, Any] = {"__module__": __name__, "__annotations__": annotations}
    names: dict[str, str] = {}
    for info in msgspec.structs.fields(command):
        names[info.name] = graphql_name(info.name)
        type_ = graphql_type(hints[info.name])
        # Only a field the command requires is non-null; any other may be omitted (UNSET).
        annotations[info.name] = type_ if info.required else type_ | None
        default = dataclasses.MISSING if info.required else strawberry.UNSET
        namespace[info.name] = strawberry.field(
            name=names[info.name], description=model.describe(info.name), default=default
        )
    session_fields = tuple(names)
    for extra in extras:
        annotations[extra.name] = extra.type | None
        namespace[extra.name] = strawberry.field(
            default=strawberry.UNSET, description=extra.description
        )
        names[extra.concerns] = to_camel_case(extra.name)

    def given(self: object) -> dict[str, Any]:
        return {
            field: value
            for field in session_fields
            if (value := getattr(self, field)) is not strawberry.UNSET
        }

    # Neither is annotated, so strawberry takes neither for a field.
    namespace["NAMES"] = names
    namespace["given"] = given
    return strawberry.input(type(name, (), namespace), name=name, description=description)


CreateSessionInput = _input(
    model.NewSession,
    "CreateSessionInput",
    "A new session. The server adds the rest: its id, a generated `title` and `branch`, "
    "`inboxStatus` ACTIVE, `sbxConfig` null, the times and `version` 1.",
    (
        _Extra(
            "idempotency_key",
            str,
            model.describe_type(model.IdempotencyKey),
            concerns="idempotency_key",
        ),
    ),
)
UpdateSessionInput = _input(
    model.SessionChanges,
    "UpdateSessionInput",
    "An omitted field stays as it is; an explicit null clears a nullable field.",
    (
        _Extra(
            "expected_version",
            int,
            "The `version` the change is meant for. When given and stale: VERSION_CONFLICT, "
            "nothing changed.",
            concerns="version",
        ),
    ),
)


def command(kind: type[C], fields: CommandFields) -> C:
    """The service's command from a mutation's input; InvalidInput naming the field otherwise."""
    values = fields.given()
    for name, value in values.items():
        if value is None and name not in model.NULLABLE:
            raise InvalidInput(f"{graphql_name(name)} cannot be null", name)
    return kind.convert(values)
