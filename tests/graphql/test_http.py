"""The wiring at /graphql: methods, GraphiQL, batching, introspection and the document limits."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import replace
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.main import create_app
from app.service import SessionService
from app.state import AppState
from tests.conftest import SessionFactory, with_state

ClientFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]

CREATE = """mutation { createSession(input: {repo: "acme/app", targetBranch: "main"}) {
  session { id } userErrors { code }
} }"""
HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


@pytest.fixture
def client_with(settings: Settings, app_state: AppState) -> ClientFactory:
    """A client for an app whose settings differ from the test settings by `overrides`."""

    @asynccontextmanager
    async def make(**overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
        changed = replace(settings, **overrides)
        app = create_app(changed)
        state = {"inbox": replace(app_state, settings=changed)}
        transport = httpx.ASGITransport(app=with_state(app, state))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http

    return make


def errors_of(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [error["message"] for error in response.json()["errors"]]


async def test_post_json(client: httpx.AsyncClient, make_session: SessionFactory) -> None:
    row = await make_session()
    response = await client.post(
        "/graphql",
        json={
            "query": "query One($id: UUID!) { session(id: $id) { title } }",
            "variables": {"id": str(row["id"])},
            "operationName": "One",
        },
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"data": {"session": {"title": row["title"]}}}


async def test_get_runs_a_query(client: httpx.AsyncClient, make_session: SessionFactory) -> None:
    row = await make_session()
    response = await client.get(
        "/graphql",
        params={
            "query": "query ($id: UUID!) { session(id: $id) { id } }",
            "variables": f'{{"id": "{row["id"]}"}}',
        },
    )
    assert response.status_code == 200
    assert response.json() == {"data": {"session": {"id": str(row["id"])}}}


async def test_get_refuses_a_mutation(client: httpx.AsyncClient, service: SessionService) -> None:
    response = await client.get("/graphql", params={"query": CREATE})
    assert 400 <= response.status_code < 500
    assert await service.count() == 0


async def test_post_runs_a_mutation(client: httpx.AsyncClient, service: SessionService) -> None:
    response = await client.post("/graphql", json={"query": CREATE})
    assert response.json()["data"]["createSession"]["userErrors"] == []
    assert await service.count() == 1


async def test_batching_is_off(client: httpx.AsyncClient) -> None:
    query = {"query": "{ sessions { totalCount } }"}
    response = await client.post("/graphql", json=[query, query])
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["extensions"] == {"code": "BAD_REQUEST"}
    assert "batching" in error["message"]


async def test_body_that_is_not_json_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400


async def test_other_methods_are_refused(client: httpx.AsyncClient) -> None:
    response = await client.put("/graphql", json={"query": "{ sessions { totalCount } }"})
    assert response.status_code == 405


async def test_browsers_get_graphiql(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", headers=HTML)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "graphiql" in response.text.lower()


async def test_graphiql_can_be_turned_off(client_with: ClientFactory) -> None:
    async with client_with(graphiql=False) as client:
        page = await client.get("/graphql", headers=HTML)
        query = await client.get("/graphql", params={"query": "{ sessions { totalCount } }"})
    assert page.status_code == 404
    assert page.json()["errors"][0]["extensions"] == {"code": "NOT_FOUND"}
    assert "graphiql" not in page.text.lower()
    assert query.json() == {"data": {"sessions": {"totalCount": 0}}}


INTROSPECTION = "{ __schema { queryType { name } } }"


async def test_introspection_is_on_by_default(client: httpx.AsyncClient) -> None:
    response = await client.post("/graphql", json={"query": INTROSPECTION})
    assert response.json() == {"data": {"__schema": {"queryType": {"name": "Query"}}}}


async def test_introspection_can_be_turned_off(client_with: ClientFactory) -> None:
    async with client_with(introspection=False) as client:
        schema = await client.post("/graphql", json={"query": INTROSPECTION})
        typename = await client.post(
            "/graphql", json={"query": '{ __type(name: "Session") { name } }'}
        )
        plain = await client.post("/graphql", json={"query": "{ sessions { totalCount } }"})
    assert "introspection" in errors_of(schema)[0].lower()
    assert "introspection" in errors_of(typename)[0].lower()
    assert "data" not in schema.json()
    assert plain.json() == {"data": {"sessions": {"totalCount": 0}}}


def nested_children(depth: int) -> str:
    """A query `depth` fields deep: sessions > nodes > children > nodes > ..."""
    inner = "id"
    levels = ["nodes", "children"] * depth
    for name in reversed(levels[: depth - 1]):
        inner = f"{name} {{ {inner} }}"
    return f"{{ sessions {{ {inner} }} }}"


async def test_query_depth_is_limited(client_with: ClientFactory) -> None:
    async with client_with(max_query_depth=4) as client:
        allowed = await client.post("/graphql", json={"query": nested_children(4)})
        deep = await client.post("/graphql", json={"query": nested_children(5)})
    assert "errors" not in allowed.json()
    assert "exceeds maximum operation depth" in errors_of(deep)[0]


async def test_default_depth_limit_is_10(client: httpx.AsyncClient) -> None:
    deep = await client.post("/graphql", json={"query": nested_children(11)})
    assert "exceeds maximum operation depth of 10" in errors_of(deep)[0]


def aliases(count: int) -> str:
    return "{ " + " ".join(f"a{i}: sessions {{ totalCount }}" for i in range(count)) + " }"


async def test_aliases_are_limited(client: httpx.AsyncClient) -> None:
    allowed = await client.post("/graphql", json={"query": aliases(30)})
    too_many = await client.post("/graphql", json={"query": aliases(31)})
    assert "errors" not in allowed.json()
    assert "aliases" in errors_of(too_many)[0]


async def test_tokens_are_limited(client_with: ClientFactory) -> None:
    query = "{ sessions { " + "id " * 200 + "} }"
    async with client_with(max_tokens=100) as client:
        response = await client.post("/graphql", json={"query": query})
    assert "tokens" in errors_of(response)[0]


async def test_document_errors_are_reported_not_masked(client: httpx.AsyncClient) -> None:
    unknown = await client.post("/graphql", json={"query": "{ sessions { secret } }"})
    syntax = await client.post("/graphql", json={"query": "{ sessions { "})
    assert "Cannot query field 'secret'" in errors_of(unknown)[0]
    assert "Syntax Error" in errors_of(syntax)[0]


async def test_bad_user_input_over_http(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql", json={"query": "{ sessions(first: 1000) { totalCount } }"}
    )
    [error] = response.json()["errors"]
    assert error["message"] == "first must be between 0 and 100"
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "argument": "first"}
    assert error["path"] == ["sessions"]


CLIENT_MISTAKES = [
    "{ sessions { secret } }",
    "{ sessions(first: 1000) { totalCount } }",
    "{",
    '{ session(id: "nope") { id } }',
    '{ sessions(filter: {createdAfter: "x"}) { totalCount } }',
    '{ sessions(filter: {createdAfter: "2026-01-01T00:00:00"}) { totalCount } }',
    '{ sessions(filter: {createdAfter: "9999-12-31T23:59:59-01:00"}) { totalCount } }',
    "{ sessions { ...Unknown } }",
    "{ sessions(first: 100) { nodes { ancestors { ancestors { id } } } } }",
]


async def test_client_mistakes_are_not_logged_as_errors(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    for query in CLIENT_MISTAKES:
        response = await client.post("/graphql", json={"query": query})
        assert "INTERNAL_SERVER_ERROR" not in response.text, query
        assert response.json()["errors"], query
    assert [record for record in caplog.records if record.levelname == "ERROR"] == []


def doubling_fragments(count: int) -> str:
    """A small document whose fragments each spread the next one twice: walked spread by
    spread, it holds 2^count aliased fields."""
    fragments = " ".join(
        f"fragment F{i} on Session {{ ...F{i + 1} ...F{i + 1} }}" for i in range(count)
    )
    deepest = f"fragment F{count} on Session {{ a: parent {{ id }} }}"
    return f"{{ sessions(first: 1) {{ nodes {{ ...F0 }} }} }} {fragments} {deepest}"


async def test_fragments_are_measured_once(client: httpx.AsyncClient) -> None:
    # Strawberry's own depth and alias limiters took over a minute on this document (and
    # twice as long for each fragment more); counted once per fragment, it takes milliseconds.
    started = time.perf_counter()
    response = await client.post("/graphql", json={"query": doubling_fragments(24)})
    elapsed = time.perf_counter() - started
    messages = errors_of(response)
    assert f"{2**24} aliases found. Allowed: 30" in messages
    assert any(message.startswith("query cost") for message in messages)
    assert elapsed < 1


async def test_fragments_count_toward_depth(client_with: ClientFactory) -> None:
    query = """{ sessions { ...Page } }
    fragment Page on SessionConnection { nodes { ...Kids } }
    fragment Kids on Session { children { nodes { id } } }"""
    async with client_with(max_query_depth=4) as client:
        allowed = await client.post("/graphql", json={"query": query})
        deep = await client.post(
            "/graphql", json={"query": query.replace("{ id }", "{ parent { id } }")}
        )
    assert "errors" not in allowed.json()
    assert errors_of(deep) == ["'anonymous' exceeds maximum operation depth of 4"]


async def test_unknown_fragment_is_a_validation_error(client: httpx.AsyncClient) -> None:
    response = await client.post("/graphql", json={"query": "{ sessions { ...Unknown } }"})
    assert errors_of(response) == ["Unknown fragment 'Unknown'."]
