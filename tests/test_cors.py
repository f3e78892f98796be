"""`app.cors.CORS` answers every request as Starlette's `CORSMiddleware` does, headers in the
same order: without `Origin` (its shortcut), with one (a browser's request, a preflight), whatever
`Vary` the app gave, for any origin or the configured ones."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.cors import CORS

EXPOSED = ["ETag", "X-Request-ID"]
APP_HEADERS = {
    "no-vary": [(b"content-type", b"application/json")],
    "one-vary": [(b"vary", b"Accept"), (b"etag", b'"1"')],
    "two-varies": [(b"vary", b"Accept"), (b"etag", b'"1"'), (b"vary", b"Prefer")],
    "none-at-all": None,
}
REQUESTS = {
    "no-origin": ("GET", []),
    "origin": ("GET", [(b"origin", b"https://inbox.example")]),
    "other-origin": ("POST", [(b"origin", b"https://elsewhere.example")]),
    "preflight": (
        "OPTIONS",
        [
            (b"origin", b"https://inbox.example"),
            (b"access-control-request-method", b"PATCH"),
            (b"access-control-request-headers", b"content-type, prefer"),
        ],
    ),
    "options-no-origin": ("OPTIONS", [(b"access-control-request-method", b"PATCH")]),
}


def answering(headers: list[tuple[bytes, bytes]] | None) -> ASGIApp:
    async def app(_scope: Scope, _receive: Receive, send: Send) -> None:
        start: dict[str, Any] = {"type": "http.response.start", "status": 200}
        if headers is not None:
            start["headers"] = list(headers)
        await send(start)
        await send({"type": "http.response.body", "body": b"{}"})

    return app


async def answer(app: ASGIApp, method: str, headers: list[tuple[bytes, bytes]]) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": "/sessions", "headers": headers}
    await app(scope, receive, send)
    return sent


@pytest.mark.parametrize("origins", [["*"], ["https://inbox.example"]], ids=["any", "listed"])
@pytest.mark.parametrize("app_headers", APP_HEADERS.values(), ids=APP_HEADERS.keys())
@pytest.mark.parametrize("request_", REQUESTS.values(), ids=REQUESTS.keys())
async def test_every_answer_is_starlettes(
    origins: list[str],
    app_headers: list[tuple[bytes, bytes]] | None,
    request_: tuple[str, list[tuple[bytes, bytes]]],
) -> None:
    options: dict[str, Any] = {
        "allow_origins": origins,
        "allow_methods": ["*"],
        "allow_headers": ["*"],
        "expose_headers": EXPOSED,
    }
    ours = CORS(answering(app_headers), **options)
    starlettes = CORSMiddleware(answering(app_headers), **options)

    assert await answer(ours, *request_) == await answer(starlettes, *request_)


async def test_a_request_without_origin_varies_on_it() -> None:
    app = CORS(answering(APP_HEADERS["two-varies"]), allow_origins=["*"])
    start, _body = await answer(app, "GET", [(b"accept", b"*/*")])
    assert start["headers"] == [(b"vary", b"Accept, Prefer, Origin"), (b"etag", b'"1"')]
