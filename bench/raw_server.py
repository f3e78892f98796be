"""The baseline: the same three reads as our REST paths, written directly on Starlette, asyncpg
and orjson, with nothing else in between. PostgreSQL only (`DATABASE_URL`).

    DATABASE_URL=postgres://… .venv/bin/python -m uvicorn bench.raw_server:app --port 8001

The bodies are byte-for-byte what our server answers for the same rows (`GET /sessions/{id}`,
`GET /sessions?limit=N` with its next cursor, and `GET /sessions` streamed), so a difference in
speed or memory is the cost of our layers, not of a different output."""

from __future__ import annotations

import base64
import os
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
        Route("/sessions/{session_id}", get_session, methods=["GET"]),
    ],
    lifespan=lifespan,
)
