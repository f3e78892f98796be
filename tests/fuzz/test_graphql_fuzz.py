"""A Hypothesis fuzzer over `/graphql`: documents built from the schema (hypothesis-graphql's
queries and mutations, with strategies for the UUID, JSON and DateTime scalars) and fixed
operations given random variables (any JSON where an input is expected, well-typed values
mostly), posted to the real application on each engine.

Every answer must be a JSON GraphQL response, never a 5xx, whose `data` fits the operation sent
(`tests.fuzz.graphql_shape`); a session created from well-typed variables keeps its messages
exactly; the stored sessions' invariants hold afterwards. Runs are derandomized, EXAMPLES each."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import graphql
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import Mode, mutations, queries
from starlette.applications import Starlette
from starlette.testclient import TestClient

from tests.fuzz import graphql_shape
from tests.fuzz.conftest import AUTHORIZATION

EXAMPLES = 150
SCHEMA = graphql.build_schema(
    (Path(__file__).parents[2] / "schema.graphql").read_text(encoding="utf-8")
)
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
# What a client may ask for; each answer must be in one of the JSON media types.
ACCEPTS = ("application/json", "application/graphql-response+json", "*/*")
GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON_TYPES = ("application/json", GRAPHQL_RESPONSE)

SESSION = """id repo targetBranch title branch messages inboxStatus sbxConfig parentId
  createdAt updatedAt version parent { id version } ancestors { id }"""
PAYLOAD = f"session {{ {SESSION} }} userErrors {{ code field message }}"
CREATE = f"""mutation Create($input: CreateSessionInput!) {{
  createSession(input: $input) {{ {PAYLOAD} }} }}"""
UPDATE = f"""mutation Update($id: UUID!, $input: UpdateSessionInput!) {{
  updateSession(id: $id, input: $input) {{ {PAYLOAD} }} }}"""
APPEND = f"""mutation Append($id: UUID!, $messages: [JSON!]!) {{
  appendMessages(id: $id, messages: $messages) {{ {PAYLOAD} }} }}"""
DELETE = """mutation Delete($id: UUID!) {
  deleteSession(id: $id) { deletedId userErrors { code field message } } }"""
LIST = f"""query List($filter: SessionFilter, $orderBy: SessionOrder, $first: Int, $after: String,
    $last: Int, $before: String) {{
  sessions(filter: $filter, orderBy: $orderBy, first: $first, after: $after, last: $last,
           before: $before) {{
    totalCount pageInfo {{ hasNextPage hasPreviousPage startCursor endCursor }}
    edges {{ cursor node {{ {SESSION} }} }} }} }}"""

# JSON values: what `messages` and `sbxConfig` hold. Integers past 64 bits and long strings
# are in range on purpose.
names = st.from_regex(r"[_A-Za-z][_0-9A-Za-z]{0,8}", fullmatch=True)
json_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(names, children, max_size=4),
    max_leaves=12,
)
texts = st.text(max_size=120)
datetimes = st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=-7))])).map(
    datetime.isoformat
)


def _json_node(value: Any) -> graphql.ValueNode:
    """`value` written as a GraphQL literal (the JSON scalar's literal form)."""
    if value is None:
        return graphql.NullValueNode()
    if isinstance(value, bool):
        return graphql.BooleanValueNode(value=value)
    if isinstance(value, int):
        return graphql.IntValueNode(value=str(value))
    if isinstance(value, float):
        return graphql.FloatValueNode(value=repr(value))
    if isinstance(value, str):
        return graphql.StringValueNode(value=value)
    if isinstance(value, list):
        return graphql.ListValueNode(values=tuple(_json_node(item) for item in value))
    fields = tuple(
        graphql.ObjectFieldNode(name=graphql.NameNode(value=key), value=_json_node(item))
        for key, item in value.items()
    )
    return graphql.ObjectValueNode(fields=fields)


def _string_node(value: str) -> graphql.ValueNode:
    return graphql.StringValueNode(value=value)


@pytest.fixture
def http(fuzz_app: Starlette) -> Iterator[TestClient]:
    """A client of the app, its lifespan running; server errors come back as answers."""
    with TestClient(fuzz_app, headers=AUTHORIZATION, raise_server_exceptions=False) as client:
        yield client


def post(http: TestClient, query: str, variables: Any = None, accept: str = ACCEPTS[0]) -> Any:
    """Posts an operation; fails unless the answer is a GraphQL response that fits it."""
    body: dict[str, Any] = {"query": query}
    if variables is not None:
        body["variables"] = variables
    response = http.post(
        "/graphql",
        # The standard library's encoder, since orjson's stops at 64-bit integers.
        content=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Accept": accept},
    )
    problems: list[str] = []
    if response.status_code >= 500:
        problems.append(f"status {response.status_code}")
    media_type = response.headers.get("content-type", "").split(";")[0].strip()
    if media_type not in JSON_TYPES or (accept in JSON_TYPES and media_type != accept):
        problems.append(f"Content-Type {media_type!r} to Accept {accept!r}")
    try:
        answer = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        answer = None
        problems.append("body is not JSON")
    if isinstance(answer, dict):
        problems.extend(graphql_shape.violations(SCHEMA, graphql.parse(query), answer))
        # The GraphQL-over-HTTP status codes: an answer without `data` (the request could not
        # run) is a 4xx, one with `data` a 200.
        if media_type == GRAPHQL_RESPONSE and ("data" in answer) != (response.status_code == 200):
            problems.append(f"status {response.status_code} with data: {'data' in answer}")
    assert not problems, (
        f"{problems}\nquery: {query}\nvariables: {variables!r}\n"
        f"answer: {response.status_code} {response.text[:2000]}"
    )
    return answer


@pytest.fixture
def known_ids(http: TestClient) -> list[str]:
    """Three sessions in a chain (root, child, grandchild), the last with a list of messages, so
    that generated ids sometimes name a session that exists."""
    ids: list[str] = []
    for messages in ({"content": "Fix the login page"}, "Plan the release", [{"text": "hi"}]):
        parent = ids[-1] if ids else None
        variables = {
            "input": {
                "repo": "acme/app",
                "targetBranch": "main",
                "messages": messages,
                "parentId": parent,
            }
        }
        answer = post(http, CREATE, variables)
        ids.append(answer["data"]["createSession"]["session"]["id"])
    return ids


def _scalars(ids: list[str]) -> dict[str, st.SearchStrategy[graphql.ValueNode]]:
    return {
        "UUID": (st.sampled_from(ids) | st.uuids().map(str)).map(_string_node),
        # Never null itself: hypothesis-graphql puts nulls where the schema allows them.
        "JSON": json_values.filter(lambda value: value is not None).map(_json_node),
        "DateTime": datetimes.map(_string_node),
    }


def _documents(build: Any, ids: list[str]) -> st.SearchStrategy[str]:
    """Documents `build` (hypothesis-graphql's `queries` or `mutations`) makes: valid ones, and
    ones with a single schema violation (a wrong argument type, a missing argument, an unknown
    enum value), which must be refused as GraphQL errors."""
    scalars = _scalars(ids)
    valid: st.SearchStrategy[str] = build(SCHEMA, custom_scalars=scalars)
    invalid: st.SearchStrategy[str] = build(SCHEMA, custom_scalars=scalars, mode=Mode.NEGATIVE)
    return st.one_of(valid, valid, invalid)


@pytest.mark.usefixtures("intact_database")
def test_generated_queries_answer_by_the_schema(http: TestClient, known_ids: list[str]) -> None:
    @FUZZ
    @given(query=_documents(queries, known_ids), accept=st.sampled_from(ACCEPTS))
    def run(query: str, accept: str) -> None:
        post(http, query, accept=accept)

    run()


@pytest.mark.usefixtures("intact_database")
def test_generated_mutations_answer_by_the_schema(http: TestClient, known_ids: list[str]) -> None:
    @FUZZ
    @given(
        mutation=_documents(mutations, known_ids),
        accept=st.sampled_from(ACCEPTS),
    )
    def run(mutation: str, accept: str) -> None:
        post(http, mutation, accept=accept)

    run()


def _maybe(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A well-typed value mostly; any JSON value sometimes."""
    return st.one_of(valid, valid, valid, json_values)


def _inputs(ids: list[str]) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    some_id = st.sampled_from(ids) | st.uuids().map(str)
    statuses = st.sampled_from(["PENDING", "ACTIVE", "COMPLETED", "ARCHIVED"])
    create = st.fixed_dictionaries(
        {"repo": _maybe(texts), "targetBranch": _maybe(texts)},
        optional={
            "messages": json_values,
            "parentId": _maybe(some_id),
            "idempotencyKey": _maybe(texts),
        },
    )
    update = st.fixed_dictionaries(
        {},
        optional={
            "repo": _maybe(texts),
            "targetBranch": _maybe(texts),
            "messages": json_values,
            "inboxStatus": _maybe(statuses),
            "sbxConfig": json_values,
            "parentId": _maybe(some_id | st.none()),
            "title": _maybe(texts),
            "branch": _maybe(texts | st.from_regex(r"[a-z]{1,8}(/[a-z-]{1,8})?", fullmatch=True)),
            "expectedVersion": _maybe(st.integers(min_value=-3, max_value=2**40)),
        },
    )
    filters = st.fixed_dictionaries(
        {},
        optional={
            "inboxStatus": _maybe(st.lists(statuses, max_size=8)),
            "repo": _maybe(texts),
            "parentId": _maybe(some_id),
            "isRoot": _maybe(st.booleans()),
            "titleContains": _maybe(texts),
            "createdAfter": _maybe(datetimes),
            "createdBefore": _maybe(datetimes),
        },
    )
    listing = st.fixed_dictionaries(
        {},
        optional={
            "filter": _maybe(filters),
            "orderBy": _maybe(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "field": st.sampled_from(["CREATED_AT", "UPDATED_AT", "TITLE"]),
                        "direction": st.sampled_from(["ASC", "DESC"]),
                    },
                )
            ),
            "first": _maybe(st.integers(min_value=-5, max_value=200)),
            "last": _maybe(st.integers(min_value=-5, max_value=200)),
            "after": _maybe(texts),
            "before": _maybe(texts),
        },
    )
    return st.one_of(
        st.tuples(st.just(CREATE), st.fixed_dictionaries({"input": _maybe(create)})),
        st.tuples(
            st.just(UPDATE), st.fixed_dictionaries({"id": _maybe(some_id), "input": _maybe(update)})
        ),
        st.tuples(
            st.just(APPEND),
            st.fixed_dictionaries(
                {"id": _maybe(some_id), "messages": _maybe(st.lists(json_values, max_size=4))}
            ),
        ),
        st.tuples(st.just(DELETE), st.fixed_dictionaries({"id": _maybe(some_id)})),
        st.tuples(st.just(LIST), listing),
    )


@pytest.mark.usefixtures("intact_database")
def test_random_variables_answer_by_the_schema(http: TestClient, known_ids: list[str]) -> None:
    @FUZZ
    @given(operation=_inputs(known_ids))
    def run(operation: tuple[str, dict[str, Any]]) -> None:
        query, variables = operation
        answer = post(http, query, variables)
        created = ((answer.get("data") or {}).get("createSession") or {}).get("session")
        if created is not None:
            # Stored as sent: no number rounded, no value dropped.
            assert created["messages"] == variables["input"].get("messages"), created

    run()
