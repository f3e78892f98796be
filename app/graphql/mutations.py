"""Mutations. A refusal by the service is data: `userErrors` with the code, the input field it
concerns and a message, beside a null `session` or `deletedId`."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Annotated
from uuid import UUID

import strawberry

from app.errors import DomainError, ErrorCode, InvalidInput
from app.graphql.commands import (
    CreateFields,
    CreateSessionInput,
    UpdateFields,
    UpdateSessionInput,
    command,
)
from app.graphql.context import Info
from app.graphql.inputs import given
from app.graphql.types import Session
from app.model import NewSession, SessionChanges


@strawberry.enum
class UserErrorCode(enum.Enum):
    NOT_FOUND = "NOT_FOUND"
    INVALID_INPUT = "INVALID_INPUT"
    PARENT_NOT_FOUND = "PARENT_NOT_FOUND"
    PARENT_CYCLE = "PARENT_CYCLE"
    VERSION_CONFLICT = "VERSION_CONFLICT"
    BRANCH_TAKEN = "BRANCH_TAKEN"
    IDEMPOTENCY_MISMATCH = "IDEMPOTENCY_MISMATCH"
    NOT_A_LIST = "NOT_A_LIST"


@strawberry.type
class UserError:
    code: UserErrorCode
    field: list[str] | None
    message: str


@strawberry.type
class CreateSessionPayload:
    session: Session | None
    user_errors: list[UserError]


@strawberry.type
class UpdateSessionPayload:
    session: Session | None
    user_errors: list[UserError]


@strawberry.type
class DeleteSessionPayload:
    deleted_id: UUID | None
    user_errors: list[UserError]


def _user_error(error: DomainError, names: Mapping[str, str] | None = None) -> UserError:
    """`error` as a `UserError` whose `field` is the path of the input field it concerns (`names`
    are the input's `NAMES`), or `["id"]` for a session not found."""
    field: list[str] | None = None
    message = error.message
    if error.field is not None and names and error.field in names:
        name = names[error.field]
        field = ["input", name]
        # A refused value's message starts with the field's name ("target_branch must not be
        # empty"): here it is the name the client wrote.
        if isinstance(error, InvalidInput) and message.startswith(error.field):
            message = name + message.removeprefix(error.field)
    if field is None and error.code is ErrorCode.NOT_FOUND:
        field = ["id"]
    return UserError(code=UserErrorCode[error.code.name], field=field, message=message)


@strawberry.type
class Mutation:
    # The inputs are classes made at import (see `commands`): strawberry is given the class,
    # mypy the Protocol that says what a resolver reads of it.

    @strawberry.mutation
    async def create_session(
        self,
        info: Info,
        input: Annotated[CreateFields, strawberry.argument(graphql_type=CreateSessionInput)],
    ) -> CreateSessionPayload:
        try:
            created = await info.context.service.create(
                command(NewSession, input), idempotency_key=given(input.idempotency_key)
            )
        except DomainError as error:
            return CreateSessionPayload(session=None, user_errors=[_user_error(error, input.NAMES)])
        return CreateSessionPayload(session=Session.from_row(created.session), user_errors=[])

    @strawberry.mutation
    async def update_session(
        self,
        info: Info,
        id: UUID,
        input: Annotated[UpdateFields, strawberry.argument(graphql_type=UpdateSessionInput)],
    ) -> UpdateSessionPayload:
        try:
            row = await info.context.service.update(
                id,
                command(SessionChanges, input),
                expected_version=given(input.expected_version),
            )
        except DomainError as error:
            return UpdateSessionPayload(session=None, user_errors=[_user_error(error, input.NAMES)])
        return UpdateSessionPayload(session=Session.from_row(row), user_errors=[])

    @strawberry.mutation
    async def delete_session(self, info: Info, id: UUID) -> DeleteSessionPayload:
        try:
            row = await info.context.service.delete(id)
        except DomainError as error:
            return DeleteSessionPayload(deleted_id=None, user_errors=[_user_error(error)])
        return DeleteSessionPayload(deleted_id=row["id"], user_errors=[])
