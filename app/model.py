"""The one declaration of a session: its fields, their types, limits and descriptions, and which
ones a client may write.

Each field's type is declared once below, as an `Annotated` alias whose msgspec `Meta` carries
its limits, its description and the check that msgspec cannot express (`CHECK`). Three shapes use
those aliases:

- `Session`, a typed row: the stored session as the service returns it (JSON columns as the text
  they are stored as);
- `NewSession`, the create command: what a client gives at creation;
- `SessionChanges`, the change command: every field a client may write, each absent (`UNSET`) or
  given (explicit nulls included), so a merge patch keeps "absent" apart from "null".

Everything else derives from these: REST bodies are decoded straight into the commands, REST
serialization and the OpenAPI schemas come from the annotations, GraphQL inputs from the commands'
fields, and the store's column list from `Session`. msgspec (rather than pydantic) decodes and
checks the bodies: `UNSET` keeps a merge patch's "absent" apart from "null" in a typed command,
and a create body costs 2-7 µs, 1.3-1.7 times less than pydantic v2 with the same checks
(`python -m bench.decode`).

The module is longer than most because it is the whole declaration, with the few helpers that
read it (`describe`, `check`, `base_types`, `invalid`); splitting it would split the declaration.
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Annotated, Any, ClassVar, TypedDict, TypeVar
from uuid import UUID

import msgspec
from msgspec import UNSET, Meta, UnsetType

from app import validation
from app.errors import InvalidInput, MalformedId
from app.naming import BRANCH_MAX, TITLE_MAX
from app.tables import InboxStatus

# Keys of `Meta.extra`: the check a field's value must pass, and whether a field holds JSON
# (stored as JSON text, served as the JSON it is).
CHECK = "check"
JSON = "json"

T = TypeVar("T")
Check = Callable[[str, Any], Any]


def _meta(
    description: str, *, check: Check | None = None, json: bool = False, **limits: Any
) -> Meta:
    extra: dict[str, Any] = {}
    if check is not None:
        extra[CHECK] = check
    if json:
        extra[JSON] = True
    schema = limits.pop("schema", None)
    return Meta(description=description, extra=extra or None, extra_json_schema=schema, **limits)


_TEXT_SCHEMA = {"minLength": 1, "pattern": validation.TEXT_PATTERN}

SessionId = Annotated[UUID, _meta("The session's id: a version 4 UUID made by the server.")]
Repo = Annotated[
    str,
    _meta(
        "The repository the agent works on, e.g. `acme/app`: non-blank text without NUL "
        "characters.",
        check=validation.required_text,
        max_length=validation.TEXT_MAX,
        schema=_TEXT_SCHEMA,
    ),
]
TargetBranch = Annotated[
    str,
    _meta(
        "The branch the work is meant for, e.g. `main`: non-blank text without NUL characters.",
        check=validation.required_text,
        max_length=validation.TEXT_MAX,
        schema=_TEXT_SCHEMA,
    ),
]
Title = Annotated[
    str,
    _meta(
        f"A one-line summary of the work, at most {TITLE_MAX} characters without control "
        "characters. Generated at creation; editable.",
        check=validation.title,
        max_length=TITLE_MAX,
        schema={"minLength": 1, "pattern": validation.TITLE_PATTERN},
    ),
]
Branch = Annotated[
    str,
    _meta(
        f"The git branch the agent works on: a name `git check-ref-format --branch` accepts, "
        f"at most {BRANCH_MAX} characters, unique within the repo. Generated at creation; "
        "editable.",
        check=validation.branch,
        max_length=BRANCH_MAX,
        schema={"minLength": 1, "pattern": validation.BRANCH_PATTERN},
    ),
]
Messages = Annotated[
    Any,
    _meta(
        "The conversation: any JSON value (usually an array of messages), or null. No string "
        f"may contain a NUL character; at most {validation.JSON_MAX_DEPTH} levels deep.",
        check=validation.json_document,
        json=True,
    ),
]
Status = Annotated[
    InboxStatus,
    _meta(
        "Where the session stands in the inbox: pending, active (at creation), completed or "
        "archived."
    ),
]
SbxConfig = Annotated[
    Any,
    _meta(
        "The configuration of the sandbox the agent runs in: any JSON value, or null (at "
        "creation).",
        check=validation.json_document,
        json=True,
    ),
]
ParentId = Annotated[
    UUID | None,
    _meta(
        "The id of the session this one was spawned from, or null. It must exist, and may not "
        "make a session its own ancestor; when the parent is deleted it becomes null."
    ),
]
Timestamp = Annotated[datetime, Meta(tz=True)]
CreatedAt = Annotated[Timestamp, _meta("When the session was created (ISO 8601, UTC).")]
UpdatedAt = Annotated[Timestamp, _meta("When the session last changed (ISO 8601, UTC).")]
Version = Annotated[
    int,
    _meta(
        "Starts at 1 and grows by one with every change; its ETag. Give it back as "
        "`If-Match` (REST) or `expectedVersion` (GraphQL) to change only what you read.",
        ge=1,
    ),
]
IdempotencyKey = Annotated[
    str,
    _meta(
        "A retry with the same key and content returns the first creation's session; with "
        "other content it is refused.",
        check=validation.required_text,
        max_length=validation.IDEMPOTENCY_KEY_MAX,
        schema=_TEXT_SCHEMA,
    ),
]


class Session(TypedDict):
    """A stored session, as the service returns it. `messages` and `sbx_config` hold the JSON
    text they are stored as, so a face can pass them through unparsed."""

    id: SessionId
    repo: Repo
    target_branch: TargetBranch
    title: Title
    branch: Branch
    messages: Messages
    inbox_status: Status
    sbx_config: SbxConfig
    parent: ParentId
    created_at: CreatedAt
    updated_at: UpdatedAt
    version: Version


class _Checked(msgspec.Struct, kw_only=True):
    """A command whose fields pass their `CHECK` when it is made, however it is made (decoded
    from JSON, converted from GraphQL input, or built by hand)."""

    def __post_init__(self) -> None:
        for name, check in _checks(type(self)):
            value = getattr(self, name)
            if value is not UNSET and value is not None:
                setattr(self, name, check(name, value))

    @classmethod
    def decode(cls: type[C], body: bytes) -> C:
        """A command from a JSON body; InvalidInput (naming the field) when it does not fit."""
        try:
            command: C = _decoder(cls).decode(body)
        except msgspec.ValidationError as error:
            raise invalid(error) from None
        return command

    @classmethod
    def convert(cls: type[C], values: Mapping[str, Any]) -> C:
        """A command from Python values (GraphQL input); InvalidInput when they do not fit."""
        try:
            return msgspec.convert(values, type=cls, strict=False)
        except msgspec.ValidationError as error:
            raise invalid(error) from None


C = TypeVar("C", bound=_Checked)


class NewSession(_Checked):
    """What a client gives to create a session. The server adds the rest: id, `title` and
    `branch` (generated), `inbox_status` `active`, `sbx_config` null, times and version 1."""

    repo: Repo
    target_branch: TargetBranch
    messages: Messages = None
    parent: ParentId = None


class SessionChanges(_Checked, forbid_unknown_fields=True):
    """A change to a session: each field a client may write, `UNSET` when it stays as it is.
    An explicit None clears a nullable field; a non-nullable one cannot be None."""

    repo: Repo | UnsetType = UNSET
    target_branch: TargetBranch | UnsetType = UNSET
    messages: Messages | UnsetType = UNSET
    inbox_status: Status | UnsetType = UNSET
    sbx_config: SbxConfig | UnsetType = UNSET
    parent: ParentId | UnsetType = UNSET
    title: Title | UnsetType = UNSET
    branch: Branch | UnsetType = UNSET

    # The fields the declaration lets a client write, in declaration order.
    FIELDS: ClassVar[tuple[str, ...]]

    def given(self) -> dict[str, Any]:
        """The fields this change sets (explicit nulls included)."""
        return {name: value for name in self.FIELDS if (value := getattr(self, name)) is not UNSET}


def describe(name: str) -> str:
    """The description of the session's field `name`."""
    return describe_type(typing.get_type_hints(Session, include_extras=True)[name])


def check(name: str, value: Any) -> Any:
    """`value` for the session's field `name`, once it passes the field's `CHECK` (a null
    passes); InvalidInput naming the field otherwise."""
    checker = _extra(typing.get_type_hints(Session, include_extras=True)[name]).get(CHECK)
    return value if checker is None or value is None else checker(name, value)


def describe_type(hint: Any) -> str:
    """The description an annotation's `Meta` carries."""
    for meta in _metas(hint):
        if meta.description:
            return meta.description
    raise KeyError(hint)  # pragma: no cover - every field has one


def invalid(error: msgspec.ValidationError) -> InvalidInput:
    """msgspec's "Expected `str`, got `int` - at `$.repo`" as InvalidInput naming `repo`."""
    message, _, path = str(error).partition(" - at `$")
    field = path.rstrip("`").lstrip(".").split(".")[0].split("[")[0] or None
    quoted = message.split("`")[1] if message.count("`") >= 2 else None
    if field is None and message.startswith("Object missing required field"):
        return InvalidInput(f"{quoted} is required", quoted)
    if field is None and message.startswith("Object contains unknown field"):
        return InvalidInput(f"{quoted} is not a field of a session that can be changed", quoted)
    if message == "Number out of range":
        return InvalidInput(f"{field or 'the body'} holds a number JSON cannot carry here", field)
    if field is None:
        return InvalidInput(message)
    if message == "Invalid UUID":
        return MalformedId(f"{field} is not a valid UUID", field)
    if message.startswith("Invalid enum value"):
        allowed = ", ".join(status.value for status in InboxStatus)
        return InvalidInput(f"{field} must be one of {allowed}", field)
    return InvalidInput(f"{field}: {message}", field)


def base_types(hint: Any) -> set[Any]:
    """The types an annotation stands for, through `Annotated` and unions:
    `Annotated[UUID | None, Meta(...)]` is {UUID, NoneType}."""
    if typing.get_origin(hint) is Annotated:
        return base_types(typing.get_args(hint)[0])
    args = typing.get_args(hint)
    if not args:
        return {hint}
    return set().union(*(base_types(arg) for arg in args))


def _metas(hint: Any) -> list[Meta]:
    """Every `Meta` in an annotation, through `Annotated`, unions and aliases."""
    found: list[Meta] = []
    if typing.get_origin(hint) is Annotated:
        found.extend(m for m in hint.__metadata__ if isinstance(m, Meta))
        found.extend(_metas(typing.get_args(hint)[0]))
    else:
        for arg in typing.get_args(hint):
            found.extend(_metas(arg))
    return found


def _extra(hint: Any) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    for meta in reversed(_metas(hint)):
        extra.update(meta.extra or {})
    return extra


def _admits_none(hint: Any) -> bool:
    if hint is Any or hint is type(None):
        return True
    if typing.get_origin(hint) is Annotated:
        return _admits_none(typing.get_args(hint)[0])
    return any(_admits_none(arg) for arg in typing.get_args(hint))


@functools.cache
def _decoder(cls: type[C]) -> msgspec.json.Decoder[C]:
    # A number of a JSON field with a fraction or exponent is refused, naming the field, unless
    # a float keeps it as written; integers are read exactly (and checked by `CHECK`).
    return msgspec.json.Decoder(cls, float_hook=validation.exact_float)


@functools.cache
def _checks(cls: type[msgspec.Struct]) -> tuple[tuple[str, Check], ...]:
    hints = typing.get_type_hints(cls, include_extras=True)
    return tuple(
        (name, check)
        for name in cls.__struct_fields__
        if (check := _extra(hints[name]).get(CHECK)) is not None
    )


SessionChanges.FIELDS = SessionChanges.__struct_fields__
# Fields of a stored session that no client writes: the server keeps them.
READ_ONLY: tuple[str, ...] = tuple(
    name for name in Session.__annotations__ if name not in SessionChanges.FIELDS
)
# Fields that may hold null: their type admits None.
NULLABLE: frozenset[str] = frozenset(
    name
    for name, hint in typing.get_type_hints(Session, include_extras=True).items()
    if _admits_none(hint)
)
# Fields that hold JSON.
JSON_FIELDS: frozenset[str] = frozenset(
    name
    for name, hint in typing.get_type_hints(Session, include_extras=True).items()
    if _extra(hint).get(JSON)
)
