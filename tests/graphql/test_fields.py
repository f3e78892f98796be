"""A declared field's GraphQL name is its camel case, but for `parentId`; its GraphQL type is its
declared type, nullability aside, and JSON for a field that holds any JSON value."""

from __future__ import annotations

import typing
from datetime import datetime
from typing import Any
from uuid import UUID

import pytest
from strawberry.scalars import JSON

from app import model
from app.graphql.fields import graphql_name, graphql_type
from app.tables import InboxStatus


@pytest.mark.parametrize(
    ("field", "name"),
    [("repo", "repo"), ("target_branch", "targetBranch"), ("parent", "parentId")],
)
def test_graphql_names(field: str, name: str) -> None:
    assert graphql_name(field) == name


@pytest.mark.parametrize(
    ("field", "type_"),
    [
        ("id", UUID),
        ("repo", str),
        ("messages", JSON),
        ("inbox_status", InboxStatus),
        ("parent", UUID),
        ("created_at", datetime),
        ("version", int),
    ],
)
def test_graphql_types(field: str, type_: Any) -> None:
    hint = typing.get_type_hints(model.Session, include_extras=True)[field]
    assert graphql_type(hint) is type_
