"""Arguments that no stored session could match, or too many to be distinct, are the client's
mistake: BAD_USER_INPUT naming the argument, before any statement runs (issue 9, defect 4). A
status listed twice counts once. A JSON number that a stored document would change (1e400, 2**64,
more digits than a float keeps) is BAD_USER_INPUT, in a literal as in a variable (defect 5)."""

from __future__ import annotations

import base64
import json
import logging
import uuid
from typing import Any

import httpx
import orjson
import pytest
import strawberry

from app import listing
from app.graphql.context import Context
from app.graphql.scalars import decode_json
from app.model import SessionChanges
from app.naming import TITLE_MAX
from app.service import SessionService
from app.tables import InboxStatus
from app.validation import TEXT_MAX
from tests.conftest import SessionFactory
from tests.graphql.conftest import Run
from tests.graphql.test_subscriptions import subscribed

SESSIONS = """
query ($filter: SessionFilter, $orderBy: SessionOrder, $after: String, $before: String) {
  sessions(filter: $filter, orderBy: $orderBy, after: $after, before: $before) {
    nodes { id inboxStatus }
  }
}
"""


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]


def refused(result: Any, argument: str, named: str) -> None:
    """`result` is the BAD_USER_INPUT refusal of `argument`, its message naming `named`."""
    assert result.data is None, result
    assert result.error_codes() == ["BAD_USER_INPUT"], result.errors
    assert result.errors[0]["extensions"]["argument"] == argument
    assert named in result.errors[0]["message"]


def title_cursor(title: str) -> str:
    """A cursor of the TITLE order, as the server spells one."""
    raw = orjson.dumps(["title", title, str(uuid.uuid4())])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def test_forty_thousand_statuses_are_refused_not_sent_to_the_database(
    gql: Run, make_session: SessionFactory, caplog: pytest.LogCaptureFixture
) -> None:
    await make_session()
    caplog.set_level(logging.INFO)

    result = await gql(SESSIONS, filter={"inboxStatus": ["ACTIVE"] * 40_000})

    refused(result, "filter", "filter.inboxStatus")
    assert errors_logged(caplog) == []


async def test_more_statuses_than_there_are_is_refused(gql: Run) -> None:
    statuses = ["ACTIVE"] * (len(InboxStatus) + 1)
    refused(await gql(SESSIONS, filter={"inboxStatus": statuses}), "filter", "inboxStatus")


async def test_a_status_listed_twice_counts_once(
    gql: Run, make_session: SessionFactory, service: SessionService
) -> None:
    active = await make_session()
    done = await make_session()
    await service.update(done["id"], SessionChanges(inbox_status=InboxStatus.COMPLETED))
    pending = await make_session()
    await service.update(pending["id"], SessionChanges(inbox_status=InboxStatus.PENDING))

    data = (await gql(SESSIONS, filter={"inboxStatus": ["COMPLETED", "ACTIVE", "COMPLETED"]})).ok()

    ids = [node["id"] for node in data["sessions"]["nodes"]]
    assert sorted(ids) == sorted([str(active["id"]), str(done["id"])])


async def test_a_title_filter_of_fifty_thousand_characters_is_refused(
    gql: Run, make_session: SessionFactory, caplog: pytest.LogCaptureFixture
) -> None:
    await make_session()
    caplog.set_level(logging.INFO)

    result = await gql(SESSIONS, filter={"titleContains": "x" * 50_000})

    refused(result, "filter", "filter.titleContains")
    assert errors_logged(caplog) == []


async def test_a_title_filter_as_long_as_a_title_finds_it(
    gql: Run, make_session: SessionFactory, service: SessionService
) -> None:
    row = await make_session()
    title = "T" * TITLE_MAX
    await service.update(row["id"], SessionChanges(title=title))

    found = (await gql(SESSIONS, filter={"titleContains": title.lower()})).ok()
    assert [node["id"] for node in found["sessions"]["nodes"]] == [str(row["id"])]
    longer = await gql(SESSIONS, filter={"titleContains": title + "T"})
    refused(longer, "filter", f"at most {TITLE_MAX}")


async def test_a_repo_filter_longer_than_any_repo_is_refused(
    gql: Run, make_session: SessionFactory
) -> None:
    row = await make_session(repo="r" * TEXT_MAX)

    found = (await gql(SESSIONS, filter={"repo": "r" * TEXT_MAX})).ok()
    assert [node["id"] for node in found["sessions"]["nodes"]] == [str(row["id"])]
    refused(await gql(SESSIONS, filter={"repo": "r" * (TEXT_MAX + 1)}), "filter", "filter.repo")


@pytest.mark.parametrize("argument", ["after", "before"])
async def test_a_cursor_longer_than_any_the_server_makes_is_refused(
    gql: Run, make_session: SessionFactory, argument: str, caplog: pytest.LogCaptureFixture
) -> None:
    await make_session()
    caplog.set_level(logging.INFO)
    cursor = title_cursor("x" * 50_000)
    assert len(cursor) > listing.CURSOR_MAX

    result = await gql(SESSIONS, orderBy={"field": "TITLE"}, **{argument: cursor})

    refused(result, argument, argument)
    assert errors_logged(caplog) == []


async def test_the_longest_cursor_the_server_can_make_is_accepted(
    gql: Run, make_session: SessionFactory, service: SessionService
) -> None:
    row = await make_session()
    # The widest title: every character four bytes of UTF-8.
    await service.update(row["id"], SessionChanges(title="\U0001f600" * TITLE_MAX))
    query = "{ sessions(orderBy: {field: TITLE}) { edges { cursor } } }"
    [edge] = (await gql(query)).ok()["sessions"]["edges"]
    assert len(edge["cursor"]) == listing.CURSOR_MAX

    assert (await gql(SESSIONS, orderBy={"field": "TITLE"}, before=edge["cursor"])).ok()


async def test_a_children_cursor_longer_than_any_is_refused(
    gql: Run, make_session: SessionFactory
) -> None:
    row = await make_session()
    query = """query ($id: UUID!, $after: String) {
      session(id: $id) { children(after: $after) { totalCount } }
    }"""
    cursor = base64.urlsafe_b64encode(b"x" * 60_000).decode()

    result = await gql(query, id=str(row["id"]), after=cursor)

    assert result.error_codes() == ["BAD_USER_INPUT"]
    assert result.errors[0]["extensions"]["argument"] == "after"


async def test_a_subscription_filter_with_too_many_statuses_is_refused(
    schema: strawberry.Schema, service: SessionService
) -> None:
    statuses = ["ACTIVE"] * 40_000
    async with subscribed(schema, service, filter={"inboxStatus": statuses}) as sub:
        (result,) = await sub.until(lambda results: len(results) >= 1)
    refused(result, "filter", "filter.inboxStatus")


async def test_a_subscription_title_filter_longer_than_a_title_is_refused(
    schema: strawberry.Schema, service: SessionService
) -> None:
    async with subscribed(schema, service, filter={"titleContains": "x" * 50_000}) as sub:
        (result,) = await sub.until(lambda results: len(results) >= 1)
    refused(result, "filter", "filter.titleContains")


# Numbers in JSON documents (defect 5) -----------------------------------------------------------

CREATE_LITERAL = """mutation {
  createSession(input: {repo: "acme/app", targetBranch: "main", messages: {n: [%s]}}) {
    session { id } userErrors { code }
  }
}"""
CREATE = """mutation ($messages: JSON) {
  createSession(input: {repo: "acme/app", targetBranch: "main", messages: $messages}) {
    session { id messages } userErrors { code }
  }
}"""
ALTERED = [
    "1e400",
    "-1e400",
    "1e-400",
    "3.14159265358979323846",
    "18446744073709551616",
    "18446744073709551616.0",
    "9223372036854775808",
    "1" * 5000,
]


async def stored(service: SessionService) -> int:
    return await service.count()


@pytest.mark.parametrize("number", ALTERED, ids=lambda n: n[:24])
async def test_a_literal_number_that_would_be_stored_altered_is_bad_user_input(
    gql: Run, service: SessionService, number: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)

    result = await gql(CREATE_LITERAL % number)

    assert result.data is None
    assert result.error_codes() == ["BAD_USER_INPUT"], result.errors
    assert "JSON cannot represent" in result.errors[0]["message"]
    assert await stored(service) == 0
    assert errors_logged(caplog) == []


async def test_an_appended_literal_number_that_would_be_altered_changes_nothing(
    gql: Run, make_session: SessionFactory, service: SessionService
) -> None:
    row = await make_session(messages=[])
    query = 'mutation { appendMessages(id: "%s", messages: [1, 1e400]) { session { id } } }'

    result = await gql(query % row["id"])

    assert result.error_codes() == ["BAD_USER_INPUT"]
    after = await service.get(row["id"])
    assert after is not None
    assert after["version"] == 1


@pytest.mark.parametrize("number", ALTERED[:-1], ids=lambda n: n[:24])
async def test_a_variable_number_read_from_the_request_text_is_bad_user_input(
    schema: strawberry.Schema, service: SessionService, number: str
) -> None:
    # As the view reads a request with `decode_json`: the number's text decides.
    body = decode_json('{"messages": {"n": [' + number + "]}}")
    assert isinstance(body, dict)

    result = await schema.execute(CREATE, variable_values=body, context_value=Context(service))

    assert result.data is None
    assert result.errors is not None
    assert [e.formatted.get("extensions", {}).get("code") for e in result.errors] == [
        "BAD_USER_INPUT"
    ]
    assert "$messages" in result.errors[0].message
    assert await stored(service) == 0


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 2**64, [1, {"a": -(2**63) - 1}]])
async def test_a_variable_no_document_holds_is_bad_user_input(
    execute: Run, service: SessionService, value: object
) -> None:
    result = await execute(CREATE, messages=value)
    assert result.error_codes() == ["BAD_USER_INPUT"]
    assert await stored(service) == 0


async def test_a_variable_number_over_http_is_bad_user_input(
    client: httpx.AsyncClient, service: SessionService
) -> None:
    variables = '{"messages": {"n": 18446744073709551616}}'
    body = '{"query": ' + json.dumps(CREATE) + ', "variables": ' + variables + "}"
    response = await client.post(
        "/graphql", content=body, headers={"content-type": "application/json"}
    )
    errors = response.json().get("errors") or []
    assert [e.get("extensions", {}).get("code") for e in errors] == ["BAD_USER_INPUT"]
    assert await stored(service) == 0


async def test_numbers_a_document_keeps_are_stored_as_written(gql: Run) -> None:
    literal = "0.1, 2.5, 1e300, 5e-324, 1.7976931348623157e308, 9223372036854775807, -0.0"
    query = CREATE_LITERAL.replace("session { id }", "session { messages }") % literal

    data = (await gql(query)).ok()

    assert data["createSession"]["session"]["messages"] == {
        "n": [0.1, 2.5, 1e300, 5e-324, 1.7976931348623157e308, 9223372036854775807, -0.0]
    }


def test_decode_json_reads_integers_exactly_and_refuses_what_is_not_json() -> None:
    assert decode_json(b'{"n": 18446744073709551616, "f": 0.1}') == {
        "n": 18446744073709551616,
        "f": 0.1,
    }
    with pytest.raises(json.JSONDecodeError):
        decode_json(b'{"n": ')
    # An integer past what the decoder reads makes the request unreadable, not a rounded one.
    with pytest.raises(json.JSONDecodeError):
        decode_json(b'{"n": ' + b"1" * 5000 + b"}")
