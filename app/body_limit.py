"""`BodyLimit`: an HTTP request body larger than `MAX_BODY_BYTES` is answered 413 before the app
parses it.

A `Content-Length` over the limit is refused at once, with none of the body read. A body without
one (chunked), or longer than it said, is counted as `receive()` hands it over: the message that
crosses the limit raises `BodyTooLarge` inside the app, so no handler goes on with a truncated
body, and the middleware answers 413 in its place. REST paths get the REST error body, `/graphql`
a GraphQL `{"errors": [...]}`. WebSocket and lifespan scopes pass through untouched."""

from __future__ import annotations

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.graphql.http_errors import refused_before_the_view
from app.rest.errors import Code, error_response

GRAPHQL_PATH = "/graphql"


class BodyTooLarge(Exception):
    """Raised from the wrapped `receive` when the body passes the limit."""


def _declared_length(scope: Scope) -> int | None:
    """The request's `Content-Length` (its first), if it is a number; read straight from the
    scope's headers, as every request pays for it."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            raw: bytes = value
            return int(raw) if raw.isdigit() else None
    return None


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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > self.max_bytes:
            await too_large(scope, self.max_bytes)(scope, receive, send)
            return

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
