"""Every REST error body, from one map: `{"err": <title>, "msg": <detail>, "code": <CODE>}`.

Domain errors map to a status by their code; the REST layer's own refusals (`HTTPError`) name
theirs. The same map serves the endpoints and the app's exception handlers (unknown path, wrong
method, anything unexpected), so no path answers an error in another shape."""

from __future__ import annotations

import enum
from collections.abc import Mapping

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from app import request_id
from app.db import DatabaseBusy
from app.errors import DomainError, ErrorCode

JSON_TYPE = "application/json"
# Seconds a client refused for load (503) is asked to wait.
RETRY_AFTER_S = 1


class Code(enum.StrEnum):
    """The machine-readable reason of a REST error: the domain's code where one applies."""

    NOT_FOUND = "NOT_FOUND"
    INVALID_INPUT = "INVALID_INPUT"
    PARENT_NOT_FOUND = "PARENT_NOT_FOUND"
    PARENT_CYCLE = "PARENT_CYCLE"
    VERSION_CONFLICT = "VERSION_CONFLICT"
    BRANCH_TAKEN = "BRANCH_TAKEN"
    IDEMPOTENCY_MISMATCH = "IDEMPOTENCY_MISMATCH"
    NOT_A_LIST = "NOT_A_LIST"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    UNAUTHORIZED = "UNAUTHORIZED"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    # Answered by the server's HTTP protocol (`app.http_limits`), before the app sees the request.
    REQUEST_HEADERS_TOO_LARGE = "REQUEST_HEADERS_TOO_LARGE"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"


# The status and title of each domain error.
STATUS_OF: dict[ErrorCode, tuple[int, str]] = {
    ErrorCode.NOT_FOUND: (404, "Not Found"),
    ErrorCode.INVALID_INPUT: (422, "Unprocessable Entity"),
    ErrorCode.PARENT_NOT_FOUND: (422, "Unprocessable Entity"),
    ErrorCode.PARENT_CYCLE: (422, "Unprocessable Entity"),
    ErrorCode.VERSION_CONFLICT: (412, "Precondition Failed"),
    ErrorCode.BRANCH_TAKEN: (409, "Conflict"),
    ErrorCode.IDEMPOTENCY_MISMATCH: (422, "Unprocessable Entity"),
    # No REST path appends to messages (appendMessages is GraphQL's); mapped all the same, so
    # every domain error has its status.
    ErrorCode.NOT_A_LIST: (422, "Unprocessable Entity"),
}
# Statuses the framework raises (unknown path, wrong method), with their title and code.
_FRAMEWORK: dict[int, tuple[str, Code]] = {
    404: ("Not Found", Code.NOT_FOUND),
    405: ("Method Not Allowed", Code.METHOD_NOT_ALLOWED),
}


class HTTPError(Exception):
    """A request the REST layer refuses before it reaches the service."""

    def __init__(
        self,
        status: int,
        err: str,
        msg: str,
        code: Code = Code.INVALID_INPUT,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(msg)
        self.status, self.err, self.msg, self.code = status, err, msg, code
        self.headers = headers


def error_response(
    status: int, err: str, msg: str, code: Code, headers: Mapping[str, str] | None = None
) -> Response:
    body = orjson.dumps({"err": err, "msg": msg, "code": code.value})
    return Response(body, status, headers, media_type=JSON_TYPE)


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPError)
    return error_response(exc.status, exc.err, exc.msg, exc.code, exc.headers)


async def _domain_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    status, err = STATUS_OF[exc.code]
    return error_response(status, err, exc.message, Code(exc.code.value))


async def _busy(_request: Request, exc: Exception) -> Response:
    headers = {"Retry-After": str(RETRY_AFTER_S)}
    return error_response(503, "Service Unavailable", str(exc), Code.SERVICE_UNAVAILABLE, headers)


async def _framework_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    err, code = _FRAMEWORK.get(exc.status_code, ("Error", Code.INVALID_INPUT))
    return error_response(exc.status_code, err, str(exc.detail), code, exc.headers)


async def _unexpected(_request: Request, _exc: Exception) -> Response:
    # Starlette raises the error again once this response is sent, and the server logs it with
    # its traceback; logging it here too would say it twice. Starlette sends it outside every
    # middleware, so the request's id is added here.
    return error_response(
        500,
        "Internal Server Error",
        "an unexpected error occurred",
        Code.INTERNAL_SERVER_ERROR,
        request_id.response_headers(),
    )


# For `Starlette(exception_handlers=...)`.
exception_handlers = {
    HTTPError: _http_error,
    DomainError: _domain_error,
    DatabaseBusy: _busy,
    HTTPException: _framework_error,
    Exception: _unexpected,
}
