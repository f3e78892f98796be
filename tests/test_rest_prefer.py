"""The envelopes of POST, PUT and PATCH, and `Prefer: return=…` (RFC 7240) to change them.

A create answers the earlier service's `{"success", "message", "id"}` and a PUT its
`{"success", "message"}`; `return=representation` adds the stored session to either. PATCH answers
with the session, and `return=minimal` leaves it out. A preference the server does not know, or
cannot parse, is ignored."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

CREATE = {"repo": "acme/app", "target_branch": "main", "messages": {"content": "Fix the login"}}
CREATED = {"success": True, "message": "Session created successfully"}
UPDATED = {"success": True, "message": "Session updated successfully"}
# How the earlier service's shell client takes the id: `grep -o '"id":"[^"]*"' | cut -d'"' -f4`.
GREP_ID = re.compile(r'"id":"[^"]*"')


def prefer(*values: str) -> list[tuple[bytes, bytes]]:
    """One `Prefer` header per value, each sent as its Latin-1 bytes."""
    return [(b"Prefer", value.encode("latin-1")) for value in values]


async def read(client: httpx.AsyncClient, session_id: str) -> dict[str, Any]:
    response = await client.get(f"/sessions/{session_id}")
    assert response.status_code == 200, response.text
    session: dict[str, Any] = response.json()["session"]
    return session


@pytest.fixture
async def existing(client: httpx.AsyncClient) -> dict[str, Any]:
    """A session at version 1."""
    response = await client.post("/sessions", json=CREATE)
    assert response.status_code == 201, response.text
    return await read(client, response.json()["id"])


async def change(
    client: httpx.AsyncClient,
    method: str,
    session: dict[str, Any],
    headers: list[tuple[bytes, bytes]] | None = None,
) -> httpx.Response:
    """A PUT or PATCH of `session` to archived."""
    response = await client.request(
        method, f"/sessions/{session['id']}", json={"inbox_status": "archived"}, headers=headers
    )
    assert response.status_code == 200, response.text
    assert response.headers["etag"] == f'"{session["version"] + 1}"'
    return response


# The default envelopes ------------------------------------------------------------------------


async def test_a_create_answers_the_earlier_services_body_exactly(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/sessions", json=CREATE)

    assert response.status_code == 201, response.text
    body = response.json()
    assert body == {**CREATED, "id": body["id"]}
    assert response.headers["location"] == f"/sessions/{body['id']}"
    assert response.headers["etag"] == '"1"'
    assert "preference-applied" not in response.headers
    assert GREP_ID.findall(response.text) == [f'"id":"{body["id"]}"']
    session = await read(client, body["id"])
    assert (session["repo"], session["version"]) == ("acme/app", 1)


async def test_a_put_answers_the_earlier_services_body_exactly(
    client: httpx.AsyncClient, existing: dict[str, Any]
) -> None:
    response = await change(client, "PUT", existing)

    assert response.json() == UPDATED
    assert "preference-applied" not in response.headers
    assert (await read(client, existing["id"]))["inbox_status"] == "archived"


async def test_a_patch_answers_with_the_session_as_stored(
    client: httpx.AsyncClient, existing: dict[str, Any]
) -> None:
    response = await change(client, "PATCH", existing)

    assert response.json() == {**UPDATED, "session": await read(client, existing["id"])}
    assert response.json()["session"]["inbox_status"] == "archived"
    assert "preference-applied" not in response.headers


# Prefer: return=… -----------------------------------------------------------------------------


async def test_a_create_that_prefers_the_representation_gets_the_stored_session(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/sessions", json=CREATE, headers=prefer("return=representation"))

    assert response.status_code == 201, response.text
    body = response.json()
    assert body == {**CREATED, "id": body["id"], "session": await read(client, body["id"])}
    assert body["session"]["messages"] == CREATE["messages"]
    assert response.headers["preference-applied"] == "return=representation"
    assert response.headers["location"] == f"/sessions/{body['id']}"
    assert response.headers["etag"] == '"1"'


async def test_a_put_that_prefers_the_representation_gets_the_stored_session(
    client: httpx.AsyncClient, existing: dict[str, Any]
) -> None:
    response = await change(client, "PUT", existing, prefer("return=representation"))

    assert response.json() == {**UPDATED, "session": await read(client, existing["id"])}
    assert response.json()["session"]["version"] == 2
    assert response.headers["preference-applied"] == "return=representation"


async def test_a_patch_that_prefers_minimal_gets_no_session(
    client: httpx.AsyncClient, existing: dict[str, Any]
) -> None:
    response = await change(client, "PATCH", existing, prefer("return=minimal"))

    assert response.json() == UPDATED
    assert response.headers["preference-applied"] == "return=minimal"
    assert (await read(client, existing["id"]))["inbox_status"] == "archived"


async def test_a_preference_for_what_is_answered_anyway_is_no_other_answer(
    client: httpx.AsyncClient, existing: dict[str, Any]
) -> None:
    created = await client.post("/sessions", json=CREATE, headers=prefer("return=minimal"))
    put = await change(client, "PUT", existing, prefer("return=minimal"))
    patched = await change(
        client, "PATCH", await read(client, existing["id"]), prefer("return=representation")
    )

    assert created.json() == {**CREATED, "id": created.json()["id"]}
    assert put.json() == UPDATED
    assert patched.json() == {**UPDATED, "session": await read(client, existing["id"])}
    # Whether a preference the answer meets anyway is said to be applied is the server's choice;
    # the other one is never claimed.
    assert created.headers.get("preference-applied", "return=minimal") == "return=minimal"
    assert put.headers.get("preference-applied", "return=minimal") == "return=minimal"
    applied = patched.headers.get("preference-applied", "return=representation")
    assert applied == "return=representation"


# How a preference may be written (RFC 7240, section 2) ----------------------------------------

# Each list is the values of one request's `Prefer` headers, and each asks for the representation.
REPRESENTATION = [
    pytest.param(["return=representation"], id="plain"),
    # RFC 7240 writes "return" as an ABNF literal, and those are case-insensitive.
    pytest.param(["Return=representation"], id="name-in-capitals"),
    pytest.param(['return="representation"'], id="quoted-value"),
    pytest.param(["return=representation; foo=bar"], id="with-a-parameter"),
    pytest.param(["return=representation;"], id="with-an-empty-parameter"),
    pytest.param(["respond-async, return=representation"], id="after-another"),
    pytest.param(["return=representation, wait=10"], id="before-another"),
    pytest.param(["respond-async,return=representation"], id="no-space-after-comma"),
    pytest.param(["handling=lenient", "return=representation"], id="in-a-second-header"),
    # "If any preference is specified more than once, only the first instance is to be
    # considered."
    pytest.param(["return=representation, return=minimal"], id="first-one-wins"),
    pytest.param(["return=representation", "return=minimal"], id="first-header-wins"),
]


def swapped(values: list[str]) -> list[str]:
    """`values` asking for the minimal answer where they asked for the representation, and the
    other way round."""
    swap = {"representation": "minimal", "minimal": "representation"}
    return [re.sub("representation|minimal", lambda m: swap[m[0]], value) for value in values]


@pytest.mark.parametrize("values", REPRESENTATION)
async def test_a_create_reads_every_spelling_of_return_representation(
    client: httpx.AsyncClient, values: list[str]
) -> None:
    response = await client.post("/sessions", json=CREATE, headers=prefer(*values))

    assert response.status_code == 201, response.text
    assert set(response.json()) == {*CREATED, "id", "session"}
    assert response.headers["preference-applied"] == "return=representation"


@pytest.mark.parametrize("values", REPRESENTATION)
async def test_a_put_reads_every_spelling_of_return_representation(
    client: httpx.AsyncClient, existing: dict[str, Any], values: list[str]
) -> None:
    response = await change(client, "PUT", existing, prefer(*values))

    assert response.json() == {**UPDATED, "session": await read(client, existing["id"])}
    assert response.headers["preference-applied"] == "return=representation"


@pytest.mark.parametrize("values", REPRESENTATION)
async def test_a_patch_reads_every_spelling_of_return_minimal(
    client: httpx.AsyncClient, existing: dict[str, Any], values: list[str]
) -> None:
    response = await change(client, "PATCH", existing, prefer(*swapped(values)))

    assert response.json() == UPDATED
    assert response.headers["preference-applied"] == "return=minimal"


# Each changes nothing: the server does not know it, or cannot read it.
IGNORED = [
    "",
    "respond-async",
    "wait=10",
    "handling=strict",
    "unknown=representation",
    "return",
    "return=",
    "=minimal",
    ";return=minimal",
    "return=bogus",
    "return=représentation",
    "return=minimal-ish",
    ",,,",
]


@pytest.mark.parametrize("value", IGNORED)
async def test_an_unknown_or_malformed_preference_is_ignored(
    client: httpx.AsyncClient, existing: dict[str, Any], value: str
) -> None:
    created = await client.post("/sessions", json=CREATE, headers=prefer(value))
    put = await change(client, "PUT", existing, prefer(value))
    patched = await change(client, "PATCH", await read(client, existing["id"]), prefer(value))

    assert created.status_code == 201, created.text
    assert created.json() == {**CREATED, "id": created.json()["id"]}
    assert put.json() == UPDATED
    assert patched.json() == {**UPDATED, "session": await read(client, existing["id"])}
    for response in (created, put, patched):
        assert "preference-applied" not in response.headers


# Idempotent replay ----------------------------------------------------------------------------


@pytest.mark.parametrize("first", [[], ["return=representation"]], ids=["minimal", "full"])
@pytest.mark.parametrize("again", [[], ["return=representation"]], ids=["minimal", "full"])
async def test_a_replayed_create_answers_in_the_shape_the_retry_asks_for(
    client: httpx.AsyncClient, first: list[str], again: list[str]
) -> None:
    key = [(b"Idempotency-Key", b"retry-1")]
    original = await client.post("/sessions", json=CREATE, headers=key + prefer(*first))

    replay = await client.post("/sessions", json=CREATE, headers=key + prefer(*again))

    assert original.status_code == replay.status_code == 201, replay.text
    session_id = original.json()["id"]
    assert ("session" in original.json()) is bool(first)
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.headers["location"] == original.headers["location"] == f"/sessions/{session_id}"
    assert replay.headers["etag"] == '"1"'
    if again:
        assert replay.json() == {
            **CREATED,
            "id": session_id,
            "session": await read(client, session_id),
        }
        assert replay.headers["preference-applied"] == "return=representation"
    else:
        assert replay.json() == {**CREATED, "id": session_id}
        assert "preference-applied" not in replay.headers
    assert len((await client.get("/sessions")).json()["sessions"]) == 1
