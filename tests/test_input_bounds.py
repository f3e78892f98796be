"""REST query parameters that no stored session could match, or too many to be distinct, are
refused with 422 INVALID_INPUT naming the parameter, before any statement runs (issue 9, defect
4); a status listed twice counts once. The bounds are the listing's (`app.listing`), and the
OpenAPI document states them. A number in a JSON document that would be stored as another number
is refused, naming the field (defect 5); the others read back as written, on both engines."""

from __future__ import annotations

import base64
import json
import logging
import uuid
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest

from app import listing
from app.rest import openapi
from app.tables import InboxStatus
from app.validation import TEXT_MAX
from tests.conftest import SessionFactory

JSON_TYPE = {"content-type": "application/json"}


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]


def assert_refused(response: httpx.Response, parameter: str) -> None:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "INVALID_INPUT"
    assert body["msg"].startswith(parameter), body


def list_parameter(name: str) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        p
        for p in openapi.document()["paths"]["/sessions"]["get"]["parameters"]
        if p["name"] == name
    ]
    return parameters[0]


@pytest.mark.parametrize("paged", [False, True])
async def test_more_statuses_than_there_are_is_refused(
    client: httpx.AsyncClient,
    make_session: SessionFactory,
    caplog: pytest.LogCaptureFixture,
    paged: bool,
) -> None:
    await make_session()
    caplog.set_level(logging.INFO)
    params: list[tuple[str, str | int | float | bool | None]]
    params = [("inbox_status", "active")] * (len(InboxStatus) + 1)
    if paged:
        params.append(("limit", "10"))

    response = await client.get("/sessions", params=params)

    assert_refused(response, "inbox_status")
    assert errors_logged(caplog) == []


async def test_two_thousand_statuses_are_refused(client: httpx.AsyncClient) -> None:
    response = await client.get("/sessions", params=[("inbox_status", "Active")] * 2000)
    assert_refused(response, "inbox_status")


@pytest.mark.parametrize("paged", [False, True])
async def test_a_status_listed_twice_counts_once(
    client: httpx.AsyncClient, make_session: SessionFactory, paged: bool
) -> None:
    row = await make_session()
    params: list[tuple[str, str | int | float | bool | None]]
    params = [("inbox_status", "active"), ("inbox_status", "Active"), ("inbox_status", "pending")]
    if paged:
        params.append(("limit", "10"))

    response = await client.get("/sessions", params=params)

    assert response.status_code == 200, response.text
    assert [session["id"] for session in response.json()["sessions"]] == [str(row["id"])]


async def test_a_repo_longer_than_any_repo_is_refused(
    client: httpx.AsyncClient, make_session: SessionFactory
) -> None:
    row = await make_session(repo="r" * TEXT_MAX)
    found = await client.get("/sessions", params={"repo": "r" * TEXT_MAX})
    assert [session["id"] for session in found.json()["sessions"]] == [str(row["id"])]

    assert_refused(await client.get("/sessions", params={"repo": "r" * (TEXT_MAX + 1)}), "repo")


async def test_a_cursor_longer_than_any_the_server_makes_is_refused(
    client: httpx.AsyncClient, make_session: SessionFactory, caplog: pytest.LogCaptureFixture
) -> None:
    await make_session()
    caplog.set_level(logging.INFO)
    # Well formed but for its length: an id padded with hyphens, which Python's UUID() drops.
    ident = "-" * 20_000 + uuid.uuid4().hex
    raw = orjson.dumps(["created_at", "2026-01-01T00:00:00+00:00", ident])
    cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    assert len(cursor) > listing.CURSOR_MAX

    response = await client.get("/sessions", params={"cursor": cursor})

    assert_refused(response, "cursor")
    assert errors_logged(caplog) == []


async def test_a_page_cursor_the_server_made_is_accepted(
    client: httpx.AsyncClient, make_session: SessionFactory
) -> None:
    for _ in range(2):
        await make_session()
    first = (await client.get("/sessions", params={"limit": "1"})).json()
    response = await client.get("/sessions", params={"cursor": first["next_cursor"]})
    assert response.status_code == 200, response.text
    assert len(response.json()["sessions"]) == 1


def test_the_document_states_the_bounds() -> None:
    assert list_parameter("inbox_status")["schema"]["maxItems"] == len(InboxStatus)
    assert list_parameter("repo")["schema"]["maxLength"] == TEXT_MAX
    assert list_parameter("cursor")["schema"]["maxLength"] == listing.CURSOR_MAX


# Numbers in JSON documents (defect 5) -----------------------------------------------------------

# What a stored document keeps exactly, at the edges: 64-bit integers, and floats written as a
# float holds them (the shortest form, or any other spelling of the same number).
EXACT = (
    b"[0.1, 2.5, 1e300, 1E2, 5e-324, 1.7976931348623157e308, -0.0, 1e16,"
    b" 9223372036854775807, -9223372036854775808, 0, 123456789012345678]"
)
# Each would be stored as another number.
ALTERED = [
    "18446744073709551616",
    "18446744073709551616.0",
    "3.14159265358979323846",
    "1e400",
    "-1e400",
    "1e-400",
    "9223372036854775808",
]


def as_decimals(text: str) -> Any:
    """JSON with every number read as the decimal it writes, to compare numbers exactly."""
    return json.loads(text, parse_float=Decimal, parse_int=Decimal)


def create_body(messages: bytes) -> bytes:
    return b'{"repo": "acme/app", "target_branch": "main", "messages": ' + messages + b"}"


@pytest.mark.parametrize("number", ALTERED)
async def test_a_number_that_would_be_stored_altered_is_refused(
    client: httpx.AsyncClient, number: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    body = create_body(b'{"n": [' + number.encode() + b"]}")

    response = await client.post("/sessions", content=body, headers=JSON_TYPE)

    assert_refused(response, "messages")
    assert (await client.get("/sessions")).json() == {"sessions": []}
    assert errors_logged(caplog) == []


@pytest.mark.parametrize("number", ALTERED)
@pytest.mark.parametrize("method", ["PUT", "PATCH"])
async def test_a_change_with_a_number_that_would_be_altered_changes_nothing(
    client: httpx.AsyncClient, make_session: SessionFactory, number: str, method: str
) -> None:
    row = await make_session()
    url = f"/sessions/{row['id']}"
    body = b'{"inbox_status": "active", "sbx_config": {"cpu": ' + number.encode() + b"}}"

    response = await client.request(method, url, content=body, headers=JSON_TYPE)

    assert_refused(response, "sbx_config")
    after = (await client.get(url)).json()["session"]
    assert (after["version"], after["sbx_config"]) == (1, None)


async def test_numbers_a_document_keeps_read_back_as_written(
    client: httpx.AsyncClient, engine_kind: str
) -> None:
    created = await client.post("/sessions", content=create_body(EXACT), headers=JSON_TYPE)
    assert created.status_code == 201, created.text
    session_id = created.json()["id"]
    patched = await client.patch(
        f"/sessions/{session_id}", content=b'{"sbx_config": ' + EXACT + b"}", headers=JSON_TYPE
    )
    assert patched.status_code == 200, patched.text

    rest = (await client.get(f"/sessions/{session_id}")).text
    query = "query ($id: UUID!) { session(id: $id) { messages sbxConfig } }"
    graphql = await client.post("/graphql", json={"query": query, "variables": {"id": session_id}})

    sent = as_decimals(EXACT.decode())
    assert as_decimals(rest)["session"]["messages"] == sent, engine_kind
    assert as_decimals(rest)["session"]["sbx_config"] == sent
    read = as_decimals(graphql.text)["data"]["session"]
    assert read == {"messages": sent, "sbxConfig": sent}
