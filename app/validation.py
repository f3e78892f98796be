"""Checks on values that come from callers, shared by every operation of the service."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from app.errors import InvalidInput
from app.naming import BRANCH_MAX, TITLE_MAX, is_valid_branch, is_valid_title
from app.tables import InboxStatus

# How deep a JSON document may nest; deeper ones are refused rather than risking recursion.
JSON_MAX_DEPTH = 64
# Longest repo or target branch. Indexed text must fit a PostgreSQL B-tree entry (about 2.7 kB),
# and 500 characters of UTF-8 do, with the branch beside them.
TEXT_MAX = 500
IDEMPOTENCY_KEY_MAX = 255


def required_text(field: str, value: Any, max_length: int = TEXT_MAX) -> str:
    """A non-empty string without NUL bytes, at most `max_length` characters."""
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string", field)
    if not value.strip():
        raise InvalidInput(f"{field} must not be empty", field)
    if "\x00" in value:
        raise InvalidInput(f"{field} must not contain NUL bytes", field)
    if len(value) > max_length:
        raise InvalidInput(f"{field} must be at most {max_length} characters", field)
    return value


def title(value: Any) -> str:
    text = required_text("title", value)
    if not is_valid_title(text):
        raise InvalidInput(
            f"title must be one line of at most {TITLE_MAX} characters without control characters",
            "title",
        )
    return text


def branch(value: Any) -> str:
    text = required_text("branch", value)
    if not is_valid_branch(text):
        raise InvalidInput(
            f"branch must be a valid git branch name of at most {BRANCH_MAX} characters",
            "branch",
        )
    return text


def inbox_status(value: Any) -> InboxStatus:
    """A status, matched case-insensitively ("Active" is what older clients send)."""
    if isinstance(value, InboxStatus):
        return value
    if isinstance(value, str):
        try:
            return InboxStatus(value.strip().lower())
        except ValueError:
            pass
    allowed = ", ".join(s.value for s in InboxStatus)
    raise InvalidInput(f"inbox_status must be one of {allowed}", "inbox_status")


def json_document(field: str, value: Any, *, containers_only: bool = False) -> Any:
    """A JSON value the database can store: no NUL character in any string (PostgreSQL's jsonb
    refuses them), nesting at most JSON_MAX_DEPTH deep."""
    if value is None:
        return None
    if containers_only and not isinstance(value, dict | list):
        raise InvalidInput(f"{field} must be a JSON object or array", field)
    _check_json(field, value, 0)
    return value


def _check_json(field: str, value: Any, depth: int) -> None:
    if depth > JSON_MAX_DEPTH:
        raise InvalidInput(f"{field} nests deeper than {JSON_MAX_DEPTH} levels", field)
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidInput(f"{field} must not contain NUL characters", field)
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or "\x00" in key:
                raise InvalidInput(f"{field} must not contain NUL characters", field)
            _check_json(field, item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_json(field, item, depth + 1)
    elif isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        raise InvalidInput(f"{field} has an integer outside the 64-bit range", field)
    elif not (value is None or isinstance(value, bool | int | float)):
        raise InvalidInput(f"{field} must be JSON", field)


def dump_json(value: Any) -> str | None:
    """JSON text for a jsonb parameter; None stays SQL NULL."""
    return None if value is None else orjson.dumps(value).decode()


def fingerprint(*parts: Any) -> str:
    """A stable digest of a request's content, for idempotent retries."""
    return hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch: objects merge key by key, null removes, anything else
    replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result
