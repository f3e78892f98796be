"""A fake Anthropic Messages API: a real HTTP server on 127.0.0.1, scripted by the test.

It runs Starlette under uvicorn in a thread of its own (its own event loop, a free port), so the
real SDK reaches it through `base_url`: its timeouts and parsing, and the namer's retries, are
what is tested. Each request is recorded with the time it arrived, so waits can be measured.

    with FakeAnthropic() as fake:
        fake.enqueue(FakeResponse.error(500), FakeResponse.tool_use("Fix login", "fix-login"))
        settings = Settings(anthropic_api_key="test-key", anthropic_base_url=fake.url)
        ...                                     # two requests: a 500, then the answer
        assert len(fake.requests) == 2

- `start()` / `stop()`, or `with`: serve on a free loopback port; `stop()` also releases the
  answers still being delayed.
- `url`: the base URL for the SDK (`ANTHROPIC_BASE_URL`).
- `enqueue(*responses)`: the answers to the next requests, in order.
- `default`: the answer once the queue is empty: a `FakeResponse`, or a function of the
  `RecordedRequest` returning one. Initially a good tool call (`FakeResponse.tool_use()`).
- `release()`: lets the answers scripted with `held=True` go, those waiting and any later ones;
  until then they wait for it however long it takes (or for `stop()`).
- `requests`: every request received so far (a copy), as `RecordedRequest`s, in order;
  `wait_for_requests(n, timeout_s)` waits until there are at least n (from a thread), and
  `await requests_arrived(n, timeout_s)` does the same from async code.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_START_TIMEOUT_S = 10.0
_ids = itertools.count(1)


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    received_at: float  # time.monotonic()

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def model(self) -> Any:
        return self.json.get("model")

    @property
    def tool_choice(self) -> Any:
        return self.json.get("tool_choice")

    @property
    def prompt(self) -> str:
        """The text of every message of the request, joined by newlines."""
        texts: list[str] = []
        for message in self.json.get("messages", []):
            content = message.get("content")
            if isinstance(content, str):
                texts.append(content)
            else:
                texts.extend(block.get("text", "") for block in content)
        return "\n".join(texts)


Body = Any | Callable[[RecordedRequest], Any]


@dataclass(frozen=True)
class FakeResponse:
    """One scripted answer. `body` is JSON (or a function of the request returning JSON), or
    `str`/`bytes` sent as they are; `delay_s` holds the answer back (until `stop()` at most), and
    `held` until the test calls `release()` (or `stop()`)."""

    status: int = 200
    body: Body = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    held: bool = False

    @classmethod
    def tool_use(
        cls, title: Any = "Fix login timeout", branch: Any = "fix-login-timeout", **kwargs: Any
    ) -> FakeResponse:
        """The model calls the forced tool with this input: `{"title": …, "branch": …}`.
        `stop_reason` (default "tool_use") and `input` (replacing the whole input) may be
        given as keywords."""
        stop_reason = kwargs.pop("stop_reason", "tool_use")
        tool_input = kwargs.pop("input", {"title": title, "branch": branch})

        def body(request: RecordedRequest) -> Any:
            choice = request.tool_choice or {}
            block = {
                "type": "tool_use",
                "id": f"toolu_fake_{next(_ids)}",
                "name": choice.get("name", "tool"),
                "input": tool_input,
            }
            return _message(request, [block], stop_reason)

        return cls(body=body, **kwargs)

    @classmethod
    def text(cls, text: str, stop_reason: str = "end_turn", **kwargs: Any) -> FakeResponse:
        """The model answers in prose instead of calling the tool."""
        block = {"type": "text", "text": text}
        return cls(body=lambda request: _message(request, [block], stop_reason), **kwargs)

    @classmethod
    def error(cls, status: int, message: str = "fake error", **kwargs: Any) -> FakeResponse:
        """An API error in Anthropic's format (`{"type": "error", "error": {…}}`)."""
        error_type = _ERROR_TYPES.get(status, "api_error")
        body = {
            "type": "error",
            "error": {"type": error_type, "message": message},
            "request_id": f"req_fake_{next(_ids)}",
        }
        return cls(status=status, body=body, **kwargs)

    @classmethod
    def hang(cls) -> FakeResponse:
        """No answer at all, until the server stops."""
        return cls(delay_s=3600.0, body=None)


def _message(request: RecordedRequest, content: list[dict[str, Any]], stop_reason: str) -> Any:
    return {
        "id": f"msg_fake_{next(_ids)}",
        "type": "message",
        "role": "assistant",
        "model": request.model or "claude-haiku-4-5",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 50, "output_tokens": 20},
    }


class FakeAnthropic:
    """The fake Messages API server; see the module docstring."""

    def __init__(self) -> None:
        self.default: FakeResponse | Callable[[RecordedRequest], FakeResponse]
        self.default = FakeResponse.tool_use()
        self._queue: deque[FakeResponse] = deque()
        self._requests: list[RecordedRequest] = []
        self._changed = threading.Condition()
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._server: uvicorn.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._released: asyncio.Event | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        assert self._url is not None, "the server is not started"
        return self._url

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._changed:
            return list(self._requests)

    def enqueue(self, *responses: FakeResponse) -> None:
        with self._changed:
            self._queue.extend(responses)

    def wait_for_requests(self, count: int, timeout_s: float = 5.0) -> list[RecordedRequest]:
        """The requests, once there are at least `count`; AssertionError after `timeout_s`."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._requests) >= count, timeout_s):
                raise AssertionError(f"{len(self._requests)} requests after {timeout_s} s")
            return list(self._requests)

    def release(self) -> None:
        """Let every answer scripted with `held=True` go, now and from now on."""
        assert self._loop is not None, "the server is not started"
        assert self._released is not None
        self._loop.call_soon_threadsafe(self._released.set)

    async def requests_arrived(self, count: int, timeout_s: float = 5.0) -> list[RecordedRequest]:
        """`wait_for_requests` for async tests: it leaves the event loop free to send them."""
        return await asyncio.to_thread(self.wait_for_requests, count, timeout_s)

    def start(self) -> FakeAnthropic:
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets only then, and
        # without it every keep-alive answer waits ~40 ms for a delayed ACK.
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.bind(("127.0.0.1", 0))
        self._url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        app = Starlette(
            routes=[Route("/{path:path}", self._handle, methods=["GET", "POST", "PUT", "DELETE"])]
        )
        config = uvicorn.Config(
            app,
            lifespan="off",
            ws="none",
            http="h11",
            loop="asyncio",
            log_config=None,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=5,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the fake Anthropic server did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        if self._server is None or self._loop is None or self._stopping is None:
            return
        self._server.should_exit = True
        self._loop.call_soon_threadsafe(self._stopping.set)
        self.release()
        assert self._thread is not None
        self._thread.join(timeout=_START_TIMEOUT_S)
        if self._thread.is_alive():
            raise RuntimeError("the fake Anthropic server did not stop")
        assert self._socket is not None
        self._socket.close()
        self._server = None

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._released = asyncio.Event()
        assert self._server is not None
        assert self._socket is not None
        await self._server.serve(sockets=[self._socket])

    async def _handle(self, request: Request) -> Response:
        recorded = RecordedRequest(
            method=request.method,
            path=request.url.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=await request.body(),
            received_at=time.monotonic(),
        )
        with self._changed:
            self._requests.append(recorded)
            if self._queue:
                scripted = self._queue.popleft()
            elif isinstance(self.default, FakeResponse):
                scripted = self.default
            else:
                scripted = self.default(recorded)
            self._changed.notify_all()
        if (request.method, request.url.path) != ("POST", "/v1/messages"):
            scripted = FakeResponse.error(404, f"no route {request.method} {request.url.path}")
        if scripted.delay_s > 0:
            assert self._stopping is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), scripted.delay_s)
        if scripted.held:
            assert self._released is not None
            await self._released.wait()
        body = scripted.body(recorded) if callable(scripted.body) else scripted.body
        if isinstance(body, str):
            content, media_type = body.encode(), "text/plain"
        elif isinstance(body, bytes):
            content, media_type = body, "application/octet-stream"
        else:
            content, media_type = orjson.dumps(body), "application/json"
        headers = {"request-id": f"req_fake_{next(_ids)}", **scripted.headers}
        return Response(content, scripted.status, headers=headers, media_type=media_type)
