"""createSession, updateSession and deleteSession: each success and each `userErrors` code, through
the schema and over HTTP."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from app.model import SessionChanges
from app.service import SessionService
from tests.conftest import SessionFactory
from tests.graphql.conftest import Run

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
DELETE = """mutation ($id: UUID!) {
  deleteSession(id: $id) { deletedId userErrors { code field message } }
}"""


async def create(gql: Run, **fields: Any) -> dict[str, Any]:
    payload: dict[str, Any] = (await gql(CREATE, input=fields)).ok()["createSession"]
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
