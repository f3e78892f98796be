"""Mutations. A refusal by the service is data: `userErrors` with the code, the input field it
concerns and a message, beside a null `session` or `deletedId`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated
from uuid import UUID

import strawberry
from strawberry.scalars import JSON

from app.errors import DomainError, ErrorCode, InvalidInput
from app.graphql.commands import (
    CreateFields,
    CreateSessionInput,
    UpdateFields,
    UpdateSessionInput,
    command,
)
from app.graphql.context import Info
from app.graphql.enums import UserErrorCode
from app.graphql.inputs import given
from app.graphql.types import Session
from app.model import NewSession, SessionChanges
from app.validation import JSON_MAX_DEPTH


@strawberry.type(description="Why a mutation changed nothing.")
class UserError:
    code: UserErrorCode = strawberry.field(description="The reason, for a program.")
    field: list[str] | None = strawberry.field(
        description='The path of the argument it concerns, e.g. `["input", "title"]` '
        'or `["id"]`; null when it concerns no one argument.'
    )
    message: str = strawberry.field(description="The reason, for a person.")


_SESSION = "The session as it is now; null when there are `userErrors`."
_ERRORS = "Why nothing was changed; empty when it was."


@strawberry.type(description="What `createSession` did.")
class CreateSessionPayload:
    session: Session | None = strawberry.field(
        description="The new session (or the first one made with the same `idempotencyKey`); "
        "null when there are `userErrors`."
    )
    user_errors: list[UserError] = strawberry.field(description=_ERRORS)


@strawberry.type(description="What `updateSession` did.")
class UpdateSessionPayload:
    session: Session | None = strawberry.field(description=_SESSION)
    user_errors: list[UserError] = strawberry.field(description=_ERRORS)


@strawberry.type(description="What `deleteSession` did.")
class DeleteSessionPayload:
    deleted_id: UUID | None = strawberry.field(
        description="The id of the deleted session; null when there are `userErrors`."
    )
    user_errors: list[UserError] = strawberry.field(description=_ERRORS)


def _user_error(
    error: DomainError, names: Mapping[str, str] | None = None, within: tuple[str, ...] = ("input",)
) -> UserError:
    """`error` as a `UserError` whose `field` is the path of the argument it concerns: an input
    field of the argument `within` (`names` are the input's `NAMES`), an argument itself when
    `within` is empty, or `["id"]` for a session not found."""
    field: list[str] | None = None
    message = error.message
    if error.field is not None and names and error.field in names:
        name = names[error.field]
        field = [*within, name]
        # A refused value's message starts with the field's name ("target_branch must not be
        # empty"): here it is the name the client wrote.
        if isinstance(error, InvalidInput) and message.startswith(error.field):
            message = name + message.removeprefix(error.field)
    if field is None and error.code is ErrorCode.NOT_FOUND:
        field = ["id"]
    return UserError(code=UserErrorCode[error.code.name], field=field, message=message)


_ID = "The session's id."

# The resolvers are module functions handed to `strawberry.mutation(resolver=...)`: the decorator
# form with a description is untyped for mypy. Their inputs are classes made at import (see
# `commands`): strawberry is given the class, mypy the Protocol that says what a resolver reads.


async def _create_session(
    info: Info,
    input: Annotated[
        CreateFields,
        strawberry.argument(graphql_type=CreateSessionInput, description="The session."),
    ],
) -> CreateSessionPayload:
    try:
        created = await info.context.service.create(
            command(NewSession, input), idempotency_key=given(input.idempotency_key)
        )
    except DomainError as error:
        return CreateSessionPayload(session=None, user_errors=[_user_error(error, input.NAMES)])
    return CreateSessionPayload(session=Session.from_row(created.session), user_errors=[])


async def _update_session(
    info: Info,
    id: Annotated[UUID, strawberry.argument(description=_ID)],
    input: Annotated[
        UpdateFields,
        strawberry.argument(graphql_type=UpdateSessionInput, description="The change."),
    ],
) -> UpdateSessionPayload:
    try:
        row = await info.context.service.update(
            id, command(SessionChanges, input), expected_version=given(input.expected_version)
        )
    except DomainError as error:
        return UpdateSessionPayload(session=None, user_errors=[_user_error(error, input.NAMES)])
    return UpdateSessionPayload(session=Session.from_row(row), user_errors=[])


# appendMessages' arguments by the service's names of what they concern.
_APPEND_ARGUMENTS = {"messages": "messages"}


async def _append_messages(
    info: Info,
    id: Annotated[UUID, strawberry.argument(description=_ID)],
    messages: Annotated[
        list[JSON],
        strawberry.argument(
            description="The messages to add at the end of the list, in this order: JSON values "
            f"without NUL characters, each at most {JSON_MAX_DEPTH - 1} levels deep (one less "
            "than `messages`, which holds them). An empty list changes nothing."
        ),
    ],
) -> UpdateSessionPayload:
    try:
        row = await info.context.service.append_messages(id, messages)
    except DomainError as error:
        user_error = _user_error(error, _APPEND_ARGUMENTS, within=())
        return UpdateSessionPayload(session=None, user_errors=[user_error])
    return UpdateSessionPayload(session=Session.from_row(row), user_errors=[])


async def _delete_session(
    info: Info, id: Annotated[UUID, strawberry.argument(description=_ID)]
) -> DeleteSessionPayload:
    try:
        row = await info.context.service.delete(id)
    except DomainError as error:
        return DeleteSessionPayload(deleted_id=None, user_errors=[_user_error(error)])
    return DeleteSessionPayload(deleted_id=row["id"], user_errors=[])


@strawberry.type(description="What can be changed.")
class Mutation:
    create_session: CreateSessionPayload = strawberry.mutation(
        resolver=_create_session,
        description="Creates a session, ACTIVE, named by the server from its repo, target "
        "branch and messages.",
    )
    update_session: UpdateSessionPayload = strawberry.mutation(
        resolver=_update_session,
        description="Changes the fields given in `input`, and adds one to `version`. An "
        "`input` with no field changes nothing.",
    )
    delete_session: DeleteSessionPayload = strawberry.mutation(
        resolver=_delete_session,
        description="Deletes a session. Its children stay, without a parent (their `parentId` "
        "becomes null).",
    )
    append_messages: UpdateSessionPayload = strawberry.mutation(
        resolver=_append_messages,
        description="Adds `messages` at the end of the session's `messages` list, atomically: "
        "appends made at once all land, each adding one to `version`. Stored `messages` that "
        "are null count as an empty list; NOT_A_LIST when they hold anything else (an object, "
        "a string, a number, a boolean), and nothing changes.",
    )
