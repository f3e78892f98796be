"""Arguments that no stored session could match, or too many to be distinct, are the client's
mistake: BAD_USER_INPUT naming the argument, before any statement runs (issue 9, defect 4). A
status listed twice counts once."""

from __future__ import annotations

import base64
import logging
import uuid
from typing import Any

import orjson
import pytest
import strawberry

from app import listing
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
