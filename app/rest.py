"""The REST compatibility paths (`/sessions`…): parse, call the service, serialize, map errors.

Bodies are snake_case JSON. Every error is `{"err": title, "msg": detail}` with the status of the
contract's error table."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from app import validation
from app.db import Row
from app.errors import DomainError, ErrorCode, InvalidInput
from app.listing import SessionFilter
from app.service import JSON_FIELDS, SessionService
from app.state import AppState

log = logging.getLogger(__name__)

JSON_TYPE = "application/json"
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
# Fields of the session representation that a client may send back but cannot change.
READ_ONLY = frozenset({"id", "created_at", "updated_at", "version"})
# Fields a PUT replaces with null when the body leaves them out.
PUT_NULLABLE = ("messages", "sbx_config", "parent")
PUT_KEPT = ("title", "branch", "repo", "target_branch")

_STATUS_OF: dict[ErrorCode, tuple[int, str]] = {
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
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "version": row["version"],
    }


def _fragment(text: str | None) -> orjson.Fragment | None:
    return None if text is None else orjson.Fragment(text)


def _etag(row: Row) -> dict[str, str]:
    return {"ETag": f'"{row["version"]}"'}


def _path_id(request: Request) -> UUID:
    try:
        return UUID(request.path_params["session_id"])
    except ValueError:
        raise HTTPError(400, "Bad Request", "Invalid UUID format") from None


def _parent(value: Any) -> UUID | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise HTTPError(400, "Bad Request", "Invalid parent UUID format")
    try:
        return UUID(value)
    except ValueError:
        raise HTTPError(400, "Bad Request", "Invalid parent UUID format") from None


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
    """The version named by `If-Match: "<version>"`; a header that names no version of ours
    can match nothing."""
    header = request.headers.get("if-match")
    if header is None or header.strip() == "*":
        return None
    tag = header.strip().removeprefix("W/").strip('"')
    try:
        return int(tag)
    except ValueError:
        return -1


def _check_body_id(body: Mapping[str, Any], session_id: UUID) -> None:
    if "id" in body and body["id"] != str(session_id):
        try:
            same = UUID(str(body["id"])) == session_id
        except ValueError:
            same = False
        if not same:
            raise HTTPError(400, "Bad Request", "body id does not match the path")


Handler = Callable[[Request, SessionService], Coroutine[Any, Any, Response]]


def endpoint(handler: Handler) -> Callable[[Request], Coroutine[Any, Any, Response]]:
    """Runs `handler` with the service and turns refusals into the contract's error bodies."""

    async def run(request: Request) -> Response:
        state: AppState = request.state.inbox
        try:
            return await handler(request, state.service)
        except HTTPError as exc:
            return error_response(exc.status, exc.err, exc.msg)
        except DomainError as exc:
            status, err = _STATUS_OF[exc.code]
            return error_response(status, err, exc.message)

    return run


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
    parent = params.get("parent")
    return SessionFilter(
        inbox_status=tuple(validation.inbox_status(s) for s in statuses) if statuses else None,
        repo=params.get("repo"),
        parent_id=_parent(parent) if parent is not None else None,
    )


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be an integer from 1 to {MAX_LIMIT}", "limit")
    return limit


async def list_sessions(request: Request, service: SessionService) -> Response:
    params = request.query_params
    session_filter = _list_filter(request)
    if "limit" not in params and "cursor" not in params:
        return StreamingResponse(_stream(service, session_filter), media_type=JSON_TYPE)
    page = await service.list_page(
        session_filter, first=_limit(params.get("limit")), after=params.get("cursor"), max_page=1000
    )
    next_cursor = page.cursor(page.rows[-1]) if page.has_next and page.rows else None
    headers = {}
    if next_cursor is not None:
        query = [(k, v) for k, v in params.multi_items() if k != "cursor"]
        query.append(("cursor", next_cursor))
        headers["Link"] = f'<{request.url.path}?{urlencode(query)}>; rel="next"'
    payload = {"sessions": [session_json(row) for row in page.rows], "next_cursor": next_cursor}
    return json_response(payload, headers=headers)


async def _stream(service: SessionService, session_filter: SessionFilter) -> AsyncIterator[bytes]:
    """`{"sessions": [...]}` written as rows arrive from the database cursor."""
    yield b'{"sessions":['
    chunk = bytearray()
    first = True
    async for row in service.stream(session_filter):
        if not first:
            chunk += b","
        first = False
        chunk += orjson.dumps(session_json(row))
        if len(chunk) >= 65536:
            yield bytes(chunk)
            chunk.clear()
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
    row = await service.update(session_id, changes, expected_version=_expected_version(request))
    return _updated(row)


async def patch_session(request: Request, service: SessionService) -> Response:
    session_id = _path_id(request)
    body = await _body(request)
    _check_body_id(body, session_id)
    changes = {k: v for k, v in body.items() if k not in READ_ONLY}
    if "parent" in changes:
        changes["parent"] = _parent(changes["parent"])
    for field in changes.keys() - JSON_FIELDS - {"parent"}:
        if changes[field] is None:
            raise InvalidInput(f"{field} cannot be null", field)
    row = await service.update(
        session_id, changes, expected_version=_expected_version(request), merge_json=True
    )
    return _updated(row)


def _updated(row: Row) -> Response:
    payload = {
        "success": True,
        "message": "Session updated successfully",
        "session": session_json(row),
    }
    return json_response(payload, headers=_etag(row))


async def delete_session(request: Request, service: SessionService) -> Response:
    await service.delete(_path_id(request))
    return json_response({"success": True, "message": "Session deleted successfully"})


routes = [
    Route("/sessions", endpoint(create_session), methods=["POST"]),
    Route("/sessions", endpoint(list_sessions), methods=["GET"]),
    Route("/sessions/{session_id}", endpoint(get_session), methods=["GET"]),
    Route("/sessions/{session_id}", endpoint(replace_session), methods=["PUT"]),
    Route("/sessions/{session_id}", endpoint(patch_session), methods=["PATCH"]),
    Route("/sessions/{session_id}", endpoint(delete_session), methods=["DELETE"]),
]
