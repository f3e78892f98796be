"""Request bodies are JSON: a body sent as anything else is refused with 415 before it is read, so
a cross-site form (which needs no CORS preflight) cannot write; a JSON type, or none, is read as
JSON."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

CREATE = {"repo": "acme/app", "target_branch": "main", "messages": {"content": "x"}}
CHANGE = {"inbox_status": "archived", "title": "Changed"}
# Each carries a valid JSON text: only the media type is wrong.
NOT_JSON_TYPES = [
    "text/plain",
    "text/plain; charset=utf-8",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=b0undary",
    "application/xml",
    # Starts like JSON's type, but is not it, nor a "+json" type.
    "application/jsonx",
]
JSON_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "application/json;charset=UTF-8",
    # Media types are case-insensitive (RFC 9110, 8.3.1).
    "Application/JSON",
    "application/merge-patch+json",
    "application/vnd.api+json",
]
METHODS = ["POST", "PUT", "PATCH"]


async def read(client: httpx.AsyncClient, session_id: str) -> dict[str, Any]:
    response = await client.get(f"/sessions/{session_id}")
    assert response.status_code == 200, response.text
    session: dict[str, Any] = response.json()["session"]
    return session


async def listed(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await client.get("/sessions")
    assert response.status_code == 200, response.text
    sessions: list[dict[str, Any]] = response.json()["sessions"]
    return sessions


@pytest.fixture
async def existing(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.post("/sessions", json=CREATE)
    assert response.status_code == 201, response.text
    return await read(client, response.json()["id"])


def target(method: str, existing: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The URL and a valid JSON body for `method`."""
    if method == "POST":
        return "/sessions", CREATE
    return f"/sessions/{existing['id']}", CHANGE


def assert_unsupported_media_type(response: httpx.Response) -> None:
    assert response.status_code == 415, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"err", "msg", "code"}
    assert body["err"] == "Unsupported Media Type"
    assert body["code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert isinstance(body["msg"], str)
    assert body["msg"]


@pytest.mark.parametrize("content_type", NOT_JSON_TYPES)
@pytest.mark.parametrize("method", METHODS)
async def test_a_body_that_is_not_sent_as_json_is_415_and_changes_nothing(
    client: httpx.AsyncClient, existing: dict[str, Any], method: str, content_type: str
) -> None:
    url, body = target(method, existing)
    before = await listed(client)

    response = await client.request(
        method, url, content=orjson.dumps(body), headers={"Content-Type": content_type}
    )

    assert_unsupported_media_type(response)
    assert await listed(client) == before
    assert await read(client, existing["id"]) == existing


@pytest.mark.parametrize("method", METHODS)
async def test_a_real_form_is_415_whether_urlencoded_or_multipart(
    client: httpx.AsyncClient, existing: dict[str, Any], method: str
) -> None:
    url, body = target(method, existing)
    form = {name: str(value) for name, value in body.items()}
    before = await listed(client)

    urlencoded = await client.request(method, url, data=form)
    multipart = await client.request(
        method, url, data=form, files={"messages": ("m.json", b"{}", "application/json")}
    )

    assert urlencoded.request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert multipart.request.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert_unsupported_media_type(urlencoded)
    assert_unsupported_media_type(multipart)
    assert await listed(client) == before
    assert await read(client, existing["id"]) == existing


class Body:
    """A request body, streamed, that records whether the app read any of it."""

    def __init__(self, content: bytes) -> None:
        self.content = content
        self.read = False

    async def chunks(self) -> AsyncIterator[bytes]:
        self.read = True
        yield self.content


@pytest.mark.parametrize("content_type", ["text/plain", None])
@pytest.mark.parametrize("method", METHODS)
async def test_a_body_that_is_not_json_is_refused_before_it_is_read(
    client: httpx.AsyncClient, existing: dict[str, Any], method: str, content_type: str | None
) -> None:
    url, body = target(method, existing)
    stream = Body(orjson.dumps(body))
    headers = {} if content_type is None else {"Content-Type": content_type}

    response = await client.request(method, url, content=stream.chunks(), headers=headers)

    if content_type is None:
        # The same streamed body, read as JSON: what `read` records can be seen.
        assert response.is_success, response.text
        assert stream.read
    else:
        assert_unsupported_media_type(response)
        assert not stream.read


@pytest.mark.parametrize("content_type", [*JSON_TYPES, None])
async def test_post_reads_a_json_type_or_no_type_as_json(
    client: httpx.AsyncClient, content_type: str | None
) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}

    response = await client.post("/sessions", content=orjson.dumps(CREATE), headers=headers)

    assert response.request.headers.get("content-type") == content_type
    assert response.status_code == 201, response.text
    session = await read(client, response.json()["id"])
    assert (session["repo"], session["messages"]) == ("acme/app", {"content": "x"})


@pytest.mark.parametrize("content_type", [*JSON_TYPES, None])
@pytest.mark.parametrize("method", ["PUT", "PATCH"])
async def test_a_change_reads_a_json_type_or_no_type_as_json(
    client: httpx.AsyncClient, existing: dict[str, Any], method: str, content_type: str | None
) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}

    response = await client.request(
        method, f"/sessions/{existing['id']}", content=orjson.dumps(CHANGE), headers=headers
    )

    assert response.request.headers.get("content-type") == content_type
    assert response.status_code == 200, response.text
    session = await read(client, existing["id"])
    assert (session["inbox_status"], session["title"], session["version"]) == (
        "archived",
        "Changed",
        2,
    )


@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_a_request_without_a_body_is_not_refused_for_its_content_type(
    client: httpx.AsyncClient, existing: dict[str, Any], method: str
) -> None:
    response = await client.request(
        method, f"/sessions/{existing['id']}", headers={"Content-Type": "text/plain"}
    )

    assert response.status_code == 200, response.text
