"""GET /openapi.json: a valid OpenAPI 3.1 document that covers every REST path of the contract,
whose schemas the real responses satisfy and whose patterns agree with the server's checks."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from openapi_schema_validator import OAS31Validator, oas31_format_checker
from openapi_spec_validator import validate as validate_spec

from app import validation
from app.errors import InvalidInput
from app.naming import is_valid_branch, is_valid_title
from app.rest import DEFAULT_LIMIT, MAX_LIMIT, openapi
from tests.conftest import SessionFactory

DOCUMENT = openapi.document(default_limit=DEFAULT_LIMIT, max_limit=MAX_LIMIT)
# Every path and method of the contract's REST table, with the statuses it names for it.
OPERATIONS = {
    ("/sessions", "post"): {"201", "400", "409", "422"},
    ("/sessions", "get"): {"200", "400", "422", "503"},
    ("/sessions/{session_id}", "get"): {"200", "400", "404"},
    ("/sessions/{session_id}", "put"): {"200", "400", "404", "409", "412", "422"},
    ("/sessions/{session_id}", "patch"): {"200", "400", "404", "409", "412", "422"},
    ("/sessions/{session_id}", "delete"): {"200", "400", "404"},
    ("/openapi.json", "get"): {"200"},
}
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    """`node`, or what its `$ref` points at in the document."""
    while "$ref" in node:
        target: Any = DOCUMENT
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def response_schema(path: str, method: str, status: int) -> dict[str, Any]:
    responses = DOCUMENT["paths"][path][method]["responses"]
    declared = resolve(responses.get(str(status)) or responses["default"])
    schema: dict[str, Any] = declared["content"]["application/json"]["schema"]
    return schema


def validator(schema: dict[str, Any]) -> Any:
    """A JSON Schema validator for `schema`, with the document's components in reach."""
    return OAS31Validator(
        {**schema, "components": DOCUMENT["components"]}, format_checker=oas31_format_checker
    )


def assert_conforms(path: str, method: str, response: httpx.Response) -> None:
    """The response's body satisfies the schema the document declares for it, and so do the
    headers the document declares."""
    schema = response_schema(path, method, response.status_code)
    validator(schema).validate(response.json())
    responses = DOCUMENT["paths"][path][method]["responses"]
    declared = resolve(responses.get(str(response.status_code)) or responses["default"])
    for name, header in declared.get("headers", {}).items():
        header = resolve(header)
        if header.get("required"):
            assert name.lower() in response.headers
        if name.lower() in response.headers:
            validator(header["schema"]).validate(response.headers[name])


def assert_request_conforms(path: str, method: str, body: Any, valid: bool = True) -> None:
    content = DOCUMENT["paths"][path][method]["requestBody"]["content"]
    errors = list(validator(content["application/json"]["schema"]).iter_errors(body))
    assert (not errors) == valid, errors


# The document ---------------------------------------------------------------------------------


async def test_the_document_is_served_as_json(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == DOCUMENT


def test_the_document_is_valid_openapi_3_1() -> None:
    assert DOCUMENT["openapi"].startswith("3.1.")
    validate_spec(DOCUMENT)


def test_every_contract_path_and_method_is_described() -> None:
    described = {
        (path, method)
        for path, item in DOCUMENT["paths"].items()
        for method in item
        if method in METHODS
    }

    assert described == set(OPERATIONS)
    for (path, method), statuses in OPERATIONS.items():
        operation = DOCUMENT["paths"][path][method]
        assert operation["operationId"]
        assert set(operation["responses"]) - {"default"} == statuses
        for status in operation["responses"]:
            assert "schema" in resolve(operation["responses"][status])["content"][openapi.JSON]
        if method in ("post", "put", "patch"):
            assert operation["requestBody"]["required"] is True
            assert "schema" in operation["requestBody"]["content"][openapi.JSON]


def test_every_error_response_is_the_error_body() -> None:
    for path, method in OPERATIONS:
        for status, response in DOCUMENT["paths"][path][method]["responses"].items():
            if status == "default" or status >= "400":
                schema = resolve(response)["content"][openapi.JSON]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}


# Real responses against the declared schemas --------------------------------------------------


async def test_every_success_response_matches_its_schema(client: httpx.AsyncClient) -> None:
    one = "/sessions/{session_id}"
    created = await client.post(
        "/sessions",
        json={"repo": "acme/app", "target_branch": "main", "messages": {"content": "a"}},
        headers={"Idempotency-Key": "k"},
    )
    replayed = await client.post(
        "/sessions",
        json={"repo": "acme/app", "target_branch": "main", "messages": {"content": "a"}},
        headers={"Idempotency-Key": "k"},
    )
    session_id = created.json()["id"]
    child = await client.post(
        "/sessions", json={"repo": "acme/app", "target_branch": "main", "parent": session_id}
    )
    url = f"/sessions/{session_id}"
    checks = [
        ("/sessions", "post", created),
        ("/sessions", "post", replayed),
        ("/sessions", "post", child),
        (one, "get", await client.get(url)),
        (one, "patch", await client.patch(url, json={"sbx_config": [1, "two", None]})),
        (one, "put", await client.put(url, json={"inbox_status": "Pending", "messages": []})),
        ("/sessions", "get", await client.get("/sessions")),
        ("/sessions", "get", await client.get("/sessions", params={"limit": "1"})),
        ("/sessions", "get", await client.get("/sessions", params={"inbox_status": "pending"})),
        ("/openapi.json", "get", await client.get("/openapi.json")),
        (one, "delete", await client.delete(url)),
    ]

    for path, method, response in checks:
        assert response.is_success, response.text
        assert_conforms(path, method, response)


async def test_every_error_response_matches_its_schema(client: httpx.AsyncClient) -> None:
    one = "/sessions/{session_id}"
    a = (await client.post("/sessions", json={"repo": "r", "target_branch": "m"})).json()
    b = (await client.post("/sessions", json={"repo": "r", "target_branch": "m"})).json()
    url = f"/sessions/{a['id']}"
    unknown = "/sessions/6f1c2b8e-3d4a-4e5f-8a9b-0c1d2e3f4a5b"
    checks = [
        ("/sessions", "post", await client.post("/sessions", content=b"{"), 422),
        ("/sessions", "post", await client.post("/sessions", json={"repo": ""}), 422),
        (
            "/sessions",
            "post",
            await client.post("/sessions", json={"repo": "r", "target_branch": "m", "parent": "x"}),
            400,
        ),
        ("/sessions", "get", await client.get("/sessions", params={"limit": "0"}), 422),
        ("/sessions", "get", await client.get("/sessions", params={"parent": "x"}), 400),
        (one, "get", await client.get("/sessions/x"), 400),
        (one, "get", await client.get(unknown), 404),
        (one, "delete", await client.delete(unknown), 404),
        (one, "put", await client.put(url, json={}), 422),
        (one, "put", await client.put(url, json={"inbox_status": "a", "id": b["id"]}), 400),
        (one, "patch", await client.patch(url, json={"branch": b["session"]["branch"]}), 409),
        (
            one,
            "patch",
            await client.patch(url, json={"title": "t"}, headers={"If-Match": '"7"'}),
            412,
        ),
        ("/sessions", "get", await client.put("/sessions"), 405),
    ]

    for path, method, response, status in checks:
        assert response.status_code == status, response.text
        assert_conforms(path, method, response)


# Request schemas and the server agree ---------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "valid"),
    [
        ({"repo": "acme/app", "target_branch": "main"}, True),
        ({"repo": "r", "target_branch": "m", "messages": [], "parent": None, "x": 1}, True),
        ({"repo": "", "target_branch": "main"}, False),
        ({"repo": " ", "target_branch": "main"}, False),
        ({"repo": "a\x00", "target_branch": "main"}, False),
        ({"repo": "r"}, False),
        ({"repo": "r", "target_branch": "m", "messages": "text"}, False),
        ({"repo": "r", "target_branch": "m", "messages": {"a": ["\x00"]}}, False),
        ({"repo": "r", "target_branch": "m", "parent": "x"}, False),
        ({"repo": "r", "target_branch": "m", "parent": 5}, False),
    ],
)
async def test_the_create_schema_accepts_what_the_server_accepts(
    client: httpx.AsyncClient, body: Any, valid: bool
) -> None:
    assert_request_conforms("/sessions", "post", body, valid)
    response = await client.post("/sessions", json=body)
    assert (response.status_code < 400) == valid, response.text


@pytest.mark.parametrize(
    ("body", "valid"),
    [
        ({"inbox_status": "Active", "title": "New", "branch": "feat/x"}, True),
        ({"inbox_status": "archived", "sbx_config": 3, "unknown": 1}, True),
        ({"inbox_status": "done"}, False),
        ({"title": "New"}, False),
        ({"inbox_status": "active", "title": "two\nlines"}, False),
        ({"inbox_status": "active", "branch": "a..b"}, False),
        ({"inbox_status": "active", "sbx_config": {"\x00": 1}}, False),
    ],
)
async def test_the_replace_schema_accepts_what_the_server_accepts(
    client: httpx.AsyncClient, make_session: SessionFactory, body: Any, valid: bool
) -> None:
    assert_request_conforms("/sessions/{session_id}", "put", body, valid)
    made = await make_session()
    response = await client.put(f"/sessions/{made['id']}", json=body)
    assert (response.status_code < 400) == valid, response.text


@pytest.mark.parametrize(
    ("body", "valid"),
    [
        ({}, True),
        ({"messages": None, "parent": None, "sbx_config": None, "version": 3}, True),
        ({"inbox_status": "COMPLETED"}, True),
        ({"unknown": 1}, False),
        ({"inbox_status": None}, False),
        ({"title": None}, False),
    ],
)
async def test_the_patch_schema_accepts_what_the_server_accepts(
    client: httpx.AsyncClient, make_session: SessionFactory, body: Any, valid: bool
) -> None:
    assert_request_conforms("/sessions/{session_id}", "patch", body, valid)
    made = await make_session()
    response = await client.patch(f"/sessions/{made['id']}", json=body)
    assert (response.status_code < 400) == valid, response.text


def _accepts(check: Any, value: str) -> bool:
    try:
        check(value)
    except InvalidInput:
        return False
    return True


@given(st.text() | st.sampled_from(["", " ", "\x1c", "a\x00", "\u3000x\u3000", "\ufeff"]))
def test_the_text_pattern_is_the_servers_rule(value: str) -> None:
    matches = re.search(openapi.TEXT_PATTERN, value) is not None
    assert matches == _accepts(lambda v: validation.required_text("repo", v), value)


@given(
    st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
    | st.sampled_from(["pending", "Active", " ARCHIVED\n", "completed\x00", "actíve", "\u212a"])
)
def test_the_status_pattern_is_the_servers_rule(value: str) -> None:
    matches = re.search(openapi.STATUS_INPUT_PATTERN, value) is not None
    assert matches == _accepts(validation.inbox_status, value)


BRANCHES = st.text(alphabet="ab./-@{}~^: \n\\*[]lockHEAD\x00\x7fé", max_size=12)


@given(BRANCHES | st.text() | st.sampled_from(["HEAD", "@", "a.lock/b", "a/.b", "x" * 101]))
def test_the_branch_pattern_is_gits_rule(value: str) -> None:
    matches = re.search(openapi.BRANCH_PATTERN, value) is not None and len(value) <= 100
    assert matches == is_valid_branch(value)


@given(st.text() | st.sampled_from(["Title", "two\nlines", " ", "x" * 81, "a\u202eb", "A\n"]))
def test_the_title_pattern_accepts_every_valid_title(value: str) -> None:
    matches = re.search(openapi.TITLE_PATTERN, value) is not None and len(value) <= 80
    # Only "at least one visible character" is looser in the pattern (JSON Schema has no
    # Unicode categories), so the schema never refuses a title the server takes.
    if is_valid_title(value):
        assert matches
