"""How `/graphql` answers over HTTP, as the GraphQL-over-HTTP specification says: every error
carries `extensions.code`, a request that cannot run has no `data`, and the status follows the
media type of the answer.

- A request refused before GraphQL sees it (a body that is not JSON or not sent as JSON, not an
  object, a batch, no `query`, a parameter of the wrong type, a mutation over GET) is a
  `RequestError`: its own status (400, 415, 405 with `Allow`) whatever the media type.
- A document that cannot run (it does not parse, does not validate, names no operation or one it
  lacks, its variables do not coerce) has no `data`: 400 as `application/graphql-response+json`,
  200 as `application/json` (the specification's legacy rule for well-formed requests).
- Once execution has started, 200, whatever its field errors.

The codes: BAD_REQUEST, UNSUPPORTED_MEDIA_TYPE, METHOD_NOT_ALLOWED, NOT_FOUND for requests;
GRAPHQL_PARSE_FAILED, GRAPHQL_VALIDATION_FAILED, OPERATION_NAME_REQUIRED, OPERATION_NOT_FOUND and
BAD_USER_INPUT (variables) for documents; field errors keep theirs (see `errors`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from cross_web import HTTPException
from graphql import GraphQLError, GraphQLSyntaxError
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import Scope
from strawberry.http import GraphQLHTTPResponse
from strawberry.types import ExecutionResult
from strawberry.types.execution import PreExecutionError

from app.graphql.errors import BAD_USER_INPUT, INTERNAL_SERVER_ERROR
from app.graphql.media_types import JSON, response_media_type

BAD_REQUEST = "BAD_REQUEST"
UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
NOT_FOUND = "NOT_FOUND"
GRAPHQL_PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
GRAPHQL_VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
OPERATION_NOT_FOUND = "OPERATION_NOT_FOUND"

# The codes of Strawberry's own refusals (a GET's variables that are not JSON, GraphiQL asked
# for when it is off), which carry only a status.
_CODE_OF_STATUS = {
    400: BAD_REQUEST,
    404: NOT_FOUND,
    405: METHOD_NOT_ALLOWED,
    415: UNSUPPORTED_MEDIA_TYPE,
}


class RequestError(HTTPException):
    """A request refused before anything runs, answered `status` with `headers`."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str = BAD_REQUEST,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status, message)
        self.code = code
        self.headers = dict(headers or {})


def error_response(
    status: int, message: str, code: str, headers: Mapping[str, str] | None, media_type: str
) -> Response:
    """A request refused before anything runs: `{"errors": [...]}` with `code`, never plain
    text."""
    body = {"errors": [{"message": message, "extensions": {"code": code}}]}
    return Response(orjson.dumps(body), status, headers, media_type=media_type)


def refused_before_the_view(
    scope: Scope, status: int, message: str, code: str, headers: Mapping[str, str]
) -> Response:
    """As `error_response`, for a middleware refusing a request to `/graphql` (a 401, a 413):
    in the media type the request's `Accept` asks for."""
    media_type = response_media_type(Headers(scope=scope).get("accept"))
    return error_response(status, message, code, headers, media_type)


def refusal(error: HTTPException, media_type: str) -> Response:
    """The answer to a request refused with `error`."""
    code = error.code if isinstance(error, RequestError) else _CODE_OF_STATUS.get(error.status_code)
    headers = error.headers if isinstance(error, RequestError) else {}
    return error_response(error.status_code, error.reason, code or BAD_REQUEST, headers, media_type)


def operation_not_found(name: str | None) -> ExecutionResult:
    message = (
        "the document holds no operation"
        if name is None
        else f"the document holds no operation named {name!r}"
    )
    error = GraphQLError(message, extensions={"code": OPERATION_NOT_FOUND})
    return PreExecutionError(data=None, errors=[error])


def _code_of(error: GraphQLError, result: ExecutionResult) -> str | None:
    """The code an error of the document (not of a field) is told with, when it has none."""
    if isinstance(error, GraphQLSyntaxError):
        return GRAPHQL_PARSE_FAILED
    if isinstance(result, PreExecutionError):
        return GRAPHQL_VALIDATION_FAILED
    if error.path is None:
        # Raised by the executor before it started: the variables do not coerce.
        return BAD_USER_INPUT
    return None


def _formatted(error: GraphQLError, result: ExecutionResult) -> dict[str, Any]:
    formatted: dict[str, Any] = dict(error.formatted)
    extensions = dict(formatted.get("extensions") or {})
    if "code" not in extensions and (code := _code_of(error, result)) is not None:
        extensions["code"] = code
    if extensions:
        formatted["extensions"] = extensions
    return formatted


def http_result(result: ExecutionResult) -> GraphQLHTTPResponse:
    """`result` as its JSON body. A result that never reached execution (no data, no error on a
    field) has no `data` entry, as the GraphQL specification says of request errors."""
    errors = result.errors or []
    response: GraphQLHTTPResponse = {}
    if result.data is not None or not errors or any(e.path is not None for e in errors):
        response["data"] = result.data
    if errors:
        response["errors"] = [_formatted(error, result) for error in errors]
    if result.extensions:
        response["extensions"] = result.extensions
    return response


def status_of(response: GraphQLHTTPResponse, media_type: str) -> int:
    """The status of a GraphQL response sent as `media_type` (see the module's docstring)."""
    if media_type == JSON or "data" in response:
        return 200
    codes = {
        (error.get("extensions") or {}).get("code")
        for error in response.get("errors") or []
        if isinstance(error, dict)
    }
    return 500 if INTERNAL_SERVER_ERROR in codes else 400
