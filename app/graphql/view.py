"""`/graphql` over HTTP: POST with JSON, GET for queries only, GraphiQL for browsers when enabled.
Batching is off (the schema has no batching config); the only WebSocket protocol offered is
`graphql-transport-ws`."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from app.config import Settings
from app.graphql.context import Context
from app.graphql.schema import build_schema
from app.state import AppState


class GraphQLView(GraphQL[Context, None]):
    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        state: AppState = request.state.inbox
        return Context(state.service, request)

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


def graphql_route(settings: Settings) -> Route:
    """The `/graphql` route for an app with `settings`."""
    view = GraphQLView(
        build_schema(settings),
        graphql_ide="graphiql" if settings.graphiql else None,
        allow_queries_via_get=True,
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
    )
    return Route("/graphql", view, methods=["GET", "POST"])
