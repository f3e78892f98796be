"""GraphQL fixtures: `gql` runs an operation through `schema.execute` or through HTTP (each test
that uses it runs both ways), `execute` through the schema only; `statements` counts the SQL
statements run."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
import strawberry
from graphql import get_introspection_query

from app.db import Database
from app.graphql.context import Context
from app.graphql.schema import InboxSchema, build_schema
from app.service import SessionService

TRANSPORTS = ("schema", "http")


@dataclass
class Result:
    """An operation's result as a client sees it: JSON `data` and formatted `errors`."""

    data: dict[str, Any] | None
    errors: list[dict[str, Any]] = field(default_factory=list)

    def ok(self) -> dict[str, Any]:
        """The data, after checking that there were no errors."""
        assert not self.errors, self.errors
        assert self.data is not None
        return self.data

    def error_codes(self) -> list[str | None]:
        return [(error.get("extensions") or {}).get("code") for error in self.errors]


Run = Callable[..., Awaitable[Result]]


@pytest.fixture(scope="session")
def schema() -> InboxSchema:
    return build_schema()


# The schema's types as introspection gives them (what GraphiQL reads), by name.
Types = dict[str, dict[str, Any]]


@pytest.fixture(scope="session")
async def types(schema: strawberry.Schema) -> Types:
    result = await schema.execute(get_introspection_query(descriptions=True, specified_by_url=True))
    assert result.errors is None, result.errors
    assert result.data is not None
    return {type_["name"]: type_ for type_ in result.data["__schema"]["types"]}


@pytest.fixture
def execute(schema: InboxSchema, service: SessionService) -> Run:
    """Runs an operation through `schema.execute`, with a fresh context per call, as a request
    would have; then, on PostgreSQL, through the compiled read path too (`app.graphql.compiled`),
    which must give the same answer whenever it answers."""

    async def run(query: str, **variables: Any) -> Result:
        result = await schema.execute(
            query, variable_values=variables or None, context_value=Context(service)
        )
        errors = [dict(error.formatted) for error in result.errors or []]
        await compare_compiled(schema, service, query, variables, Result(result.data, errors))
        return Result(result.data, errors)

    return run


# How many answers of the compiled path the suite compared with Strawberry's, in this process.
COMPILED_ANSWERS = [0]


async def compare_compiled(
    schema: InboxSchema,
    service: SessionService,
    query: str,
    variables: dict[str, Any] | None,
    expected: Result,
) -> None:
    """Asserts that the compiled read path, when it answers `query`, answers as Strawberry
    did: the same data (compared parsed) and no errors."""
    schema.compiled.learn(query, None)
    text = await schema.compiled.answer(service.db, query, variables or None, None)
    if text is None:
        return
    assert not expected.errors, f"compiled answered a query Strawberry refused: {expected.errors}"
    assert orjson.loads(text) == expected.data, query
    COMPILED_ANSWERS[0] += 1


async def post(client: httpx.AsyncClient, query: str, **variables: Any) -> Result:
    response = await client.post("/graphql", json={"query": query, "variables": variables})
    assert response.status_code == 200, response.text
    body = response.json()
    return Result(body.get("data"), body.get("errors", []))


@pytest.fixture(params=TRANSPORTS)
def gql(request: pytest.FixtureRequest, execute: Run) -> Run:
    """Runs an operation through the schema, or over HTTP through the app."""
    if request.param == "schema":
        return execute
    client: httpx.AsyncClient = request.getfixturevalue("client")

    async def run(query: str, **variables: Any) -> Result:
        return await post(client, query, **variables)

    return run


class StatementLog:
    """The SQL statements run through a Database, by counting its two entry points (`fetchrow`
    goes through `fetch`); but the outbox relay's, which runs beside the test."""

    def __init__(self, db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
        self.statements: list[str] = []
        fetch, execute = db.fetch, db.execute

        def count(sql: Any) -> None:
            if "session_outbox" not in str(sql):
                self.statements.append(sql)

        async def counted_fetch(sql: str, *args: Any) -> Any:
            count(sql)
            return await fetch(sql, *args)

        async def counted_execute(sql: str, *args: Any) -> None:
            count(sql)
            await execute(sql, *args)

        monkeypatch.setattr(db, "fetch", counted_fetch)
        monkeypatch.setattr(db, "execute", counted_execute)

    def __len__(self) -> int:
        return len(self.statements)

    def clear(self) -> None:
        self.statements.clear()


@pytest.fixture
def statements(db: Database, monkeypatch: pytest.MonkeyPatch) -> StatementLog:
    return StatementLog(db, monkeypatch)
