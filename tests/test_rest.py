"""The REST compatibility paths as a client sees them: every success row of the contract's table,
with its status, headers and whole body."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

import httpx
import pytest

from app.config import Settings
from app.db import Database
from app.main import create_app
from app.naming import is_valid_branch
from app.rest.render import STREAM_CHUNK
from app.state import AppState
from tests.conftest import SessionFactory, with_state

SESSION_KEYS = {
    "id",
    "repo",
    "target_branch",
    "title",
    "branch",
    "messages",
    "inbox_status",
    "sbx_config",
    "parent",
    "created_at",
    "updated_at",
    "version",
}
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00")
LINK = re.compile(r'<([^>]+)>; rel="next"')


def assert_session(session: dict[str, Any], **expected: Any) -> None:
    """`session` has the contract's shape, and the `expected` values."""
    assert set(session) == SESSION_KEYS
    assert str(UUID(session["id"])) == session["id"]
    assert TIMESTAMP.fullmatch(session["created_at"]), session["created_at"]
    assert TIMESTAMP.fullmatch(session["updated_at"]), session["updated_at"]
    assert session["updated_at"] >= session["created_at"]
    assert session["inbox_status"] in {"pending", "active", "completed", "archived"}
    assert isinstance(session["version"], int)
    assert {name: session[name] for name in expected} == expected


@pytest.fixture
def app_asgi(settings: Settings, app_state: AppState) -> Any:
    """The app as a bare ASGI callable, to watch the messages it sends."""
    return with_state(create_app(settings), {"inbox": app_state})


@pytest.fixture
def client(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """The REST client, asking POST and PUT to answer with the session as PATCH does (the
    answers without it are tested in test_rest_prefer.py)."""
    client.headers["Prefer"] = "return=representation"
    return client


async def post(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {"repo": "acme/app", "target_branch": "main", **fields}
    response = await client.post("/sessions", json=body)
    assert response.status_code == 201, response.text
    session: dict[str, Any] = response.json()["session"]
    return session


async def get(client: httpx.AsyncClient, session_id: str) -> dict[str, Any]:
    response = await client.get(f"/sessions/{session_id}")
    assert response.status_code == 200, response.text
    session: dict[str, Any] = response.json()["session"]
    return session


# POST /sessions -------------------------------------------------------------------------------


async def test_post_creates_an_active_session_with_generated_names(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/sessions",
        json={
            "repo": "acme/app",
            "target_branch": "main",
            "messages": {"content": "Fix the login timeout"},
        },
    )

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"success", "message", "id", "session"}
    assert body["success"] is True
    assert body["message"] == "Session created successfully"
    session = body["session"]
    assert_session(
        session,
        id=body["id"],
        repo="acme/app",
        target_branch="main",
        messages={"content": "Fix the login timeout"},
        inbox_status="active",
        sbx_config=None,
        parent=None,
        version=1,
    )
    assert UUID(session["id"]).version == 4
    assert session["title"]
    assert is_valid_branch(session["branch"])
    assert session["created_at"] == session["updated_at"]
    assert response.headers["location"] == f"/sessions/{session['id']}"
    assert response.headers["etag"] == '"1"'
    assert response.headers["content-type"] == "application/json"
    assert "idempotent-replayed" not in response.headers
    assert await get(client, session["id"]) == session


@pytest.mark.parametrize("messages", [[{"role": "user", "content": "hi"}], {}, None])
async def test_post_takes_messages_as_an_array_an_object_or_null(
    client: httpx.AsyncClient, messages: Any
) -> None:
    session = await post(client, messages=messages)

    assert_session(session, messages=messages)


async def test_post_links_a_child_to_its_parent(client: httpx.AsyncClient) -> None:
    parent = await post(client)

    child = await post(client, parent=parent["id"].upper())

    assert_session(child, parent=parent["id"])


async def test_post_ignores_fields_it_does_not_take(client: httpx.AsyncClient) -> None:
    session = await post(
        client,
        id="00000000-0000-4000-8000-000000000000",
        inbox_status="archived",
        sbx_config={"image": "x"},
        version=7,
        unknown=True,
    )

    assert session["id"] != "00000000-0000-4000-8000-000000000000"
    assert_session(session, inbox_status="active", sbx_config=None, version=1)


async def test_post_with_the_same_idempotency_key_and_body_replays_the_first_session(
    client: httpx.AsyncClient, db: Database
) -> None:
    body = {"repo": "acme/app", "target_branch": "main", "messages": {"content": "once"}}
    headers = {"Idempotency-Key": "retry-1"}
    first = await client.post("/sessions", json=body, headers=headers)

    again = await client.post("/sessions", json=body, headers=headers)

    assert first.status_code == again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"] == first.headers["location"]
    assert again.json() == first.json()
    rows = await db.fetch("SELECT id FROM session")
    assert [UUID(str(row["id"])) for row in rows] == [UUID(first.json()["id"])]


# GET /sessions/{id} ---------------------------------------------------------------------------


async def test_get_returns_the_session_with_its_version_as_etag(
    client: httpx.AsyncClient,
) -> None:
    created = await post(client, messages=[{"content": "a"}])
    await client.patch(f"/sessions/{created['id']}", json={"inbox_status": "pending"})

    response = await client.get(f"/sessions/{created['id']}")

    assert response.status_code == 200
    assert set(response.json()) == {"session"}
    assert_session(response.json()["session"], id=created["id"], version=2)
    assert response.headers["etag"] == '"2"'


async def test_times_always_have_microseconds_and_a_utc_offset(
    client: httpx.AsyncClient, db: Database
) -> None:
    created = await post(client)
    on_the_second = datetime(2026, 11, 26, 9, 0, tzinfo=timezone(timedelta(hours=1)))
    await db.execute("UPDATE session SET created_at = {}", on_the_second)

    session = await get(client, created["id"])

    assert session["created_at"] == "2026-11-26T08:00:00.000000+00:00"


async def test_get_accepts_an_upper_case_id(client: httpx.AsyncClient) -> None:
    created = await post(client)

    assert await get(client, created["id"].upper()) == created


# GET /sessions --------------------------------------------------------------------------------


async def test_list_without_paging_returns_every_session_newest_first(
    client: httpx.AsyncClient, make_session: SessionFactory
) -> None:
    ids = [str((await make_session())["id"]) for _ in range(3)]

    response = await client.get("/sessions")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert "link" not in response.headers
    body = response.json()
    assert set(body) == {"sessions"}
    assert [s["id"] for s in body["sessions"]] == ids[::-1]
    for session in body["sessions"]:
        assert_session(session)


async def test_head_of_the_list_sends_the_headers_of_get_and_no_body(
    client: httpx.AsyncClient, make_session: SessionFactory
) -> None:
    await make_session()

    response = await client.head("/sessions", params={"inbox_status": "active"})
    refused = await client.head("/sessions", params={"inbox_status": "done"})

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert "content-length" not in response.headers
    assert response.content == b""
    assert refused.status_code == 422


async def test_list_of_no_sessions_is_an_empty_list(client: httpx.AsyncClient) -> None:
    response = await client.get("/sessions")

    assert response.status_code == 200
    assert response.json() == {"sessions": []}


async def test_list_filters_by_status_case_insensitively_repeated(
    client: httpx.AsyncClient,
) -> None:
    pending = await post(client)
    archived = await post(client)
    await post(client)  # stays active
    for session, status in ((pending, "pending"), (archived, "archived")):
        await client.patch(f"/sessions/{session['id']}", json={"inbox_status": status})

    response = await client.get(
        "/sessions", params=[("inbox_status", "Pending"), ("inbox_status", "ARCHIVED")]
    )

    assert response.status_code == 200
    assert [s["id"] for s in response.json()["sessions"]] == [archived["id"], pending["id"]]


async def test_list_filters_by_repo_and_parent(client: httpx.AsyncClient) -> None:
    parent = await post(client, repo="acme/app")
    child = await post(client, repo="acme/app", parent=parent["id"])
    await post(client, repo="acme/other", parent=parent["id"])
    await post(client, repo="acme/app")

    response = await client.get("/sessions", params={"repo": "acme/app", "parent": parent["id"]})

    assert response.status_code == 200
    assert [s["id"] for s in response.json()["sessions"]] == [child["id"]]


async def test_list_with_limit_pages_by_cursor_and_link_until_the_last_page(
    client: httpx.AsyncClient, make_session: SessionFactory
) -> None:
    ids = [str((await make_session(repo="acme/app"))["id"]) for _ in range(5)][::-1]
    await make_session(repo="acme/other")
    seen: list[str] = []
    url = "/sessions?repo=acme%2Fapp&limit=2"
    pages = []

    while True:
        response = await client.get(url)
        assert response.status_code == 200
        body = response.json()
        assert set(body) == {"sessions", "next_cursor"}
        seen += [s["id"] for s in body["sessions"]]
        pages.append(len(body["sessions"]))
        if body["next_cursor"] is None:
            assert "link" not in response.headers
            break
        match = LINK.fullmatch(response.headers["link"])
        assert match is not None
        url = match[1]
        query = parse_qs(urlsplit(url).query)
        assert query == {"repo": ["acme/app"], "limit": ["2"], "cursor": [body["next_cursor"]]}

    assert seen == ids
    assert pages == [2, 2, 1]


async def test_list_page_that_ends_exactly_at_the_last_session_has_no_next(
    client: httpx.AsyncClient, make_session: SessionFactory
) -> None:
    for _ in range(2):
        await make_session()

    response = await client.get("/sessions", params={"limit": "2"})

    assert len(response.json()["sessions"]) == 2
    assert response.json()["next_cursor"] is None
    assert "link" not in response.headers


async def test_list_with_only_a_cursor_returns_the_rest_in_one_default_page(
    client: httpx.AsyncClient, make_session: SessionFactory
) -> None:
    ids = [str((await make_session())["id"]) for _ in range(4)][::-1]
    first = (await client.get("/sessions", params={"limit": "1"})).json()

    response = await client.get("/sessions", params={"cursor": first["next_cursor"]})

    assert response.status_code == 200
    assert [s["id"] for s in response.json()["sessions"]] == ids[1:]
    assert response.json()["next_cursor"] is None


async def test_list_without_paging_is_streamed_in_pieces(
    client: httpx.AsyncClient, make_session: SessionFactory, app_asgi: Any
) -> None:
    big = {"content": "x" * (STREAM_CHUNK // 2)}
    for _ in range(5):
        await make_session(messages=big)

    pieces: list[bytes] = []
    requested = False
    done = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            pieces.append(message["body"])
            if not message.get("more_body", False):
                done.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/sessions",
        "raw_path": b"/sessions",
        "query_string": b"",
        "headers": [],
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 1),
        "root_path": "",
    }
    await app_asgi(scope, receive, send)

    assert len([piece for piece in pieces if piece]) >= 3
    body = httpx.Response(200, content=b"".join(pieces)).json()
    assert len(body["sessions"]) == 5


# PUT /sessions/{id} ---------------------------------------------------------------------------


async def test_put_replaces_the_session_and_nulls_what_it_leaves_out(
    client: httpx.AsyncClient,
) -> None:
    parent = await post(client)
    created = await post(client, parent=parent["id"], messages={"content": "a"})
    await client.patch(f"/sessions/{created['id']}", json={"sbx_config": {"image": "py"}})

    response = await client.put(
        f"/sessions/{created['id']}",
        json={
            **created,
            "inbox_status": "Completed",
            "messages": None,
            "sbx_config": None,
            "parent": None,
            "version": 99,
            "created_at": "x",
            "unknown": 1,
        },
    )
    response_without_fields = await client.put(
        f"/sessions/{created['id']}", json={"inbox_status": "archived"}
    )

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"success", "message", "session"}
    assert body["success"] is True
    assert body["message"] == "Session updated successfully"
    assert_session(
        body["session"],
        id=created["id"],
        title=created["title"],
        branch=created["branch"],
        repo=created["repo"],
        target_branch=created["target_branch"],
        created_at=created["created_at"],
        inbox_status="completed",
        messages=None,
        sbx_config=None,
        parent=None,
        version=3,
    )
    assert response.headers["etag"] == '"3"'
    assert response_without_fields.status_code == 200
    assert_session(
        response_without_fields.json()["session"],
        title=created["title"],
        inbox_status="archived",
        messages=None,
        version=4,
    )


async def test_put_sets_every_field_it_is_given(client: httpx.AsyncClient) -> None:
    parent = await post(client)
    created = await post(client)

    response = await client.put(
        f"/sessions/{created['id']}",
        json={
            "id": created["id"],
            "inbox_status": "pending",
            "messages": [{"content": "b"}],
            "sbx_config": "small",
            "parent": parent["id"],
            "title": "A better title",
            "branch": "feature/better",
            "repo": "acme/other",
            "target_branch": "develop",
        },
    )

    assert response.status_code == 200
    session = response.json()["session"]
    assert_session(
        session,
        inbox_status="pending",
        messages=[{"content": "b"}],
        sbx_config="small",
        parent=parent["id"],
        title="A better title",
        branch="feature/better",
        repo="acme/other",
        target_branch="develop",
        version=2,
    )
    assert await get(client, created["id"]) == session


@pytest.mark.parametrize("if_match", ['"1"', "1", 'W/"1"', "*", ' "1" '])
@pytest.mark.parametrize("method", ["PUT", "PATCH"])
async def test_a_change_with_a_matching_if_match_is_applied(
    client: httpx.AsyncClient, method: str, if_match: str
) -> None:
    created = await post(client)

    response = await client.request(
        method,
        f"/sessions/{created['id']}",
        json={"inbox_status": "completed"},
        headers={"If-Match": if_match},
    )

    assert response.status_code == 200, response.text
    assert_session(response.json()["session"], inbox_status="completed", version=2)
    assert response.headers["etag"] == '"2"'


# PATCH /sessions/{id} -------------------------------------------------------------------------


async def test_patch_changes_only_the_given_fields(client: httpx.AsyncClient) -> None:
    parent = await post(client)
    created = await post(client, parent=parent["id"], messages={"content": "a"})

    response = await client.patch(
        f"/sessions/{created['id']}",
        json={"inbox_status": "ARCHIVED", "title": "Renamed", "id": created["id"]},
    )

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"success", "message", "session"}
    assert body["success"] is True
    assert body["message"] == "Session updated successfully"
    expected = {**created, "inbox_status": "archived", "title": "Renamed", "version": 2}
    assert_session(body["session"], **{k: v for k, v in expected.items() if k != "updated_at"})
    assert response.headers["etag"] == '"2"'


async def test_patch_is_a_json_merge_patch_of_messages_and_sbx_config(
    client: httpx.AsyncClient,
) -> None:
    created = await post(client, messages={"content": "a", "meta": {"keep": 1, "drop": 2}})
    url = f"/sessions/{created['id']}"
    await client.patch(url, json={"sbx_config": {"image": "py", "cpus": 2}})

    response = await client.patch(
        url,
        content=b'{"messages": {"meta": {"drop": null, "new": [1]}, "content": "b"},'
        b' "sbx_config": {"cpus": null}, "created_at": "ignored", "version": 1}',
        headers={"Content-Type": "application/merge-patch+json"},
    )

    assert response.status_code == 200
    assert_session(
        response.json()["session"],
        messages={"content": "b", "meta": {"keep": 1, "new": [1]}},
        sbx_config={"image": "py"},
        version=3,
    )


async def test_patch_with_null_clears_nullable_fields_and_arrays_replace(
    client: httpx.AsyncClient,
) -> None:
    parent = await post(client)
    created = await post(client, parent=parent["id"], messages={"content": "a"})
    url = f"/sessions/{created['id']}"
    await client.patch(url, json={"sbx_config": {"image": "py"}})

    cleared = await client.patch(url, json={"messages": None, "sbx_config": None, "parent": None})
    replaced = await client.patch(url, json={"messages": [{"content": "x"}]})
    reparented = await client.patch(url, json={"parent": parent["id"]})

    assert_session(cleared.json()["session"], messages=None, sbx_config=None, parent=None)
    assert_session(replaced.json()["session"], messages=[{"content": "x"}])
    assert_session(reparented.json()["session"], parent=parent["id"], version=5)


async def test_an_empty_patch_changes_no_field(client: httpx.AsyncClient) -> None:
    created = await post(client)

    response = await client.patch(f"/sessions/{created['id']}", json={})

    assert response.status_code == 200
    session = response.json()["session"]
    unchanged = {k: v for k, v in created.items() if k not in ("updated_at", "version")}
    assert_session(session, **unchanged)


# DELETE /sessions/{id} ------------------------------------------------------------------------


async def test_delete_removes_the_session(client: httpx.AsyncClient) -> None:
    created = await post(client)

    response = await client.delete(f"/sessions/{created['id']}")

    assert response.status_code == 200
    assert response.json() == {"success": True, "message": "Session deleted successfully"}
    assert (await client.get(f"/sessions/{created['id']}")).status_code == 404


async def test_deleting_a_parent_leaves_its_children_with_parent_null(
    client: httpx.AsyncClient,
) -> None:
    parent = await post(client)
    children = [await post(client, parent=parent["id"]) for _ in range(2)]
    grandchild = await post(client, parent=children[0]["id"])

    response = await client.delete(f"/sessions/{parent['id']}")

    assert response.status_code == 200
    for child in children:
        assert_session(await get(client, child["id"]), parent=None, version=2)
    assert_session(await get(client, grandchild["id"]), parent=children[0]["id"], version=1)


@pytest.mark.parametrize("config", [3, -7, 1.5, True, "text", "12", [], {}, {"cpu": 2}])
async def test_any_json_sbx_config_comes_back_as_it_was_sent(
    client: httpx.AsyncClient, make_session: SessionFactory, config: object
) -> None:
    made = await make_session()
    changed = await client.patch(f"/sessions/{made['id']}", json={"sbx_config": config})
    fetched = await client.get(f"/sessions/{made['id']}")
    listed = await client.get("/sessions")
    assert changed.json()["session"]["sbx_config"] == config
    assert fetched.json()["session"]["sbx_config"] == config
    assert listed.json()["sessions"][0]["sbx_config"] == config
