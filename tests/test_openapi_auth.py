"""The OpenAPI document says what authentication and the request limits answer: the bearer
scheme on every operation but reading the document itself (an open path), 401 with
`WWW-Authenticate`, 413 and 431 in the REST error body on every operation; and the real answers
of the server match what it says."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import httpx
import pytest

from app.auth import is_open_path
from app.config import Settings
from app.http_limits import refusal
from app.main import create_app
from app.rest import openapi
from app.state import AppState
from tests import openapi_check
from tests.conftest import with_state

DOCUMENT = openapi.document()
CHECKED = openapi_check.load(openapi.document_bytes())
TOKEN = "s3cret-token"


def operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in DOCUMENT["paths"].items()
        for method, operation in item.items()
        if method != "parameters"
    ]


def test_the_bearer_scheme_is_declared_and_applies_by_default() -> None:
    scheme = DOCUMENT["components"]["securitySchemes"]["bearer"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert DOCUMENT["security"] == [{"bearer": []}]


@pytest.mark.parametrize(("path", "method", "operation"), operations())
def test_each_operation_says_whether_it_needs_a_token(
    path: str, method: str, operation: dict[str, Any]
) -> None:
    scope = {"type": "http", "method": method.upper(), "path": path, "query_string": b""}
    if is_open_path({**scope, "headers": []}):
        assert operation["security"] == []
        assert "401" not in operation["responses"]
    else:
        assert "security" not in operation  # the document's: bearer
        unauthorized, _ = CHECKED.node(operation["responses"]["401"]["$ref"][1:])
        assert unauthorized["headers"]["WWW-Authenticate"]
    for status in ("413", "431"):
        assert status in operation["responses"], (path, method, status)


def test_the_limits_answers_are_the_error_body() -> None:
    responses = DOCUMENT["components"]["responses"]
    codes = {
        name: responses[name]["content"]["application/json"]["example"]["code"]
        for name in ("Unauthorized", "PayloadTooLarge", "RequestHeadersTooLarge")
    }
    assert codes == {
        "Unauthorized": "UNAUTHORIZED",
        "PayloadTooLarge": "PAYLOAD_TOO_LARGE",
        "RequestHeadersTooLarge": "REQUEST_HEADERS_TOO_LARGE",
    }
    www = DOCUMENT["components"]["headers"]["WWW-Authenticate"]
    assert www["required"] is True


@pytest.fixture
async def guarded(settings: Settings, app_state: AppState) -> Any:
    """A client of an app that needs a token and takes bodies of at most 1 kB."""
    strict = replace(settings, api_tokens=(TOKEN,), max_body_bytes=1024)
    app = create_app(strict)
    transport = httpx.ASGITransport(app=with_state(app, {"inbox": app_state}))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "Basic czNjcmV0"])
async def test_a_real_401_is_what_the_document_says(
    guarded: httpx.AsyncClient, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path in [("GET", "/sessions"), ("POST", "/sessions"), ("DELETE", "/sessions/x")]:
        response = await guarded.request(method, path, headers=headers, json={})
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        openapi_check.check_response(CHECKED, response)
    document = await guarded.get("/openapi.json")
    assert document.status_code == 200


async def test_a_real_413_is_what_the_document_says(guarded: httpx.AsyncClient) -> None:
    body = {"repo": "r" * 2000, "target_branch": "main"}
    response = await guarded.post(
        "/sessions", json=body, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert response.status_code == 413
    openapi_check.check_response(CHECKED, response)
    assert (
        await guarded.get("/sessions", headers={"Authorization": f"Bearer {TOKEN}"})
    ).json() == {"sessions": []}


def test_the_servers_431_is_what_the_document_says() -> None:
    raw = refusal("the request's headers are over 32768 bytes", [], "0" * 32)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        name, _, value = line.partition(b": ")
        headers.append((name, value))
    for path in ("/sessions", "/sessions/6f1c2b8e-3d4a-4e5f-8a9b-0c1d2e3f4a5b", "/openapi.json"):
        response = httpx.Response(
            431,
            headers=headers,
            content=body,
            request=httpx.Request("GET", f"http://testserver{path}"),
        )
        openapi_check.check_response(CHECKED, response)
