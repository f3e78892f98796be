"""Every part of the schema is described, as GraphiQL's docs pane shows it (through introspection),
and a session's fields as the declaration describes them."""

from __future__ import annotations

import typing
from typing import Any

import msgspec
import pytest

from app import model
from app.graphql.fields import graphql_name
from tests.graphql.conftest import Types

# Types graphql-core defines (and describes) itself.
BUILT_IN = frozenset({"String", "Int", "Float", "Boolean", "ID"})


def undescribed(types: Types) -> list[str]:
    """Every type, field, argument, input field and enum value of ours without a description."""
    missing: list[str] = []

    def check(path: str, item: dict[str, Any]) -> None:
        if not (item["description"] or "").strip():
            missing.append(path)

    for name, type_ in types.items():
        if name.startswith("__") or name in BUILT_IN:
            continue
        check(name, type_)
        for field in type_["fields"] or []:
            check(f"{name}.{field['name']}", field)
            for argument in field["args"]:
                check(f"{name}.{field['name']}({argument['name']}:)", argument)
        for field in type_["inputFields"] or []:
            check(f"{name}.{field['name']}", field)
        for value in type_["enumValues"] or []:
            check(f"{name}.{value['name']}", value)
    return missing


def descriptions(type_: dict[str, Any]) -> dict[str, str]:
    fields = type_["fields"] or type_["inputFields"]
    return {field["name"]: field["description"] for field in fields}


def test_every_part_of_the_schema_is_described(types: Types) -> None:
    assert undescribed(types) == []


def test_the_walk_sees_what_is_undescribed() -> None:
    bare = {"description": None}
    type_ = {
        "name": "Thing",
        "description": "A thing.",
        "fields": [{"name": "size", "description": "", "args": [{"name": "unit", **bare}]}],
        "inputFields": None,
        "enumValues": [{"name": "BIG", **bare}],
    }
    assert undescribed({"Thing": type_}) == ["Thing.size", "Thing.size(unit:)", "Thing.BIG"]


def test_a_sessions_fields_are_described_by_the_declaration(
    types: Types,
) -> None:
    expected = {graphql_name(name): model.describe(name) for name in model.Session.__annotations__}
    described = descriptions(types["Session"])
    assert {name: described[name] for name in expected} == expected


@pytest.mark.parametrize(
    ("input_name", "command"),
    [("CreateSessionInput", model.NewSession), ("UpdateSessionInput", model.SessionChanges)],
)
def test_input_fields_are_described_by_the_declaration(
    types: Types, input_name: str, command: type[msgspec.Struct]
) -> None:
    expected = {graphql_name(name): model.describe(name) for name in command.__struct_fields__}
    described = descriptions(types[input_name])
    assert {name: described[name] for name in expected} == expected


def test_the_idempotency_key_is_described_by_the_declaration(
    types: Types,
) -> None:
    [meta] = typing.get_args(model.IdempotencyKey)[1:]
    assert descriptions(types["CreateSessionInput"])["idempotencyKey"] == meta.description


@pytest.mark.parametrize("name", ["UUID", "JSON", "DateTime"])
def test_scalars_name_their_specification(types: Types, name: str) -> None:
    assert types[name]["specifiedByURL"].startswith("https://www.rfc-editor.org/rfc/")
