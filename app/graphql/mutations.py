"""Mutations. A refusal by the service is data: `userErrors` with the code, the input field it
concerns and a message, beside a null `session` or `deletedId`."""

from __future__ import annotations

import enum
from uuid import UUID

import strawberry
from strawberry.utils.str_converters import to_camel_case

from app.errors import DomainError, ErrorCode
from app.graphql.context import Info
from app.graphql.inputs import NOT_NULL, CreateSessionInput, UpdateSessionInput, given
from app.graphql.types import Session


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


# The input field behind each service field whose GraphQL name is not its camel case.
_INPUT_NAMES = {"parent": "parentId", "version": "expectedVersion"}
_CREATE_FIELDS = frozenset({"repo", "targetBranch", "messages", "parentId", "idempotencyKey"})
_UPDATE_FIELDS = frozenset(
    {
        "repo",
        "targetBranch",
        "messages",
        "inboxStatus",
        "sbxConfig",
        "parentId",
        "title",
        "branch",
        "expectedVersion",
    }
)


def _user_error(error: DomainError, input_fields: frozenset[str] = frozenset()) -> UserError:
    """`error` as a `UserError` whose `field` is the path of the argument it concerns."""
    field: list[str] | None = None
    if error.field is not None:
        name = _INPUT_NAMES.get(error.field) or to_camel_case(error.field)
        if name in input_fields:
            field = ["input", name]
    if field is None and error.code is ErrorCode.NOT_FOUND:
        field = ["id"]
    return UserError(code=UserErrorCode[error.code.name], field=field, message=error.message)


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def create_session(self, info: Info, input: CreateSessionInput) -> CreateSessionPayload:
        try:
            created = await info.context.service.create(
                repo=input.repo,
                target_branch=input.target_branch,
                messages=given(input.messages),
                parent=given(input.parent_id),
                idempotency_key=given(input.idempotency_key),
            )
        except DomainError as error:
            return CreateSessionPayload(
                session=None, user_errors=[_user_error(error, _CREATE_FIELDS)]
            )
        return CreateSessionPayload(session=Session.from_row(created.session), user_errors=[])

    @strawberry.mutation
    async def update_session(
        self, info: Info, id: UUID, input: UpdateSessionInput
    ) -> UpdateSessionPayload:
        changes = input.changes()
        cleared = [name for name in NOT_NULL if name in changes and changes[name] is None]
        if cleared:
            return UpdateSessionPayload(
                session=None,
                user_errors=[
                    UserError(
                        code=UserErrorCode.INVALID_INPUT,
                        field=["input", to_camel_case(name)],
                        message=f"{to_camel_case(name)} cannot be null",
                    )
                    for name in sorted(cleared)
                ],
            )
        try:
            row = await info.context.service.update(
                id, changes, expected_version=given(input.expected_version)
            )
        except DomainError as error:
            return UpdateSessionPayload(
                session=None, user_errors=[_user_error(error, _UPDATE_FIELDS)]
            )
        return UpdateSessionPayload(session=Session.from_row(row), user_errors=[])

    @strawberry.mutation
    async def delete_session(self, info: Info, id: UUID) -> DeleteSessionPayload:
        try:
            row = await info.context.service.delete(id)
        except DomainError as error:
            return DeleteSessionPayload(deleted_id=None, user_errors=[_user_error(error)])
        return DeleteSessionPayload(deleted_id=row["id"], user_errors=[])
