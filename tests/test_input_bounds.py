"""REST query parameters that no stored session could match, or too many to be distinct, are
refused with 422 INVALID_INPUT naming the parameter, before any statement runs (issue 9, defect
4); a status listed twice counts once. The bounds are the listing's (`app.listing`), and the
OpenAPI document states them."""

from __future__ import annotations

import base64
import logging
import uuid
from typing import Any

import httpx
import orjson
import pytest

from app import listing
from app.rest import openapi
from app.tables import InboxStatus
from app.validation import TEXT_MAX
from tests.conftest import SessionFactory


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
