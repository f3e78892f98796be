"""The REST compatibility paths (`/sessions`…), as the earlier service answered them: endpoints
in `endpoints`, request parsing in `requests`, answers in `render`, one error map in `errors`,
and the OpenAPI document generated from the declaration in `openapi`."""

from __future__ import annotations

import functools
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Receive, Scope, Send

from app.rest import openapi
from app.rest.endpoints import DEFAULT_LIMIT, MAX_LIMIT, OneSession, Sessions
from app.rest.errors import JSON_TYPE, exception_handlers

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "exception_handlers", "routes"]

# Made at the first request, not at import: the document reads `app.auth`, which imports this
# package.
_openapi = functools.cache(openapi.document_bytes)


async def openapi_json(_request: Request) -> Response:
    return Response(_openapi(), media_type=JSON_TYPE)


class TrailingSlash(BaseRoute):
    """A path of `routes` written with a trailing slash (`/sessions/`): 307 to the path without
    it, query kept, by a relative `Location` (RFC 9110, 10.2.2). Starlette's own redirect writes
    an absolute URL from the request's `Host`, which whoever sends the request chooses."""

    def __init__(self, routes: list[BaseRoute]) -> None:
        self.routes = routes

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or len(path) < 2 or not path.endswith("/"):
            return Match.NONE, {}
        canonical = {**scope, "path": path.rstrip("/") or "/"}
        for route in self.routes:
            if route.matches(canonical)[0] is not Match.NONE:
                return Match.FULL, {}
        return Match.NONE, {}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        location = quote(scope["root_path"] + scope["path"].rstrip("/"), safe="/:@!$&'()*+,;=~")
        query: bytes = scope.get("query_string", b"")
        if query:
            location += "?" + query.decode("latin-1")
        await Response(status_code=307, headers={"Location": location})(scope, receive, send)


_ROUTES: list[BaseRoute] = [
    Route("/sessions", Sessions),
    Route("/sessions/{id}", OneSession),
    Route("/openapi.json", openapi_json, methods=["GET"]),
]
routes: list[BaseRoute] = [*_ROUTES, TrailingSlash(_ROUTES)]
