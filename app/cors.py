"""`CORS`: Starlette's `CORSMiddleware`, with a shortcut for the requests that are not CORS.

A request without `Origin` (a server-side client, curl, a probe) gets from `CORSMiddleware` no
header but `Vary: Origin`, appended to the answer's own `Vary` values, all in one header, so that
a cache does not hand its answer to a browser of another origin. Starlette works that out with
its header classes on every request; here it is a scan of the request's headers and of the
answer's. A request with `Origin` (a browser's, a preflight) is Starlette's to answer."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_ORIGIN = b"origin"
_VARY = b"vary"


class CORS:
    """`CORSMiddleware` (same arguments), which lets a request without `Origin` through with
    only the `Vary: Origin` it would add.

    Not a coroutine, nor is the `send` it hands on: each returns the awaitable of the layer
    below, so the common path adds no frame to the request (nor to each message sent)."""

    def __init__(self, app: ASGIApp, /, **options: Any) -> None:
        self.app = app
        self.cors = CORSMiddleware(app, **options)

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if scope["type"] != "http":
            return self.app(scope, receive, send)
        for name, _value in scope["headers"]:
            if name == _ORIGIN:
                return self.cors(scope, receive, send)

        def send_varied(message: Message) -> Awaitable[None]:
            if message["type"] == "http.response.start":
                vary_origin(message)
            return send(message)

        return self.app(scope, receive, send_varied)


def vary_origin(message: Message) -> None:
    """Adds `Origin` to the `Vary` of an `http.response.start`, as `CORSMiddleware` does: the
    values of every `Vary` header and `Origin`, joined in the first one (the others dropped),
    or a `Vary: Origin` at the end when it had none."""
    headers = list(message.get("headers", ()))
    first = -1
    values: list[bytes] = []
    i = 0
    while i < len(headers):
        if headers[i][0] == _VARY:
            values.append(headers[i][1])
            if first < 0:
                first = i
            else:
                del headers[i]
                continue
        i += 1
    if first < 0:
        headers.append((_VARY, b"Origin"))
    else:
        values.append(b"Origin")
        headers[first] = (_VARY, b", ".join(values))
    message["headers"] = headers
