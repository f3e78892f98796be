"""`AccessLog`: every request gets an id (`app.request_id`), echoed on its answer, and one log
line when it ends, on the `session_inbox.access` logger at INFO.

The line names the method, the route template (`/sessions/{id}`; the path itself when no route
matched), the status, the time from arrival to the last byte and, through the logging filter
(`app.logs`), the request id. A WebSocket gets its line when it closes, with the status of its
handshake (101, or the refusal's) and the close code. Run outermost, so that the answers of the
other middleware (a CORS preflight, a 401, a 413) carry the id and get a line too.

A client that hangs up before its answer ends is no error of ours: the line says `client_gone`
(status 499 when it had no answer yet, as nginx writes it), and the `ClientDisconnect` Starlette
raises while reading the body goes no further, where the server would log it as an ERROR with
its traceback."""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import request_id
from app.request_id import HEADER_KEY

log = logging.getLogger("session_inbox.access")

# The status written for a request whose client left before any answer (nginx's).
CLIENT_GONE = 499
WEBSOCKET = "WEBSOCKET"


class AccessLog:
    """ASGI middleware: a request id on every HTTP answer and WebSocket handshake, and one access
    line per request (see the module's docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        echoed = (HEADER_KEY, request_id.begin(_given(scope)).encode("ascii"))
        status = 0
        finished = False
        gone = False

        async def receive_watched() -> Message:
            nonlocal gone
            message = await receive()
            if message["type"] == "http.disconnect" and not finished:
                gone = True
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status, finished
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), echoed]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                finished = True
            await send(message)

        try:
            await self.app(scope, receive_watched, send_with_id)
        except ClientDisconnect:
            # Raised by reading a body the client stopped sending: nobody is left to answer.
            gone = True
        except BaseException:
            # Answered 500 further out (Starlette's ServerErrorMiddleware, or the server for a
            # cancelled request), then logged with its traceback by the server: after this line,
            # and naming the same request id.
            status = status or 500
            raise
        finally:
            if log.isEnabledFor(logging.INFO):
                if gone and not status:
                    status = CLIENT_GONE
                _write(scope["method"], _route(scope), status, started, gone)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        echoed = (HEADER_KEY, request_id.begin(_given(scope)).encode("ascii"))
        status = 0
        close_code: int | None = None
        # Whether the server lets the app answer the handshake with an HTTP response (ASGI's
        # "websocket.http.response" extension; uvicorn's does).
        refusable = "websocket.http.response" in (scope.get("extensions") or {})

        async def receive_watched() -> Message:
            nonlocal close_code
            message = await receive()
            # The client's close code, if it closed first (a refused handshake has none).
            if message["type"] == "websocket.disconnect" and close_code is None and status == 101:
                close_code = message.get("code", 1005)
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status, close_code
            kind = message["type"]
            if kind == "websocket.accept":
                status = 101
                message["headers"] = [*(message.get("headers") or ()), echoed]
            elif kind == "websocket.http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), echoed]
            elif kind == "websocket.close":
                if not status and refusable:
                    # Closed before it was accepted: the server would refuse the handshake with
                    # a 403 of its own, without the id. This is that 403, with the id.
                    status = 403
                    await send(
                        {
                            "type": "websocket.http.response.start",
                            "status": 403,
                            "headers": [echoed],
                        }
                    )
                    await send({"type": "websocket.http.response.body", "body": b""})
                    return
                status = status or 403
                if close_code is None and status == 101:
                    close_code = message.get("code", 1000)
            await send(message)

        try:
            await self.app(scope, receive_watched, send_with_id)
        except BaseException:
            status = status or 500
            raise
        finally:
            if log.isEnabledFor(logging.INFO):
                # An app that returns without a word has its handshake refused with 403.
                _write(WEBSOCKET, _route(scope), status or 403, started, False, close_code)


def _given(scope: Scope) -> bytes | None:
    """The `X-Request-ID` the client sent, if it sent one."""
    for name, value in scope["headers"]:
        if name == HEADER_KEY:
            given: bytes = value
            return given
    return None


def _route(scope: Scope) -> str:
    """The template of the route the router picked (`scope["route"]`), else the path as sent
    (still percent-encoded: a path cannot break the line)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    raw: bytes | None = scope.get("raw_path")
    if raw is None:
        return str(scope["path"])
    # Some servers (and httpx's ASGI transport) leave the query string in it.
    return raw.partition(b"?")[0].decode("latin-1")


def _write(
    method: str,
    route: str,
    status: int,
    started: float,
    gone: bool,
    close_code: int | None = None,
) -> None:
    duration_ms = round((time.perf_counter() - started) * 1000, 2)
    fields: dict[str, Any] = {
        "method": method,
        "route": route,
        "status": status,
        "duration_ms": duration_ms,
        "client_gone": gone,
    }
    if close_code is not None:
        fields["close_code"] = close_code
    if gone:
        outcome = " client gone"
    elif close_code is not None:
        outcome = f" closed {close_code}"
    else:
        outcome = ""
    log.info("%s %s %d %.1f ms%s", method, route, status, duration_ms, outcome, extra=fields)
