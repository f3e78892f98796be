"""Bearer authentication with `API_TOKENS`: what REST and GraphQL answer with and without a good
token, the paths that stay open, CORS on a refusal, a WebSocket's `connection_init` over a real
server, and the open API (with its warning) when no token is configured."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from app.auth import Authenticator, Outcome, TokenVerifier
from app.config import Settings
from app.db import Database
from app.main import create_app
from app.state import AppState
from tests.conftest import with_state
from tests.graphql.test_subscriptions_ws import TRANSPORT_WS, Protocol, closed, serving

TOKEN = "s3cret-Token-1"
OTHER = "another-token-2"
QUERY = {"query": "{ eventCursor }"}
BEARER = 'Bearer error="invalid_token"'


@pytest.fixture
def guarded(settings: Settings) -> Settings:
    return replace(settings, api_tokens=(TOKEN, OTHER))


def client_for(settings: Settings, state: AppState) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=with_state(create_app(settings), {"inbox": state}))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
async def http(guarded: Settings, app_state: AppState) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(guarded, app_state) as client:
        yield client


def auth(value: str) -> dict[str, str]:
    return {"Authorization": value}


async def test_a_configured_token_is_accepted_by_rest_and_graphql(
    http: httpx.AsyncClient,
) -> None:
    for token in (TOKEN, OTHER):
        assert (await http.get("/sessions", headers=auth(f"Bearer {token}"))).status_code == 200
    response = await http.post("/graphql", json=QUERY, headers=auth(f"bearer {TOKEN}"))
    assert response.status_code == 200
    assert "errors" not in response.json()


@pytest.mark.parametrize(
    ("headers", "challenge"),
    [
        ({}, "Bearer"),
        (auth(f"Basic {TOKEN}"), "Bearer"),
        (auth(TOKEN), "Bearer"),
        (auth("Bearer wrong"), BEARER),
        (auth("Bearer "), BEARER),
        (auth(f"Bearer {TOKEN.upper()}"), BEARER),
        (auth(f"Bearer {TOKEN.lower()}"), BEARER),
        (auth(f"Bearer {TOKEN}x"), BEARER),
        (auth(f"Bearer {TOKEN[:-1]}"), BEARER),
        (auth(f"Bearer {TOKEN},{OTHER}"), BEARER),
    ],
)
async def test_a_missing_or_wrong_token_is_refused_with_401(
    http: httpx.AsyncClient, headers: dict[str, str], challenge: str
) -> None:
    rest = await http.post("/sessions", json={"repo": "acme/app"}, headers=headers)
    assert rest.status_code == 401
    assert rest.headers["www-authenticate"] == challenge
    assert rest.headers["content-type"] == "application/json"
    body = rest.json()
    assert (body["err"], body["code"]) == ("Unauthorized", "UNAUTHORIZED")
    assert body["msg"]

    graphql = await http.post("/graphql", json=QUERY, headers=headers)
    assert graphql.status_code == 401
    assert graphql.headers["www-authenticate"] == challenge
    [error] = graphql.json()["errors"]
    assert error["extensions"] == {"code": "UNAUTHENTICATED"}
    assert set(graphql.json()) == {"errors"}


async def test_a_graphql_query_over_get_needs_the_token_even_from_a_browser(
    http: httpx.AsyncClient,
) -> None:
    response = await http.get("/graphql", params=QUERY, headers={"Accept": "text/html"})
    assert response.status_code == 401


async def test_a_refusal_carries_cors_headers_and_a_preflight_is_answered(
    http: httpx.AsyncClient,
) -> None:
    origin = {"Origin": "https://app.example"}
    refused = await http.get("/sessions", headers=origin)
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == "*"
    preflight = await http.options(
        "/sessions",
        headers={**origin, "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/docs",
        "/docs/",
        "/swagger-ui/",
        "/docs/init.js",
        "/docs/static/swagger-ui-bundle.js",
        "/openapi.json",
    ],
)
async def test_the_documentation_pages_stay_open(http: httpx.AsyncClient, path: str) -> None:
    assert (await http.get(path)).status_code == 200


async def test_the_graphiql_page_stays_open(http: httpx.AsyncClient) -> None:
    response = await http.get("/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
async def test_the_health_probes_are_not_refused(http: httpx.AsyncClient, path: str) -> None:
    # Whether or not the probe is served yet, it is never asked for a token.
    assert (await http.get(path)).status_code != 401


async def test_the_token_verifier_accepts_only_a_configured_token() -> None:
    verifier = TokenVerifier([TOKEN, OTHER])
    assert await verifier.verify(OTHER)
    assert not await verifier.verify(TOKEN.swapcase())
    assert not await verifier.verify("")
    assert not await TokenVerifier([]).verify(TOKEN)


class Waiting:
    """A verifier that can say nothing without waiting (as a JWT's key set), and accepts one
    token."""

    def __init__(self, accepted: str) -> None:
        self.accepted = accepted
        self.asked: list[str] = []

    async def verify(self, token: str) -> bool:
        self.asked.append(token)
        return token == self.accepted

    def verify_at_once(self, _token: str) -> bool | None:
        return None


async def test_configured_tokens_are_decided_at_once_and_the_rest_by_waiting() -> None:
    waiting = Waiting(OTHER)
    authenticator = Authenticator([TokenVerifier([TOKEN]), waiting])

    assert authenticator.check_at_once(f"Bearer {TOKEN}") is Outcome.ACCEPTED
    assert authenticator.check_at_once(f"bearer  {TOKEN} ") is Outcome.ACCEPTED
    assert authenticator.check_at_once(f"Basic {TOKEN}") is Outcome.MISSING
    assert authenticator.check_at_once(None) is Outcome.MISSING
    assert authenticator.check_at_once(f"Bearer {OTHER}") is None
    assert waiting.asked == []

    assert await authenticator.check(f"Bearer {TOKEN}") is Outcome.ACCEPTED
    assert await authenticator.check(f"Bearer {OTHER}") is Outcome.ACCEPTED
    assert await authenticator.check("Bearer nobody") is Outcome.INVALID
    assert waiting.asked == [OTHER, "nobody"]
    assert Authenticator([TokenVerifier([TOKEN])]).check_at_once("Bearer x") is Outcome.INVALID
    assert Authenticator([]).check_at_once(None) is Outcome.ACCEPTED


async def test_with_no_tokens_the_api_is_open_and_says_so_once(
    settings: Settings, app_state: AppState, caplog: pytest.LogCaptureFixture
) -> None:
    assert settings.api_tokens == ()
    caplog.set_level(logging.WARNING, logger="app.auth")
    async with client_for(settings, app_state) as http:
        assert (await http.get("/sessions")).status_code == 200
        assert (await http.post("/graphql", json=QUERY)).status_code == 200
        assert (await http.get("/sessions")).status_code == 200
    warnings = [r.getMessage() for r in caplog.records if r.name == "app.auth"]
    assert len(warnings) == 1
    assert "no API_TOKENS nor AUTH_JWKS_URL" in warnings[0]
    assert "anyone may read and write" in warnings[0]


async def init(url: str, payload: dict[str, Any] | None) -> dict[str, Any] | tuple[Any, ...]:
    """What the server answers a `connection_init` with `payload`: its message, or the close
    code and reason."""
    async with connect(url, subprotocols=[TRANSPORT_WS]) as websocket:
        client = Protocol(websocket)
        if payload is None:
            await client.send(type="connection_init")
        else:
            await client.send(type="connection_init", payload=payload)
        try:
            return await client.receive()
        except ConnectionClosed:
            return await closed(websocket)


async def test_a_websocket_needs_the_token_in_connection_init(
    guarded: Settings, db: Database
) -> None:
    async with serving(guarded) as server:
        good = await init(server.ws, {"Authorization": f"Bearer {TOKEN}"})
        none = await init(server.ws, None)
        empty = await init(server.ws, {})
        wrong = await init(server.ws, {"Authorization": "Bearer wrong"})
        basic = await init(server.ws, {"Authorization": f"Basic {TOKEN}"})
        # The HTTP paths stay guarded on the same server.
        async with httpx.AsyncClient(base_url=server.http) as http:
            assert (await http.get("/sessions")).status_code == 401

    assert good == {"type": "connection_ack"}
    assert none == empty == wrong == basic == (4403, "Forbidden")
