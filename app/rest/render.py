"""What REST answers: a session as the contract's JSON, the earlier service's envelopes, and the
streamed list.

The session's JSON is derived from `app.model.Session`: each field's converter follows from its
annotation (UUIDs as text, JSON columns spliced in as the text they are stored as, times with six
fractional digits and an offset)."""

from __future__ import annotations

import typing
from collections.abc import AsyncGenerator, Callable, Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
from starlette.responses import Response

from app import model
from app.model import Session
from app.rest.errors import JSON_TYPE
from app.rest.requests import Return

CREATED = "Session created successfully"
UPDATED = "Session updated successfully"
DELETED = "Session deleted successfully"
# A streamed list is sent in pieces of about this many bytes.
STREAM_CHUNK = 65536


def _fragment(text: str | None) -> orjson.Fragment | None:
    return None if text is None else orjson.Fragment(text)


def _uuid(value: UUID | None) -> str | None:
    return None if value is None else str(value)


def _timestamp(value: datetime) -> datetime | str:
    """Always six fractional digits and an offset: "2026-11-26T08:00:00.123456+00:00". Stored
    times come back in UTC; orjson writes them so itself, except a whole second, where it would
    leave the fraction out. (Formatting every time in Python cost a third of a stream's CPU.)"""
    if value.microsecond:
        return value
    return value.isoformat(timespec="microseconds")


def _converter(name: str, hint: Any) -> Callable[[Any], Any] | None:
    if name in model.JSON_FIELDS:
        return _fragment
    types = model.base_types(hint)
    if UUID in types:
        return _uuid
    if datetime in types:
        return _timestamp
    return None


def _compile_session_json() -> Callable[[Session], dict[str, Any]]:
    """`session_json`, written from the declaration as one dict display: it runs once per row
    of a stream, where a loop over the fields cost a tenth of the stream's CPU."""
    hints = typing.get_type_hints(Session, include_extras=True)
    converters = {name: _converter(name, hint) for name, hint in hints.items()}
    items = ", ".join(
        f"{name!r}: row[{name!r}]"
        if converters[name] is None
        else f"{name!r}: to_{name}(row[{name!r}])"
        for name in hints
    )
    # Each converter is named after its field: `'id': to_id(row['id'])`.
    namespace: dict[str, Any] = {
        f"to_{name}": convert for name, convert in converters.items() if convert is not None
    }
    exec(f"def session_json(row):\n    return {{{items}}}\n", namespace)
    function: Callable[[Session], dict[str, Any]] = namespace["session_json"]
    function.__doc__ = "The contract's session object."
    return function


session_json = _compile_session_json()


def json_response(
    payload: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(payload), status, headers, media_type=JSON_TYPE)


def etag(row: Session) -> dict[str, str]:
    return {"ETag": f'"{row["version"]}"'}


def envelope(
    message: str,
    row: Session,
    *,
    with_session: bool,
    asked: Return | None,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    **fields: Any,
) -> Response:
    """`{"success": true, "message", **fields}`, with `"session"` when `with_session`; the
    `Prefer` the client sent (`asked`) is acknowledged with `Preference-Applied`."""
    payload: dict[str, Any] = {"success": True, "message": message, **fields}
    if with_session:
        payload["session"] = session_json(row)
    all_headers = {**etag(row), **(headers or {})}
    if asked is not None:
        all_headers["Preference-Applied"] = f"return={asked.value}"
    return json_response(payload, status, all_headers)


async def stream(
    first: Session | None, rows: AsyncGenerator[Session, None]
) -> AsyncGenerator[bytes, None]:
    """`{"sessions": [...]}` written as rows arrive from the database cursor, so memory holds
    one chunk at a time however many sessions there are."""
    chunk = bytearray(b'{"sessions":[')
    try:
        if first is not None:
            chunk += orjson.dumps(session_json(first))
            async for row in rows:
                chunk += b","
                chunk += orjson.dumps(session_json(row))
                if len(chunk) >= STREAM_CHUNK:
                    yield bytes(chunk)
                    chunk.clear()
    finally:
        await rows.aclose()
    chunk += b"]}"
    yield bytes(chunk)
