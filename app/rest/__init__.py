"""The REST compatibility paths (`/sessions`…): parse, call the service, serialize, map errors.

Bodies are snake_case JSON. Every error is `{"err": title, "msg": detail}` with the status of the
contract's error table."""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from app import validation
from app.db import DatabaseBusy, Row
from app.errors import DomainError, ErrorCode, InvalidInput, VersionConflict
from app.listing import NEWEST_FIRST, SessionFilter, decode_cursor
from app.rest import openapi
from app.service import SessionService
from app.state import AppState

JSON_TYPE = "application/json"
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# Fields of the session representation that a client may send back but cannot change.
READ_ONLY = frozenset({"id", "created_at", "updated_at", "version"})
# Fields a PUT replaces with null when the body leaves them out.
PUT_NULLABLE = ("messages", "sbx_config", "parent")
PUT_KEPT = ("title", "branch", "repo", "target_branch")
# A streamed list is sent in pieces of about this many bytes.
STREAM_CHUNK = 65536
# Seconds a client refused for load (503) is asked to wait.
RETRY_AFTER_S = 1

# The canonical 8-4-4-4-12 form, in either case. (Python's UUID() also takes braces, "urn:uuid:",
# signs, underscores and non-ASCII digits.)
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# `"3"`, `W/"3"` or a bare `3`.
_ETAG = re.compile(r'(?:W/)?"([0-9]{1,18})"|([0-9]{1,18})')
# What an If-Match that names no version expects: no session is ever at it.
NO_VERSION = -1

STATUS_OF: dict[ErrorCode, tuple[int, str]] = {
    ErrorCode.NOT_FOUND: (404, "Not Found"),
    ErrorCode.INVALID_INPUT: (422, "Unprocessable Entity"),
    ErrorCode.PARENT_NOT_FOUND: (422, "Unprocessable Entity"),
    ErrorCode.PARENT_CYCLE: (422, "Unprocessable Entity"),
    ErrorCode.VERSION_CONFLICT: (412, "Precondition Failed"),
    ErrorCode.BRANCH_TAKEN: (409, "Conflict"),
    ErrorCode.IDEMPOTENCY_MISMATCH: (422, "Unprocessable Entity"),
}


class HTTPError(Exception):
    """A request the REST layer refuses before it reaches the service."""

    def __init__(self, status: int, err: str, msg: str) -> None:
        super().__init__(msg)
        self.status, self.err, self.msg = status, err, msg


def json_response(
    payload: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(payload), status, headers, media_type=JSON_TYPE)


def error_response(status: int, err: str, msg: str) -> Response:
    return json_response({"err": err, "msg": msg}, status)


def session_json(row: Row) -> dict[str, Any]:
    """The contract's session object. JSON columns are spliced in as the stored text."""
    parent = row["parent"]
    return {
        "id": str(row["id"]),
        "repo": row["repo"],
        "target_branch": row["target_branch"],
        "title": row["title"],
        "branch": row["branch"],
        "messages": _fragment(row["messages"]),
        "inbox_status": row["inbox_status"],
        "sbx_config": _fragment(row["sbx_config"]),
        "parent": None if parent is None else str(parent),
        "created_at": _timestamp(row["created_at"]),
        "updated_at": _timestamp(row["updated_at"]),
        "version": row["version"],
    }


def _fragment(text: str | None) -> orjson.Fragment | None:
    return None if text is None else orjson.Fragment(text)


def _timestamp(value: datetime) -> datetime | str:
    """Always six fractional digits and an offset: "2026-11-26T08:00:00.123456+00:00". Stored
    times come back in UTC; orjson writes them so itself, except a whole second, where it would
    leave the fraction out. (Formatting every time in Python cost a third of a stream's CPU.)"""
    if value.microsecond:
        return value
    return value.isoformat(timespec="microseconds")


def _etag(row: Row) -> dict[str, str]:
    return {"ETag": f'"{row["version"]}"'}


def _uuid(value: Any) -> UUID | None:
    """The UUID `value` spells, or None."""
    if isinstance(value, str) and _UUID.fullmatch(value):
        return UUID(value)
    return None


def _path_id(request: Request) -> UUID:
    session_id = _uuid(request.path_params["session_id"])
    if session_id is None:
        raise HTTPError(400, "Bad Request", "Invalid UUID format")
    return session_id


def _parent(value: Any) -> UUID | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput("parent must be a UUID string or null", "parent")
    parent = _uuid(value)
    if parent is None:
        raise HTTPError(400, "Bad Request", "Invalid parent UUID format")
    return parent


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise HTTPError(422, "Parse Error", f"body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise HTTPError(422, "Unprocessable Entity", "body must be a JSON object")
    return body


def _expected_version(request: Request) -> int | None:
    """The version named by `If-Match`; None when there is no condition (absent, or `*`), and
    NO_VERSION for a header that names no version of ours."""
    header = request.headers.get("if-match")
    if header is None or header.strip() == "*":
        return None
    match = _ETAG.fullmatch(header.strip())
    if match is None:
        return NO_VERSION
    return int(match[1] or match[2])


def _check_body_id(body: Mapping[str, Any], session_id: UUID) -> None:
    if "id" in body and _uuid(body["id"]) != session_id:
        raise HTTPError(400, "Bad Request", "body id does not match the id in the path")


Handler = Callable[[Request, SessionService], Coroutine[Any, Any, Response]]


def resource(path: str, handlers: Mapping[str, Handler]) -> Route:
    """One route for all of a path's methods, so a wrong method gets a 405 whose `Allow` names
    every method of the path (Starlette takes it from the first route whose path matches). Each
    handler runs with the service; refusals become the contract's error bodies."""

    async def dispatch(request: Request) -> Response:
        handler = handlers["GET" if request.method == "HEAD" else request.method]
        state: AppState = request.state.inbox
        try:
            return await handler(request, state.service)
        except HTTPError as exc:
            return error_response(exc.status, exc.err, exc.msg)
        except DomainError as exc:
            status, err = STATUS_OF[exc.code]
            return error_response(status, err, exc.message)
        except DatabaseBusy as exc:
            response = error_response(503, "Service Unavailable", str(exc))
            response.headers["Retry-After"] = str(RETRY_AFTER_S)
            return response

    return Route(path, dispatch, methods=list(handlers))


async def create_session(request: Request, service: SessionService) -> Response:
    body = await _body(request)
    for field in ("repo", "target_branch"):
        if field not in body:
            raise InvalidInput(f"{field} is required", field)
    created = await service.create(
        repo=body["repo"],
        target_branch=body["target_branch"],
        messages=body.get("messages"),
        parent=_parent(body.get("parent")),
        idempotency_key=request.headers.get("idempotency-key"),
    )
    row = created.session
    headers = {"Location": f"/sessions/{row['id']}", **_etag(row)}
    if created.replayed:
        headers["Idempotent-Replayed"] = "true"
    payload = {
        "success": True,
        "message": "Session created successfully",
        "id": str(row["id"]),
        "session": session_json(row),
    }
    return json_response(payload, 201, headers)


async def get_session(request: Request, service: SessionService) -> Response:
    row = await service.get(_path_id(request))
    if row is None:
        raise HTTPError(404, "Not Found", "Session not found")
    return json_response({"session": session_json(row)}, headers=_etag(row))


def _list_filter(request: Request) -> SessionFilter:
    params = request.query_params
    statuses = params.getlist("inbox_status")
    repo = params.get("repo")
    parent = params.get("parent")
    return SessionFilter(
        inbox_status=tuple(validation.inbox_status(s) for s in statuses) if statuses else None,
        repo=None if repo is None else validation.required_text("repo", repo),
        parent_id=None if parent is None else _parent(parent),
    )


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not re.fullmatch(r"[0-9]{1,9}", raw) or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidInput(f"limit must be an integer from 1 to {MAX_LIMIT}", "limit")
    return int(raw)


async def list_sessions(request: Request, service: SessionService) -> Response:
    params = request.query_params
    session_filter = _list_filter(request)
    if "limit" not in params and "cursor" not in params:
        if request.method == "HEAD":
            # GET's headers, without reading every session for a body that is not sent.
            return StreamingResponse(iter(()), media_type=JSON_TYPE)
        rows = service.stream(session_filter)
        try:
            # The first row is read before the status goes out, so that a refusal (no stream
            # slot free) or a database error is an error response, not a broken 200.
            first = await anext(rows, None)
        except BaseException:
            await rows.aclose()
            raise
        return StreamingResponse(_stream(first, rows), media_type=JSON_TYPE)
    limit = _limit(params.get("limit"))
    cursor = params.get("cursor")
    if cursor is not None:
        # Checked here so that the error names `cursor` (the service calls it `after`).
        decode_cursor(cursor, NEWEST_FIRST.field, "cursor")
    page = await service.list_page(session_filter, first=limit, after=cursor, max_page=MAX_LIMIT)
    next_cursor = page.cursor(page.rows[-1]) if page.has_next and page.rows else None
    headers = {}
    if next_cursor is not None:
        query = [(k, v) for k, v in params.multi_items() if k != "cursor"]
        query.append(("cursor", next_cursor))
        headers["Link"] = f'<{request.url.path}?{urlencode(query)}>; rel="next"'
    payload = {"sessions": [session_json(row) for row in page.rows], "next_cursor": next_cursor}
    return json_response(payload, headers=headers)


async def _stream(first: Row | None, rows: AsyncGenerator[Row, None]) -> AsyncIterator[bytes]:
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


async def replace_session(request: Request, service: SessionService) -> Response:
    session_id = _path_id(request)
    body = await _body(request)
    _check_body_id(body, session_id)
    if "inbox_status" not in body:
        raise InvalidInput("inbox_status is required", "inbox_status")
    changes: dict[str, Any] = {"inbox_status": body["inbox_status"]}
    for field in PUT_NULLABLE:
        changes[field] = body.get(field)
    for field in PUT_KEPT:
        if field in body:
            changes[field] = body[field]
    changes["parent"] = _parent(changes["parent"])
    return await _update(request, service, session_id, changes, merge_json=False)


async def patch_session(request: Request, service: SessionService) -> Response:
    """RFC 7396: absent fields stay, null clears, and `messages`/`sbx_config` objects merge
    into the stored ones. Fields that are not the session's are refused by the service."""
    session_id = _path_id(request)
    body = await _body(request)
    _check_body_id(body, session_id)
    changes = {k: v for k, v in body.items() if k not in READ_ONLY}
    if "parent" in changes:
        changes["parent"] = _parent(changes["parent"])
    return await _update(request, service, session_id, changes, merge_json=True)


async def _update(
    request: Request,
    service: SessionService,
    session_id: UUID,
    changes: Mapping[str, Any],
    *,
    merge_json: bool,
) -> Response:
    expected = _expected_version(request)
    try:
        row = await service.update(
            session_id, changes, expected_version=expected, merge_json=merge_json
        )
    except VersionConflict:
        if expected != NO_VERSION:
            raise
        raise HTTPError(
            412, "Precondition Failed", 'If-Match must name a version, as in "3" (its ETag)'
        ) from None
    payload = {
        "success": True,
        "message": "Session updated successfully",
        "session": session_json(row),
    }
    return json_response(payload, headers=_etag(row))


async def delete_session(request: Request, service: SessionService) -> Response:
    await service.delete(_path_id(request))
    return json_response({"success": True, "message": "Session deleted successfully"})


_OPENAPI = orjson.dumps(openapi.document(default_limit=DEFAULT_LIMIT, max_limit=MAX_LIMIT))


async def openapi_json(_request: Request) -> Response:
    return Response(_OPENAPI, media_type=JSON_TYPE)


routes = [
    resource("/sessions", {"GET": list_sessions, "POST": create_session}),
    resource(
        "/sessions/{session_id}",
        {
            "GET": get_session,
            "PUT": replace_session,
            "PATCH": patch_session,
            "DELETE": delete_session,
        },
    ),
    Route("/openapi.json", openapi_json, methods=["GET"]),
]
