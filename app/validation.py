"""Checks on values that come from callers, shared by every operation of the service."""

from __future__ import annotations

import hashlib
import math
from decimal import Decimal
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
# The numbers a JSON document may hold: what its stored text and every reader of it (orjson,
# PostgreSQL's numeric, SQLite's text) carry exactly. Integers of 64 bits (orjson writes no
# larger), and numbers with a fraction or exponent that a 64-bit float holds as written; any
# other would be changed silently (2**64 read as 18446744073709552000, 1e400 as null).
JSON_INT_MIN, JSON_INT_MAX = -(2**63), 2**63 - 1
# Digits of the longest integer in that range, for a check before Python reads one.
JSON_INT_DIGITS = len(str(JSON_INT_MAX))

# What each check accepts, as JSON Schema patterns for the OpenAPI document (written for both
# ECMA-262 and Python's `re`, so a generated client, a fuzzer and the server agree).
# What Python's str.isspace() calls whitespace (what the server strips before "is it empty?").
_SPACE = (
    r"\t\n\u000b\u000c\r\u001c-\u001f \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f"
    r"\u205f\u3000"
)
# No NUL anywhere, and something besides whitespace.
TEXT_PATTERN = rf"^[^\u0000]*[^\u0000{_SPACE}][^\u0000]*$"
NO_NUL_PATTERN = r"^[^\u0000]*$"
# What app.naming calls control characters: C0, DEL, C1, line and paragraph separators,
# bidirectional controls and lone surrogates. `(?!.*\n)` keeps Python's `$` from accepting a
# trailing newline.
_CONTROL = r"\u0000-\u001f\u007f-\u009f\u2028-\u202e\u2066-\u2069\ud800-\udfff"
TITLE_PATTERN = rf"^(?!.*\n)[^{_CONTROL}]*[^{_CONTROL}{_SPACE}][^{_CONTROL}]*$"
# `git check-ref-format --branch`: no leading "-" or "/", not "@" or "HEAD", no "//", "..",
# "@{", no component starting with "." or ending with ".lock", no trailing "." or "/", none of
# git's forbidden characters.
BRANCH_PATTERN = (
    r"^(?!.*\n)(?!-)(?!/)(?!@$)(?!HEAD$)(?!.*//)(?!.*\.\.)(?!.*@\{)(?!.*[./]$)"
    r"(?!(?:.*/)?\.)(?!.*\.lock(?:/|$))"
    r"[^\u0000-\u0020\u007f~^:?*\[\\\ud800-\udfff]+$"
)
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_STATUSES = [status.value for status in InboxStatus]
# Each status in any letter case, with surrounding whitespace allowed.
STATUS_INPUT_PATTERN = (
    f"^[{_SPACE}]*(?:"
    + "|".join("".join(f"[{c.upper()}{c}]" for c in status) for status in _STATUSES)
    + f")[{_SPACE}]*$"
)


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


def title(field: str, value: Any) -> str:
    text = required_text(field, value)
    if not is_valid_title(text):
        raise InvalidInput(
            f"{field} must be one line of at most {TITLE_MAX} characters without control "
            "characters",
            field,
        )
    return text


def branch(field: str, value: Any) -> str:
    """A name git's rule accepts (which also refuses an empty one and NUL), nothing more: a
    branch of non-ASCII spaces alone, as git takes it, is taken too."""
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string", field)
    if not is_valid_branch(value):
        raise InvalidInput(
            f"{field} must be a valid git branch name of at most {BRANCH_MAX} characters",
            field,
        )
    return value


def inbox_status(field: str, value: Any) -> InboxStatus:
    """A status, matched case-insensitively ("Active" is what older clients send)."""
    try:
        return InboxStatus(value)
    except ValueError:
        pass
    allowed = ", ".join(s.value for s in InboxStatus)
    raise InvalidInput(f"{field} must be one of {allowed}", field)


def json_document(field: str, value: Any) -> Any:
    """A JSON value the database can store: no NUL character in any string (PostgreSQL's jsonb
    refuses them), nesting at most JSON_MAX_DEPTH deep."""
    if value is None:
        return None
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
    elif isinstance(value, int) and not isinstance(value, bool) and not is_json_int(value):
        raise InvalidInput(f"{field} has an integer outside the 64-bit range", field)
    elif isinstance(value, float) and not math.isfinite(value):
        raise InvalidInput(f"{field} has a number beyond the range of a 64-bit float", field)
    elif not (value is None or isinstance(value, bool | int | float)):
        raise InvalidInput(f"{field} must be JSON", field)


def exact_float(text: str) -> float:
    """The float a JSON number written `text` (with a fraction or an exponent) stands for, when
    the float is that number exactly as written (0.1 and 1e300 are; 1e400, 1e-400 and
    3.14159265358979323846 are not); ValueError saying why otherwise. A decoder's float hook."""
    value = float(text)
    shown = text if len(text) <= 40 else text[:37] + "..."
    if not math.isfinite(value):
        raise ValueError(f"the number {shown} is beyond the range of a 64-bit float")
    # The float is written back as its shortest form (repr): the same number, or another.
    if repr(value) != text and Decimal(text) != Decimal(repr(value)):
        raise ValueError(
            f"the number {shown} is not kept exactly by a 64-bit float (it would become {value!r})"
        )
    return value


def is_json_int(value: int) -> bool:
    """Whether a JSON document can hold the integer `value` exactly."""
    return JSON_INT_MIN <= value <= JSON_INT_MAX


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
