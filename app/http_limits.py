"""`HeadLimitedHttpTools`: uvicorn's httptools protocol with each request's head bounded.

The head (request line and headers) may take at most `max_bytes` and carry at most `max_headers`
headers; past either, the client gets `431 Request Header Fields Too Large` (the REST error body)
and the connection is closed, with nothing more of it read. Bytes are fed to the parser no further
than the head's budget, so an oversized head is never buffered: httptools gathers a header's value
by concatenating bytes, which made a 60 MB header take seconds of the event loop. The trailers
after a chunked body are headers too, gathered alike: past `max_bytes` they cut the connection
(the app has started, so there is no 431 to give).

A head pipelined behind another request in the same read is counted from that read on, so it
may pass the limit by at most the limit again (httptools does not say where a message ends).

The head must also arrive within `timeout_s` of the connection opening, or of its first bytes on
a connection kept alive (an idle one is closed by uvicorn's `timeout_keep_alive`): uvicorn arms no
timer before a first answer, nor once bytes come after one, so a client trickling a header a byte
a second held its connection forever.

httptools keeps its speed: the budget costs a comparison and a subtraction per read (and a
renewal per piece of body), the count a `len` per request."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httptools
import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from app import request_id
from app.request_id import HEADER_KEY
from app.rest.errors import Code

# The REST error code of a refused head. The REST layer's `Code` has no member for it, as the
# app never sees such a request; the body has the same shape as `app.rest.errors`'.
_TITLE = "Request Header Fields Too Large"
# Seconds a client has to send a request's head. Generous for a person on a slow network (a head
# is a few hundred bytes), short enough that idle or trickling connections do not pile up.
HEAD_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class HeadLimits:
    """The bounds of one request's head: bytes of the request line and headers, headers, and
    seconds to receive them."""

    max_bytes: int
    max_headers: int
    timeout_s: float = HEAD_TIMEOUT_S


class HeadLimitedConfig(uvicorn.Config):
    """A uvicorn `Config` that carries the `HeadLimits` its HTTP protocol enforces. It is pickled
    whole into worker processes, so the limits reach every worker."""

    def __init__(self, app: Any, *, head_limits: HeadLimits, **options: Any) -> None:
        super().__init__(app, **options)
        self.head_limits = head_limits


class _Refused(Exception):
    """Raised from a parser callback to stop parsing a head already refused."""


def refusal(message: str, default_headers: list[tuple[bytes, bytes]], refused_id: str) -> bytes:
    """The whole 431 answer: status line, headers (`X-Request-ID` among them: a new id, since
    the client's is in the head refused unread), REST error body."""
    body = orjson.dumps(
        {"err": _TITLE, "msg": message, "code": Code.REQUEST_HEADERS_TOO_LARGE.value}
    )
    lines = [STATUS_LINE[431]]
    lines += [name + b": " + value + b"\r\n" for name, value in default_headers]
    lines += [
        HEADER_KEY + b": " + refused_id.encode() + b"\r\n",
        b"content-type: application/json\r\n",
        b"content-length: %d\r\n" % len(body),
        b"connection: close\r\n",
        b"\r\n",
        body,
    ]
    return b"".join(lines)


class HeadLimitedHttpTools(HttpToolsProtocol):
    """uvicorn's `HttpToolsProtocol` bounding each request's head by the `HeadLimits` of its
    `HeadLimitedConfig` (see the module's docstring). Pass the class as `Config(http=...)`."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not isinstance(config, HeadLimitedConfig):
            raise TypeError(
                "HeadLimitedHttpTools needs a HeadLimitedConfig, which names its limits"
            )
        super().__init__(config, server_state, app_state, _loop)
        self.head_limits = config.head_limits
        # Between the end of one message and the end of the next one's headers, the parser is
        # reading a head. `budget`: the bytes it may still be fed before the head ends or body
        # bytes come (a chunked body's framing and trailers count against it too).
        self.reading_head = True
        self.budget = self.head_limits.max_bytes
        self.refused: str | None = None
        self.head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.refused is not None:
            return
        if len(data) > self.budget:
            self._past_budget(memoryview(data))
        else:
            self.budget -= len(data)
            self._feed(data)
        # A head begun and not ended is timed from here. A request that comes whole arms no
        # timer: that would cost a few microseconds a request.
        if (
            self.reading_head
            and self.budget < self.head_limits.max_bytes
            and self.head_timer is None
            and not self.transport.is_closing()
        ):
            self._arm_head_timer()

    def _past_budget(self, data: memoryview) -> None:
        """Feeds `data` a budget at a time (views: nothing copied). Each part must end the head
        or bring body bytes, either of which renews the budget; one that does neither is a head,
        or trailers after a chunked body, past the limit."""
        while len(data) > self.budget:
            part, data = data[: self.budget], data[self.budget :]
            self.budget = 0
            if not self._feed(part):
                return
            if self.budget == 0:
                self._past_limit()
                return
        self.budget -= len(data)
        if data:
            self._feed(data)

    def _past_limit(self) -> None:
        limit = self.head_limits.max_bytes
        if self.reading_head:
            self._refuse(f"the request line and headers pass MAX_HEADER_BYTES ({limit} bytes)")
            return
        # Trailers: the app already has the request, so no answer can take the place of its own.
        # Closing the connection ends its body with `http.disconnect`.
        self.logger.warning(
            "Request cut off: its trailers pass MAX_HEADER_BYTES (%d bytes).", limit
        )
        self.refused = "trailers"
        self.transport.close()

    def _feed(self, data: bytes | memoryview) -> bool:
        """Feeds `data` to the parser; False once the connection is done with HTTP (refused, a
        parse error answered, or upgraded to a WebSocket)."""
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.refused is not None:
                self._refuse(self.refused)
            else:
                message = "Invalid HTTP request received."
                self.logger.warning(message)
                self.send_400_response(message)
            return False
        except httptools.HttpParserUpgrade:
            # What follows the handshake waits for the answer, so uvicorn drops it: so do we.
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return False
        return True

    def _refuse(self, message: str) -> None:
        """Answers 431 and closes; after the answer in progress, if a request is pipelined
        behind one (the client reads answers in order)."""
        self._cancel_head_timer()
        self.refused = message
        if self.cycle is not None and not self.cycle.response_complete:
            self.flow.pause_reading()
            return
        refused_id = request_id.new()
        self.logger.warning("Request refused [%s]: %s.", refused_id, message)
        self.transport.write(refusal(message, self.server_state.default_headers, refused_id))
        self.transport.close()

    def on_headers_complete(self) -> None:
        # Counted once the head has ended: its budget of bytes already bounds what it holds.
        if len(self.headers) > self.head_limits.max_headers:
            self.refused = (
                f"the request has more than MAX_HEADERS ({self.head_limits.max_headers}) headers"
            )
            raise _Refused
        self.reading_head = False
        self.budget = self.head_limits.max_bytes
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self.budget = self.head_limits.max_bytes
        super().on_body(body)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.reading_head = True
        self.budget = self.head_limits.max_bytes

    def on_response_complete(self) -> None:
        # A refusal waits for the answers to the requests before it, pipelined ones included.
        answered_all = not self.pipeline
        super().on_response_complete()
        if answered_all and self.refused is not None and not self.transport.is_closing():
            self._refuse(self.refused)

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self.head_timer = self.loop.call_later(self.head_limits.timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _head_timed_out(self) -> None:
        self.head_timer = None
        if not self.transport.is_closing():
            self.transport.close()
