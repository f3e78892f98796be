"""The parameters of a GraphQL-over-HTTP request (`query`, `operationName`, `variables`,
`extensions`), read from a POST's JSON body or a GET's query string and checked as the
specification says; whatever is not one JSON object of well-typed parameters is refused with a
`RequestError` that says what is wrong."""

from __future__ import annotations

import json
from collections.abc import Mapping

from strawberry.http import GraphQLRequestData

from app.graphql.http_errors import UNSUPPORTED_MEDIA_TYPE, RequestError
from app.graphql.scalars import decode_json

JSON = "application/json"


def _json(what: str, data: str | bytes) -> object:
    try:
        # Integers exactly, and a number no float holds as written kept for the JSON scalar to
        # refuse: orjson would round it before any scalar saw it.
        return decode_json(data)
    except json.JSONDecodeError as error:
        raise RequestError(400, f"{what} is not JSON: {error}") from error


def body_parameters(content_type: str | None, body: bytes) -> GraphQLRequestData:
    """The parameters of a POST whose `Content-Type` is `content_type`."""
    media_type = (content_type or "").partition(";")[0].strip().lower()
    if media_type != JSON:
        raise RequestError(
            415,
            "a GraphQL request is a JSON body, sent with Content-Type: application/json",
            UNSUPPORTED_MEDIA_TYPE,
        )
    data = _json("the request body", body)
    if isinstance(data, list):
        raise RequestError(
            400, "batching is not supported: send one operation per request, as a JSON object"
        )
    if not isinstance(data, dict):
        raise RequestError(400, "the request body must be a JSON object")
    return parameters(data)


def query_parameters(params: Mapping[str, str | None]) -> GraphQLRequestData:
    """The parameters of a GET: `variables` and `extensions` are JSON text in the query string."""
    data: dict[str, object] = dict(params)
    for name in ("variables", "extensions"):
        value = data.get(name)
        if isinstance(value, str):
            data[name] = _json(name, value) if value else None
    return parameters(data)


def parameters(data: Mapping[str, object]) -> GraphQLRequestData:
    query = data.get("query")
    if query is None or query == "":
        raise RequestError(400, "no query: send the GraphQL document as the `query` parameter")
    if not isinstance(query, str):
        raise RequestError(400, "`query` must be a string")
    operation_name = data.get("operationName")
    if not isinstance(operation_name, str | None):
        raise RequestError(400, "`operationName` must be a string or null")
    variables = data.get("variables")
    if not isinstance(variables, dict | None):
        raise RequestError(400, "`variables` must be an object or null")
    extensions = data.get("extensions")
    if not isinstance(extensions, dict | None):
        raise RequestError(400, "`extensions` must be an object or null")
    return GraphQLRequestData(
        query=query, variables=variables, operation_name=operation_name, extensions=extensions
    )
