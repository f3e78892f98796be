"""createSession, updateSession, deleteSession and appendMessages: each success and each
`userErrors` code, through the schema and over HTTP."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
import pytest

from app.events import EventKind
from app.model import SessionChanges
from app.service import SessionService
from tests.conftest import SessionFactory
from tests.graphql.conftest import Run, StatementLog
from tests.watching import watching

# Appends made at once on one session.
CONCURRENT = 50

PAYLOAD = """
  session {
    id repo targetBranch title branch messages inboxStatus sbxConfig parentId version
  }
  userErrors { code field message }
"""
CREATE = f"""mutation ($input: CreateSessionInput!) {{
  createSession(input: $input) {{ {PAYLOAD} }}
}}"""
UPDATE = f"""mutation ($id: UUID!, $input: UpdateSessionInput!) {{
  updateSession(id: $id, input: $input) {{ {PAYLOAD} }}
}}"""
APPEND = f"""mutation ($id: UUID!, $messages: [JSON!]!) {{
  appendMessages(id: $id, messages: $messages) {{ {PAYLOAD} }}
}}"""
DELETE = """mutation ($id: UUID!) {
  deleteSession(id: $id) { deletedId userErrors { code field message } }
}"""


async def create(gql: Run, **fields: Any) -> dict[str, Any]:
    payload: dict[str, Any] = (await gql(CREATE, input=fields)).ok()["createSession"]
    return payload


async def append(gql: Run, session_id: Any, messages: list[Any]) -> dict[str, Any]:
    payload: dict[str, Any] = (await gql(APPEND, id=str(session_id), messages=messages)).ok()[
        "appendMessages"
    ]
    return payload


async def update(gql: Run, session_id: Any, **fields: Any) -> dict[str, Any]:
    payload: dict[str, Any] = (await gql(UPDATE, id=str(session_id), input=fields)).ok()[
        "updateSession"
    ]
    return payload


def only_error(payload: dict[str, Any], code: str, field: list[str] | None) -> str:
    """The message of the payload's single user error, after checking its code and field."""
    assert payload.get("session") is None
    assert payload.get("deletedId") is None
    [error] = payload["userErrors"]
    assert (error["code"], error["field"]) == (code, field)
    message: str = error["message"]
    assert message
    return message


# createSession -------------------------------------------------------------------------------


async def test_create_session(gql: Run, service: SessionService) -> None:
    payload = await create(
        gql, repo="acme/app", targetBranch="main", messages={"content": "Fix the login redirect"}
    )
    assert payload["userErrors"] == []
    session = payload["session"]
    assert session == {
        "id": session["id"],
        "repo": "acme/app",
        "targetBranch": "main",
        "title": "Fix the login redirect",
        "branch": "fix-the-login-redirect",
        "messages": {"content": "Fix the login redirect"},
        "inboxStatus": "ACTIVE",
        "sbxConfig": None,
        "parentId": None,
        "version": 1,
    }
    assert await service.get(uuid.UUID(session["id"])) is not None


async def test_create_session_under_a_parent(gql: Run, make_session: SessionFactory) -> None:
    parent = await make_session()
    payload = await create(gql, repo="acme/app", targetBranch="main", parentId=str(parent["id"]))
    assert payload["session"]["parentId"] == str(parent["id"])
    assert payload["session"]["messages"] is None


async def test_create_with_the_same_idempotency_key_returns_the_first_session(gql: Run) -> None:
    fields = {"repo": "acme/app", "targetBranch": "main", "idempotencyKey": "req-1"}
    first = await create(gql, **fields)
    again = await create(gql, **fields)
    assert again["userErrors"] == []
    assert again["session"]["id"] == first["session"]["id"]


async def test_create_idempotency_mismatch(gql: Run) -> None:
    await create(gql, repo="acme/app", targetBranch="main", idempotencyKey="req-1")
    payload = await create(gql, repo="acme/web", targetBranch="main", idempotencyKey="req-1")
    only_error(payload, "IDEMPOTENCY_MISMATCH", ["input", "idempotencyKey"])


async def test_create_parent_not_found(gql: Run) -> None:
    payload = await create(gql, repo="acme/app", targetBranch="main", parentId=str(uuid.uuid4()))
    only_error(payload, "PARENT_NOT_FOUND", ["input", "parentId"])


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"repo": " ", "targetBranch": "main"}, "repo"),
        ({"repo": "acme/app", "targetBranch": ""}, "targetBranch"),
        ({"repo": "acme/app", "targetBranch": "ma\x00in"}, "targetBranch"),
        ({"repo": "acme/app", "targetBranch": "main", "messages": "he\x00llo"}, "messages"),
        ({"repo": "acme/app", "targetBranch": "main", "idempotencyKey": ""}, "idempotencyKey"),
    ],
)
async def test_create_invalid_input(gql: Run, fields: dict[str, Any], field: str) -> None:
    payload = await create(gql, **fields)
    only_error(payload, "INVALID_INPUT", ["input", field])


@pytest.mark.parametrize("messages", ["fix the login", 42, 1.5, True, [], {}])
async def test_create_takes_any_json_value_as_messages(gql: Run, messages: Any) -> None:
    payload = await create(gql, repo="acme/app", targetBranch="main", messages=messages)
    assert payload["userErrors"] == []
    assert payload["session"]["messages"] == messages


async def test_create_without_a_required_field_is_a_graphql_error(gql: Run) -> None:
    result = await gql(CREATE, input={"repo": "acme/app"})
    assert result.data is None
    assert "targetBranch" in result.errors[0]["message"]


# updateSession -------------------------------------------------------------------------------


async def test_update_session(gql: Run, make_session: SessionFactory) -> None:
    row = await make_session()
    parent = await make_session()
    payload = await update(
        gql,
        row["id"],
        repo="acme/web",
        targetBranch="develop",
        messages=[{"role": "user", "content": "hi"}],
        inboxStatus="COMPLETED",
        sbxConfig={"image": "python:3.13"},
        parentId=str(parent["id"]),
        title="A better title",
        branch="feature/better",
    )
    assert payload == {
        "session": {
            "id": str(row["id"]),
            "repo": "acme/web",
            "targetBranch": "develop",
            "title": "A better title",
            "branch": "feature/better",
            "messages": [{"role": "user", "content": "hi"}],
            "inboxStatus": "COMPLETED",
            "sbxConfig": {"image": "python:3.13"},
            "parentId": str(parent["id"]),
            "version": 2,
        },
        "userErrors": [],
    }


async def test_update_leaves_omitted_fields_as_they_are(
    gql: Run, make_session: SessionFactory, service: SessionService
) -> None:
    parent = await make_session()
    row = await make_session(messages={"content": "Keep me"}, parent=parent["id"])
    await service.update(row["id"], SessionChanges(sbx_config={"image": "node"}))

    session = (await update(gql, row["id"], title="Only the title"))["session"]

    assert session["title"] == "Only the title"
    assert session["messages"] == {"content": "Keep me"}
    assert session["sbxConfig"] == {"image": "node"}
    assert session["parentId"] == str(parent["id"])
    assert session["branch"] == row["branch"]
    assert session["version"] == 3


async def test_update_explicit_null_clears_nullable_fields(
    gql: Run, make_session: SessionFactory, service: SessionService
) -> None:
    parent = await make_session()
    row = await make_session(parent=parent["id"])
    await service.update(row["id"], SessionChanges(sbx_config={"image": "node"}))

    session = (await update(gql, row["id"], messages=None, sbxConfig=None, parentId=None))[
        "session"
    ]

    assert (session["messages"], session["sbxConfig"], session["parentId"]) == (None, None, None)


@pytest.mark.parametrize("field", ["repo", "targetBranch", "title", "branch", "inboxStatus"])
async def test_update_null_for_a_required_field_is_invalid_input(
    gql: Run, make_session: SessionFactory, service: SessionService, field: str
) -> None:
    row = await make_session()
    changes: dict[str, Any] = {"messages": {"content": "Changed"}, field: None}
    payload = await update(gql, row["id"], **changes)
    assert field in only_error(payload, "INVALID_INPUT", ["input", field])
    stored = await service.get(row["id"])
    assert stored is not None
    assert (stored["messages"], stored["version"]) == (row["messages"], 1)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"title": "two\nlines"}, "title"),
        ({"branch": "bad..branch"}, "branch"),
        ({"repo": ""}, "repo"),
        ({"messages": {"content": "\x00"}}, "messages"),
        ({"sbxConfig": ["\x00"]}, "sbxConfig"),
    ],
)
async def test_update_invalid_input(
    gql: Run, make_session: SessionFactory, fields: dict[str, Any], field: str
) -> None:
    row = await make_session()
    payload = await update(gql, row["id"], **fields)
    only_error(payload, "INVALID_INPUT", ["input", field])


@pytest.mark.parametrize(
    ("field", "value"), [("messages", "hi"), ("sbxConfig", 3), ("sbxConfig", False)]
)
async def test_update_takes_any_json_value(
    gql: Run, make_session: SessionFactory, field: str, value: Any
) -> None:
    row = await make_session()
    session = (await update(gql, row["id"], **{field: value}))["session"]
    assert session[field] == value


async def test_update_messages_are_named_by_graphql_names(
    gql: Run, make_session: SessionFactory
) -> None:
    row = await make_session()
    payload = await update(gql, row["id"], targetBranch=" ")
    assert only_error(payload, "INVALID_INPUT", ["input", "targetBranch"]).startswith(
        "targetBranch "
    )


async def test_update_with_the_current_version(gql: Run, make_session: SessionFactory) -> None:
    row = await make_session()
    payload = await update(gql, row["id"], title="Checked", expectedVersion=1)
    assert payload["session"]["version"] == 2


async def test_update_version_conflict_changes_nothing(
    gql: Run, make_session: SessionFactory, service: SessionService
) -> None:
    row = await make_session()
    await service.update(row["id"], SessionChanges(title="Someone else's"))

    payload = await update(gql, row["id"], title="Mine", expectedVersion=1)

    only_error(payload, "VERSION_CONFLICT", ["input", "expectedVersion"])
    stored = await service.get(row["id"])
    assert stored is not None
    assert (stored["title"], stored["version"]) == ("Someone else's", 2)


async def test_update_not_found(gql: Run) -> None:
    payload = await update(gql, uuid.uuid4(), title="Nobody")
    only_error(payload, "NOT_FOUND", ["id"])


async def test_update_parent_not_found(gql: Run, make_session: SessionFactory) -> None:
    row = await make_session()
    payload = await update(gql, row["id"], parentId=str(uuid.uuid4()))
    only_error(payload, "PARENT_NOT_FOUND", ["input", "parentId"])


async def test_update_parent_cycle(gql: Run, make_session: SessionFactory) -> None:
    root = await make_session()
    child = await make_session(parent=root["id"])
    grandchild = await make_session(parent=child["id"])

    payload = await update(gql, root["id"], parentId=str(grandchild["id"]))
    only_error(payload, "PARENT_CYCLE", ["input", "parentId"])
    payload = await update(gql, root["id"], parentId=str(root["id"]))
    only_error(payload, "PARENT_CYCLE", ["input", "parentId"])


async def test_update_branch_taken(gql: Run, make_session: SessionFactory) -> None:
    taken = await make_session()
    row = await make_session()
    payload = await update(gql, row["id"], branch=taken["branch"])
    only_error(payload, "BRANCH_TAKEN", ["input", "branch"])


async def test_same_branch_in_another_repo_is_free(gql: Run, make_session: SessionFactory) -> None:
    other = await make_session(repo="acme/web")
    row = await make_session()
    payload = await update(gql, row["id"], branch=other["branch"])
    assert payload["session"]["branch"] == other["branch"]


# deleteSession -------------------------------------------------------------------------------


async def test_delete_session_orphans_its_children(
    gql: Run, make_session: SessionFactory, service: SessionService
) -> None:
    parent = await make_session()
    child = await make_session(parent=parent["id"])

    payload = (await gql(DELETE, id=str(parent["id"]))).ok()["deleteSession"]

    assert payload == {"deletedId": str(parent["id"]), "userErrors": []}
    assert await service.get(parent["id"]) is None
    orphan = await service.get(child["id"])
    assert orphan is not None
    assert orphan["parent"] is None


async def test_delete_not_found(gql: Run) -> None:
    payload = (await gql(DELETE, id=str(uuid.uuid4()))).ok()["deleteSession"]
    only_error(payload, "NOT_FOUND", ["id"])


# appendMessages ------------------------------------------------------------------------------


async def test_append_messages_to_null_messages(gql: Run, make_session: SessionFactory) -> None:
    row = await make_session(messages=None)
    payload = await append(gql, row["id"], [{"role": "user", "content": "Hi"}])
    assert payload["userErrors"] == []
    session = payload["session"]
    assert (session["messages"], session["version"]) == ([{"role": "user", "content": "Hi"}], 2)


async def test_append_messages_to_a_list(gql: Run, make_session: SessionFactory) -> None:
    row = await make_session(messages=[{"role": "user", "content": "Hi"}])
    more = [{"role": "assistant", "content": "Hello"}, "plain", 3, [True]]
    session = (await append(gql, row["id"], more))["session"]
    assert session["messages"] == [{"role": "user", "content": "Hi"}, *more]
    assert session["version"] == 2


async def test_append_messages_written_in_the_document(
    gql: Run, make_session: SessionFactory
) -> None:
    row = await make_session(messages=None)
    document = f"""mutation {{
      appendMessages(id: "{row["id"]}", messages: [{{role: "user", content: "Hi"}}, "two"]) {{
        session {{ messages version }}
      }}
    }}"""
    session = (await gql(document)).ok()["appendMessages"]["session"]
    assert session == {"messages": [{"role": "user", "content": "Hi"}, "two"], "version": 2}


@pytest.mark.parametrize("messages", [{"content": "Fix it"}, "Fix it", 42, 1.5, False])
async def test_append_messages_to_something_else_than_a_list_changes_nothing(
    gql: Run, make_session: SessionFactory, service: SessionService, messages: Any
) -> None:
    row = await make_session(messages=messages)
    payload = await append(gql, row["id"], ["more"])
    assert "not a list" in only_error(payload, "NOT_A_LIST", ["messages"])
    stored = await service.get(row["id"])
    assert stored is not None
    assert (stored["messages"], stored["version"]) == (row["messages"], 1)


async def test_append_messages_not_found(gql: Run) -> None:
    payload = await append(gql, uuid.uuid4(), ["hello"])
    only_error(payload, "NOT_FOUND", ["id"])


@pytest.mark.parametrize("message", ["he\x00llo", {"content": "\x00"}, {"a\x00": 1}])
async def test_append_messages_refuses_a_message_with_a_nul_character(
    gql: Run, make_session: SessionFactory, service: SessionService, message: Any
) -> None:
    row = await make_session(messages=["one"])
    payload = await append(gql, row["id"], ["fine", message])
    assert "NUL" in only_error(payload, "INVALID_INPUT", ["messages"])
    stored = await service.get(row["id"])
    assert stored is not None
    assert (stored["messages"], stored["version"]) == (row["messages"], 1)


async def test_append_no_messages_changes_nothing(gql: Run, make_session: SessionFactory) -> None:
    row = await make_session(messages=["one"])
    session = (await append(gql, row["id"], []))["session"]
    assert (session["messages"], session["version"]) == (["one"], 1)


async def test_append_messages_is_one_statement(
    execute: Run, make_session: SessionFactory, statements: StatementLog
) -> None:
    """No read of the list before it is written: the statement reads and writes it at once."""
    row = await make_session(messages=None)
    statements.clear()
    await append(execute, row["id"], ["one"])
    assert len(statements) == 1


async def test_concurrent_appends_all_land_and_are_announced_in_version_order(
    execute: Run, make_session: SessionFactory, service: SessionService
) -> None:
    row = await make_session(messages=None)
    async with watching(service, session_id=row["id"]) as watcher:
        payloads = await asyncio.gather(
            *(append(execute, row["id"], [{"n": n}]) for n in range(CONCURRENT))
        )
        announced = await watcher.count(CONCURRENT)

    assert all(payload["userErrors"] == [] for payload in payloads)
    stored = await service.get(row["id"])
    assert stored is not None
    messages = orjson.loads(stored["messages"])
    assert sorted(message["n"] for message in messages) == list(range(CONCURRENT))
    assert stored["version"] == CONCURRENT + 1
    assert [event.kind for event in announced] == [EventKind.UPDATED] * CONCURRENT
    sessions = [event.session for event in announced if event.session is not None]
    assert [session["version"] for session in sessions] == list(range(2, CONCURRENT + 2))
    # Each event carries the list as that append left it: one message longer each time.
    assert [len(orjson.loads(session["messages"])) for session in sessions] == list(
        range(1, CONCURRENT + 1)
    )


# Unexpected failures -------------------------------------------------------------------------


async def test_unexpected_errors_are_masked_and_logged(
    gql: Run,
    service: SessionService,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("connection to 10.0.0.7 refused: password=hunter2")

    monkeypatch.setattr(service, "create", broken)
    result = await gql(CREATE, input={"repo": "acme/app", "targetBranch": "main"})

    assert result.data is None
    assert [error["message"] for error in result.errors] == ["Unexpected error."]
    assert result.error_codes() == ["INTERNAL_SERVER_ERROR"]
    assert result.errors[0]["path"] == ["createSession"]
    assert "hunter2" not in str(result.errors)
    # The operator still sees what happened.
    assert "hunter2" in caplog.text
