"""How a field of the declaration (`app.model`) appears in GraphQL: its name and its type. The
output type `Session` and the mutations' inputs both derive their fields through these."""

from __future__ import annotations

from collections.abc import Mapping
from types import NoneType
from typing import Any

from msgspec import UnsetType
from strawberry.scalars import JSON
from strawberry.utils.str_converters import to_camel_case

from app import model

# The session's fields whose GraphQL name is not their camel case: in GraphQL, `parent` is the
# parent session itself, and its id is `parentId`.
RENAMED: Mapping[str, str] = {"parent": "parentId"}


def graphql_name(field: str) -> str:
    """The GraphQL name of the session's field `field` (a service name)."""
    return RENAMED.get(field) or to_camel_case(field)


def graphql_type(hint: Any) -> Any:
    """The GraphQL type of a declared field, nullability aside: its declared type, JSON for
    `Any`."""
    [base] = model.base_types(hint) - {NoneType, UnsetType}
    return JSON if base is Any else base
