"""`/graphql` over HTTP and WebSocket: POST with JSON, GET for queries only, GraphiQL for browsers
when enabled, and subscriptions over a WebSocket. Batching is off (the schema has no batching
config); the only WebSocket protocol offered is `graphql-transport-ws`: a client asking for the
legacy `graphql-ws` alone is closed with 4406."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import orjson
from starlette.datastructures import URLPath
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLHTTPResponse
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types.unset import UnsetType

from app.auth import Authenticator, Outcome
from app.config import Settings
from app.graphql.context import Context
from app.graphql.schema import build_schema
from app.state import AppState

# A WebSocket that has not sent `connection_init` by then is closed with 4408. A client sends it
# at once; a socket that stays silent only holds a connection (Strawberry's default: a minute).
CONNECTION_INIT_WAIT_S = 10.0
# The operations one connection may run at once; the one past it is answered with an error
# message, and the connection stays. Each subscription holds a subscriber of the process's
# fan-out with its own buffer of events, so one client must not be able to open them without
# end; a page of an inbox watches a few.
MAX_SUBSCRIPTIONS_PER_CONNECTION = 100


@dataclass(slots=True)
class SocketContext(Context):
    """A WebSocket's context: Strawberry puts the `connection_init` payload here."""

    connection_params: dict[str, object] = field(default_factory=dict)


class GraphQLView(GraphQL[Context, None]):
    def __init__(self, *args: Any, authenticator: Authenticator, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.authenticator = authenticator

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        state: AppState = request.state.inbox
        if isinstance(request, WebSocket):
            return SocketContext(state.service, request)
        return Context(state.service, request)

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        # HTTP requests are checked by `RequireBearer`; a WebSocket's token comes in its
        # `connection_init`, and one without a valid token is closed with 4403.
        params = context.connection_params if isinstance(context, SocketContext) else {}
        if await self.authenticator.check_params(params) is not Outcome.ACCEPTED:
            raise ConnectionRejectionError
        return await super().on_ws_connect(context)

    def decode_json(self, data: str | bytes) -> object:
        return orjson.loads(data)

    def encode_json(self, data: object) -> str:
        return orjson.dumps(data).decode()

    def create_response(
        self,
        response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
        sub_response: Response,
    ) -> Response:
        # As Strawberry's, but the body goes out as orjson's bytes without a round trip
        # through str.
        response = Response(orjson.dumps(response_data), media_type="application/json")
        response.headers.raw.extend(sub_response.headers.raw)
        if sub_response.background:
            response.background = sub_response.background
        if sub_response.status_code:
            response.status_code = sub_response.status_code
        return response


class HTTPAndWebSocketRoute(BaseRoute):
    """One path for HTTP (with `methods`) and for WebSocket, served by one ASGI app. Starlette's
    `Route` matches HTTP only and its `WebSocketRoute` WebSocket only, and a `Mount` would not
    match the path without a trailing slash: this is the first two, picked by the scope's type."""

    def __init__(self, path: str, app: ASGIApp, *, methods: list[str]) -> None:
        self.http = Route(path, app, methods=methods)
        self.websocket = WebSocketRoute(path, app)

    def _route(self, scope: Scope) -> BaseRoute:
        return self.websocket if scope["type"] == "websocket" else self.http

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        return self._route(scope).matches(scope)

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        return self.http.url_path_for(name, **path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._route(scope).handle(scope, receive, send)


def graphql_route(settings: Settings, authenticator: Authenticator) -> BaseRoute:
    """The `/graphql` route for an app with `settings`, its WebSockets checked by
    `authenticator`."""
    view = GraphQLView(
        build_schema(settings),
        graphql_ide="graphiql" if settings.graphiql else None,
        allow_queries_via_get=True,
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
        connection_init_wait_timeout=timedelta(seconds=CONNECTION_INIT_WAIT_S),
        max_subscriptions_per_connection=MAX_SUBSCRIPTIONS_PER_CONNECTION,
        # A page that may call the API from another origin may subscribe from it too.
        allowed_origins=settings.cors_origins,
        authenticator=authenticator,
    )
    return HTTPAndWebSocketRoute("/graphql", view, methods=["GET", "POST"])
