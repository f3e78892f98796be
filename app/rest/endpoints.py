"""The REST endpoints: `/sessions` and `/sessions/{id}`. Each method parses, calls the service
and renders; `Endpoint` (Starlette's `HTTPEndpoint`) dispatches by method and answers a missing
one with 405 and `Allow`. Refusals are raised and rendered by `app.rest.errors`."""

from __future__ import annotations

import inspect
from typing import Annotated, Any, ClassVar, cast
from urllib.parse import urlencode

import msgspec
from msgspec import UNSET
from starlette.endpoints import HTTPEndpoint
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from app import model, validation
from app.errors import InvalidInput, NotFound, VersionConflict
from app.listing import NEWEST_FIRST, SessionFilter, decode_cursor
from app.model import NewSession, Session, SessionChanges
from app.rest import render, requests
from app.rest.errors import JSON_TYPE, HTTPError
from app.rest.requests import Return
from app.rest.streaming import DeadlineStreamingResponse
from app.service import SessionService
from app.state import AppState

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


_AS_READ = Annotated[Any, msgspec.Meta(description="As the server gave it; ignored.")]


def _read_only_fields() -> list[tuple[str, Any, Any]]:
    return [(name, _AS_READ, UNSET) for name in model.READ_ONLY]


# A change as REST bodies carry it: the session's writable fields, plus the ones a client may
# send back as it read them (`id`, times, version), accepted and ignored. A PATCH refuses any
# other field; a PUT, like the earlier service, ignores them, and requires `inbox_status`.
SessionPatch = cast(
    type[SessionChanges],
    msgspec.defstruct("SessionPatch", _read_only_fields(), bases=(SessionChanges,), kw_only=True),
)
SessionReplace = cast(
    type[SessionChanges],
    msgspec.defstruct(
        "SessionReplace",
        [("inbox_status", model.Status), *_read_only_fields()],
        bases=(SessionChanges,),
        kw_only=True,
        forbid_unknown_fields=False,
    ),
)


# The methods `HTTPEndpoint` looks for, in the order its `Allow` lists them.
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "QUERY")
Handler = Any  # an `async def` method of an `Endpoint`, taking the request


class Endpoint(HTTPEndpoint):
    """`HTTPEndpoint`, with what it works out anew for every request worked out once for each
    class: the methods it answers (HEAD by `get` when it has no `head`), and the handler of
    each. Handlers are coroutine functions, which `HTTPEndpoint` would otherwise check for on
    every request (to run the others in a thread)."""

    _handlers: ClassVar[dict[str, Handler]] = {}
    _allowed: ClassVar[list[str]] = []

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        handlers: dict[str, Handler] = {}
        for method in _METHODS:
            handler = getattr(cls, method.lower(), None)
            if handler is None and method == "HEAD":
                handler = getattr(cls, "get", None)
            if handler is None:
                continue
            if not inspect.iscoroutinefunction(handler):
                raise TypeError(f"{cls.__name__}.{handler.__name__} must be an async def")
            handlers[method] = handler
        cls._handlers = handlers
        cls._allowed = list(handlers)

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope = scope
        self.receive = receive
        self.send = send
        # What `method_not_allowed` lists in `Allow`.
        self._allowed_methods = self._allowed

    async def dispatch(self) -> None:
        request = Request(self.scope, receive=self.receive, send=self.send)
        handler = self._handlers.get(self.scope["method"])
        if handler is None:
            response = await self.method_not_allowed(request)
        else:
            response = await handler(self, request)
        await response(self.scope, self.receive, self.send)


def _service(request: Request) -> SessionService:
    state: AppState = request.state.inbox
    return state.service


class Sessions(Endpoint):
    """`/sessions`: create, and list (streamed, or a page)."""

    async def post(self, request: Request) -> Response:
        new = await requests.body(request, NewSession)
        created = await _service(request).create(
            new, idempotency_key=request.headers.get("idempotency-key")
        )
        row = created.session
        headers = {"Location": f"/sessions/{row['id']}"}
        if created.replayed:
            headers["Idempotent-Replayed"] = "true"
        asked = requests.preference(request)
        return render.envelope(
            render.CREATED,
            row,
            with_session=asked is Return.REPRESENTATION,
            asked=asked,
            status=201,
            headers=headers,
            id=str(row["id"]),
        )

    async def get(self, request: Request) -> Response:
        params = request.query_params
        session_filter = _list_filter(request)
        service = _service(request)
        if "limit" not in params and "cursor" not in params:
            if request.method == "HEAD":
                # GET's headers, without reading every session for a body that is not sent.
                return StreamingResponse(iter(()), media_type=JSON_TYPE)
            rows = service.stream(session_filter)
            try:
                # The first row is read before the status goes out, so that a refusal (no
                # stream slot free) or a database error is an error response, not a broken 200.
                first = await anext(rows, None)
            except BaseException:
                await rows.aclose()
                raise
            return DeadlineStreamingResponse(
                render.stream(first, rows), media_type=JSON_TYPE, source=rows
            )
        limit = _limit(params.get("limit"))
        cursor = params.get("cursor")
        if cursor is not None:
            # Checked here so that the error names `cursor` (the service calls it `after`).
            decode_cursor(cursor, NEWEST_FIRST.field, "cursor")
        page = await service.list_page(
            session_filter, first=limit, after=cursor, max_page=MAX_LIMIT
        )
        next_cursor = page.cursor(page.rows[-1]) if page.has_next and page.rows else None
        headers = {}
        if next_cursor is not None:
            query = [(k, v) for k, v in params.multi_items() if k != "cursor"]
            query.append(("cursor", next_cursor))
            headers["Link"] = f'<{request.url.path}?{urlencode(query)}>; rel="next"'
        payload = {
            "sessions": [render.session_json(row) for row in page.rows],
            "next_cursor": next_cursor,
        }
        return render.json_response(payload, headers=headers)


class OneSession(Endpoint):
    """`/sessions/{id}`: read, replace, patch, delete."""

    async def get(self, request: Request) -> Response:
        row = await _service(request).get(requests.session_id(request))
        if row is None:
            raise NotFound("Session not found")
        return render.json_response({"session": render.session_json(row)}, headers=render.etag(row))

    async def put(self, request: Request) -> Response:
        """Full replacement: absent `messages`, `sbx_config` and `parent` become null,
        `inbox_status` is required, absent `title`, `branch`, `repo`, `target_branch` stay."""
        session_id = requests.session_id(request)
        body = await requests.body(request, SessionReplace)
        _check_body_id(body, session_id)
        cleared = {name: None for name in model.NULLABLE if getattr(body, name) is UNSET}
        changes = msgspec.structs.replace(body, **cleared)
        row = await _update(request, session_id, changes, merge_json=False)
        asked = requests.preference(request)
        return render.envelope(
            render.UPDATED, row, with_session=asked is Return.REPRESENTATION, asked=asked
        )

    async def patch(self, request: Request) -> Response:
        """RFC 7396: absent fields stay, null clears, and `messages`/`sbx_config` objects merge
        into the stored ones."""
        session_id = requests.session_id(request)
        body = await requests.body(request, SessionPatch)
        _check_body_id(body, session_id)
        row = await _update(request, session_id, body, merge_json=True)
        asked = requests.preference(request)
        return render.envelope(
            render.UPDATED, row, with_session=asked is not Return.MINIMAL, asked=asked
        )

    async def delete(self, request: Request) -> Response:
        await _service(request).delete(requests.session_id(request))
        return render.json_response({"success": True, "message": render.DELETED})


def _check_body_id(body: SessionChanges, session_id: Any) -> None:
    given = getattr(body, "id", UNSET)
    if given is not UNSET and requests.uuid_or_none(given) != session_id:
        raise HTTPError(400, "Bad Request", "body id does not match the id in the path")


async def _update(
    request: Request, session_id: Any, changes: SessionChanges, *, merge_json: bool
) -> Session:
    expected = requests.expected_version(request)
    try:
        return await _service(request).update(
            session_id, changes, expected_version=expected, merge_json=merge_json
        )
    except VersionConflict:
        if expected != requests.NO_VERSION:
            raise
        raise VersionConflict('If-Match must name a version, as in "3" (its ETag)') from None


def _list_filter(request: Request) -> SessionFilter:
    """The listing's filter, as the query's parameters name it; refused (naming the parameter)
    past the listing's bounds."""
    params = request.query_params
    statuses = params.getlist("inbox_status")
    repo = params.get("repo")
    parent = params.get("parent")
    return SessionFilter(
        inbox_status=(
            tuple(validation.inbox_status("inbox_status", s) for s in statuses)
            if statuses
            else None
        ),
        repo=None if repo is None else validation.required_text("repo", repo),
        parent_id=None if parent is None else requests.uuid_param("parent", parent),
    )


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9 or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidInput(f"limit must be an integer from 1 to {MAX_LIMIT}", "limit")
    return int(raw)
