"""`MAX_BODY_BYTES`: a body over the limit is answered 413 before the app parses it, whether its
`Content-Length` says so or it arrives chunked, and nothing is written; a body at the limit is
served. The chunked cases run against uvicorn on loopback, since httpx's ASGI transport hands the
app the body it buffered."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import orjson
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from app.body_limit import BodyLimit
from app.config import Settings
from app.main import create_app
from app.state import AppState
from tests.conftest import with_state
from tests.loopback import serve_on_loopback

LIMIT = 4096
MSG = f"request body is larger than MAX_BODY_BYTES ({LIMIT} bytes)"
REST_413 = {"err": "Payload Too Large", "msg": MSG, "code": "PAYLOAD_TOO_LARGE"}
GRAPHQL_413 = {"errors": [{"message": MSG, "extensions": {"code": "PAYLOAD_TOO_LARGE"}}]}
CREATE = {"repo": "acme/app", "target_branch": "main", "messages": {"content": "Fix the build"}}
ORIGIN = {"Origin": "https://inbox.example"}
JSON = {"Content-Type": "application/json"}
TEN_MB = 10 * 1024 * 1024


def padded(document: object, size: int) -> bytes:
    """`document` as JSON, with trailing whitespace up to `size` bytes."""
    body = orjson.dumps(document)
    assert len(body) <= size
    return body + b" " * (size - len(body))


async def chunked(body: bytes, chunk: int = 1000) -> AsyncIterator[bytes]:
    """`body` as a stream, so httpx sends it without a Content-Length."""
    for start in range(0, len(body), chunk):
        yield body[start : start + chunk]


@pytest.fixture
def app(settings: Settings, app_state: AppState) -> Any:
    return with_state(create_app(replace(settings, max_body_bytes=LIMIT)), {"inbox": app_state})


@pytest.fixture
async def http(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    # Not the `client` fixture: its OpenAPI check would refuse the 413, which the served document
    # does not list yet.
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.fixture
async def served(app: Any) -> AsyncIterator[str]:
    """`app` served by uvicorn on a free loopback port: `http://127.0.0.1:<port>`."""
    # A bounded shutdown: a test that fails may leave a request waiting for its body.
    config: dict[str, Any] = {"lifespan": "off", "log_config": None, "timeout_graceful_shutdown": 2}
    async with serve_on_loopback(app, **config) as base:
        yield base


async def listed(http: httpx.AsyncClient) -> list[Any]:
    response = await http.get("/sessions")
    assert response.status_code == 200
    sessions: list[Any] = response.json()["sessions"]
    return sessions


async def test_a_rest_body_whose_length_passes_the_limit_is_413_and_creates_nothing(
    http: httpx.AsyncClient,
) -> None:
    response = await http.post("/sessions", content=padded(CREATE, LIMIT + 1), headers=ORIGIN)

    assert response.status_code == 413
    assert response.headers["content-type"] == "application/json"
    assert response.json() == REST_413
    assert response.headers["access-control-allow-origin"] == "*"
    assert await listed(http) == []


async def test_a_chunked_rest_body_past_the_limit_is_413_and_creates_nothing(served: str) -> None:
    async with httpx.AsyncClient(base_url=served) as http:
        response = await http.post("/sessions", content=chunked(padded(CREATE, LIMIT + 1)))

        assert response.status_code == 413
        assert response.json() == REST_413
        assert await listed(http) == []


async def test_a_body_at_the_limit_is_served(http: httpx.AsyncClient, served: str) -> None:
    response = await http.post("/sessions", content=padded(CREATE, LIMIT))
    async with httpx.AsyncClient(base_url=served) as live:
        streamed = await live.post("/sessions", content=chunked(padded(CREATE, LIMIT)))

    assert response.status_code == streamed.status_code == 201, (response.text, streamed.text)
    assert len(await listed(http)) == 2


async def test_a_graphql_body_past_the_limit_is_413_with_graphql_errors(
    http: httpx.AsyncClient, served: str
) -> None:
    query = {"query": "{ sessions { edges { node { id } } } }"}
    body = padded(query, LIMIT + 1)
    response = await http.post("/graphql", content=body, headers=ORIGIN | JSON)
    async with httpx.AsyncClient(base_url=served) as live:
        streamed = await live.post("/graphql", content=chunked(body), headers=JSON)

    for answer in (response, streamed):
        assert answer.status_code == 413
        assert answer.headers["content-type"] == "application/json"
        assert answer.json() == GRAPHQL_413
    assert response.headers["access-control-allow-origin"] == "*"


async def test_a_10_mb_content_length_is_answered_before_the_body_is_sent(served: str) -> None:
    port = int(served.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    writer.write(
        b"POST /sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % TEN_MB
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
    elapsed = time.monotonic() - started
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()

    assert head.startswith(b"HTTP/1.1 413 ")
    assert elapsed < 1


async def test_a_chunked_10_mb_body_is_not_read_past_the_limit() -> None:
    handled: list[bytes] = []

    async def echo(scope: Scope, receive: Receive, send: Send) -> None:
        handled.append(await Request(scope, receive).body())
        await Response(b"read it all")(scope, receive, send)

    chunk = b"x" * 1024
    pulled = 0

    async def receive() -> Message:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": chunk, "more_body": pulled * len(chunk) < TEN_MB}

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    chunked = [(b"transfer-encoding", b"chunked")]
    scope = {"type": "http", "method": "POST", "path": "/sessions", "headers": chunked}
    started = time.monotonic()
    await BodyLimit(echo, max_bytes=LIMIT)(scope, receive, send)

    assert time.monotonic() - started < 1
    assert pulled == LIMIT // len(chunk) + 1
    assert handled == []
    assert sent[0]["status"] == 413
    assert orjson.loads(sent[1]["body"]) == REST_413


@pytest.mark.parametrize(
    ("http_version", "headers"),
    [("1.1", [(b"transfer-encoding", b"chunked")]), ("2", [])],
    ids=["chunked", "http2-stream"],
)
async def test_a_body_of_no_declared_length_is_counted(
    http_version: str, headers: list[tuple[bytes, bytes]]
) -> None:
    async def echo(scope: Scope, receive: Receive, send: Send) -> None:
        await Response(await Request(scope, receive).body())(scope, receive, send)

    async def receive() -> Message:
        return {"type": "http.request", "body": b"x" * (LIMIT + 1), "more_body": False}

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "http_version": http_version,
        "method": "POST",
        "path": "/sessions",
        "headers": headers,
    }
    await BodyLimit(echo, max_bytes=LIMIT)(scope, receive, send)

    assert sent[0]["status"] == 413


@pytest.mark.parametrize(
    "headers", [[], [(b"content-length", b"12")]], ids=["no-body", "declared-within"]
)
async def test_a_body_framed_by_http_1_within_the_limit_is_handed_on_as_it_is(
    headers: list[tuple[bytes, bytes]],
) -> None:
    # An HTTP/1 request with neither Content-Length nor Transfer-Encoding has no body (RFC 9112,
    # 6.3), and the server reads no more of one than its Content-Length says: nothing to count,
    # so the app gets the server's own `receive` and `send`.
    seen: list[tuple[Receive, Send]] = []

    async def app(_scope: Scope, receive: Receive, send: Send) -> None:
        seen.append((receive, send))

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(_message: Message) -> None:
        pass

    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "path": "/",
        "headers": headers,
    }
    await BodyLimit(app, max_bytes=LIMIT)(scope, receive, send)

    assert seen == [(receive, send)]


async def test_websockets_pass_through_untouched() -> None:
    seen: list[tuple[Scope, Receive, Send]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append((scope, receive, send))

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    async def send(_message: Message) -> None:
        pass

    scope = {"type": "websocket", "path": "/graphql", "headers": [(b"content-length", b"99999")]}
    await BodyLimit(app, max_bytes=LIMIT)(scope, receive, send)

    assert seen == [(scope, receive, send)]
