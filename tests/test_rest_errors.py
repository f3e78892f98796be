"""Every error row of the contract's REST table: the status, the `{"err", "msg", "code"}` body,
and that a refused request changed nothing. Bad input never yields a 500. (What the table does not
refuse is here too: `messages` and `sbx_config` take any JSON value.)"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, NamedTuple, cast
from urllib.parse import quote

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.requests import Request

from app.config import Settings
from app.db import Database, make_engine
from app.errors import DomainError, ErrorCode, NotAList
from app.main import create_app
from app.naming import LocalNamer
from app.rest.errors import STATUS_OF, Code, exception_handlers
from app.service import SessionService
from app.state import AppState
from tests.conftest import idle_events, with_state

UNKNOWN_ID = "6f1c2b8e-3d4a-4e5f-8a9b-0c1d2e3f4a5b"
MALFORMED_IDS = [
    "nope",
    "1234",
    "6f1c2b8e-3d4a-4e5f-8a9b-0c1d2e3f4a5",
    "6f1c2b8e-3d4a-4e5f-8a9b-0c1d2e3f4a5b0",
    "{6f1c2b8e-3d4a-4e5f-8a9b-0c1d2e3f4a5b}",
    "urn:uuid:6f1c2b8e-3d4a-4e5f-8a9b-0c1d2e3f4a5b",
    "6f1c2b8e-3d4a-4e5f-8a9b-0c1d2e3f4a5g",
    "+f1c2b8e-3d4a-4e5f-8a9b-0c1d2e3f4a5b",
    "6f1c2b8e-3d4a-4e5f-8a9b-0c1d2e3f4a5\u0661",
    "6f1c2b8e-3d4a-4e5f-8a9b-0c1d2e3f4a5b\x00",
]


async def snapshot(db: Database) -> list[dict[str, Any]]:
    """Every stored row, every column: what "nothing changed" compares."""
    return [dict(row) for row in await db.fetch("SELECT * FROM session ORDER BY id")]


def assert_error(response: httpx.Response, status: int, err: str, code: str, *words: str) -> None:
    """A JSON error body with this status, title and code, whose message says each of `words`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"err", "msg", "code"}
    assert (body["err"], body["code"]) == (err, code)
    assert isinstance(body["msg"], str)
    assert body["msg"]
    for word in words:
        assert word in body["msg"], body["msg"]


async def read(client: httpx.AsyncClient, session_id: str) -> dict[str, Any]:
    response = await client.get(f"/sessions/{session_id}")
    assert response.status_code == 200, response.text
    session: dict[str, Any] = response.json()["session"]
    return session


async def create(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    """A new session, as read back (a create answers with the id alone)."""
    body = {"repo": "acme/app", "target_branch": "main", **fields}
    response = await client.post("/sessions", json=body)
    assert response.status_code == 201, response.text
    return await read(client, response.json()["id"])


@pytest.fixture
async def existing(client: httpx.AsyncClient) -> dict[str, Any]:
    """A session with a parent, messages and an sbx_config, at version 2."""
    parent = await create(client)
    session = await create(client, parent=parent["id"], messages={"content": "a"})
    response = await client.patch(f"/sessions/{session['id']}", json={"sbx_config": {"x": 1}})
    updated: dict[str, Any] = response.json()["session"]
    return updated


# The table, one request per row ---------------------------------------------------------------


class Case(NamedTuple):
    """One row of the contract's error table as one request. In `path`, `{self}` and `{parent}`
    stand for the scene's sessions; in `body`, "<self>" and "<parent-branch>" do."""

    method: str
    path: str
    status: int
    err: str
    code: str
    body: Any = None
    content: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()


UNPROCESSABLE = "Unprocessable Entity"
CASES = {
    "malformed-id": Case("GET", "/sessions/nope", 400, "Bad Request", "INVALID_INPUT"),
    "malformed-parent": Case(
        "POST",
        "/sessions",
        400,
        "Bad Request",
        "INVALID_INPUT",
        body={"repo": "acme/app", "target_branch": "main", "parent": "nope"},
    ),
    "body-id": Case(
        "PATCH", "/sessions/{self}", 400, "Bad Request", "INVALID_INPUT", body={"id": UNKNOWN_ID}
    ),
    "no-session": Case("GET", f"/sessions/{UNKNOWN_ID}", 404, "Not Found", "NOT_FOUND"),
    "no-path": Case("GET", "/nowhere", 404, "Not Found", "NOT_FOUND"),
    "no-method": Case("DELETE", "/sessions", 405, "Method Not Allowed", "METHOD_NOT_ALLOWED"),
    "not-json": Case("POST", "/sessions", 422, "Parse Error", "INVALID_INPUT", content=b"{"),
    "missing-field": Case(
        "POST", "/sessions", 422, UNPROCESSABLE, "INVALID_INPUT", body={"repo": "acme/app"}
    ),
    "unknown-status": Case(
        "PATCH", "/sessions/{self}", 422, UNPROCESSABLE, "INVALID_INPUT", body={"inbox_status": 1}
    ),
    "no-parent": Case(
        "PATCH", "/sessions/{self}", 422, UNPROCESSABLE, "PARENT_NOT_FOUND", {"parent": UNKNOWN_ID}
    ),
    "cycle": Case(
        "PATCH", "/sessions/{parent}", 422, UNPROCESSABLE, "PARENT_CYCLE", {"parent": "<self>"}
    ),
    "if-match": Case(
        "PATCH",
        "/sessions/{self}",
        412,
        "Precondition Failed",
        "VERSION_CONFLICT",
        body={"title": "Stale"},
        headers=(("If-Match", '"1"'),),
    ),
    "branch": Case(
        "PATCH",
        "/sessions/{self}",
        409,
        "Conflict",
        "BRANCH_TAKEN",
        body={"branch": "<parent-branch>"},
    ),
    "idempotency-key": Case(
        "POST",
        "/sessions",
        422,
        UNPROCESSABLE,
        "IDEMPOTENCY_MISMATCH",
        body={"repo": "acme/app", "target_branch": "dev"},
        headers=(("Idempotency-Key", "used"),),
    ),
    "media-type": Case(
        "POST",
        "/sessions",
        415,
        "Unsupported Media Type",
        "UNSUPPORTED_MEDIA_TYPE",
        content=b'{"repo": "acme/app", "target_branch": "main"}',
        headers=(("Content-Type", "text/plain"),),
    ),
}


@pytest.fixture
async def scene(client: httpx.AsyncClient, existing: dict[str, Any]) -> dict[str, str]:
    """What the cases refer to: `existing` (at version 2), its parent (of the same repo), and
    the Idempotency-Key "used", taken by another create."""
    parent = await read(client, existing["parent"])
    used = await client.post(
        "/sessions",
        json={"repo": "acme/app", "target_branch": "main"},
        headers={"Idempotency-Key": "used"},
    )
    assert used.status_code == 201, used.text
    return {"self": existing["id"], "parent": parent["id"], "parent-branch": parent["branch"]}


# Domain errors that no REST request can cause: appending to messages is GraphQL's alone.
NOT_FROM_REST = {ErrorCode.NOT_A_LIST}


def test_the_table_has_a_case_for_every_domain_error_a_request_can_cause() -> None:
    causable = {str(code) for code in ErrorCode if code not in NOT_FROM_REST}
    assert causable <= {case.code for case in CASES.values()}
    assert not {str(code) for code in NOT_FROM_REST} & {case.code for case in CASES.values()}


def test_every_domain_error_has_a_status_and_a_rest_code() -> None:
    assert set(STATUS_OF) == set(ErrorCode)
    assert {str(code) for code in ErrorCode} <= {str(code) for code in Code}


async def test_a_domain_error_no_route_causes_is_answered_by_the_map_all_the_same() -> None:
    handler = exception_handlers[DomainError]
    response = await handler(
        Request({"type": "http", "method": "POST", "headers": []}),
        NotAList("messages holds an object, not a list to append to", "messages"),
    )
    assert response.status_code == 422
    assert orjson.loads(bytes(response.body)) == {
        "err": "Unprocessable Entity",
        "msg": "messages holds an object, not a list to append to",
        "code": "NOT_A_LIST",
    }


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
async def test_each_row_of_the_error_table_has_its_status_err_and_code(
    client: httpx.AsyncClient, db: Database, scene: dict[str, str], case: Case
) -> None:
    body = _with_ids(case.body, {f"<{name}>": value for name, value in scene.items()})
    before = await snapshot(db)

    response = await client.request(
        case.method,
        case.path.format(**scene),
        content=case.content,
        json=body,
        headers=list(case.headers),
    )

    assert_error(response, case.status, case.err, case.code)
    if case.status == 405:
        assert response.headers["allow"]
    assert await snapshot(db) == before


# Malformed UUIDs and unknown sessions ---------------------------------------------------------


@pytest.mark.parametrize("bad_id", MALFORMED_IDS)
@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
async def test_a_malformed_id_in_the_path_is_400(
    client: httpx.AsyncClient, db: Database, existing: dict[str, Any], method: str, bad_id: str
) -> None:
    before = await snapshot(db)

    response = await client.request(
        method, f"/sessions/{quote(bad_id, safe='')}", json={"inbox_status": "archived"}
    )

    assert_error(response, 400, "Bad Request", "INVALID_INPUT")
    assert response.json()["msg"] == "Invalid UUID format"
    assert await snapshot(db) == before


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
async def test_an_unknown_session_is_404(
    client: httpx.AsyncClient, db: Database, existing: dict[str, Any], method: str
) -> None:
    before = await snapshot(db)

    response = await client.request(
        method, f"/sessions/{UNKNOWN_ID}", json={"inbox_status": "archived"}
    )

    assert_error(response, 404, "Not Found", "NOT_FOUND")
    assert response.json()["msg"] == "Session not found"
    assert await snapshot(db) == before


# Bad bodies -----------------------------------------------------------------------------------

NOT_JSON = [
    b"",
    b"{",
    b"not json",
    b'{"repo": "a",}',
    b"\xff\xfe",
    b'"\\ud800"',
    b"NaN",
]
NOT_AN_OBJECT = [b"[]", b'"text"', b"1", b"null", b"true"]


@pytest.mark.parametrize("raw", NOT_JSON)
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
async def test_a_body_that_is_not_json_is_a_parse_error(
    client: httpx.AsyncClient, db: Database, existing: dict[str, Any], method: str, raw: bytes
) -> None:
    before = await snapshot(db)
    url = "/sessions" if method == "POST" else f"/sessions/{existing['id']}"

    response = await client.request(
        method, url, content=raw, headers={"Content-Type": "application/json"}
    )

    assert_error(response, 422, "Parse Error", "INVALID_INPUT", "JSON")
    assert await snapshot(db) == before


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
async def test_a_number_json_cannot_carry_is_refused_not_rounded(
    client: httpx.AsyncClient, db: Database, existing: dict[str, Any], method: str
) -> None:
    before = await snapshot(db)
    url = "/sessions" if method == "POST" else f"/sessions/{existing['id']}"
    raw = b'{"repo": "r", "target_branch": "main", "inbox_status": "active", "messages": [1e400]}'

    response = await client.request(
        method, url, content=raw, headers={"Content-Type": "application/json"}
    )

    assert_error(response, 422, "Unprocessable Entity", "INVALID_INPUT", "messages")
    assert await snapshot(db) == before


@pytest.mark.parametrize("raw", NOT_AN_OBJECT)
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
async def test_a_body_that_is_not_an_object_is_422(
    client: httpx.AsyncClient, db: Database, existing: dict[str, Any], method: str, raw: bytes
) -> None:
    before = await snapshot(db)
    url = "/sessions" if method == "POST" else f"/sessions/{existing['id']}"

    response = await client.request(method, url, content=raw)

    assert_error(response, 422, "Unprocessable Entity", "INVALID_INPUT", "body")
    assert await snapshot(db) == before


NUL = "a\x00b"
DEEP: Any = "leaf"
for _ in range(70):
    DEEP = [DEEP]

BAD_CREATE = [
    pytest.param({"target_branch": "main"}, "repo", id="repo-missing"),
    pytest.param({"repo": "acme/app"}, "target_branch", id="target_branch-missing"),
    pytest.param({"repo": None, "target_branch": "main"}, "repo", id="repo-null"),
    pytest.param({"repo": 7, "target_branch": "main"}, "repo", id="repo-number"),
    pytest.param({"repo": ["a"], "target_branch": "main"}, "repo", id="repo-list"),
    pytest.param({"repo": "", "target_branch": "main"}, "repo", id="repo-empty"),
    pytest.param({"repo": " \t\n", "target_branch": "main"}, "repo", id="repo-blank"),
    pytest.param({"repo": NUL, "target_branch": "main"}, "repo", id="repo-nul"),
    pytest.param({"repo": "acme/app", "target_branch": ""}, "target_branch", id="branch-empty"),
    pytest.param({"repo": "acme/app", "target_branch": NUL}, "target_branch", id="branch-nul"),
    # Longer than a PostgreSQL index entry can hold: refused, not a 500.
    pytest.param({"repo": "r" * 12_000, "target_branch": "main"}, "repo", id="repo-long"),
    pytest.param({"repo": "r", "target_branch": "b" * 501}, "target_branch", id="branch-long"),
    pytest.param({"repo": "r", "target_branch": "m", "messages": NUL}, "messages", id="m-nul"),
    pytest.param(
        {"repo": "r", "target_branch": "m", "messages": {"content": NUL}}, "messages", id="m-in-nul"
    ),
    pytest.param({"repo": "r", "target_branch": "m", "messages": {NUL: 1}}, "messages", id="m-key"),
    pytest.param({"repo": "r", "target_branch": "m", "messages": DEEP}, "messages", id="m-deep"),
    pytest.param({"repo": "r", "target_branch": "m", "parent": 5}, "parent", id="parent-number"),
]


@pytest.mark.parametrize(("body", "field"), BAD_CREATE)
async def test_post_refuses_a_missing_mistyped_or_invalid_field(
    client: httpx.AsyncClient, db: Database, existing: dict[str, Any], body: Any, field: str
) -> None:
    before = await snapshot(db)

    response = await client.post("/sessions", json=body)

    assert_error(response, 422, "Unprocessable Entity", "INVALID_INPUT", field)
    assert await snapshot(db) == before


@pytest.mark.parametrize("bad_id", MALFORMED_IDS)
async def test_post_with_a_malformed_parent_is_400(
    client: httpx.AsyncClient, db: Database, bad_id: str
) -> None:
    response = await client.post(
        "/sessions", json={"repo": "acme/app", "target_branch": "main", "parent": bad_id}
    )

    assert_error(response, 400, "Bad Request", "INVALID_INPUT")
    assert response.json()["msg"] == "Invalid parent UUID format"
    assert await snapshot(db) == []


async def test_post_with_a_used_idempotency_key_and_another_body_is_422(
    client: httpx.AsyncClient, db: Database
) -> None:
    headers = {"Idempotency-Key": "k-1"}
    first = await client.post(
        "/sessions", json={"repo": "acme/app", "target_branch": "main"}, headers=headers
    )
    before = await snapshot(db)

    response = await client.post(
        "/sessions", json={"repo": "acme/app", "target_branch": "dev"}, headers=headers
    )

    assert first.status_code == 201
    assert_error(response, 422, "Unprocessable Entity", "IDEMPOTENCY_MISMATCH", "idempotency")
    assert await snapshot(db) == before


@pytest.mark.parametrize("key", ["", "   ", "k" * 6000])
async def test_post_with_a_blank_or_overlong_idempotency_key_is_422(
    client: httpx.AsyncClient, db: Database, key: str
) -> None:
    response = await client.post(
        "/sessions",
        json={"repo": "acme/app", "target_branch": "main"},
        headers={"Idempotency-Key": key},
    )

    assert_error(response, 422, "Unprocessable Entity", "INVALID_INPUT", "idempotency_key")
    assert await snapshot(db) == []


BAD_CHANGE = [
    pytest.param({"inbox_status": "done"}, "inbox_status", id="status-unknown"),
    pytest.param({"inbox_status": 1}, "inbox_status", id="status-number"),
    pytest.param({"inbox_status": ""}, "inbox_status", id="status-empty"),
    pytest.param({"inbox_status": "active\x00"}, "inbox_status", id="status-nul"),
    pytest.param({"title": ""}, "title", id="title-empty"),
    pytest.param({"title": 3}, "title", id="title-number"),
    pytest.param({"title": "two\nlines"}, "title", id="title-newline"),
    pytest.param({"title": "x" * 81}, "title", id="title-long"),
    pytest.param({"title": NUL}, "title", id="title-nul"),
    pytest.param({"branch": "has space"}, "branch", id="branch-space"),
    pytest.param({"branch": "-dash"}, "branch", id="branch-dash"),
    pytest.param({"branch": "a..b"}, "branch", id="branch-dots"),
    pytest.param({"branch": NUL}, "branch", id="branch-nul"),
    pytest.param({"repo": ""}, "repo", id="repo-empty"),
    pytest.param({"repo": NUL}, "repo", id="repo-nul"),
    pytest.param({"repo": "r" * 12_000}, "repo", id="repo-long"),
    pytest.param({"target_branch": False}, "target_branch", id="target-bool"),
    pytest.param({"messages": NUL}, "messages", id="messages-nul"),
    pytest.param({"messages": [NUL]}, "messages", id="messages-in-nul"),
    pytest.param({"sbx_config": NUL}, "sbx_config", id="sbx-nul"),
    pytest.param({"sbx_config": {"k": NUL}}, "sbx_config", id="sbx-in-nul"),
    pytest.param({"sbx_config": DEEP}, "sbx_config", id="sbx-deep"),
    pytest.param({"parent": 5}, "parent", id="parent-number"),
]


@pytest.mark.parametrize(("change", "field"), BAD_CHANGE)
@pytest.mark.parametrize("method", ["PUT", "PATCH"])
async def test_a_change_with_an_invalid_field_is_422_and_changes_nothing(
    client: httpx.AsyncClient,
    db: Database,
    existing: dict[str, Any],
    method: str,
    change: dict[str, Any],
    field: str,
) -> None:
    before = await snapshot(db)
    body = {"inbox_status": "archived", **change}

    response = await client.request(method, f"/sessions/{existing['id']}", json=body)

    assert_error(response, 422, "Unprocessable Entity", "INVALID_INPUT", field)
    assert await snapshot(db) == before


# Not an error: any JSON value in messages and sbx_config ---------------------------------------
#
# The earlier service stored whatever JSON it was given, e.g. `"messages": "fix the login"`.

ANY_JSON = [
    pytest.param("fix the login", id="text"),
    pytest.param("", id="empty-text"),
    pytest.param("12", id="numeric-text"),
    pytest.param(42, id="integer"),
    pytest.param(0, id="zero"),
    pytest.param(-1.5, id="float"),
    pytest.param(True, id="true"),
    pytest.param(False, id="false"),
    pytest.param(None, id="null"),
]


def typed(value: Any) -> tuple[type, Any]:
    """`value` with its type, so that 1 and True, or 12 and "12", are not taken for each other."""
    return type(value), value


@pytest.mark.parametrize("value", ANY_JSON)
async def test_post_stores_any_json_value_as_messages(
    client: httpx.AsyncClient, value: Any
) -> None:
    response = await client.post(
        "/sessions", json={"repo": "acme/app", "target_branch": "main", "messages": value}
    )

    assert response.status_code == 201, response.text
    session = await read(client, response.json()["id"])
    assert typed(session["messages"]) == typed(value)
    listed = (await client.get("/sessions")).json()["sessions"]
    assert [typed(s["messages"]) for s in listed] == [typed(value)]


@pytest.mark.parametrize("value", ANY_JSON)
@pytest.mark.parametrize("field", ["messages", "sbx_config"])
@pytest.mark.parametrize("method", ["PUT", "PATCH"])
async def test_a_change_stores_any_json_value_in_messages_and_sbx_config(
    client: httpx.AsyncClient, existing: dict[str, Any], method: str, field: str, value: Any
) -> None:
    body = {field: value} if method == "PATCH" else {"inbox_status": "active", field: value}

    response = await client.request(method, f"/sessions/{existing['id']}", json=body)

    assert response.status_code == 200, response.text
    session = await read(client, existing["id"])
    assert typed(session[field]) == typed(value)
    assert session["version"] == existing["version"] + 1


@pytest.mark.parametrize("field", ["messages", "sbx_config"])
async def test_a_merge_patch_object_over_a_stored_scalar_starts_from_an_empty_object(
    client: httpx.AsyncClient, existing: dict[str, Any], field: str
) -> None:
    url = f"/sessions/{existing['id']}"
    assert (await client.patch(url, json={field: "fix the login"})).status_code == 200

    response = await client.patch(url, json={field: {"a": {"b": None, "c": 1}}})

    assert response.status_code == 200, response.text
    assert (await read(client, existing["id"]))[field] == {"a": {"c": 1}}


async def test_put_without_inbox_status_is_422(
    client: httpx.AsyncClient, db: Database, existing: dict[str, Any]
) -> None:
    before = await snapshot(db)

    response = await client.put(f"/sessions/{existing['id']}", json={"messages": None})

    assert_error(response, 422, "Unprocessable Entity", "INVALID_INPUT", "inbox_status")
    assert await snapshot(db) == before


@pytest.mark.parametrize(
    "change",
    [{"unknown": 1}, {"idempotency_key": "k"}, {"inbox_status": None}, {"title": None}],
    ids=["unknown", "idempotency_key", "null-status", "null-title"],
)
async def test_patch_refuses_fields_that_are_not_the_sessions_or_cannot_be_null(
    client: httpx.AsyncClient, db: Database, existing: dict[str, Any], change: dict[str, Any]
) -> None:
    before = await snapshot(db)

    response = await client.patch(f"/sessions/{existing['id']}", json=change)

    assert_error(response, 422, "Unprocessable Entity", "INVALID_INPUT", next(iter(change)))
    assert await snapshot(db) == before


@pytest.mark.parametrize("bad_id", MALFORMED_IDS)
@pytest.mark.parametrize("method", ["PUT", "PATCH"])
async def test_a_change_to_a_malformed_parent_is_400(
    client: httpx.AsyncClient, db: Database, existing: dict[str, Any], method: str, bad_id: str
) -> None:
    before = await snapshot(db)

    response = await client.request(
        method, f"/sessions/{existing['id']}", json={"inbox_status": "active", "parent": bad_id}
    )

    assert_error(response, 400, "Bad Request", "INVALID_INPUT")
    assert response.json()["msg"] == "Invalid parent UUID format"
    assert await snapshot(db) == before


@pytest.mark.parametrize("body_id", [UNKNOWN_ID, "not-a-uuid", None, 42])
@pytest.mark.parametrize("method", ["PUT", "PATCH"])
async def test_a_body_id_that_is_not_the_paths_is_400(
    client: httpx.AsyncClient, db: Database, existing: dict[str, Any], method: str, body_id: Any
) -> None:
    before = await snapshot(db)

    response = await client.request(
        method, f"/sessions/{existing['id']}", json={"id": body_id, "inbox_status": "archived"}
    )

    assert_error(response, 400, "Bad Request", "INVALID_INPUT", "id")
    assert await snapshot(db) == before


# Parents and cycles ---------------------------------------------------------------------------


async def test_post_with_a_parent_that_does_not_exist_is_422(
    client: httpx.AsyncClient, db: Database, existing: dict[str, Any]
) -> None:
    before = await snapshot(db)

    response = await client.post(
        "/sessions", json={"repo": "acme/app", "target_branch": "main", "parent": UNKNOWN_ID}
    )

    assert_error(response, 422, "Unprocessable Entity", "PARENT_NOT_FOUND", "parent")
    assert await snapshot(db) == before


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
async def test_a_change_to_a_parent_that_does_not_exist_is_422(
    client: httpx.AsyncClient, db: Database, existing: dict[str, Any], method: str
) -> None:
    before = await snapshot(db)

    response = await client.request(
        method, f"/sessions/{existing['id']}", json={"inbox_status": "active", "parent": UNKNOWN_ID}
    )

    assert_error(response, 422, "Unprocessable Entity", "PARENT_NOT_FOUND", "parent")
    assert await snapshot(db) == before


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
async def test_a_session_cannot_be_its_own_parent(
    client: httpx.AsyncClient, db: Database, existing: dict[str, Any], method: str
) -> None:
    before = await snapshot(db)

    response = await client.request(
        method,
        f"/sessions/{existing['id']}",
        json={"inbox_status": "active", "parent": existing["id"]},
    )

    assert_error(response, 422, "Unprocessable Entity", "PARENT_CYCLE", "parent")
    assert await snapshot(db) == before


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
async def test_a_parent_that_would_make_a_cycle_three_deep_is_422(
    client: httpx.AsyncClient, db: Database, method: str
) -> None:
    a = await create(client)
    b = await create(client, parent=a["id"])
    c = await create(client, parent=b["id"])
    before = await snapshot(db)

    response = await client.request(
        method, f"/sessions/{a['id']}", json={"inbox_status": "active", "parent": c["id"]}
    )

    assert_error(response, 422, "Unprocessable Entity", "PARENT_CYCLE", "parent")
    assert await snapshot(db) == before


async def test_a_two_node_cycle_is_refused(client: httpx.AsyncClient, db: Database) -> None:
    a = await create(client)
    b = await create(client)
    assert (await client.patch(f"/sessions/{a['id']}", json={"parent": b["id"]})).is_success
    before = await snapshot(db)

    response = await client.patch(f"/sessions/{b['id']}", json={"parent": a["id"]})

    assert_error(response, 422, "Unprocessable Entity", "PARENT_CYCLE", "parent")
    assert await snapshot(db) == before


# If-Match and branch conflicts ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("if_match", "says"),
    [
        ('"1"', "is at version 2"),
        ("1", "is at version 2"),
        ('W/"3"', "is at version 2"),
        ("abc", "If-Match"),
        ('"2", "1"', "If-Match"),
        ('"-2"', "If-Match"),
        ("", "If-Match"),
        ("9" * 40, "If-Match"),
    ],
)
@pytest.mark.parametrize("method", ["PUT", "PATCH"])
async def test_an_if_match_that_does_not_match_is_412(
    client: httpx.AsyncClient,
    db: Database,
    existing: dict[str, Any],
    method: str,
    if_match: str,
    says: str,
) -> None:
    before = await snapshot(db)

    response = await client.request(
        method,
        f"/sessions/{existing['id']}",
        json={"inbox_status": "archived"},
        headers={"If-Match": if_match},
    )

    assert_error(response, 412, "Precondition Failed", "VERSION_CONFLICT", says)
    assert await snapshot(db) == before


@pytest.mark.parametrize("move", [False, True], ids=["branch-in-the-repo", "repo-using-it"])
@pytest.mark.parametrize("method", ["PUT", "PATCH"])
async def test_a_branch_used_by_another_session_of_the_repo_is_409(
    client: httpx.AsyncClient, db: Database, method: str, move: bool
) -> None:
    session = await create(client, repo="acme/app")
    neighbour = await create(client, repo="acme/app")
    stranger = await create(client, repo="acme/other")
    # Another repo may use the same branch name.
    shared = await client.patch(f"/sessions/{stranger['id']}", json={"branch": session["branch"]})
    assert shared.status_code == 200
    change = {"repo": "acme/other"} if move else {"branch": neighbour["branch"]}
    before = await snapshot(db)

    response = await client.request(
        method, f"/sessions/{session['id']}", json={"inbox_status": "active", **change}
    )

    assert_error(response, 409, "Conflict", "BRANCH_TAKEN", "branch")
    assert await snapshot(db) == before


# GET /sessions parameters ---------------------------------------------------------------------


def _cursor(*parts: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(parts))).decode().rstrip("=")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"limit": "abc"}, "limit"),
        ({"limit": "1.5"}, "limit"),
        ({"limit": ""}, "limit"),
        ({"limit": "9" * 5000}, "limit"),
        ({"limit": "\u0665"}, "limit"),
        ({"cursor": "garbage"}, "cursor"),
        ({"cursor": ""}, "cursor"),
        ({"cursor": _cursor("title", "a", UNKNOWN_ID)}, "cursor"),
        ({"cursor": _cursor("created_at", "yesterday", UNKNOWN_ID)}, "cursor"),
        ({"cursor": _cursor("created_at", "0001-01-01T00:00:00+23:00", UNKNOWN_ID)}, "cursor"),
        ({"cursor": _cursor("created_at", "2026-01-01T00:00:00+00:00", 5)}, "cursor"),
        ({"cursor": _cursor("created_at", "2026-01-01T00:00:00+00:00", "x")}, "cursor"),
        ({"cursor": _cursor("created_at", 5, UNKNOWN_ID)}, "cursor"),
        ({"cursor": _cursor({"a": 1})}, "cursor"),
        ({"inbox_status": "done"}, "inbox_status"),
        ({"inbox_status": ""}, "inbox_status"),
        ({"repo": ""}, "repo"),
        ({"repo": NUL}, "repo"),
    ],
)
async def test_list_with_a_bad_parameter_is_422_naming_it(
    client: httpx.AsyncClient, existing: dict[str, Any], params: dict[str, str], field: str
) -> None:
    response = await client.get("/sessions", params=params)

    assert_error(response, 422, "Unprocessable Entity", "INVALID_INPUT", field)


@pytest.mark.parametrize("bad_id", [*MALFORMED_IDS, ""])
async def test_list_with_a_malformed_parent_is_400(client: httpx.AsyncClient, bad_id: str) -> None:
    response = await client.get("/sessions", params={"parent": bad_id})

    assert_error(response, 400, "Bad Request", "INVALID_INPUT")
    assert response.json()["msg"] == "Invalid parent UUID format"


async def test_a_cursor_with_a_time_without_offset_is_taken_as_utc(
    client: httpx.AsyncClient, existing: dict[str, Any]
) -> None:
    cursor = _cursor("created_at", "2999-01-01T00:00:00", UNKNOWN_ID)

    response = await client.get("/sessions", params={"cursor": cursor})

    assert response.status_code == 200
    assert len(response.json()["sessions"]) == 2


# Paths, methods and the unexpected ------------------------------------------------------------


@pytest.mark.parametrize("path", ["/nowhere", "/sessions/a/b", "/session"])
async def test_an_unknown_path_is_a_json_404(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)

    assert_error(response, 404, "Not Found", "NOT_FOUND")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/sessions", {"GET", "HEAD", "POST"}),
        ("DELETE", "/sessions", {"GET", "HEAD", "POST"}),
        ("POST", f"/sessions/{UNKNOWN_ID}", {"GET", "HEAD", "PUT", "PATCH", "DELETE"}),
        ("POST", "/openapi.json", {"GET", "HEAD"}),
    ],
)
async def test_a_wrong_method_is_a_json_405_with_allow(
    client: httpx.AsyncClient, method: str, path: str, allowed: set[str]
) -> None:
    response = await client.request(method, path)

    assert_error(response, 405, "Method Not Allowed", "METHOD_NOT_ALLOWED")
    assert set(response.headers["allow"].split(", ")) == allowed


@pytest.fixture
async def lenient_client(
    settings: Settings, app_state: AppState
) -> AsyncIterator[httpx.AsyncClient]:
    """A client that gets the app's 500 response instead of the exception (Starlette's
    ServerErrorMiddleware sends the response, then re-raises for the server to log)."""
    app = with_state(create_app(settings), {"inbox": app_state})
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


async def test_an_unexpected_error_is_a_json_500_without_details(
    lenient_client: httpx.AsyncClient,
    service: SessionService,
    monkeypatch: pytest.MonkeyPatch,
    client: httpx.AsyncClient,
) -> None:
    async def broken(_session_id: uuid.UUID) -> None:
        raise RuntimeError("secret connection string")

    monkeypatch.setattr(service, "get", broken)

    response = await lenient_client.get(f"/sessions/{UNKNOWN_ID}")

    assert_error(response, 500, "Internal Server Error", "INTERNAL_SERVER_ERROR")
    assert "secret" not in response.text
    assert "Traceback" not in response.text
    # The error itself still reaches the server, which logs it with its traceback.
    with pytest.raises(RuntimeError, match="secret connection string"):
        await client.get(f"/sessions/{UNKNOWN_ID}")


# Load -----------------------------------------------------------------------------------------


async def test_a_list_that_finds_no_stream_slot_free_is_503_with_retry_after(
    settings: Settings, db: Database
) -> None:
    narrow = Database(make_engine(settings), pool_size=2, max_streams=1)
    await narrow.open()
    events = idle_events(narrow)
    service = SessionService(narrow, LocalNamer(), events)
    state = AppState(settings, narrow, events, service)
    transport = httpx.ASGITransport(app=with_state(create_app(settings), {"inbox": state}))
    # An async generator (typed as a mere iterator), closed below to give its slot back.
    held = cast(AsyncGenerator[Any, None], narrow.stream("SELECT 1 AS one"))
    try:
        assert dict(await anext(held)) == {"one": 1}  # the one stream slot is taken
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.get("/sessions")
    finally:
        await held.aclose()
        await narrow.close()

    assert_error(response, 503, "Service Unavailable", "SERVICE_UNAVAILABLE")
    assert response.headers["retry-after"].isdigit()
    assert int(response.headers["retry-after"]) > 0


# Anything at all ------------------------------------------------------------------------------

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["<self>", "<parent>", UNKNOWN_ID, "Active", "done", "", "a\x00", "-x"])
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
)
FIELDS = st.sampled_from(
    [
        "id",
        "repo",
        "target_branch",
        "title",
        "branch",
        "messages",
        "inbox_status",
        "sbx_config",
        "parent",
        "version",
        "created_at",
        "other",
    ]
)
BODIES = st.dictionaries(FIELDS, JSON_VALUES, max_size=6) | JSON_VALUES | st.binary(max_size=20)
# The codes a refusal of an arbitrary body may carry, by status.
CODES_OF = {
    400: {"INVALID_INPUT"},
    409: {"BRANCH_TAKEN"},
    422: {"INVALID_INPUT", "PARENT_NOT_FOUND", "PARENT_CYCLE", "IDEMPOTENCY_MISMATCH"},
}


def _with_ids(value: Any, ids: dict[str, str]) -> Any:
    """`value` with the "<self>" and "<parent>" placeholders replaced by real ids."""
    if isinstance(value, str):
        return ids.get(value, value)
    if isinstance(value, list):
        return [_with_ids(item, ids) for item in value]
    if isinstance(value, dict):
        return {key: _with_ids(item, ids) for key, item in value.items()}
    return value


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(method=st.sampled_from(["POST", "PUT", "PATCH"]), body=BODIES)
async def test_no_body_makes_a_500_and_a_refused_one_changes_nothing(
    client: httpx.AsyncClient, db: Database, existing: dict[str, Any], method: str, body: Any
) -> None:
    url = "/sessions" if method == "POST" else f"/sessions/{existing['id']}"
    ids = {"<self>": existing["id"], "<parent>": existing["parent"]}
    content = body if isinstance(body, bytes) else json.dumps(_with_ids(body, ids)).encode()
    before = await snapshot(db)

    response = await client.request(method, url, content=content)

    assert response.status_code in {200, 201, *CODES_OF}, response.text
    if response.is_error:
        error = response.json()
        assert set(error) == {"err", "msg", "code"}
        assert error["code"] in CODES_OF[response.status_code]
        assert await snapshot(db) == before
