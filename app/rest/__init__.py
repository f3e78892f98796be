"""The REST compatibility paths (`/sessions`…), as the earlier service answered them: endpoints
in `endpoints`, request parsing in `requests`, answers in `render`, one error map in `errors`,
and the OpenAPI document generated from the declaration in `openapi`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from app.rest import openapi
from app.rest.endpoints import DEFAULT_LIMIT, MAX_LIMIT, OneSession, Sessions
from app.rest.errors import JSON_TYPE, exception_handlers

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "exception_handlers", "routes"]

_OPENAPI = openapi.document_bytes()


async def openapi_json(_request: Request) -> Response:
    return Response(_OPENAPI, media_type=JSON_TYPE)


routes: list[BaseRoute] = [
    Route("/sessions", Sessions),
    Route("/sessions/{id}", OneSession),
    Route("/openapi.json", openapi_json, methods=["GET"]),
]
