"""`/graphql` over HTTP as the GraphQL-over-HTTP specification says: the media type the client's
`Accept` prefers, JSON errors with `extensions.code` (never plain text) for every request that
cannot run, the specification's status codes, and `operationName` required when a document holds
several operations."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from app.service import SessionService

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"
ACCEPTS = (GRAPHQL_RESPONSE, JSON)

CREATE = """mutation Create { createSession(input: {repo: "acme/app", targetBranch: "main"}) {
  session { id } userErrors { code }
} }"""
COUNT = "query Count { sessions { totalCount } }"


def refused(response: httpx.Response, status: int, code: str, media_type: str) -> str:
    """Checks that `response` is a request error as the specification has it (`status`, JSON
    errors with `code`, no `data`) sent as `media_type`; gives its message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == media_type
    body = response.json()
    assert set(body) == {"errors"}, body
    [error] = body["errors"]
    assert error["extensions"]["code"] == code, error
    message: str = error["message"]
    return message


async def post(client: httpx.AsyncClient, accept: str, body: Any) -> httpx.Response:
    return await client.post(
        "/graphql",
        content=orjson.dumps(body),
        headers={"Accept": accept, "Content-Type": JSON},
    )


async def without_accept(client: httpx.AsyncClient, body: Any) -> httpx.Response:
    request = client.build_request("POST", "/graphql", json=body)
    del request.headers["accept"]
    return await client.send(request)


# --- Media types -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "media_type"),
    [
        (GRAPHQL_RESPONSE, GRAPHQL_RESPONSE),
        (JSON, JSON),
        ("*/*", JSON),
        (f"{GRAPHQL_RESPONSE}, {JSON};q=0.9", GRAPHQL_RESPONSE),
        (f"{JSON}, {GRAPHQL_RESPONSE}", GRAPHQL_RESPONSE),
        (f"{JSON}, {GRAPHQL_RESPONSE};q=0.5", JSON),
        (f"{GRAPHQL_RESPONSE};q=0.8, {JSON};q=0.9", JSON),
        (f"{GRAPHQL_RESPONSE};q=0, */*", JSON),
        (f"application/*;q=0.5, {GRAPHQL_RESPONSE}", GRAPHQL_RESPONSE),
        (f"{JSON};q=0.9, */*", GRAPHQL_RESPONSE),
        # Only types the server cannot send: the header is disregarded, not answered 406.
        ("text/html", JSON),
        ("nonsense", JSON),
    ],
)
async def test_the_answer_has_the_media_type_the_client_prefers(
    client: httpx.AsyncClient, accept: str, media_type: str
) -> None:
    response = await post(client, accept, {"query": COUNT})
    assert response.status_code == 200
    assert response.headers["content-type"] == media_type
    assert response.json() == {"data": {"sessions": {"totalCount": 0}}}


async def test_no_accept_header_gets_json(client: httpx.AsyncClient) -> None:
    response = await without_accept(client, {"query": COUNT})
    assert response.status_code == 200
    assert response.headers["content-type"] == JSON


# --- Requests that cannot be read: the same status whatever the media type ---------------------


@pytest.mark.parametrize("accept", ACCEPTS)
async def test_a_batch_of_100_operations_is_refused_and_nothing_runs(
    client: httpx.AsyncClient, service: SessionService, accept: str
) -> None:
    response = await post(client, accept, [{"query": CREATE}] * 100)
    message = refused(response, 400, "BAD_REQUEST", accept)
    assert "batching is not supported" in message
    assert await service.count() == 0


@pytest.mark.parametrize("accept", ACCEPTS)
@pytest.mark.parametrize("body", [b"{not json", b"", b'{"query": "{ __typename }"', b"\xff"])
async def test_a_body_that_is_not_json_is_refused(
    client: httpx.AsyncClient, accept: str, body: bytes
) -> None:
    response = await client.post(
        "/graphql", content=body, headers={"Accept": accept, "Content-Type": JSON}
    )
    assert refused(response, 400, "BAD_REQUEST", accept).startswith("the request body is not JSON")


@pytest.mark.parametrize("accept", ACCEPTS)
@pytest.mark.parametrize("body", ["{ __typename }", 0, None, True])
async def test_a_body_that_is_not_an_object_is_refused(
    client: httpx.AsyncClient, accept: str, body: Any
) -> None:
    response = await post(client, accept, body)
    assert refused(response, 400, "BAD_REQUEST", accept) == "the request body must be a JSON object"


@pytest.mark.parametrize("accept", ACCEPTS)
@pytest.mark.parametrize("body", [{}, {"qeury": "{ __typename }"}, {"query": None}, {"query": ""}])
async def test_a_request_without_a_query_is_refused(
    client: httpx.AsyncClient, accept: str, body: dict[str, Any]
) -> None:
    response = await post(client, accept, body)
    assert refused(response, 400, "BAD_REQUEST", accept).startswith("no query")


@pytest.mark.parametrize("accept", ACCEPTS)
@pytest.mark.parametrize(
    ("parameter", "value"),
    [
        ("query", 0),
        ("query", False),
        ("query", {"obj": "ect"}),
        ("query", ["{ __typename }"]),
        ("operationName", 0),
        ("operationName", ["Count"]),
        ("variables", "string"),
        ("variables", 0),
        ("variables", []),
        ("extensions", "string"),
        ("extensions", [{"some": "value"}]),
    ],
)
async def test_a_parameter_of_the_wrong_type_is_refused(
    client: httpx.AsyncClient, accept: str, parameter: str, value: Any
) -> None:
    body = {"query": COUNT, parameter: value}
    response = await post(client, accept, body)
    assert f"`{parameter}` must be" in refused(response, 400, "BAD_REQUEST", accept)


@pytest.mark.parametrize("accept", ACCEPTS)
async def test_null_parameters_are_absent_ones(client: httpx.AsyncClient, accept: str) -> None:
    body = {"query": COUNT, "operationName": None, "variables": None, "extensions": None}
    response = await post(client, accept, body)
    assert response.status_code == 200
    assert response.json() == {"data": {"sessions": {"totalCount": 0}}}


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_a_body_that_is_not_sent_as_json_is_refused(
    client: httpx.AsyncClient, content_type: str | None
) -> None:
    request = client.build_request("POST", "/graphql", content=orjson.dumps({"query": COUNT}))
    if content_type is not None:
        request.headers["content-type"] = content_type
    response = await client.send(request)
    message = refused(response, 415, "UNSUPPORTED_MEDIA_TYPE", JSON)
    assert "Content-Type: application/json" in message


@pytest.mark.parametrize("accept", ACCEPTS)
async def test_get_variables_that_are_not_json_are_refused(
    client: httpx.AsyncClient, accept: str
) -> None:
    response = await client.get(
        "/graphql", params={"query": COUNT, "variables": "{nope"}, headers={"Accept": accept}
    )
    assert refused(response, 400, "BAD_REQUEST", accept).startswith("variables is not JSON")


@pytest.mark.parametrize("accept", ACCEPTS)
async def test_get_without_a_query_is_refused(client: httpx.AsyncClient, accept: str) -> None:
    response = await client.get("/graphql", headers={"Accept": accept})
    refused(response, 400, "BAD_REQUEST", accept)


@pytest.mark.parametrize("accept", ACCEPTS)
async def test_a_mutation_over_get_is_405_and_runs_nothing(
    client: httpx.AsyncClient, service: SessionService, accept: str
) -> None:
    response = await client.get("/graphql", params={"query": CREATE}, headers={"Accept": accept})
    refused(response, 405, "METHOD_NOT_ALLOWED", accept)
    assert response.headers["allow"] == "POST"
    assert await service.count() == 0


@pytest.mark.parametrize("accept", ACCEPTS)
async def test_a_subscription_over_http_is_refused(client: httpx.AsyncClient, accept: str) -> None:
    body = {"query": "subscription { sessionEvents { eventId } }"}
    response = await post(client, accept, body)
    assert "WebSocket" in refused(response, 400, "BAD_REQUEST", accept)


# --- Documents that cannot run: 400 as graphql-response+json, 200 as application/json ----------

STATUS = {GRAPHQL_RESPONSE: 400, JSON: 200}


@pytest.mark.parametrize("accept", ACCEPTS)
async def test_two_operations_without_an_operation_name_run_nothing(
    client: httpx.AsyncClient, service: SessionService, accept: str
) -> None:
    response = await post(client, accept, {"query": f"{CREATE} {COUNT}"})
    message = refused(response, STATUS[accept], "OPERATION_NAME_REQUIRED", accept)
    assert message == "the document holds 2 operations: name the one to run in operationName"
    assert await service.count() == 0


async def test_the_named_operation_of_several_is_the_one_that_runs(
    client: httpx.AsyncClient, service: SessionService
) -> None:
    document = f"{CREATE} {COUNT}"
    counted = await post(client, GRAPHQL_RESPONSE, {"query": document, "operationName": "Count"})
    assert counted.json() == {"data": {"sessions": {"totalCount": 0}}}
    assert await service.count() == 0
    created = await post(client, GRAPHQL_RESPONSE, {"query": document, "operationName": "Create"})
    assert created.status_code == 200
    assert created.json()["data"]["createSession"]["userErrors"] == []
    assert await service.count() == 1


@pytest.mark.parametrize("accept", ACCEPTS)
async def test_an_unknown_operation_name_is_refused(
    client: httpx.AsyncClient, service: SessionService, accept: str
) -> None:
    body = {"query": f"{CREATE} {COUNT}", "operationName": "Delete"}
    response = await post(client, accept, body)
    message = refused(response, STATUS[accept], "OPERATION_NOT_FOUND", accept)
    assert message == "the document holds no operation named 'Delete'"
    assert await service.count() == 0


@pytest.mark.parametrize("accept", ACCEPTS)
async def test_a_parse_error_is_coded(client: httpx.AsyncClient, accept: str) -> None:
    response = await post(client, accept, {"query": "{ sessions { "})
    assert "Syntax Error" in refused(response, STATUS[accept], "GRAPHQL_PARSE_FAILED", accept)


@pytest.mark.parametrize("accept", ACCEPTS)
async def test_a_validation_error_is_coded(client: httpx.AsyncClient, accept: str) -> None:
    response = await post(client, accept, {"query": "{ sessions { secret } }"})
    message = refused(response, STATUS[accept], "GRAPHQL_VALIDATION_FAILED", accept)
    assert "Cannot query field 'secret'" in message


@pytest.mark.parametrize("accept", ACCEPTS)
async def test_variables_that_do_not_coerce_are_bad_user_input(
    client: httpx.AsyncClient, accept: str
) -> None:
    body = {"query": "query ($id: UUID!) { session(id: $id) { id } }", "variables": {"id": None}}
    response = await post(client, accept, body)
    assert "$id" in refused(response, STATUS[accept], "BAD_USER_INPUT", accept)


async def test_several_validation_errors_each_have_a_code(client: httpx.AsyncClient) -> None:
    response = await post(client, GRAPHQL_RESPONSE, {"query": "{ a { b } c }"})
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert len(errors) == 2
    assert {error["extensions"]["code"] for error in errors} == {"GRAPHQL_VALIDATION_FAILED"}


# --- Execution started: 200, with `data`, whatever the media type ------------------------------


@pytest.mark.parametrize("accept", ACCEPTS)
async def test_a_field_error_is_200_with_data(client: httpx.AsyncClient, accept: str) -> None:
    response = await post(client, accept, {"query": "{ sessions(first: 1000) { totalCount } }"})
    assert response.status_code == 200
    assert response.headers["content-type"] == accept
    body = response.json()
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert body["errors"][0]["path"] == ["sessions"]


async def test_a_mutation_over_post_runs(
    client: httpx.AsyncClient, service: SessionService
) -> None:
    response = await post(client, GRAPHQL_RESPONSE, {"query": CREATE})
    assert response.status_code == 200
    assert response.json()["data"]["createSession"]["userErrors"] == []
    assert await service.count() == 1


async def test_a_query_over_get_with_graphql_response_json(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/graphql",
        params={
            "query": "query ($n: Int) { sessions(first: $n) { totalCount } }",
            "variables": '{"n": 1}',
        },
        headers={"Accept": GRAPHQL_RESPONSE},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == GRAPHQL_RESPONSE
    assert response.json() == {"data": {"sessions": {"totalCount": 0}}}


async def test_a_head_request_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.head("/graphql", params={"query": COUNT})
    assert response.status_code == 405
