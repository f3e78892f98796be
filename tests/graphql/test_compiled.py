"""The compiled read path answers the queries it plans exactly as Strawberry does, leaves the
others to Strawberry, and serves HTTP once a document has been seen. (Every query of the GraphQL
suite is compared both ways by the `execute` fixture; these make sure each kind of field is
compiled, not merely compared when it happens to be.)"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import httpx
import orjson
import pytest

from app.config import Settings
from app.db import Database, DatabaseUnavailable
from app.graphql.schema import InboxSchema
from app.main import create_app
from app.service import SessionService
from app.state import AppState
from tests.conftest import SessionFactory, with_state
from tests.graphql.conftest import Run

pytestmark = pytest.mark.parametrize("engine_kind", ["postgres"], indirect=True)

EVERY_FIELD = """
  id repo targetBranch title branch messages inboxStatus sbxConfig parentId createdAt updatedAt
  version __typename
"""
PAGE_INFO = "pageInfo { hasNextPage hasPreviousPage startCursor endCursor __typename }"

COMPILED = {
    "every field": f"query ($id: UUID!) {{ session(id: $id) {{ {EVERY_FIELD} }} }}",
    "unknown id": '{ session(id: "00000000-0000-4000-8000-000000000000") { id } }',
    "parents": "query ($id: UUID!) { session(id: $id) { parent { title parent { id } } } }",
    "ancestors": "query ($id: UUID!) { session(id: $id) { ancestors { id title } } }",
    "children": "query ($root: UUID!) { session(id: $root) { children(first: 2) "
    f"{{ totalCount edges {{ cursor node {{ id }} }} {PAGE_INFO} }} }} }}",
    "newest page": "{ sessions(first: 3) { nodes { id title parent { title } } "
    f"{PAGE_INFO} totalCount __typename }} }}",
    "backward by title": "{ sessions(last: 2, orderBy: {field: TITLE, direction: ASC}) "
    f"{{ edges {{ cursor node {{ title }} }} {PAGE_INFO} }} }}",
    "filtered": "query ($s: [InboxStatus!]) { sessions(filter: {inboxStatus: $s, "
    'repo: "acme/app", isRoot: false, titleContains: "o"}, '
    "orderBy: {field: UPDATED_AT}) { totalCount nodes { id inboxStatus } } }",
    "fragments and aliases": "query { a: sessions(first: 1) { ...page } b: sessions(first: 2) "
    "{ ...page nodes { branch } } } fragment page on SessionConnection { nodes { ... on "
    "Session { id } } }",
    "empty page": '{ sessions(filter: {repo: "none/such"}) { nodes { id } '
    f"{PAGE_INFO} totalCount }} }}",
}


@pytest.fixture
async def family(make_session: SessionFactory) -> dict[str, Any]:
    root = await make_session(messages=[{"role": "user", "content": "Fix the login page ✓"}])
    middle = await make_session(parent=root["id"], messages={"n": 1234567890123456789, "x": 1e300})
    leaves = [await make_session(parent=middle["id"], messages=[1.5, None]) for _ in range(3)]
    return {"root": root, "middle": middle, "leaves": leaves}


async def compiled_answer(
    schema: InboxSchema, service: SessionService, query: str, **variables: Any
) -> Any:
    text = await schema.compiled.answer(service.db, query, variables or None, None)
    return None if text is None else orjson.loads(text)


@pytest.mark.parametrize("name", COMPILED)
async def test_each_kind_of_query_is_compiled_and_answers_as_strawberry(
    execute: Run,
    schema: InboxSchema,
    service: SessionService,
    family: dict[str, Any],
    name: str,
) -> None:
    by_name: dict[str, dict[str, Any]] = {
        "every field": {"id": str(family["leaves"][0]["id"])},
        "parents": {"id": str(family["leaves"][0]["id"])},
        "ancestors": {"id": str(family["leaves"][0]["id"])},
        "children": {"root": str(family["middle"]["id"])},
        "filtered": {"s": ["ACTIVE", "ACTIVE"]},
    }
    variables = by_name.get(name, {})
    expected = (await execute(COMPILED[name], **variables)).ok()
    # `execute` compared both; here the compiled path must have been the one to answer.
    assert await compiled_answer(schema, service, COMPILED[name], **variables) == expected


@pytest.mark.parametrize(
    "query",
    [
        "{ eventCursor }",
        "{ __schema { queryType { name } } }",
        '{ session(id: "00000000-0000-4000-8000-000000000000") { id @skip(if: true) } }',
        'mutation { deleteSession(id: "00000000-0000-4000-8000-000000000000") { deletedId } }',
    ],
)
async def test_what_it_cannot_plan_goes_to_strawberry(
    execute: Run, schema: InboxSchema, service: SessionService, query: str
) -> None:
    await execute(query)
    assert await compiled_answer(schema, service, query) is None


async def test_arguments_strawberry_refuses_are_refused_by_strawberry(
    execute: Run, schema: InboxSchema, service: SessionService
) -> None:
    query = "query ($n: Int, $c: String) { sessions(first: $n, after: $c) { nodes { id } } }"
    (await execute(query, n=1)).ok()
    for variables in ({"n": 500}, {"c": "not a cursor"}, {"n": "one"}):
        assert (await execute(query, **variables)).errors
        assert await compiled_answer(schema, service, query, **variables) is None


async def test_variables_strawberry_refuses_are_refused_by_strawberry(
    execute: Run, schema: InboxSchema, service: SessionService, make_session: SessionFactory
) -> None:
    # Scalars and enums are coerced without graphql-core's walk: what it refuses still goes
    # to Strawberry, and what it accepts is answered the same.
    session = await make_session()
    query = (
        "query ($id: UUID!, $n: Int, $d: SortDirection) "
        "{ session(id: $id) { id } sessions(first: $n, orderBy: {direction: $d}) { nodes { id } } }"
    )
    accepted: list[dict[str, Any]] = [
        {"id": str(session["id"])},
        {"id": str(session["id"]), "n": None, "d": "ASC"},
    ]
    refused: list[dict[str, Any]] = [
        {},
        {"id": None},
        {"id": "not a uuid"},
        {"id": 7},
        {"id": str(session["id"]), "n": "one"},
        {"id": str(session["id"]), "d": "SIDEWAYS"},
    ]
    (await execute(query, **accepted[0])).ok()
    for variables in accepted:
        expected = (await execute(query, **variables)).ok()
        assert await compiled_answer(schema, service, query, **variables) == expected
    for variables in refused:
        assert (await execute(query, **variables)).errors
        assert await compiled_answer(schema, service, query, **variables) is None


async def test_a_document_refused_by_the_limits_is_never_compiled(
    execute: Run, schema: InboxSchema, service: SessionService
) -> None:
    deep = "{ sessions { nodes { " + "parent { " * 12 + "id" + " }" * 12 + " } } }"
    assert (await execute(deep)).errors
    assert await compiled_answer(schema, service, deep) is None


async def test_an_outage_is_told_at_once_not_waited_for_twice(
    execute: Run,
    schema: InboxSchema,
    service: SessionService,
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    query = "{ sessions(first: 1) { nodes { id } } }"
    (await execute(query)).ok()

    async def down(*_args: Any) -> None:
        raise DatabaseUnavailable("the database cannot be reached now")

    monkeypatch.setattr(db, "fetch_value", down)
    with pytest.raises(DatabaseUnavailable):
        await compiled_answer(schema, service, query)


async def http_answers(
    settings: Settings, app_state: AppState, monkeypatch: pytest.MonkeyPatch, query: str
) -> tuple[list[Any], int]:
    """The bodies of `query` posted three times to a new app, and how many were compiled."""
    compiled = 0
    fetch_value = app_state.service.db.fetch_value

    async def counted(sql: str, *args: Any) -> Any:
        nonlocal compiled
        compiled += 1
        return await fetch_value(sql, *args)

    monkeypatch.setattr(app_state.service.db, "fetch_value", counted)
    transport = httpx.ASGITransport(app=with_state(create_app(settings), {"inbox": app_state}))
    bodies = []
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        for _ in range(3):
            response = await http.post("/graphql", json={"query": query})
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/json"
            bodies.append(response.json())
    return bodies, compiled


async def test_http_answers_a_document_compiled_from_its_second_time(
    settings: Settings,
    app_state: AppState,
    family: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    query = "{ sessions(first: 5) { nodes { id title parent { title } } } }"
    bodies, compiled = await http_answers(settings, app_state, monkeypatch, query)
    assert bodies[0] == bodies[1] == bodies[2]
    assert len(bodies[0]["data"]["sessions"]["nodes"]) == 5
    assert compiled == 2


async def test_compiled_reads_can_be_turned_off(
    settings: Settings,
    app_state: AppState,
    family: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    off = replace(settings, compiled_reads=False)
    query = "{ sessions(first: 2) { nodes { id } } }"
    bodies, compiled = await http_answers(off, app_state, monkeypatch, query)
    assert bodies[0] == bodies[2]
    assert compiled == 0
