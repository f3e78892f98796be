"""Subscriptions over a real WebSocket: the app served by uvicorn on a loopback port, a GraphQL
client library (gql) speaking `graphql-transport-ws` to it, changes made over HTTP; and what the
server refuses: the legacy `graphql-ws` protocol, a connection that never initialises, the
subscription past the per-connection limit, a page from an origin it does not allow."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import httpx
import orjson
import pytest
from gql import Client, GraphQLRequest
from gql.transport.websockets import WebsocketsTransport
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin, Subprotocol

from app.config import Settings
from app.db import Database
from app.graphql import view
from app.main import create_app
from tests.loopback import serve_on_loopback

DEADLINE_S = 10.0
TRANSPORT_WS = Subprotocol("graphql-transport-ws")

SUBSCRIBE = """subscription ($id: UUID, $after: String) {
  sessionEvents(id: $id, after: $after) { eventId kind sessionId session { title version } }
}"""


@dataclass(frozen=True)
class Server:
    http: str
    ws: str


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[Server]:
    """The app for `settings`, lifespan and all, served by uvicorn on a free loopback port in
    this event loop; stopped when the block ends."""
    async with serve_on_loopback(create_app(settings), lifespan="on", log_config=None) as base:
        yield Server(base, base.replace("http://", "ws://", 1) + "/graphql")


@pytest.fixture
async def server(settings: Settings, db: Database) -> AsyncIterator[Server]:
    """The app over the test's (emptied) database. Its lifespan runs its own relay: the test
    uses no other service, so that relay is the only one."""
    async with serving(settings) as running:
        yield running


@pytest.fixture
async def http(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.http, timeout=DEADLINE_S) as client:
        yield client


async def graphql(http: httpx.AsyncClient, query: str, **variables: Any) -> dict[str, Any]:
    response = await http.post("/graphql", json={"query": query, "variables": variables})
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body
    data: dict[str, Any] = body["data"]
    return data


async def create_session(http: httpx.AsyncClient) -> str:
    body = {"repo": "acme/app", "target_branch": "main", "messages": "Watch this"}
    response = await http.post("/sessions", json=body)
    assert response.status_code == 201, response.text
    session_id: str = response.json()["id"]
    return session_id


async def test_a_client_subscribed_over_a_websocket_receives_changes_made_over_http(
    server: Server, http: httpx.AsyncClient
) -> None:
    cursor = (await graphql(http, "{ eventCursor }"))["eventCursor"]
    session_id = await create_session(http)
    transport = WebsocketsTransport(url=server.ws, subprotocols=[TRANSPORT_WS])
    async with asyncio.timeout(DEADLINE_S), Client(transport=transport) as session:
        request = GraphQLRequest(SUBSCRIBE, variable_values={"id": session_id, "after": cursor})
        stream = session.subscribe(request)
        try:
            created = (await anext(stream))["sessionEvents"]
            patch = {"title": "Changed over HTTP"}
            assert (await http.patch(f"/sessions/{session_id}", json=patch)).status_code == 200
            updated = (await anext(stream))["sessionEvents"]
            assert (await http.delete(f"/sessions/{session_id}")).status_code == 200
            deleted = (await anext(stream))["sessionEvents"]
        finally:
            await stream.aclose()
        assert transport.subprotocol == TRANSPORT_WS

    assert (created["kind"], created["sessionId"]) == ("CREATED", session_id)
    assert created["session"] == {"title": "Watch this", "version": 1}
    assert (updated["kind"], updated["sessionId"]) == ("UPDATED", session_id)
    assert updated["session"] == {"title": "Changed over HTTP", "version": 2}
    assert (deleted["kind"], deleted["sessionId"]) == ("DELETED", session_id)
    assert deleted["session"] == {"title": "Changed over HTTP", "version": 3}


async def closed(websocket: ClientConnection) -> tuple[int | None, str | None]:
    """The close code and reason of `websocket`, once the server has closed it."""
    async with asyncio.timeout(DEADLINE_S):
        await websocket.wait_closed()
    return websocket.close_code, websocket.close_reason


async def test_the_legacy_graphql_ws_protocol_is_refused(server: Server) -> None:
    async with connect(server.ws, subprotocols=[Subprotocol("graphql-ws")]) as websocket:
        assert websocket.subprotocol is None
        assert await closed(websocket) == (4406, "Subprotocol not acceptable")


async def test_a_connection_that_never_sends_connection_init_is_closed_with_4408(
    settings: Settings, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(view, "CONNECTION_INIT_WAIT_S", 0.2)
    async with (
        serving(settings) as running,
        connect(running.ws, subprotocols=[TRANSPORT_WS]) as websocket,
    ):
        assert websocket.subprotocol == TRANSPORT_WS
        assert await closed(websocket) == (4408, "Connection initialisation timeout")


class Protocol:
    """The client side of `graphql-transport-ws`, message by message."""

    def __init__(self, websocket: ClientConnection) -> None:
        self.websocket = websocket

    async def send(self, **message: Any) -> None:
        await self.websocket.send(orjson.dumps(message).decode())

    async def receive(self) -> dict[str, Any]:
        async with asyncio.timeout(DEADLINE_S):
            message: dict[str, Any] = orjson.loads(await self.websocket.recv())
        return message

    async def subscribe(self, operation: str, **variables: Any) -> None:
        payload = {"query": SUBSCRIBE, "variables": variables}
        await self.send(id=operation, type="subscribe", payload=payload)


async def test_a_subscription_past_the_limit_of_a_connection_is_refused(
    settings: Settings, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(view, "MAX_SUBSCRIPTIONS_PER_CONNECTION", 2)
    async with (
        serving(settings) as running,
        httpx.AsyncClient(base_url=running.http, timeout=DEADLINE_S) as http,
        connect(running.ws, subprotocols=[TRANSPORT_WS]) as websocket,
    ):
        cursor = (await graphql(http, "{ eventCursor }"))["eventCursor"]
        session_id = await create_session(http)
        client = Protocol(websocket)
        await client.send(type="connection_init")
        assert await client.receive() == {"type": "connection_ack"}
        # Each running subscription sends the session's CREATED, from the log.
        await client.subscribe("1", id=session_id, after=cursor)
        await client.subscribe("2", id=session_id, after=cursor)
        first = [await client.receive(), await client.receive()]
        await client.subscribe("3", id=session_id, after=cursor)
        refused = await client.receive()
        # One ended frees its place for another.
        await client.send(id="1", type="complete")
        await client.subscribe("4", id=session_id, after=cursor)
        fourth = await client.receive()

    assert sorted((m["id"], m["type"]) for m in first) == [("1", "next"), ("2", "next")]
    assert (refused["id"], refused["type"]) == ("3", "error")
    assert [error["message"] for error in refused["payload"]] == ["Subscription limit reached"]
    assert (fourth["id"], fourth["type"]) == ("4", "next")
    for message in [*first, fourth]:
        assert message["payload"]["data"]["sessionEvents"]["kind"] == "CREATED"


async def test_a_page_from_an_origin_outside_cors_origins_cannot_open_a_websocket(
    settings: Settings, db: Database
) -> None:
    allowed = replace(settings, cors_origins=("https://inbox.example",))
    async with serving(allowed) as running:
        elsewhere = Origin("https://elsewhere.example")
        with pytest.raises(InvalidStatus) as refused:
            await connect(running.ws, subprotocols=[TRANSPORT_WS], origin=elsewhere)
        assert refused.value.response.status_code == 403

        origin = Origin("https://inbox.example")
        async with connect(running.ws, subprotocols=[TRANSPORT_WS], origin=origin) as websocket:
            client = Protocol(websocket)
            await client.send(type="connection_init")
            assert await client.receive() == {"type": "connection_ack"}
