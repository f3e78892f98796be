"""How failures reach clients. Expected ones are `userErrors` data (see `mutations`); a query's
invalid argument is a GraphQL error coded BAD_USER_INPUT; a part of the service that cannot be
reached now (the event log, the database) is one coded SERVICE_UNAVAILABLE, never logged per
request; a document the schema refuses
(syntax, validation, depth, aliases, tokens, cost, introspection, variables) is reported as GraphQL
reports it; everything else is masked: "Unexpected error." coded INTERNAL_SERVER_ERROR, and
logged."""

from __future__ import annotations

from graphql import GraphQLError
from strawberry.extensions import MaskErrors

from app.db import DatabaseBusy
from app.errors import InvalidInput

BAD_USER_INPUT = "BAD_USER_INPUT"
SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"
# The codes of the errors a resolver raises on purpose, told to the client as they are.
_EXPECTED = frozenset({BAD_USER_INPUT, SERVICE_UNAVAILABLE})


def bad_user_input(error: InvalidInput) -> GraphQLError:
    """An argument the service refused (a page size out of range, a malformed cursor)."""
    extensions: dict[str, object] = {"code": BAD_USER_INPUT}
    if error.field is not None:
        extensions["argument"] = error.field
    return GraphQLError(error.message, extensions=extensions)


def service_unavailable(what: str) -> GraphQLError:
    """`what` cannot be reached now; the same operation may succeed when tried again. Not logged
    here: what keeps trying to reach it (the relay, the fan-out) logs the outage once."""
    return GraphQLError(
        f"{what} cannot be reached now; try again", extensions={"code": SERVICE_UNAVAILABLE}
    )


def _with_code_of_cause(error: GraphQLError) -> GraphQLError:
    cause = error.original_error
    if error.extensions or not isinstance(cause, GraphQLError) or not cause.extensions:
        return error
    code = cause.extensions.get("code")
    if code != BAD_USER_INPUT:
        return error
    error.extensions = {"code": code}
    return error


def _with_code_of_busy(error: GraphQLError) -> GraphQLError:
    """A resolver's `DatabaseBusy` (the database cannot answer now; `app.db` logs the outage
    once) is told as SERVICE_UNAVAILABLE, with the database's message."""
    if isinstance(error.original_error, DatabaseBusy):
        error.extensions = {"code": SERVICE_UNAVAILABLE}
    return error


def is_unexpected(error: GraphQLError) -> bool:
    if isinstance(error.original_error, DatabaseBusy):
        return False
    if error.path is None:
        # Raised before execution: the document or its variables, unless an exception escaped
        # from somewhere else (an extension), which arrives wrapped as a non-GraphQL error.
        original = error.original_error
        return original is not None and not isinstance(original, GraphQLError)
    return (error.extensions or {}).get("code") not in _EXPECTED


class MaskUnexpectedErrors(MaskErrors):
    def __init__(self) -> None:
        super().__init__(should_mask_error=is_unexpected)

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        # graphql-core words a variable's refusal itself ("Variable '$m' has invalid value…")
        # and drops the code of the scalar's error it wraps: the code is given back.
        return super()._process_errors(
            [_with_code_of_busy(_with_code_of_cause(error)) for error in errors]
        )

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        return GraphQLError(
            self.error_message,
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            extensions={"code": INTERNAL_SERVER_ERROR},
        )
