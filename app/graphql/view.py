"""`/graphql` over HTTP and WebSocket: POST with JSON, GET for queries only, GraphiQL for browsers
when enabled, and subscriptions over a WebSocket. Over HTTP, as the GraphQL-over-HTTP
specification says (see `http_request` for what a request must be, `http_errors` for the answers):
`application/graphql-response+json` to a client that prefers it, JSON errors with a code for a
request that cannot run, never plain text; no batching. The only WebSocket protocol offered is
`graphql-transport-ws`: a client asking for the legacy `graphql-ws` alone is closed with 4406."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import orjson
from cross_web import AsyncHTTPRequestAdapter, HTTPException
from starlette.datastructures import URLPath
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError, MissingQueryError
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType
from strawberry.types.unset import UnsetType

from app.auth import Authenticator, Outcome
from app.config import Settings
from app.db import DatabaseBusy
from app.graphql.compiled import CompiledReads
from app.graphql.context import Context
from app.graphql.errors import SERVICE_UNAVAILABLE
from app.graphql.http_errors import (
    METHOD_NOT_ALLOWED,
    RequestError,
    http_result,
    operation_not_found,
    refusal,
    status_of,
)
from app.graphql.http_request import body_parameters, query_parameters
from app.graphql.media_types import response_media_type
from app.graphql.scalars import decode_json
from app.graphql.schema import InboxSchema, build_schema
from app.state import AppState

# A WebSocket that has not sent `connection_init` by then is closed with 4408. A client sends it
# at once; a socket that stays silent only holds a connection (Strawberry's default: a minute).
CONNECTION_INIT_WAIT_S = 10.0
# The operations one connection may run at once; the one past it is answered with an error
# message, and the connection stays. Each subscription holds a subscriber of the process's
# fan-out with its own buffer of events, so one client must not be able to open them without
# end; a page of an inbox watches a few.
MAX_SUBSCRIPTIONS_PER_CONNECTION = 100
# What each HTTP method may run. Strawberry also lets subscriptions through, for its multipart
# and SSE transports, which this server does not offer: they are served over a WebSocket.
OPERATIONS_OF_METHOD = {
    "GET": frozenset({OperationType.QUERY}),
    "POST": frozenset({OperationType.QUERY, OperationType.MUTATION}),
}


@dataclass(slots=True)
class SocketContext(Context):
    """A WebSocket's context: Strawberry puts the `connection_init` payload here."""

    connection_params: dict[str, object] = field(default_factory=dict)


class GraphQLView(GraphQL[Context, None]):
    def __init__(
        self,
        schema: InboxSchema,
        *args: Any,
        authenticator: Authenticator,
        compiled_reads: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(schema, *args, **kwargs)
        self.authenticator = authenticator
        # The compiled read path (`app.graphql.compiled`), or None when it is turned off.
        self.compiled: CompiledReads | None = schema.compiled if compiled_reads else None

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
        # Integers exactly, and a number no float holds as written kept for the JSON scalar
        # to refuse (orjson would round it before any scalar saw it).
        return decode_json(data)

    def encode_json(self, data: object) -> str:
        return orjson.dumps(data).decode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request = Request(scope, receive)
        response = await self.compiled_answer(request)
        if response is None:
            # As Strawberry's, but a refused request is answered in JSON, not in plain text.
            try:
                response = await self.run(request)
            except HTTPException as error:
                response = refusal(error, response_media_type(request.headers.get("accept")))
        await response(scope, receive, send)

    async def compiled_answer(self, request: Request) -> Response | None:
        """The answer of the compiled path to a query or a mutation it has a plan for, else None
        (and Strawberry answers, the request's body read once for both)."""
        if self.compiled is None or request.method not in OPERATIONS_OF_METHOD:
            return None
        try:
            if request.method == "GET":
                data = query_parameters(request.query_params)
            else:
                data = body_parameters(request.headers.get("content-type"), await request.body())
        except RequestError:
            return None  # Strawberry's run refuses it, as it says
        if not data.query or data.extensions:
            return None
        state: AppState = request.state.inbox
        media_type = response_media_type(request.headers.get("accept"))
        if request.method == "POST":  # a GET never runs a mutation
            body = await self.compiled.mutate(
                state.service, request, data.query, data.variables, data.operation_name
            )
            if body is not None:
                return Response(body, media_type=media_type)
        try:
            text = await self.compiled.answer(
                state.service.db, data.query, data.variables, data.operation_name
            )
        except DatabaseBusy as error:
            result: GraphQLHTTPResponse = {
                "data": None,
                "errors": [{"message": str(error), "extensions": {"code": SERVICE_UNAVAILABLE}}],
            }
            status = status_of(result, media_type)
            return Response(orjson.dumps(result), status, media_type=media_type)
        if text is None:
            return None
        return Response(b'{"data":' + text.encode() + b"}", media_type=media_type)

    async def get_sub_response(self, request: Request | WebSocket) -> Response:
        # The media type the answer will have, chosen once the request is known, is carried to
        # `create_response` (which is not given the request) by the sub-response.
        sub_response = await super().get_sub_response(request)
        sub_response.media_type = response_media_type(request.headers.get("accept"))
        return sub_response

    async def parse_http_body(self, request: AsyncHTTPRequestAdapter) -> GraphQLRequestData:
        if request.method == "GET":
            return query_parameters(request.query_params)
        return body_parameters(request.content_type, await request.get_body())

    async def execute_single(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        sub_response: Response,
        context: Context,
        root_value: None,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        # As Strawberry's, but what its schema raises before it executes becomes a request
        # error (a status and a code) or a result with the error, as the specification says.
        try:
            result = await self.schema.execute(
                request_data.query,
                variable_values=request_data.variables,
                context_value=context,
                root_value=root_value,
                operation_name=request_data.operation_name,
                allowed_operation_types=OPERATIONS_OF_METHOD[request_adapter.method],
                operation_extensions=request_data.extensions,
            )
        except CannotGetOperationTypeError as error:
            return operation_not_found(error.operation_name)
        except InvalidOperationTypeError as error:
            if error.operation_type is OperationType.MUTATION:
                message = "a mutation is sent with POST: GET runs queries only"
                raise RequestError(405, message, METHOD_NOT_ALLOWED, {"Allow": "POST"}) from error
            message = "a subscription is served over a WebSocket (graphql-transport-ws) only"
            raise RequestError(400, message) from error
        except MissingQueryError as error:
            raise RequestError(400, "no query") from error
        if self.compiled is not None and request_data.query and not request_data.extensions:
            # Validated now (or refused): next time, the compiled path may answer it.
            self.compiled.learn(request_data.query, request_data.operation_name)
        return result

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        return http_result(result)

    def create_response(
        self,
        response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
        sub_response: Response,
    ) -> Response:
        # Batches are refused while parsing: there is one response.
        assert not isinstance(response_data, list)
        media_type = sub_response.media_type or response_media_type(None)
        status = sub_response.status_code or status_of(response_data, media_type)
        # The body goes out as orjson's bytes without a round trip through str.
        response = Response(orjson.dumps(response_data), status, media_type=media_type)
        response.headers.raw.extend(sub_response.headers.raw)
        if sub_response.background:
            response.background = sub_response.background
        return response


class HTTPAndWebSocketRoute(BaseRoute):
    """One path for HTTP (with `methods`) and for WebSocket, served by one ASGI app. Starlette's
    `Route` matches HTTP only and its `WebSocketRoute` WebSocket only, and a `Mount` would not
    match the path without a trailing slash: this is the first two, picked by the scope's type."""

    def __init__(self, path: str, app: ASGIApp, *, methods: list[str]) -> None:
        # The template access lines and metrics name the route by, as Starlette's routes have.
        self.path = path
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
        compiled_reads=settings.compiled_reads,
    )
    return HTTPAndWebSocketRoute("/graphql", view, methods=["GET", "POST"])
