"""`AccessLog`: every request gets an id (`app.request_id`), echoed on its answer, and one log
line when it ends, on the `session_inbox.access` logger at INFO; given the app's `Metrics`, it
also counts and times every HTTP answer (`Metrics.observe_request`), in the same pass.

The line names the method, the route template (`/sessions/{id}`; the path itself when no route
matched), the status, the time from arrival to the last byte and, through the logging filter
(`app.logs`), the request id. A WebSocket gets its line when it closes, with the status of its
handshake (101, or the refusal's) and the close code. Run outermost, so that the answers of the
other middleware (a CORS preflight, a 401, a 413) carry the id, get a line and are counted too.

A client that hangs up before its answer ends is no error of ours: the line says `client_gone`
(status 499 when it had no answer yet, as nginx writes it), and the `ClientDisconnect` Starlette
raises while reading the body goes no further, where the server would log it as an ERROR with
its traceback.

Every request pays for this, so it is kept lean: one wrapper of `send` and `receive` for the
id, the line and the metrics; nothing computed for a line the log level discards; and when the
line would reach only the handler `app.logs` sets up, it is handed the line itself, at once, in
the request's own task, with no `LogRecord` made for it (`LineHandler`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable
from typing import Any, Protocol

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import request_id
from app.logs import lone_handler
from app.request_id import HEADER_KEY

log = logging.getLogger("session_inbox.access")

# The status written for a request whose client left before any answer (nginx's).
CLIENT_GONE = 499
WEBSOCKET = "WEBSOCKET"
# A request that matched no route, for the metrics; and a method outside these, so that
# clients cannot make label values up.
UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LINE = "%s %s %d %.1f ms%s"


class RequestObserver(Protocol):
    """What counts and times HTTP answers (`app.metrics.Metrics`)."""

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None: ...


class AccessLog:
    """ASGI middleware: a request id on every HTTP answer and WebSocket handshake, one access
    line per request and, with `metrics`, every HTTP answer counted and timed by route template
    (never the path itself), method and status (see the module's docstring)."""

    def __init__(self, app: ASGIApp, metrics: RequestObserver | None = None) -> None:
        self.app = app
        self.observe = metrics.observe_request if metrics is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # An HTTP request is served here, not in a method of its own: one coroutine less for
        # each request, and one frame less that each of its suspensions goes through.
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await self._websocket(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        echoed = (HEADER_KEY, request_id.begin(_given(scope)).encode("ascii"))
        status = 0
        finished = False
        gone = False
        # What the metrics count for a request the app gave no answer: 500, as it is answered
        # further out, or 499 when the body's reader found the client gone.
        unanswered = 500

        async def receive_watched() -> Message:
            nonlocal gone
            message = await receive()
            if message["type"] == "http.disconnect" and not finished:
                gone = True
            return message

        # Not a coroutine: it hands on the server's own awaitable, one frame less a message.
        def send_with_id(message: Message) -> Awaitable[None]:
            nonlocal status, finished
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), echoed]
            elif kind == "http.response.body" and not message.get("more_body"):
                finished = True
            return send(message)

        try:
            await self.app(scope, receive_watched, send_with_id)
        except ClientDisconnect:
            # Raised by reading a body the client stopped sending: nobody is left to answer.
            gone = True
            unanswered = CLIENT_GONE
        except BaseException:
            # Answered 500 further out (Starlette's ServerErrorMiddleware, or the server for a
            # cancelled request), then logged with its traceback by the server: after this line,
            # and naming the same request id.
            status = status or 500
            raise
        finally:
            route = getattr(scope.get("route"), "path", None)
            if not isinstance(route, str):
                route = None
            method = scope["method"]
            if self.observe is not None:
                self.observe(
                    route or UNMATCHED,
                    method if method in METHODS else "other",
                    status or unanswered,
                    time.perf_counter() - started,
                )
            if log.isEnabledFor(logging.INFO):
                if gone and not status:
                    status = CLIENT_GONE
                _write(method, route or _path(scope), status, started, gone)

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
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else _path(scope)


def _path(scope: Scope) -> str:
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
    args = (method, route, status, duration_ms, outcome)
    handler = lone_handler(log)
    if handler is not None:
        # The handler `app.logs` sets up, alone: handed the line, with no record made for it.
        handler.write_line(logging.INFO, log.name, LINE % args, fields)
    else:
        log.info(LINE, *args, extra=fields)
