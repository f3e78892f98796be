"""`session` and `sessions`: every field and every argument, through the schema and over HTTP."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from app.db import Database
from app.model import SessionChanges
from app.service import SessionService
from app.tables import InboxStatus
from tests.conftest import SessionFactory
from tests.graphql.conftest import Run

SESSION_FIELDS = """
  id repo targetBranch title branch messages inboxStatus sbxConfig parentId
  createdAt updatedAt version
"""

SESSION = f"query ($id: UUID!) {{ session(id: $id) {{ {SESSION_FIELDS} }} }}"

SESSIONS = """
query ($filter: SessionFilter, $orderBy: SessionOrder, $first: Int, $after: String,
       $last: Int, $before: String) {
  sessions(filter: $filter, orderBy: $orderBy, first: $first, after: $after,
           last: $last, before: $before) {
    nodes { id title }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}
"""


async def ids_of(gql: Run, **arguments: Any) -> list[str]:
    data = (await gql(SESSIONS, **arguments)).ok()
    return [node["id"] for node in data["sessions"]["nodes"]]


async def test_session_has_every_field_of_the_contract(
    gql: Run, make_session: SessionFactory, service: SessionService
) -> None:
    parent = await make_session()
    row = await make_session(
        messages=[{"role": "user", "content": "Fix the login redirect"}], parent=parent["id"]
    )
    row = dict(await service.update(row["id"], SessionChanges(sbx_config={"image": "python:3.13"})))

    data = (await gql(SESSION, id=str(row["id"]))).ok()

    assert data["session"] == {
        "id": str(row["id"]),
        "repo": "acme/app",
        "targetBranch": "main",
        "title": row["title"],
        "branch": row["branch"],
        "messages": [{"role": "user", "content": "Fix the login redirect"}],
        "inboxStatus": "ACTIVE",
        "sbxConfig": {"image": "python:3.13"},
        "parentId": str(parent["id"]),
        "createdAt": row["created_at"].isoformat(),
        "updatedAt": row["updated_at"].isoformat(),
        "version": 2,
    }


async def test_datetimes_are_iso_8601_with_offset(gql: Run, make_session: SessionFactory) -> None:
    row = await make_session()
    data = (await gql(SESSION, id=str(row["id"]))).ok()
    created = datetime.fromisoformat(data["session"]["createdAt"])
    assert created.utcoffset() == timedelta(0)
    assert created == row["created_at"]


async def test_unknown_session_is_null(gql: Run) -> None:
    data = (await gql(SESSION, id=str(uuid.uuid4()))).ok()
    assert data == {"session": None}


async def test_malformed_id_is_refused_before_execution(gql: Run) -> None:
    result = await gql(SESSION, id="not-a-uuid")
    assert result.data is None
    assert "not-a-uuid" in result.errors[0]["message"]


@pytest.mark.parametrize(
    ("selection", "literal", "message"),
    [
        ("session(id: %s) { id }", '"nope"', "UUID cannot represent 'nope': not a UUID"),
        ("session(id: %s) { id }", "7", "UUID cannot represent a non-string value: 7"),
        (
            "sessions(filter: {createdAfter: %s}) { totalCount }",
            '"2026-01-01T00:00:00"',
            "DateTime cannot represent '2026-01-01T00:00:00': no UTC offset",
        ),
        (
            "sessions(filter: {createdAfter: %s}) { totalCount }",
            '"9999-12-31T23:59:59-01:00"',
            "DateTime cannot represent '9999-12-31T23:59:59-01:00': out of range",
        ),
        (
            "sessions(filter: {createdBefore: %s}) { totalCount }",
            '"x"',
            "DateTime cannot represent 'x': not an ISO 8601 date-time",
        ),
    ],
)
async def test_malformed_literal_is_refused_before_execution(
    gql: Run, selection: str, literal: str, message: str
) -> None:
    query = "{ " + selection % literal + " }"
    result = await gql(query)
    assert result.data is None
    [error] = result.errors
    assert error["message"].startswith(message)
    # A client's mistake, pointed at in the document, not masked: over HTTP coded as a document
    # that fails validation (the view codes what the schema leaves uncoded).
    assert error["locations"] == [{"line": 1, "column": query.index(literal) + 1}]
    assert (error.get("extensions") or {}).get("code") in (None, "GRAPHQL_VALIDATION_FAILED")


async def test_sessions_are_newest_first_by_default(gql: Run, make_session: SessionFactory) -> None:
    rows = [await make_session() for _ in range(3)]
    assert await ids_of(gql) == [str(row["id"]) for row in reversed(rows)]


async def test_filter_by_inbox_status(
    gql: Run, make_session: SessionFactory, service: SessionService
) -> None:
    active, done, archived = [await make_session() for _ in range(3)]
    await service.update(done["id"], SessionChanges(inbox_status=InboxStatus.COMPLETED))
    await service.update(archived["id"], SessionChanges(inbox_status=InboxStatus.ARCHIVED))

    found = await ids_of(gql, filter={"inboxStatus": ["COMPLETED", "ARCHIVED"]})
    assert sorted(found) == sorted([str(done["id"]), str(archived["id"])])
    assert await ids_of(gql, filter={"inboxStatus": ["ACTIVE"]}) == [str(active["id"])]
    assert await ids_of(gql, filter={"inboxStatus": []}) == []


async def test_filter_by_repo(gql: Run, make_session: SessionFactory) -> None:
    mine = await make_session(repo="acme/api")
    await make_session(repo="acme/web")
    assert await ids_of(gql, filter={"repo": "acme/api"}) == [str(mine["id"])]


async def test_filter_by_parent_and_root(gql: Run, make_session: SessionFactory) -> None:
    root = await make_session()
    child = await make_session(parent=root["id"])
    grandchild = await make_session(parent=child["id"])

    assert await ids_of(gql, filter={"parentId": str(root["id"])}) == [str(child["id"])]
    assert await ids_of(gql, filter={"isRoot": True}) == [str(root["id"])]
    assert await ids_of(gql, filter={"isRoot": False}) == [
        str(grandchild["id"]),
        str(child["id"]),
    ]


async def test_filter_by_title_is_case_insensitive_and_literal(
    gql: Run, make_session: SessionFactory
) -> None:
    login = await make_session(messages={"content": "Fix the LOGIN redirect"})
    await make_session(messages={"content": "Write the docs"})
    percent = await make_session(messages={"content": "Raise coverage to 100%"})

    assert await ids_of(gql, filter={"titleContains": "login"}) == [str(login["id"])]
    assert await ids_of(gql, filter={"titleContains": "0%"}) == [str(percent["id"])]


async def test_filter_by_creation_time(gql: Run, make_session: SessionFactory) -> None:
    first, second, third = [await make_session() for _ in range(3)]
    after_first = first["created_at"].isoformat()
    before_third = third["created_at"].isoformat()

    found = await ids_of(gql, filter={"createdAfter": after_first, "createdBefore": before_third})
    assert found == [str(second["id"])]


async def test_creation_time_without_offset_is_refused(gql: Run) -> None:
    result = await gql(SESSIONS, filter={"createdAfter": "2026-01-01T00:00:00"})
    assert result.data is None
    assert "offset" in result.errors[0]["message"]


async def test_filters_combine(gql: Run, make_session: SessionFactory) -> None:
    match = await make_session(repo="acme/api", messages={"content": "Fix the login"})
    await make_session(repo="acme/web", messages={"content": "Fix the login"})
    await make_session(repo="acme/api", messages={"content": "Write the docs"})
    found = await ids_of(gql, filter={"repo": "acme/api", "titleContains": "LOGIN"})
    assert found == [str(match["id"])]


@pytest.mark.parametrize(
    ("order_by", "key", "reverse"),
    [
        ({"field": "CREATED_AT", "direction": "ASC"}, "created_at", False),
        ({"field": "CREATED_AT"}, "created_at", True),
        ({"field": "TITLE", "direction": "ASC"}, "title", False),
        ({"field": "TITLE", "direction": "DESC"}, "title", True),
        ({"field": "UPDATED_AT", "direction": "DESC"}, "updated_at", True),
    ],
)
async def test_order_by(
    gql: Run,
    make_session: SessionFactory,
    service: SessionService,
    order_by: dict[str, str],
    key: str,
    reverse: bool,
) -> None:
    rows = [await make_session(messages={"content": f"Task {name}"}) for name in "cab"]
    # Touch the oldest, so updated_at order differs from created_at order.
    rows[0] = dict(
        await service.update(rows[0]["id"], SessionChanges(inbox_status=InboxStatus.PENDING))
    )
    expected = sorted(rows, key=lambda row: (row[key], str(row["id"])), reverse=reverse)

    assert await ids_of(gql, orderBy=order_by) == [str(row["id"]) for row in expected]


async def test_first_and_after(gql: Run, make_session: SessionFactory) -> None:
    rows = [await make_session() for _ in range(5)]
    newest_first = [str(row["id"]) for row in reversed(rows)]

    page = (await gql(SESSIONS, first=2)).ok()["sessions"]
    assert [node["id"] for node in page["nodes"]] == newest_first[:2]
    assert page["pageInfo"]["hasNextPage"] is True
    assert page["pageInfo"]["hasPreviousPage"] is False

    page = (await gql(SESSIONS, first=2, after=page["pageInfo"]["endCursor"])).ok()["sessions"]
    assert [node["id"] for node in page["nodes"]] == newest_first[2:4]
    assert page["pageInfo"]["hasPreviousPage"] is True


async def test_last_and_before(gql: Run, make_session: SessionFactory) -> None:
    rows = [await make_session() for _ in range(5)]
    newest_first = [str(row["id"]) for row in reversed(rows)]

    page = (await gql(SESSIONS, last=2)).ok()["sessions"]
    assert [node["id"] for node in page["nodes"]] == newest_first[3:]
    assert page["pageInfo"]["hasPreviousPage"] is True

    before = page["pageInfo"]["startCursor"]
    page = (await gql(SESSIONS, last=2, before=before)).ok()["sessions"]
    assert [node["id"] for node in page["nodes"]] == newest_first[1:3]
    assert page["pageInfo"]["hasNextPage"] is True


async def test_empty_page_has_no_cursors(gql: Run) -> None:
    page = (await gql(SESSIONS)).ok()["sessions"]
    assert page == {
        "nodes": [],
        "pageInfo": {
            "hasNextPage": False,
            "hasPreviousPage": False,
            "startCursor": None,
            "endCursor": None,
        },
    }


async def test_first_and_last_default_to_50(
    gql: Run, db: Database, make_session: SessionFactory
) -> None:
    oldest = await make_session()
    async with db.transaction():
        for _ in range(51):
            await make_session()
    assert len(await ids_of(gql)) == 50
    assert len(await ids_of(gql, first=None)) == 50
    before_oldest = await ids_of(gql, orderBy={"field": "CREATED_AT", "direction": "ASC"}, first=1)
    assert before_oldest == [str(oldest["id"])]
    query = "{ sessions(last: 1) { edges { cursor } } }"
    cursor = (await gql(query)).ok()["sessions"]["edges"][0]["cursor"]
    assert len(await ids_of(gql, before=cursor)) == 50


async def test_edges_carry_the_cursor_of_their_node(gql: Run, make_session: SessionFactory) -> None:
    for _ in range(3):
        await make_session()
    query = "{ sessions(first: 3) { edges { cursor node { id } } } }"
    edges = (await gql(query)).ok()["sessions"]["edges"]
    after_first = await ids_of(gql, after=edges[0]["cursor"])
    assert after_first == [edge["node"]["id"] for edge in edges[1:]]


async def test_total_count_follows_the_filter(gql: Run, make_session: SessionFactory) -> None:
    for repo in ("acme/api", "acme/api", "acme/web"):
        await make_session(repo=repo)
    query = """query ($filter: SessionFilter) {
      sessions(filter: $filter, first: 1) { totalCount nodes { id } }
    }"""
    data = (await gql(query, filter={"repo": "acme/api"})).ok()
    assert data["sessions"]["totalCount"] == 2
    assert len(data["sessions"]["nodes"]) == 1


@pytest.mark.parametrize(
    ("arguments", "argument"),
    [
        ({"first": 101}, "first"),
        ({"first": -1}, "first"),
        ({"last": 101}, "last"),
        ({"first": 1, "last": 1}, "last"),
        ({"after": "not a cursor"}, "after"),
        ({"before": "bm90IGpzb24"}, "before"),
    ],
)
async def test_invalid_paging_arguments_are_bad_user_input(
    gql: Run, arguments: dict[str, Any], argument: str
) -> None:
    result = await gql(SESSIONS, **arguments)
    assert result.data is None
    assert result.error_codes() == ["BAD_USER_INPUT"]
    assert result.errors[0]["extensions"]["argument"] == argument
    assert argument in result.errors[0]["message"]


async def test_cursor_of_another_order_is_refused(gql: Run, make_session: SessionFactory) -> None:
    await make_session()
    cursor = (await gql(SESSIONS)).ok()["sessions"]["pageInfo"]["endCursor"]
    result = await gql(SESSIONS, orderBy={"field": "TITLE"}, after=cursor)
    assert result.error_codes() == ["BAD_USER_INPUT"]
    assert "another sort order" in result.errors[0]["message"]


async def test_unknown_enum_value_is_refused(gql: Run) -> None:
    result = await gql(SESSIONS, filter={"inboxStatus": ["active"]})
    assert result.data is None
    assert "InboxStatus" in result.errors[0]["message"]


async def test_future_filter_finds_nothing(gql: Run, make_session: SessionFactory) -> None:
    await make_session()
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert await ids_of(gql, filter={"createdAfter": tomorrow}) == []


@pytest.mark.parametrize(
    "value", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "yesterday", 20260101]
)
async def test_datetime_outside_utc_or_malformed_is_refused(gql: Run, value: object) -> None:
    result = await gql(SESSIONS, filter={"createdAfter": value})
    assert result.data is None
    assert "DateTime" in result.errors[0]["message"]


async def test_datetime_in_any_offset_compares_as_utc(
    gql: Run, make_session: SessionFactory
) -> None:
    row = await make_session()
    in_new_york = row["created_at"].astimezone(timezone(timedelta(hours=-5)))
    just_before = (in_new_york - timedelta(microseconds=1)).isoformat()
    assert await ids_of(gql, filter={"createdAfter": just_before}) == [str(row["id"])]
    assert await ids_of(gql, filter={"createdAfter": in_new_york.isoformat()}) == []


@pytest.mark.parametrize("field", ["repo", "titleContains"])
async def test_nul_in_a_text_filter_is_bad_user_input(gql: Run, field: str) -> None:
    result = await gql(SESSIONS, filter={field: "acme\x00"})
    assert result.error_codes() == ["BAD_USER_INPUT"]
    assert result.errors[0]["extensions"]["argument"] == "filter"
    assert field in result.errors[0]["message"]
