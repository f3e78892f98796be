"""The output type `Session` is derived from the declaration: a field for each declared field, in
its order and with its type, the relations after `parentId`; it is built from a row without
parsing its JSON, which only a selected JSON field parses."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest
import strawberry
from strawberry.schema.config import StrawberryConfig

from app import model
from app.graphql.fields import graphql_name
from app.graphql.scalars import SCALARS
from app.graphql.types import Session
from app.tables import InboxStatus
from tests.graphql.conftest import Types
from tests.graphql.test_commands import type_name

RELATIONS = ("parent", "children", "ancestors")


def session_fields(types: Types) -> dict[str, str]:
    return {field["name"]: type_name(field["type"]) for field in types["Session"]["fields"]}


def test_session_has_the_contracts_fields_in_its_order(types: Types) -> None:
    assert list(session_fields(types).items()) == [
        ("id", "UUID!"),
        ("repo", "String!"),
        ("targetBranch", "String!"),
        ("title", "String!"),
        ("branch", "String!"),
        ("messages", "JSON"),
        ("inboxStatus", "InboxStatus!"),
        ("sbxConfig", "JSON"),
        ("parentId", "UUID"),
        ("parent", "Session"),
        ("children", "SessionConnection!"),
        ("ancestors", "[Session!]!"),
        ("createdAt", "DateTime!"),
        ("updatedAt", "DateTime!"),
        ("version", "Int!"),
    ]


def test_session_has_the_declared_fields_in_declaration_order(types: Types) -> None:
    declared = [graphql_name(name) for name in model.Session.__annotations__]
    assert [name for name in session_fields(types) if name not in RELATIONS] == declared


def test_the_relations_follow_parent_id(types: Types) -> None:
    names = list(session_fields(types))
    after = names.index("parentId") + 1
    assert tuple(names[after : after + len(RELATIONS)]) == RELATIONS


def test_only_the_declarations_nullable_fields_are_nullable(types: Types) -> None:
    nullable = {
        name for name, type_ in session_fields(types).items() if not type_.endswith("!")
    } - {"parent"}
    assert nullable == {graphql_name(name) for name in model.NULLABLE}


def row(**values: object) -> model.Session:
    now = datetime(2026, 11, 26, 8, tzinfo=UTC)
    stored: model.Session = {
        "id": uuid4(),
        "repo": "acme/app",
        "target_branch": "main",
        "title": "Fix the login",
        "branch": "fix-the-login",
        "messages": '[{"role": "user", "content": "fix the login"}]',
        "inbox_status": InboxStatus.PENDING,
        "sbx_config": None,
        "parent": uuid4(),
        "created_at": now,
        "updated_at": now,
        "version": 3,
    }
    stored.update(values)  # type: ignore[typeddict-item]
    return stored


def schema_of(stored: model.Session) -> strawberry.Schema:
    """A schema whose one query answers the session `stored`, with no database behind it."""

    @strawberry.type
    class Query:
        @strawberry.field
        def session(self) -> Session:
            return Session.from_row(stored)

    return strawberry.Schema(query=Query, config=StrawberryConfig(scalar_map=SCALARS))


async def test_a_session_answers_each_declared_field_from_its_row() -> None:
    stored = row()
    result = await schema_of(stored).execute(
        "{ session { id repo targetBranch title branch messages inboxStatus sbxConfig parentId "
        "createdAt updatedAt version } }"
    )
    assert result.errors is None, result.errors
    assert result.data == {
        "session": {
            "id": str(stored["id"]),
            "repo": "acme/app",
            "targetBranch": "main",
            "title": "Fix the login",
            "branch": "fix-the-login",
            "messages": [{"role": "user", "content": "fix the login"}],
            "inboxStatus": "PENDING",
            "sbxConfig": None,
            "parentId": str(stored["parent"]),
            "createdAt": "2026-11-26T08:00:00+00:00",
            "updatedAt": "2026-11-26T08:00:00+00:00",
            "version": 3,
        }
    }


@pytest.mark.parametrize("field", ["messages", "sbxConfig"])
async def test_json_is_parsed_only_when_its_field_is_selected(field: str) -> None:
    # Text that is no JSON: a session is still built from it, and answers its other fields.
    schema = schema_of(row(messages="{not json", sbx_config="{not json"))
    unselected = await schema.execute("{ session { id title } }")
    assert unselected.errors is None, unselected.errors
    selected = await schema.execute(f"{{ session {{ id {field} }} }}")
    assert selected.errors is not None
    assert selected.errors[0].path == ["session", field]
