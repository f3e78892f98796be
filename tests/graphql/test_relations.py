"""parent, children and ancestors: correct, and a page of sessions with its relations costs a
fixed number of SQL statements, whatever the page size."""

from __future__ import annotations

from typing import Any

import pytest

from app.db import Database
from tests.conftest import SessionFactory
from tests.graphql.conftest import Run, StatementLog

RELATIONS = """
query ($first: Int) {
  sessions(filter: {isRoot: false}, orderBy: {field: CREATED_AT, direction: ASC}, first: $first) {
    nodes {
      id
      parent { title }
      children(first: 5) { totalCount nodes { id } }
    }
  }
}
"""


async def make_family(db: Database, make_session: SessionFactory, middles: int) -> dict[str, Any]:
    """Roots, `middles` sessions under them (oldest first) and two children under each."""
    async with db.transaction():  # one commit; every name is distinct, so no INSERT fails
        return await _make_family(make_session, middles)


async def _make_family(make_session: SessionFactory, middles: int) -> dict[str, Any]:
    roots = [await make_session(messages={"content": f"Root {i}"}) for i in range(5)]
    middle = [
        await make_session(parent=roots[i % len(roots)]["id"], messages={"content": f"Mid {i}"})
        for i in range(middles)
    ]
    children: dict[str, list[str]] = {str(row["id"]): [] for row in middle}
    for row in middle:
        for _ in range(2):
            child = await make_session(parent=row["id"])
            children[str(row["id"])].insert(0, str(child["id"]))  # newest first
    titles = {str(row["id"]): row["title"] for row in roots}
    parents = {str(row["id"]): titles[str(row["parent"])] for row in middle}
    return {"middle": [str(row["id"]) for row in middle], "parents": parents, "children": children}


async def test_relations_of_a_page_cost_the_same_statements_at_any_size(
    execute: Run, db: Database, make_session: SessionFactory, statements: StatementLog
) -> None:
    family = await make_family(db, make_session, middles=50)
    counts: dict[int, int] = {}
    for size in (10, 50):
        statements.clear()
        nodes = (await execute(RELATIONS, first=size)).ok()["sessions"]["nodes"]
        counts[size] = len(statements)

        assert [node["id"] for node in nodes] == family["middle"][:size]
        for node in nodes:
            assert node["parent"] == {"title": family["parents"][node["id"]]}
            assert node["children"] == {
                "totalCount": 2,
                "nodes": [{"id": child} for child in family["children"][node["id"]]],
            }
    # The page, the parents, the children's pages, their counts.
    assert counts == {10: 4, 50: 4}, statements.statements


async def test_ancestors_of_a_page_cost_one_statement_at_any_size(
    execute: Run, db: Database, make_session: SessionFactory, statements: StatementLog
) -> None:
    async with db.transaction():
        chain = [await make_session()]
        for _ in range(59):
            chain.append(await make_session(parent=chain[-1]["id"]))
    ids = [str(row["id"]) for row in chain]
    # The page size written in the document: `ancestors` is priced at the most the service
    # returns, so the cost rule lets a page of 20 through, not one of a variable's 100.
    query = """{
      sessions(orderBy: {field: CREATED_AT, direction: ASC}, first: %d) {
        nodes { id ancestors { id } }
      }
    }"""
    counts: dict[int, int] = {}
    for size in (10, 20):
        statements.clear()
        nodes = (await execute(query % size)).ok()["sessions"]["nodes"]
        counts[size] = len(statements)

        assert [node["id"] for node in nodes] == ids[:size]
        for depth, node in enumerate(nodes):
            assert node["ancestors"] == [{"id": ancestor} for ancestor in reversed(ids[:depth])]
    # The page, then every chain in one recursive statement.
    assert counts == {10: 2, 20: 2}, statements.statements


async def test_total_count_is_only_counted_when_selected(
    execute: Run, make_session: SessionFactory, statements: StatementLog
) -> None:
    parent = await make_session()
    await make_session(parent=parent["id"])

    statements.clear()
    (await execute("{ sessions { nodes { children { nodes { id } } } } }")).ok()
    assert not any("count(" in sql for sql in statements.statements)
    assert len(statements) == 2

    statements.clear()
    data = (await execute("{ sessions { totalCount nodes { children { totalCount } } } }")).ok()
    assert len([sql for sql in statements.statements if "count(" in sql]) == 2
    assert data["sessions"]["totalCount"] == 2
    assert sorted(node["children"]["totalCount"] for node in data["sessions"]["nodes"]) == [0, 1]


async def test_parent_of_a_root_and_of_an_orphan_is_null(
    gql: Run, make_session: SessionFactory
) -> None:
    root = await make_session()
    query = "query ($id: UUID!) { session(id: $id) { parentId parent { id } } }"
    data = (await gql(query, id=str(root["id"]))).ok()
    assert data["session"] == {"parentId": None, "parent": None}


async def test_children_pages_newest_first(gql: Run, make_session: SessionFactory) -> None:
    parent = await make_session()
    children = [await make_session(parent=parent["id"]) for _ in range(3)]
    newest_first = [str(row["id"]) for row in reversed(children)]
    query = """query ($id: UUID!, $after: String) {
      session(id: $id) {
        children(first: 2, after: $after) {
          totalCount
          edges { cursor node { id parentId } }
          pageInfo { hasNextPage hasPreviousPage endCursor }
        }
      }
    }"""

    first = (await gql(query, id=str(parent["id"]))).ok()["session"]["children"]
    assert [edge["node"]["id"] for edge in first["edges"]] == newest_first[:2]
    assert {edge["node"]["parentId"] for edge in first["edges"]} == {str(parent["id"])}
    assert first["totalCount"] == 3
    assert first["pageInfo"]["hasNextPage"] is True
    assert first["pageInfo"]["hasPreviousPage"] is False

    after = first["pageInfo"]["endCursor"]
    rest = (await gql(query, id=str(parent["id"]), after=after)).ok()["session"]["children"]
    assert [edge["node"]["id"] for edge in rest["edges"]] == newest_first[2:]
    assert rest["pageInfo"] == {
        "hasNextPage": False,
        "hasPreviousPage": True,
        "endCursor": rest["edges"][-1]["cursor"],
    }


async def test_children_default_to_50(gql: Run, db: Database, make_session: SessionFactory) -> None:
    parent = await make_session()
    async with db.transaction():
        for _ in range(51):
            await make_session(parent=parent["id"])
    query = "query ($id: UUID!) { session(id: $id) { children { nodes { id } } } }"
    data = (await gql(query, id=str(parent["id"]))).ok()
    assert len(data["session"]["children"]["nodes"]) == 50


@pytest.mark.parametrize(
    ("arguments", "argument"),
    [("first: 101", "first"), ('after: "nope"', "after"), ("first: -1", "first")],
)
async def test_invalid_children_arguments_are_bad_user_input(
    gql: Run, make_session: SessionFactory, arguments: str, argument: str
) -> None:
    row = await make_session()
    query = (
        f"query ($id: UUID!) {{ session(id: $id) {{ children({arguments}) {{ totalCount }} }} }}"
    )
    result = await gql(query, id=str(row["id"]))
    assert result.data == {"session": None}
    assert result.error_codes() == ["BAD_USER_INPUT"]
    assert result.errors[0]["extensions"]["argument"] == argument
    assert result.errors[0]["path"] == ["session", "children"]


async def test_ancestors_nearest_first_up_to_the_root(
    gql: Run, make_session: SessionFactory, statements: StatementLog
) -> None:
    chain = [await make_session()]
    for _ in range(4):
        chain.append(await make_session(parent=chain[-1]["id"]))
    query = "query ($id: UUID!) { session(id: $id) { ancestors { id } } }"

    statements.clear()
    data = (await gql(query, id=str(chain[-1]["id"]))).ok()

    assert [row["id"] for row in data["session"]["ancestors"]] == [
        str(row["id"]) for row in reversed(chain[:-1])
    ]
    # The session, then its whole chain in one recursive statement.
    assert len(statements) == 2
    root = (await gql(query, id=str(chain[0]["id"]))).ok()
    assert root["session"]["ancestors"] == []
