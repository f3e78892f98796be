"""`BodyLimit`: an HTTP request body larger than `MAX_BODY_BYTES` is answered 413 before the app
parses it.

A `Content-Length` over the limit is refused at once, with none of the body read; one within it
is let through as it is, for the server reads no more than it says (HTTP frames a body by it), and
so is an HTTP/1 request with neither it nor `Transfer-Encoding`, which has no body (RFC 9112,
6.3). Any other body (chunked, an HTTP/2 stream) is counted as `receive()` hands it over: the
message that crosses the limit raises `BodyTooLarge` inside the app, so no handler goes on with a
truncated body, and the middleware answers 413 in its place. REST paths get the REST error body,
`/graphql` a GraphQL `{"errors": [...]}`. WebSocket and lifespan scopes pass through untouched."""

from __future__ import annotations

from collections.abc import Awaitable

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.graphql.http_errors import refused_before_the_view
from app.rest.errors import Code, error_response

GRAPHQL_PATH = "/graphql"
# ASGI's `http_version` of HTTP/1 (1.1 when the server leaves it out).
_HTTP_1 = frozenset({"1.0", "1.1"})


class BodyTooLarge(Exception):
    """Raised from the wrapped `receive` when the body passes the limit."""


# What `_declared_length` says of a request with neither `Content-Length` nor
# `Transfer-Encoding`, and of one whose `Content-Length` is not a number.
_UNDECLARED = -1
_NOT_A_NUMBER = -2


def _declared_length(scope: Scope) -> int:
    """The request's `Content-Length` (its first), read straight from the scope's headers, as
    every request pays for it; else `_UNDECLARED` or `_NOT_A_NUMBER`, and with a
    `Transfer-Encoding` (a chunked body) `_NOT_A_NUMBER` too: its length is found by counting."""
    declared = _UNDECLARED
    for name, value in scope["headers"]:
        if name == b"content-length" and declared == _UNDECLARED:
            raw: bytes = value
            declared = int(raw) if raw.isdigit() else _NOT_A_NUMBER
        elif name == b"transfer-encoding":
            return _NOT_A_NUMBER
    return declared


def _is_http_1(scope: Scope) -> bool:
    return scope.get("http_version", "1.1") in _HTTP_1


def too_large(scope: Scope, max_bytes: int) -> Response:
    """The 413 answer for `scope`'s path. The rest of the body stays unread, so the connection
    cannot carry another request: it is closed."""
    msg = f"request body is larger than MAX_BODY_BYTES ({max_bytes} bytes)"
    headers = {"Connection": "close"}
    code = Code.PAYLOAD_TOO_LARGE
    if scope["path"] != GRAPHQL_PATH:
        return error_response(413, "Payload Too Large", msg, code, headers)
    return refused_before_the_view(scope, 413, msg, code.value, headers)


class BodyLimit:
    """Refuses HTTP request bodies over `max_bytes` with 413 (see the module's docstring)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not a coroutine: a request whose body needs no counting is handed on as the app's own
        # awaitable, so this layer adds no frame that each of its suspensions goes through.
        if scope["type"] != "http":
            return self.app(scope, receive, send)
        declared = _declared_length(scope)
        if declared > self.max_bytes:
            return too_large(scope, self.max_bytes)(scope, receive, send)
        if declared >= 0 or (declared == _UNDECLARED and _is_http_1(scope)):
            return self.app(scope, receive, send)
        return self._counted(scope, receive, send)

    async def _counted(self, scope: Scope, receive: Receive, send: Send) -> None:
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except BodyTooLarge:
            # An app that answered before it read its body cannot be answered again.
            if started:
                raise
            await too_large(scope, self.max_bytes)(scope, receive, send)
