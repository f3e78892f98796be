"""The query cost limit: a document that could return more objects than the limit is refused at
validation, before any SQL runs; what frontends and the README ask for passes."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from graphql import get_introspection_query

from app.graphql.cost import QUERY_COST_LIMIT, QueryCostRule
from app.service import MAX_ANCESTRY
from tests.conftest import SessionFactory
from tests.graphql.conftest import Result, Run, StatementLog

NOBODY = "00000000-0000-4000-8000-000000000000"

THREE_LEVELS = """{ sessions(first: 100) { nodes {
  children(first: 100) { nodes { children(first: 100) { nodes { id } } } }
} } }"""
ANCESTORS_OF_ANCESTORS = "ancestors { ancestors { id } }"
# As many ancestors as the service may return.
A = MAX_ANCESTRY


def refusal(cost: int) -> str:
    return f"query cost {cost} exceeds the limit of {QUERY_COST_LIMIT}; ask for smaller pages"


def assert_refused(result: Result, cost: int) -> None:
    assert result.data is None
    refused = [error for error in result.errors if error["message"].startswith("query cost")]
    assert [error["message"] for error in refused] == [refusal(cost)]
    assert refused[0]["extensions"] == {"code": "QUERY_TOO_COMPLEX"}


@pytest.mark.parametrize(
    ("query", "cost"),
    [
        pytest.param(THREE_LEVELS, 1_020_201, id="children of children"),
        pytest.param(
            """{ sessions(first: 100) { nodes { parent { children(first: 100) { nodes {
              parent { children(first: 100) { nodes { id title } } }
            } } } } } }""",
            1_030_301,
            id="children of parents",
        ),
        pytest.param(
            f'{{ session(id: "{NOBODY}") {{ ancestors {{ {ANCESTORS_OF_ANCESTORS} }} }} }}',
            1 + A * (1 + A * (1 + A)),
            id="ancestors of ancestors of ancestors",
        ),
        pytest.param(
            f'{{ session(id: "{NOBODY}") {{ {ANCESTORS_OF_ANCESTORS} }} }}',
            1 + A * (1 + A),
            id="ancestors of ancestors",
        ),
        pytest.param(
            f"{{ sessions(first: 100) {{ nodes {{ {ANCESTORS_OF_ANCESTORS} }} }} }}",
            1 + 100 * (1 + A * (1 + A)),
            id="ancestors of ancestors of a page",
        ),
        pytest.param(
            "{ sessions(first: 100) { nodes { ancestors { id } } } }",
            1 + 100 * (1 + A),
            id="ancestors of a page of 100",
        ),
    ],
)
async def test_expensive_queries_are_refused_before_any_sql(
    gql: Run, statements: StatementLog, query: str, cost: int
) -> None:
    assert_refused(await gql(query), cost)
    assert statements.statements == []


FRONTEND_PAGE = """
query Inbox($after: String) {
  sessions(first: 20, after: $after) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges {
      cursor
      node {
        id title inboxStatus updatedAt
        parent { id title }
        children(first: 5) { totalCount nodes { id title } }
        ancestors { id title }
      }
    }
  }
}
"""

README = [
    "{ sessions(first: 5) { nodes { id title inboxStatus } } }",
    """mutation {
      createSession(input: {
        repo: "acme/app"
        targetBranch: "main"
        messages: [{role: "user", content: "Fix the login redirect"}]
        idempotencyKey: "req-7f3a"
      }) {
        session { id title branch inboxStatus version }
        userErrors { code field message }
      }
    }""",
    """query Inbox($after: String) {
      sessions(
        filter: {repo: "acme/app", inboxStatus: [ACTIVE, PENDING], titleContains: "login",
                 createdAfter: "2026-01-01T00:00:00Z"}
        orderBy: {field: UPDATED_AT, direction: DESC}
        first: 20
        after: $after
      ) {
        totalCount
        edges { cursor node { id title updatedAt } }
        pageInfo { hasNextPage endCursor }
      }
    }""",
    f"""{{ session(id: "{NOBODY}") {{
      title messages sbxConfig createdAt
      parent {{ id title }}
      children(first: 10) {{ totalCount nodes {{ id title }} }}
      ancestors {{ id title }}
    }} }}""",
    f"""mutation {{ updateSession(id: "{NOBODY}", input: {{inboxStatus: COMPLETED}}) {{
      session {{ id inboxStatus version }} userErrors {{ code field message }}
    }} }}""",
    f'mutation {{ deleteSession(id: "{NOBODY}") {{ deletedId userErrors {{ code message }} }} }}',
]


@pytest.mark.parametrize("query", README)
async def test_readme_examples_pass(gql: Run, query: str) -> None:
    result = await gql(query)
    assert "QUERY_TOO_COMPLEX" not in result.error_codes()
    assert result.errors == []


async def test_a_page_of_20_with_parent_children_and_ancestors_passes(
    gql: Run, make_session: SessionFactory
) -> None:
    # 1 + 1 + 20 x (edge, node, parent, children, 5 children, 1,000 ancestors) = 20,182
    parent = await make_session()
    child = await make_session(parent=parent["id"])
    data = (await gql(FRONTEND_PAGE)).ok()
    edges = data["sessions"]["edges"]
    assert [edge["node"]["id"] for edge in edges] == [str(child["id"]), str(parent["id"])]
    assert edges[0]["node"]["ancestors"] == [{"id": str(parent["id"]), "title": parent["title"]}]


async def test_the_ancestors_of_one_session_pass(gql: Run, make_session: SessionFactory) -> None:
    root = await make_session()
    leaf = await make_session(parent=(await make_session(parent=root["id"]))["id"])
    query = "query ($id: UUID!) { session(id: $id) { ancestors { id } } }"
    data = (await gql(query, id=str(leaf["id"]))).ok()  # 1 + 1,000
    assert data["session"]["ancestors"][-1] == {"id": str(root["id"])}


async def test_introspection_costs_nothing(execute: Run) -> None:
    result = await execute(get_introspection_query())
    assert result.errors == []


VARIABLE_PAGES = """query ($n: Int) { sessions(first: $n) { nodes {
  children(first: $n) { nodes { children(first: $n) { nodes { id } } } }
} } }"""


async def test_a_page_given_by_a_variable_counts_as_the_largest(gql: Run) -> None:
    # Validation cannot see variables: $n may be 100.
    assert_refused(await gql(VARIABLE_PAGES, n=1), 1_020_201)
    literal = VARIABLE_PAGES.replace("query ($n: Int) ", "").replace("$n", "1")  # first: 1
    (await gql(literal)).ok()


async def test_a_page_left_out_counts_as_the_default(gql: Run) -> None:
    query = "{ sessions { nodes { children { nodes { children { nodes { id } } } } } } }"
    # 1 + 50 x (1 + 1 + 50 x (1 + 1 + 50))
    assert_refused(await gql(query), 130_101)


@pytest.mark.parametrize(
    "query",
    [
        pytest.param(
            """{ sessions(first: 100) { ...Page } }
            fragment Page on SessionConnection { nodes { ...Kids } }
            fragment Kids on Session {
              children(first: 100) { nodes { children(first: 100) { nodes { id } } } }
            }""",
            id="fragments",
        ),
        pytest.param(
            """{ sessions(first: 100) { ... on SessionConnection { nodes { ... {
              children(first: 100) { nodes { ... on Session {
                children(first: 100) { nodes { id } }
              } } }
            } } } } }""",
            id="inline fragments",
        ),
    ],
)
async def test_fragments_cost_what_they_stand_for(gql: Run, query: str) -> None:
    assert_refused(await gql(query), 1_020_201)


KIDS = "fragment Kids on Session { children(first: 100) { nodes { id } } }"


async def test_a_fragment_counts_wherever_it_is_spread(gql: Run) -> None:
    once = "{ sessions(first: 100) { nodes { ...Kids } } } " + KIDS
    thrice = (
        "{ sessions(first: 100) { nodes { ...Kids a: parent { ...Kids } b: parent { ...Kids } } } }"
        f" {KIDS}"
    )
    (await gql(once)).ok()  # 1 + 100 x (1 + 101)
    assert_refused(await gql(thrice), 30_601)  # 1 + 100 x (1 + 101 + 2 x (1 + 101))


def aliased(count: int) -> str:
    page = "sessions(first: 100) { nodes { children(first: 100) { nodes { id } } } }"
    return "{ " + " ".join(f"a{i}: {page}" for i in range(count)) + " }"


async def test_aliases_count_separately(gql: Run) -> None:
    (await gql(aliased(2))).ok()  # 2 x 10,201
    assert_refused(await gql(aliased(3)), 30_603)


async def test_fragments_spread_again_and_again_are_counted_at_once(
    execute: Run, statements: StatementLog
) -> None:
    # Each fragment spreads the next twice: 2^100 spreads in a few kilobytes.
    fragments = " ".join(
        f"fragment F{i} on Session {{ ...F{i + 1} ...F{i + 1} }}" for i in range(100)
    )
    last = "fragment F100 on Session { parent { id } }"
    query = f"{{ sessions(first: 1) {{ nodes {{ ...F0 }} }} }} {fragments} {last}"
    result = await execute(query)
    assert_refused(result, 2 + 2**100)
    assert statements.statements == []


async def test_validation_stays_cached(execute: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[QueryCostRule] = []
    init = QueryCostRule.__init__

    def counted(self: QueryCostRule, *args: Any) -> None:
        made.append(self)
        init(self, *args)

    monkeypatch.setattr(QueryCostRule, "__init__", counted)
    query = f"{{ sessions {{ u{uuid.uuid4().hex}: totalCount }} }}"
    for _ in range(3):
        (await execute(query)).ok()
    assert len(made) == 1


async def test_a_page_size_too_long_for_any_int_is_the_int_scalars_refusal(
    client: httpx.AsyncClient,
) -> None:
    # 5,000 digits: more than Python's int() converts from text by default.
    query = "{ sessions(first: %s) { nodes { id } } }" % ("1" * 5000)
    response = await client.post("/graphql", json={"query": query})

    errors = response.json()["errors"]
    assert [e["extensions"]["code"] for e in errors] == ["GRAPHQL_VALIDATION_FAILED"]
    assert "Int cannot represent" in errors[0]["message"]
