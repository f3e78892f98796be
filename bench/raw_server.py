"""The baseline: the same three reads and the creation of our REST paths, written directly on
Starlette, asyncpg and orjson, with nothing else in between. PostgreSQL only (`DATABASE_URL`).

    DATABASE_URL=postgres://… .venv/bin/python -m uvicorn bench.raw_server:app --port 8001

The bodies are byte-for-byte what our server answers for the same rows (`GET /sessions/{id}`,
`GET /sessions?limit=N` with its next cursor, and `GET /sessions` streamed), so a difference in
speed or memory is the cost of our layers, not of a different output. `POST /sessions` answers
ours too (201, `Location`, `ETag: "1"`, the same body) with one `INSERT … RETURNING`, but checks
only that `repo` and `target_branch` are text, and names the session itself: a title from the
first line of the first message and a branch unique per request (`raw/<uuid>`), with no namer."""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

import asyncpg
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

COLUMNS = (
    "id, repo, target_branch, title, branch, messages, inbox_status, sbx_config, parent, "
    "created_at, updated_at, version"
)
NEWEST_FIRST = "ORDER BY created_at DESC, id DESC"
INSERT = (
    "INSERT INTO session (repo, target_branch, title, branch, messages, parent) "
    "VALUES ($1, $2, $3, $4, $5::text::jsonb, $6) RETURNING id"
)
CREATED = "Session created successfully"
TITLE_MAX = 80
JSON = "application/json"
CHUNK = 65536


def _session(row: Any) -> dict[str, Any]:
    messages, sbx_config, parent = row["messages"], row["sbx_config"], row["parent"]
    return {
        "id": str(row["id"]),
        "repo": row["repo"],
        "target_branch": row["target_branch"],
        "title": row["title"],
        "branch": row["branch"],
        "messages": None if messages is None else orjson.Fragment(messages),
        "inbox_status": row["inbox_status"],
        "sbx_config": None if sbx_config is None else orjson.Fragment(sbx_config),
        "parent": None if parent is None else str(parent),
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "version": row["version"],
    }


def _error(status: int, err: str, msg: str, code: str) -> Response:
    body = orjson.dumps({"err": err, "msg": msg, "code": code})
    return Response(body, status, media_type=JSON)


async def get_session(request: Request) -> Response:
    try:
        session_id = UUID(request.path_params["session_id"])
    except ValueError:
        return _error(400, "Bad Request", "Invalid UUID format", "INVALID_INPUT")
    pool: asyncpg.Pool = request.state.pool
    row = await pool.fetchrow(f"SELECT {COLUMNS} FROM session WHERE id = $1", session_id)
    if row is None:
        return _error(404, "Not Found", "Session not found", "NOT_FOUND")
    return Response(
        orjson.dumps({"session": _session(row)}),
        media_type=JSON,
        headers={"ETag": f'"{row["version"]}"'},
    )


def _title(messages: Any) -> str:
    """The first line of the first message's content, cut to TITLE_MAX characters."""
    if isinstance(messages, list) and messages and isinstance(messages[0], dict):
        content = messages[0].get("content")
        if isinstance(content, str) and (line := content.strip().split("\n", 1)[0].strip()):
            return line[:TITLE_MAX]
    return "Untitled session"


async def create_session(request: Request) -> Response:
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        return _error(400, "Bad Request", "Invalid JSON", "INVALID_INPUT")
    if not isinstance(body, dict) or not all(
        isinstance(body.get(key), str) and body[key] for key in ("repo", "target_branch")
    ):
        return _error(400, "Bad Request", "repo and target_branch are required", "INVALID_INPUT")
    messages = body.get("messages")
    parent = body.get("parent")
    pool: asyncpg.Pool = request.state.pool
    session_id = await pool.fetchval(
        INSERT,
        body["repo"],
        body["target_branch"],
        _title(messages),
        f"raw/{uuid.uuid4()}",
        None if messages is None else orjson.dumps(messages).decode(),
        None if parent is None else UUID(parent),
    )
    body_out = {"success": True, "message": CREATED, "id": str(session_id)}
    return Response(
        orjson.dumps(body_out),
        201,
        media_type=JSON,
        headers={"ETag": '"1"', "Location": f"/sessions/{session_id}"},
    )


async def list_sessions(request: Request) -> Response:
    pool: asyncpg.Pool = request.state.pool
    params = request.query_params
    repo = params.get("repo")
    where, args = (" WHERE repo = $1", [repo]) if repo is not None else ("", [])
    if "limit" not in params:
        return StreamingResponse(_stream(pool, where, args), media_type=JSON)
    limit = int(params["limit"])
    rows = await pool.fetch(
        f"SELECT {COLUMNS} FROM session{where} {NEWEST_FIRST} LIMIT ${len(args) + 1}",
        *args,
        limit + 1,
    )
    next_cursor = None
    headers = {}
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        raw = orjson.dumps(["created_at", last["created_at"].isoformat(), str(last["id"])])
        next_cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        query = [(k, v) for k, v in params.multi_items() if k != "cursor"]
        query.append(("cursor", next_cursor))
        headers["Link"] = f'<{request.url.path}?{urlencode(query)}>; rel="next"'
    payload = {"sessions": [_session(row) for row in rows], "next_cursor": next_cursor}
    return Response(orjson.dumps(payload), media_type=JSON, headers=headers)


async def _stream(pool: asyncpg.Pool, where: str, args: list[Any]) -> AsyncIterator[bytes]:
    yield b'{"sessions":['
    chunk = bytearray()
    first = True
    async with pool.acquire() as connection, connection.transaction(readonly=True):
        async for row in connection.cursor(
            f"SELECT {COLUMNS} FROM session{where} {NEWEST_FIRST}", *args, prefetch=500
        ):
            if not first:
                chunk += b","
            first = False
            chunk += orjson.dumps(_session(row))
            if len(chunk) >= CHUNK:
                yield bytes(chunk)
                chunk.clear()
    chunk += b"]}"
    yield bytes(chunk)


@asynccontextmanager
async def lifespan(_app: Starlette) -> AsyncIterator[dict[str, Any]]:
    # The same pool size and session settings as our server's.
    pool = await asyncpg.create_pool(
        os.environ["DATABASE_URL"],
        min_size=1,
        max_size=10,
        server_settings={"application_name": "session-inbox-raw", "statement_timeout": "5000"},
    )
    try:
        yield {"pool": pool}
    finally:
        await pool.close()


app = Starlette(
    routes=[
        Route("/sessions", list_sessions, methods=["GET"]),
        Route("/sessions", create_session, methods=["POST"]),
        Route("/sessions/{session_id}", get_session, methods=["GET"]),
    ],
    lifespan=lifespan,
)
