"""The one declaration of a session (app/model.py): the commands refuse bad input naming the field
however they are made, keep "absent" apart from "null", and the field sets and descriptions the
rest of the app derives from are the ones the contract names."""

from __future__ import annotations

import typing
import uuid
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app import model
from app.errors import InvalidInput, MalformedId
from app.model import (
    JSON_FIELDS,
    NULLABLE,
    READ_ONLY,
    NewSession,
    Session,
    SessionChanges,
)
from app.tables import InboxStatus
from app.validation import JSON_MAX_DEPTH

NEW = {"repo": "acme/app", "target_branch": "main"}


def nested(depth: int) -> Any:
    """A JSON array nested `depth` levels deep: [[[…]]]."""
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


# JSON values the store takes: no NUL in any string or key, integers in the signed 64-bit range.
TEXT = st.text(alphabet=st.characters(blacklist_characters="\x00", codec="utf-8"), max_size=8)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=12,
)


# The create command -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"repo": ""}, "repo"),
        ({"repo": "   "}, "repo"),
        ({"repo": 5}, "repo"),
        ({"repo": None}, "repo"),
        ({"repo": "r" * 501}, "repo"),
        ({"target_branch": "a\x00b"}, "target_branch"),
        ({"target_branch": "b" * 501}, "target_branch"),
        ({"messages": {"content": "nul \x00 inside"}}, "messages"),
        ({"messages": {"k\x00": 1}}, "messages"),
        ({"messages": [2**80]}, "messages"),
        ({"messages": nested(JSON_MAX_DEPTH + 2)}, "messages"),
        ({"parent": "not-a-uuid"}, "parent"),
        ({"parent": 5}, "parent"),
    ],
)
def test_new_session_refuses_bad_input_naming_the_field(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        NewSession.convert({**NEW, **fields})
    assert refused.value.field == field


@pytest.mark.parametrize("field", ["repo", "target_branch"])
def test_new_session_requires_repo_and_target_branch(field: str) -> None:
    values = {name: value for name, value in NEW.items() if name != field}
    with pytest.raises(InvalidInput) as refused:
        NewSession.convert(values)
    assert refused.value.field == field
    assert refused.value.message == f"{field} is required"


def test_a_malformed_parent_is_a_malformed_id() -> None:
    with pytest.raises(MalformedId) as refused:
        NewSession.convert({**NEW, "parent": "x"})
    assert refused.value.field == "parent"


def test_new_session_takes_a_parent_as_uuid_or_text() -> None:
    parent = uuid.uuid4()
    assert NewSession.convert({**NEW, "parent": parent}).parent == parent
    assert NewSession.convert({**NEW, "parent": str(parent)}).parent == parent


def test_new_session_ignores_fields_it_does_not_have() -> None:
    new = NewSession.convert({**NEW, "title": "ignored", "x": 1})
    assert new == NewSession(repo="acme/app", target_branch="main")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"repo": 5, "target_branch": "main"}', "repo"),
        (b'{"target_branch": "main"}', "repo"),
        (b'{"repo": "r", "target_branch": "main", "messages": 1e400}', "messages"),
        (b'{"repo": "r", "target_branch": "main", "messages": 99999999999999999999}', "messages"),
        (b'{"repo": "r", "target_branch": "main", "parent": "x"}', "parent"),
        (b"[1]", None),
    ],
)
def test_decode_refuses_a_bad_body_naming_the_field(body: bytes, field: str | None) -> None:
    with pytest.raises(InvalidInput) as refused:
        NewSession.decode(body)
    assert refused.value.field == field


def test_a_command_built_by_hand_runs_its_checks() -> None:
    with pytest.raises(InvalidInput) as refused:
        NewSession(repo=" ", target_branch="main")
    assert refused.value.field == "repo"
    with pytest.raises(InvalidInput) as refused:
        SessionChanges(branch="a..b")
    assert refused.value.field == "branch"


# The change command -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"inbox_status": "done"}, "inbox_status"),
        ({"inbox_status": 1}, "inbox_status"),
        ({"title": "two\nlines"}, "title"),
        ({"title": "x" * 81}, "title"),
        ({"title": 5}, "title"),
        ({"branch": "../x.lock"}, "branch"),
        ({"branch": "a b"}, "branch"),
        ({"branch": "b" * 101}, "branch"),
        ({"repo": ""}, "repo"),
        ({"target_branch": "\x00"}, "target_branch"),
        ({"sbx_config": {"a": "\x00"}}, "sbx_config"),
        ({"messages": ["\x00"]}, "messages"),
        ({"parent": "x"}, "parent"),
    ],
)
def test_session_changes_refuse_bad_input_naming_the_field(
    changes: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        SessionChanges.convert(changes)
    assert refused.value.field == field


@pytest.mark.parametrize("field", ["repo", "target_branch", "title", "branch", "inbox_status"])
def test_session_changes_refuse_null_for_a_field_that_cannot_be_null(field: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        SessionChanges.convert({field: None})
    assert refused.value.field == field


@pytest.mark.parametrize("field", ["version", "id", "created_at", "unknown"])
def test_session_changes_refuse_fields_a_client_cannot_write(field: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        SessionChanges.convert({field: 7})
    assert refused.value.field == field


def test_given_keeps_absent_apart_from_null() -> None:
    assert SessionChanges().given() == {}
    assert SessionChanges.convert({"parent": None, "title": "New"}).given() == {
        "title": "New",
        "parent": None,
    }
    assert SessionChanges.decode(b'{"messages": null, "sbx_config": {}}').given() == {
        "messages": None,
        "sbx_config": {},
    }


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("active", InboxStatus.ACTIVE),
        ("Active", InboxStatus.ACTIVE),
        (" PENDING ", InboxStatus.PENDING),
        ("Completed\n", InboxStatus.COMPLETED),
        ("ARCHIVED", InboxStatus.ARCHIVED),
    ],
)
def test_inbox_status_is_read_in_any_letter_case(text: str, status: InboxStatus) -> None:
    assert SessionChanges.convert({"inbox_status": text}).inbox_status is status
    body = orjson.dumps({"inbox_status": text})
    assert SessionChanges.decode(body).inbox_status is status


@pytest.mark.parametrize(
    "messages",
    ["a string", "", 0, -1.5, 2**63 - 1, True, False, None, [], {}, [1, "two", None]],
)
def test_messages_may_be_any_json_value(messages: Any) -> None:
    assert NewSession.convert({**NEW, "messages": messages}).messages == messages
    assert SessionChanges.convert({"messages": messages}).given() == {"messages": messages}


@given(JSON_VALUES)
def test_every_json_value_decodes_as_messages_and_sbx_config(value: Any) -> None:
    new = NewSession.decode(orjson.dumps({**NEW, "messages": value}))
    assert new.messages == value
    changes = SessionChanges.decode(orjson.dumps({"sbx_config": value}))
    assert changes.given() == {"sbx_config": value}


def test_json_may_nest_json_max_depth_levels_below_the_top_and_no_more() -> None:
    deepest = nested(JSON_MAX_DEPTH + 1)
    assert NewSession.convert({**NEW, "messages": deepest}).messages == deepest
    with pytest.raises(InvalidInput) as refused:
        NewSession.convert({**NEW, "messages": nested(JSON_MAX_DEPTH + 2)})
    assert refused.value.field == "messages"


# What the rest of the app derives from the declaration -------------------------------------------


SESSION_FIELDS = (
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
)


def test_the_derived_field_sets_are_the_contracts() -> None:
    assert tuple(Session.__annotations__) == SESSION_FIELDS
    assert READ_ONLY == ("id", "created_at", "updated_at", "version")
    assert SessionChanges.__struct_fields__ == SessionChanges.FIELDS
    assert set(SessionChanges.FIELDS) == {
        "repo",
        "target_branch",
        "title",
        "branch",
        "messages",
        "inbox_status",
        "sbx_config",
        "parent",
    }
    assert set(READ_ONLY) | set(SessionChanges.FIELDS) == set(SESSION_FIELDS)
    assert frozenset({"messages", "sbx_config", "parent"}) == NULLABLE
    assert frozenset({"messages", "sbx_config"}) == JSON_FIELDS


def test_new_session_writes_a_subset_of_the_changeable_fields() -> None:
    assert set(NewSession.__struct_fields__) <= set(SessionChanges.FIELDS)


@pytest.mark.parametrize("field", SESSION_FIELDS)
def test_every_session_field_has_a_description(field: str) -> None:
    description = model.describe(field)
    assert description.strip()
    assert description[0].isupper()


def test_describe_type_reads_an_alias_outside_the_session() -> None:
    assert model.describe_type(model.IdempotencyKey).startswith("A retry with the same key")


def test_base_types_see_through_annotations_and_unions() -> None:
    hints = typing.get_type_hints(Session, include_extras=True)
    assert model.base_types(hints["parent"]) == {uuid.UUID, type(None)}
    assert model.base_types(hints["repo"]) == {str}
