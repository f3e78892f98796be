"""Request ids and access lines (`app.access_log`): a client's short printable `X-Request-ID` is
echoed, any other replaced by a new one, on every answer (a 404, a 401, a 413, a CORS preflight,
a 500, a stream, a WebSocket handshake), and each request has one access line naming it; a client
that hangs up mid-body or mid-answer gets an INFO line, not an ERROR traceback."""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

from app import request_id
from app.access_log import AccessLog
from app.config import Settings
from app.logs import RequestIdFilter
from app.main import create_app
from app.request_id import MAX_LENGTH
from app.state import AppState
from tests.conftest import with_state
from tests.graphql.test_subscriptions_ws import TRANSPORT_WS
from tests.loopback import serve_on_loopback

DEADLINE_S = 10.0
GENERATED = re.compile(r"[0-9a-f]{32}")
ACCESS = "session_inbox.access"
TOKEN = "s3cret-Token-1"


def client_for(settings: Settings, state: AppState) -> httpx.AsyncClient:
    app = with_state(create_app(settings), {"inbox": state})
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


@pytest.fixture
async def http(settings: Settings, app_state: AppState) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(settings, app_state) as client:
        yield client


@dataclass(frozen=True)
class Line:
    """An access line, as its fields."""

    level: int
    message: str
    method: str
    route: str
    status: int
    duration_ms: float
    client_gone: bool
    request_id: str | None
    close_code: int | None

    @classmethod
    def of(cls, record: logging.LogRecord) -> Line:
        fields = vars(record)
        return cls(
            record.levelno,
            record.getMessage(),
            **{name: fields.get(name) for name in _FIELDS},  # type: ignore[arg-type]
        )


_FIELDS = ("method", "route", "status", "duration_ms", "client_gone", "request_id", "close_code")
Lines = Callable[[], list[Line]]


@pytest.fixture
def access(caplog: pytest.LogCaptureFixture) -> Iterator[Lines]:
    """The access lines written so far in the test, each with its request id (as the handler
    that `app.logs` configures gives it)."""
    request_filter = RequestIdFilter()
    caplog.handler.addFilter(request_filter)
    caplog.set_level(logging.INFO, logger=ACCESS)
    yield lambda: [Line.of(r) for r in caplog.records if r.name == ACCESS]
    caplog.handler.removeFilter(request_filter)


def only_line(access: Lines) -> Line:
    lines = access()
    assert len(lines) == 1, [line.message for line in lines]
    return lines[0]


async def wait_for_lines(access: Lines, count: int) -> None:
    async with asyncio.timeout(DEADLINE_S):
        # Polls: the lines come through logging, which has no event to wait on.
        while len(access()) < count:  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The ERROR lines, and any line with a traceback."""
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def test_a_valid_request_id_is_echoed_and_named_by_the_access_line(
    http: httpx.AsyncClient, access: Lines
) -> None:
    given = "req-7f3a_91.b:c/d=" + "x" * (MAX_LENGTH - 18)
    missing = uuid.uuid4()
    response = await http.get(f"/sessions/{missing}", headers={"X-Request-ID": given})
    assert response.status_code == 404
    assert response.headers["X-Request-ID"] == given
    line = only_line(access)
    assert line.level == logging.INFO
    assert (line.method, line.route, line.status) == ("GET", "/sessions/{id}", 404)
    assert line.request_id == given
    assert line.duration_ms >= 0
    assert line.message.startswith("GET /sessions/{id} 404 ")
    # The path itself (and its id) stays out of the line: the template names the route.
    assert str(missing) not in line.message


@pytest.mark.parametrize(
    "given",
    [
        "x" * (MAX_LENGTH + 1),
        "two words",
        "tab\there",
        "bell\x07",
        "del\x7f",
        "",
    ],
    ids=["too-long", "space", "tab", "control", "delete", "empty"],
)
async def test_an_unfit_request_id_is_replaced_by_a_new_one(
    http: httpx.AsyncClient, access: Lines, given: str
) -> None:
    response = await http.get("/sessions", headers={"X-Request-ID": given})
    assert response.status_code == 200
    echoed = response.headers["X-Request-ID"]
    assert GENERATED.fullmatch(echoed), echoed
    assert only_line(access).request_id == echoed


async def test_a_request_without_an_id_gets_a_new_one_each_time(http: httpx.AsyncClient) -> None:
    ids = {(await http.get("/sessions")).headers["X-Request-ID"] for _ in range(3)}
    assert len(ids) == 3
    assert all(GENERATED.fullmatch(i) for i in ids)


async def test_an_unmatched_path_is_logged_as_sent(http: httpx.AsyncClient, access: Lines) -> None:
    response = await http.get("/no/such%20path?x=1")
    assert response.status_code == 404
    assert GENERATED.fullmatch(response.headers["X-Request-ID"])
    assert only_line(access).route == "/no/such%20path"


async def test_a_401_carries_the_id(settings: Settings, app_state: AppState, access: Lines) -> None:
    guarded = replace(settings, api_tokens=(TOKEN,))
    async with client_for(guarded, app_state) as http:
        response = await http.get("/sessions", headers={"X-Request-ID": "refused-1"})
    assert response.status_code == 401
    assert response.headers["X-Request-ID"] == "refused-1"
    assert only_line(access).status == 401


async def test_a_413_carries_the_id(settings: Settings, app_state: AppState, access: Lines) -> None:
    small = replace(settings, max_body_bytes=1024)
    body = b'{"repo": "' + b"a" * 2000 + b'"}'
    async with client_for(small, app_state) as http:
        for path in ("/sessions", "/graphql"):
            response = await http.post(
                path,
                content=body,
                headers={"X-Request-ID": "big-1", "Content-Type": "application/json"},
            )
            assert response.status_code == 413
            assert response.headers["X-Request-ID"] == "big-1"
    assert [line.status for line in access()] == [413, 413]


async def test_a_cors_preflight_carries_the_id(http: httpx.AsyncClient, access: Lines) -> None:
    response = await http.options(
        "/sessions",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "X-Request-ID": "preflight-1",
        },
    )
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "preflight-1"
    assert only_line(access).method == "OPTIONS"


async def test_a_streamed_list_carries_the_id(http: httpx.AsyncClient, access: Lines) -> None:
    async with http.stream("GET", "/sessions", headers={"X-Request-ID": "stream-1"}) as response:
        assert response.status_code == 200
        assert response.headers["X-Request-ID"] == "stream-1"
        await response.aread()
    line = only_line(access)
    assert (line.status, line.client_gone) == (200, False)


async def test_an_unexpected_error_is_logged_as_500_and_its_answer_can_carry_the_id(
    access: Lines,
) -> None:
    async def broken(_request: Request) -> Response:
        raise RuntimeError("a bug")

    async def unexpected(_request: Request, _exc: Exception) -> Response:
        # Starlette's ServerErrorMiddleware runs this outside every middleware, AccessLog's
        # included: the id is still the request's there.
        return PlainTextResponse("oops", 500, headers=request_id.response_headers())

    app = Starlette(
        routes=[Route("/broken", broken)],
        middleware=[Middleware(AccessLog)],
        exception_handlers={Exception: unexpected},
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        response = await http.get("/broken", headers={"X-Request-ID": "bug-1"})
    assert response.status_code == 500
    assert response.headers["X-Request-ID"] == "bug-1"
    line = only_line(access)
    assert (line.route, line.status, line.request_id) == ("/broken", 500, "bug-1")


async def test_the_apps_own_500_carries_the_id(
    settings: Settings, app_state: AppState, access: Lines, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(app_state.service, "get", broken)
    app = with_state(create_app(settings), {"inbox": app_state})
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        response = await http.get(f"/sessions/{uuid.uuid4()}", headers={"X-Request-ID": "bug-2"})

    assert response.status_code == 500
    assert response.json()["code"] == "INTERNAL_SERVER_ERROR"
    assert response.headers["X-Request-ID"] == "bug-2"
    assert only_line(access).status == 500


async def test_a_websocket_handshake_carries_the_id_and_its_close_is_logged(
    settings: Settings, access: Lines
) -> None:
    app = create_app(settings)
    async with serve_on_loopback(app, lifespan="on", log_config=None) as base:
        url = base.replace("http://", "ws://", 1) + "/graphql"
        async with asyncio.timeout(DEADLINE_S):
            async with connect(
                url,
                subprotocols=[TRANSPORT_WS],
                additional_headers={"X-Request-ID": "socket-1"},
            ) as ws:
                assert ws.response is not None
                assert ws.response.headers["X-Request-ID"] == "socket-1"
            # The line is written when the server is done with the socket.
            await wait_for_lines(access, 1)
    line = only_line(access)
    assert (line.method, line.route, line.status) == ("WEBSOCKET", "/graphql", 101)
    assert (line.request_id, line.close_code) == ("socket-1", 1000)


async def test_a_refused_websocket_handshake_carries_the_id(
    settings: Settings, access: Lines
) -> None:
    allowed = replace(settings, cors_origins=("https://inbox.example",))
    app = create_app(allowed)
    async with serve_on_loopback(app, lifespan="on", log_config=None) as base:
        url = base.replace("http://", "ws://", 1) + "/graphql"
        async with asyncio.timeout(DEADLINE_S):
            with pytest.raises(InvalidStatus) as refused:
                await connect(
                    url,
                    subprotocols=[TRANSPORT_WS],
                    origin=Origin("https://elsewhere.example"),
                    additional_headers={"X-Request-ID": "refused-ws"},
                )
            await wait_for_lines(access, 1)
    assert refused.value.response.status_code == 403
    assert refused.value.response.headers["X-Request-ID"] == "refused-ws"
    line = only_line(access)
    assert (line.method, line.status, line.close_code) == ("WEBSOCKET", 403, None)


@pytest.mark.parametrize("path", ["/sessions", "/graphql"])
async def test_a_client_that_hangs_up_mid_body_is_info_not_an_error(
    settings: Settings,
    access: Lines,
    caplog: pytest.LogCaptureFixture,
    path: str,
) -> None:
    app = create_app(settings)
    async with serve_on_loopback(app, lifespan="on", log_config=None) as base:
        port = int(base.rsplit(":", 1)[1])
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            "Content-Length: 1000\r\nX-Request-ID: half-1\r\n\r\n"
        )
        writer.write(head.encode() + b'{"repo": "acme/')
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        await wait_for_lines(access, 1)
    line = only_line(access)
    assert line.level == logging.INFO
    assert (line.route, line.status, line.client_gone) == (path, 499, True)
    assert line.request_id == "half-1"
    assert errors(caplog) == []


async def test_a_client_that_hangs_up_mid_answer_is_info_not_an_error(
    access: Lines, caplog: pytest.LogCaptureFixture
) -> None:
    async def endless() -> AsyncIterator[bytes]:
        yield b"first chunk\n"
        # Until the server sees the client go and cancels the answer.
        await asyncio.Event().wait()

    async def streamed(_request: Request) -> Response:
        return StreamingResponse(endless())

    app = Starlette(routes=[Route("/endless", streamed)], middleware=[Middleware(AccessLog)])
    async with serve_on_loopback(app, lifespan="off", log_config=None) as base:
        port = int(base.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /endless HTTP/1.1\r\nHost: test\r\n\r\n")
        async with asyncio.timeout(DEADLINE_S):
            assert b"first chunk" in await reader.readuntil(b"first chunk\n")
        writer.close()
        await writer.wait_closed()
        await wait_for_lines(access, 1)
    line = only_line(access)
    assert (line.status, line.client_gone) == (200, True)
    assert line.message.endswith("client gone")
    assert errors(caplog) == []


async def test_a_browser_on_another_origin_may_read_the_id_and_the_retry_hints(
    settings: Settings, app_state: AppState
) -> None:
    async with client_for(settings, app_state) as http:
        response = await http.get("/sessions", headers={"Origin": "https://inbox.example"})

    exposed = {
        name.strip().lower()
        for name in response.headers["access-control-expose-headers"].split(",")
    }
    assert {"x-request-id", "retry-after", "www-authenticate", "etag", "location"} <= exposed
