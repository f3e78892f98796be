"""The OpenAPI 3.1 description of the REST compatibility paths, served at `GET /openapi.json`.

It is data written by hand, built once. Schemas say what the server accepts as exactly as JSON
Schema can (non-blank text without NUL, git's branch rules, case-insensitive statuses), so that a
generated client and a fuzzer agree with the server about which requests are valid. Patterns are
written for both ECMA-262 and Python's `re`."""

from __future__ import annotations

from typing import Any

from app.naming import BRANCH_MAX, TITLE_MAX
from app.tables import InboxStatus
from app.validation import IDEMPOTENCY_KEY_MAX, JSON_MAX_DEPTH, TEXT_MAX

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"

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
STATUSES = [status.value for status in InboxStatus]
# Each status in any letter case, with surrounding whitespace allowed.
STATUS_INPUT_PATTERN = (
    f"^[{_SPACE}]*(?:"
    + "|".join("".join(f"[{c.upper()}{c}]" for c in status) for status in STATUSES)
    + f")[{_SPACE}]*$"
)


def _schema(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _response(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/responses/{name}"}


def _parameter(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/parameters/{name}"}


def _header(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/headers/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {JSON: {"schema": schema}}


def _error(description: str, example: str, msg: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            JSON: {"schema": _schema("Error"), "example": {"err": example, "msg": msg}},
        },
    }


def _schemas() -> dict[str, Any]:
    json_strings = {
        "pattern": NO_NUL_PATTERN,
        "items": _schema("JsonValue"),
        "additionalProperties": _schema("JsonValue"),
        "propertyNames": {"pattern": NO_NUL_PATTERN},
    }
    text = {"type": "string", "minLength": 1, "pattern": TEXT_PATTERN}
    read_only = "Read-only: accepted and ignored."
    return {
        "Uuid": {
            "type": "string",
            "format": "uuid",
            "minLength": 36,
            "maxLength": 36,
            "pattern": UUID_PATTERN,
        },
        "Text": {
            **text,
            "maxLength": TEXT_MAX,
            "description": "Non-blank text without NUL characters.",
        },
        "IdempotencyKey": {
            **text,
            "maxLength": IDEMPOTENCY_KEY_MAX,
            "description": "Non-blank text without NUL characters.",
        },
        "Title": {
            "type": "string",
            "minLength": 1,
            "maxLength": TITLE_MAX,
            "pattern": TITLE_PATTERN,
            "description": "One line without control characters, with at least one visible "
            "character (a letter, mark, number, punctuation or symbol).",
        },
        "Branch": {
            "type": "string",
            "minLength": 1,
            "maxLength": BRANCH_MAX,
            "pattern": BRANCH_PATTERN,
            "description": "A name `git check-ref-format --branch` accepts; unique per repo.",
        },
        "InboxStatus": {"type": "string", "enum": STATUSES},
        "InboxStatusInput": {
            "type": "string",
            "pattern": STATUS_INPUT_PATTERN,
            "description": "One of " + ", ".join(STATUSES) + ", in any letter case.",
            "examples": ["active", "Active"],
        },
        "JsonValue": {
            "description": "Any JSON value; no string or key may contain a NUL character, and "
            f"it nests at most {JSON_MAX_DEPTH} levels deep.",
            **json_strings,
        },
        "Messages": {
            "type": ["object", "array", "null"],
            "description": "A JSON object or array (or null).",
            **json_strings,
        },
        "Session": {
            "type": "object",
            "required": [
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
            ],
            "additionalProperties": False,
            "properties": {
                "id": _schema("Uuid"),
                "repo": {"type": "string"},
                "target_branch": {"type": "string"},
                "title": {"type": "string"},
                "branch": {"type": "string"},
                "messages": {"type": ["object", "array", "null"]},
                "inbox_status": _schema("InboxStatus"),
                "sbx_config": {"description": "Any JSON value, or null."},
                "parent": {"oneOf": [_schema("Uuid"), {"type": "null"}]},
                "created_at": {"type": "string", "format": "date-time"},
                "updated_at": {"type": "string", "format": "date-time"},
                "version": {"type": "integer", "minimum": 1},
            },
        },
        "SessionCreate": {
            "type": "object",
            "required": ["repo", "target_branch"],
            "description": "Other fields are ignored.",
            "properties": {
                "repo": _schema("Text"),
                "target_branch": _schema("Text"),
                "messages": _schema("Messages"),
                "parent": {"oneOf": [_schema("Uuid"), {"type": "null"}]},
            },
        },
        "SessionReplace": {
            "type": "object",
            "required": ["inbox_status"],
            "description": "Full replacement: absent messages, sbx_config and parent become "
            "null; absent title, branch, repo and target_branch stay. Other fields are ignored.",
            "properties": {
                "id": {**_schema("Uuid"), "description": "When given, the id in the path."},
                "messages": _schema("Messages"),
                "inbox_status": _schema("InboxStatusInput"),
                "sbx_config": _schema("JsonValue"),
                "parent": {"oneOf": [_schema("Uuid"), {"type": "null"}]},
                "title": _schema("Title"),
                "branch": _schema("Branch"),
                "repo": _schema("Text"),
                "target_branch": _schema("Text"),
            },
        },
        "SessionPatch": {
            "type": "object",
            "description": "A JSON merge patch (RFC 7396): absent fields stay, null clears "
            "messages, sbx_config or parent, and objects in messages and sbx_config merge into "
            "the stored ones.",
            "additionalProperties": False,
            "properties": {
                "id": {**_schema("Uuid"), "description": "When given, the id in the path."},
                "created_at": {"description": read_only},
                "updated_at": {"description": read_only},
                "version": {"description": read_only},
                "messages": _schema("Messages"),
                "inbox_status": _schema("InboxStatusInput"),
                "sbx_config": _schema("JsonValue"),
                "parent": {"oneOf": [_schema("Uuid"), {"type": "null"}]},
                "title": _schema("Title"),
                "branch": _schema("Branch"),
                "repo": _schema("Text"),
                "target_branch": _schema("Text"),
            },
        },
        "SessionCreated": _envelope(
            "Session created successfully", id=_schema("Uuid"), session=_schema("Session")
        ),
        "SessionUpdated": _envelope("Session updated successfully", session=_schema("Session")),
        "SessionDeleted": _envelope("Session deleted successfully"),
        "SessionOne": {
            "type": "object",
            "required": ["session"],
            "additionalProperties": False,
            "properties": {"session": _schema("Session")},
        },
        "SessionList": {
            "type": "object",
            "required": ["sessions"],
            "additionalProperties": False,
            "properties": {
                "sessions": {"type": "array", "items": _schema("Session")},
                "next_cursor": {
                    "type": ["string", "null"],
                    "description": "Only with `limit` or `cursor`: the next page's cursor, "
                    "null on the last page.",
                },
            },
        },
        "Error": {
            "type": "object",
            "required": ["err", "msg"],
            "additionalProperties": False,
            "properties": {
                "err": {"type": "string", "description": "The status's title."},
                "msg": {"type": "string", "description": "What was wrong, naming the field."},
            },
        },
    }


def _envelope(message: str, **fields: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["success", "message", *fields],
        "additionalProperties": False,
        "properties": {
            "success": {"const": True},
            "message": {"const": message},
            **fields,
        },
    }


def _components() -> dict[str, Any]:
    return {
        "schemas": _schemas(),
        "parameters": {
            "SessionId": {
                "name": "session_id",
                "in": "path",
                "required": True,
                "schema": _schema("Uuid"),
            },
            "IfMatch": {
                "name": "If-Match",
                "in": "header",
                "required": False,
                "description": 'The version the change expects, as its ETag (`"3"`; `3` and '
                '`W/"3"` are accepted too); `*` matches any. Otherwise 412 and nothing changes.',
                "schema": {"type": "string"},
            },
        },
        "headers": {
            "ETag": {
                "description": 'The session\'s version, quoted: `"3"`.',
                "schema": {"type": "string", "pattern": '^"[0-9]+"$'},
            },
        },
        "responses": {
            "BadRequest": _error(
                "A malformed UUID in the path or in `parent`, or a body `id` that is not the "
                "path's.",
                "Bad Request",
                "Invalid UUID format",
            ),
            "NotFound": _error("No session has this id.", "Not Found", "Session not found"),
            "Conflict": _error(
                "The branch is already used by another session of the same repo.",
                "Conflict",
                "this branch is already used by another session of the repo",
            ),
            "PreconditionFailed": _error(
                "`If-Match` does not match the current version; nothing changed.",
                "Precondition Failed",
                "expected version 1, the session is at version 2",
            ),
            "UnprocessableEntity": _error(
                "The body is not JSON (`Parse Error`), or a field is missing, mistyped or "
                "invalid, the parent does not exist or would make a cycle, or the "
                "Idempotency-Key was used with a different body; the message names the field.",
                "Unprocessable Entity",
                "repo must not be empty",
            ),
            "ServiceUnavailable": {
                **_error(
                    "Too many sessions are being listed at once (without paging); retry after "
                    "`Retry-After` seconds.",
                    "Service Unavailable",
                    "too many sessions are being listed at once",
                ),
                "headers": {
                    "Retry-After": {
                        "description": "Seconds to wait before retrying.",
                        "schema": {"type": "string", "pattern": "^[0-9]+$"},
                    }
                },
            },
            "Unexpected": _error(
                "Any other error: unknown path (404), wrong method (405, with `Allow`), or an "
                "unexpected failure (500).",
                "Internal Server Error",
                "an unexpected error occurred",
            ),
        },
    }


def document(*, default_limit: int, max_limit: int) -> dict[str, Any]:
    """The whole OpenAPI document; the page limits are the REST layer's."""
    updated = {
        "description": "The session as it is now.",
        "headers": {"ETag": _header("ETag")},
        "content": _json(_schema("SessionUpdated")),
    }
    change_errors = {
        "400": _response("BadRequest"),
        "404": _response("NotFound"),
        "409": _response("Conflict"),
        "412": _response("PreconditionFailed"),
        "422": _response("UnprocessableEntity"),
        "default": _response("Unexpected"),
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "session-inbox REST compatibility paths",
            "version": "0.1.0",
            "description": "Sessions of coding agents. Every error is a JSON "
            '`{"err": "<title>", "msg": "<detail>"}`.',
        },
        "paths": {
            "/sessions": {
                "post": {
                    "operationId": "createSession",
                    "summary": "Create a session (active, named by the server)",
                    "parameters": [
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": False,
                            "description": "A retry with the same key and body returns the "
                            "first session (with `Idempotent-Replayed: true`); with another "
                            "body, 422.",
                            "schema": _schema("IdempotencyKey"),
                        }
                    ],
                    "requestBody": {"required": True, "content": _json(_schema("SessionCreate"))},
                    "responses": {
                        "201": {
                            "description": "Created, or replayed for a repeated Idempotency-Key.",
                            "headers": {
                                "Location": {
                                    "description": "`/sessions/{id}`",
                                    "required": True,
                                    "schema": {"type": "string"},
                                },
                                "ETag": _header("ETag"),
                                "Idempotent-Replayed": {
                                    "description": "Present on a replay.",
                                    "schema": {"type": "string", "enum": ["true"]},
                                },
                            },
                            "content": _json(_schema("SessionCreated")),
                        },
                        "400": _response("BadRequest"),
                        "409": _response("Conflict"),
                        "422": _response("UnprocessableEntity"),
                        "default": _response("Unexpected"),
                    },
                },
                "get": {
                    "operationId": "listSessions",
                    "summary": "List sessions, newest first",
                    "description": "Without `limit` and `cursor`: every matching session, "
                    "streamed. With either: one page, `next_cursor` in the body and a "
                    '`Link: <…>; rel="next"` header when there is a next page.',
                    "parameters": [
                        {
                            "name": "inbox_status",
                            "in": "query",
                            "required": False,
                            "style": "form",
                            "explode": True,
                            "schema": {"type": "array", "items": _schema("InboxStatusInput")},
                        },
                        {"name": "repo", "in": "query", "schema": _schema("Text")},
                        {"name": "parent", "in": "query", "schema": _schema("Uuid")},
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {
                                "type": "integer",
                                "minimum": 1,
                                "maximum": max_limit,
                                "default": default_limit,
                            },
                        },
                        {
                            "name": "cursor",
                            "in": "query",
                            "description": "`next_cursor` of the previous page.",
                            "schema": {"type": "string"},
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "The sessions.",
                            "headers": {
                                "Link": {
                                    "description": 'The next page: `<…>; rel="next"`.',
                                    "schema": {"type": "string"},
                                }
                            },
                            "content": _json(_schema("SessionList")),
                        },
                        "400": _response("BadRequest"),
                        "422": _response("UnprocessableEntity"),
                        "503": _response("ServiceUnavailable"),
                        "default": _response("Unexpected"),
                    },
                },
            },
            "/sessions/{session_id}": {
                "parameters": [_parameter("SessionId")],
                "get": {
                    "operationId": "getSession",
                    "summary": "One session",
                    "responses": {
                        "200": {
                            "description": "The session.",
                            "headers": {"ETag": _header("ETag")},
                            "content": _json(_schema("SessionOne")),
                        },
                        "400": _response("BadRequest"),
                        "404": _response("NotFound"),
                        "default": _response("Unexpected"),
                    },
                },
                "put": {
                    "operationId": "replaceSession",
                    "summary": "Replace a session's fields",
                    "parameters": [_parameter("IfMatch")],
                    "requestBody": {
                        "required": True,
                        "content": _json(_schema("SessionReplace")),
                    },
                    "responses": {"200": updated, **change_errors},
                },
                "patch": {
                    "operationId": "patchSession",
                    "summary": "Change some of a session's fields (JSON merge patch)",
                    "parameters": [_parameter("IfMatch")],
                    "requestBody": {
                        "required": True,
                        "content": {
                            MERGE_PATCH: {"schema": _schema("SessionPatch")},
                            JSON: {"schema": _schema("SessionPatch")},
                        },
                    },
                    "responses": {"200": updated, **change_errors},
                },
                "delete": {
                    "operationId": "deleteSession",
                    "summary": "Delete a session; its children's parent becomes null",
                    "responses": {
                        "200": {
                            "description": "Deleted.",
                            "content": _json(_schema("SessionDeleted")),
                        },
                        "400": _response("BadRequest"),
                        "404": _response("NotFound"),
                        "default": _response("Unexpected"),
                    },
                },
            },
            "/openapi.json": {
                "get": {
                    "operationId": "getOpenApi",
                    "summary": "This document",
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3.1.",
                            "content": _json({"type": "object"}),
                        },
                        "default": _response("Unexpected"),
                    },
                }
            },
        },
        "components": _components(),
    }
