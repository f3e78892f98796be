"""The mutations' inputs are derived from the declaration's commands: one field per command field,
named, typed and nullable as the declaration says, then the inputs' own fields."""

from __future__ import annotations

from typing import Any

from app import model
from app.graphql.fields import graphql_name
from tests.graphql.conftest import Types


def type_name(ref: dict[str, Any]) -> str:
    """An introspected type reference as SDL writes it: `String!`, `[InboxStatus!]`."""
    if ref["kind"] == "NON_NULL":
        return type_name(ref["ofType"]) + "!"
    if ref["kind"] == "LIST":
        return f"[{type_name(ref['ofType'])}]"
    name: str = ref["name"]
    return name


def fields(types: Types, name: str) -> dict[str, str]:
    return {field["name"]: type_name(field["type"]) for field in types[name]["inputFields"]}


def test_create_input_has_the_fields_of_new_session(types: Types) -> None:
    assert fields(types, "CreateSessionInput") == {
        "repo": "String!",
        "targetBranch": "String!",
        "messages": "JSON",
        "parentId": "UUID",
        "idempotencyKey": "String",
    }
    names = [graphql_name(name) for name in model.NewSession.__struct_fields__]
    assert list(fields(types, "CreateSessionInput")) == [*names, "idempotencyKey"]


def test_update_input_has_the_fields_of_session_changes_none_required(types: Types) -> None:
    assert fields(types, "UpdateSessionInput") == {
        "repo": "String",
        "targetBranch": "String",
        "title": "String",
        "branch": "String",
        "messages": "JSON",
        "inboxStatus": "InboxStatus",
        "sbxConfig": "JSON",
        "parentId": "UUID",
        "expectedVersion": "Int",
    }
    names = [graphql_name(name) for name in model.SessionChanges.FIELDS]
    assert list(fields(types, "UpdateSessionInput")) == [*names, "expectedVersion"]
