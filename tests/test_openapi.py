"""GET /openapi.json: a valid OpenAPI 3.1 document, generated from the declaration, that covers
every REST path of the contract, whose schemas the real responses satisfy and whose request
schemas agree with what the server accepts."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from app import model
from app.errors import InvalidInput
from app.model import READ_ONLY, NewSession, Session, SessionChanges
from app.naming import is_valid_branch
from app.rest import MAX_LIMIT, openapi
from app.rest.errors import Code
from tests import openapi_check
from tests.conftest import SessionFactory

DOCUMENT = openapi.document()
# The document as served, validated with openapi-spec-validator, to hold answers against.
CHECKED = openapi_check.load(openapi.document_bytes())
ONE = "/sessions/{id}"
# Every path and method of the contract's REST table, with the statuses it names for it.
# What any request may be refused with: a token missing or wrong (not on the open document), a
# body or head too large, the database unable to answer (not for the document either).
_ANY = {"401", "413", "431", "503"}
OPERATIONS = {
    ("/sessions", "post"): {"201", "400", "409", "415", "422", *_ANY},
    ("/sessions", "get"): {"200", "400", "422", *_ANY},
    (ONE, "get"): {"200", "400", "404", *_ANY},
    (ONE, "put"): {"200", "400", "404", "409", "412", "415", "422", *_ANY},
    (ONE, "patch"): {"200", "400", "404", "409", "412", "415", "422", *_ANY},
    (ONE, "delete"): {"200", "400", "404", *_ANY},
    ("/openapi.json", "get"): {"200", "413", "431"},
}
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
SCHEMAS = {
    "Session",
    "NewSession",
    "SessionReplace",
    "SessionPatch",
    "SessionCreated",
    "SessionUpdated",
    "SessionDeleted",
    "SessionOne",
    "SessionList",
    "Error",
    "InboxStatus",
}


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    """`node`, or what its `$ref` points at in the document."""
    while "$ref" in node:
        target: Any = DOCUMENT
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def satisfies(pointer: str, value: Any) -> bool:
    """Whether `value` satisfies the schema at `pointer` (a JSON pointer into the document)."""
    try:
        CHECKED.validate(pointer, value, "the value")
    except AssertionError:
        return False
    return True


def request_schema(path: str, method: str) -> str:
    """The pointer of the JSON request body schema of an operation."""
    return f"/paths/{path.replace('/', '~1')}/{method}/requestBody/content/application~1json/schema"


def field_schema(schema: str, field: str) -> str:
    return f"/components/schemas/{schema}/properties/{field}"


def accepted(command: type[NewSession] | type[SessionChanges], values: dict[str, Any]) -> bool:
    """Whether the server's command takes `values`."""
    try:
        command.convert(values)
    except InvalidInput:
        return False
    return True


# The document ---------------------------------------------------------------------------------


async def test_the_document_is_served_as_json(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == DOCUMENT


def test_the_document_is_valid_openapi_3_1() -> None:
    # openapi_check.load validated it with openapi-spec-validator already.
    assert DOCUMENT["openapi"].startswith("3.1.")
    assert CHECKED.document == DOCUMENT


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
    assert openapi.MERGE_PATCH in DOCUMENT["paths"][ONE]["patch"]["requestBody"]["content"]


def test_every_error_response_is_the_error_body() -> None:
    for path, method in OPERATIONS:
        for status, response in DOCUMENT["paths"][path][method]["responses"].items():
            if status == "default" or status >= "400":
                schema = resolve(response)["content"][openapi.JSON]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}


def test_every_error_example_is_an_error_body_with_a_code() -> None:
    for name, response in DOCUMENT["components"]["responses"].items():
        example = response["content"][openapi.JSON]["example"]
        assert satisfies("/components/schemas/Error", example), name
        assert example["code"] in set(Code)


def test_the_schemas_are_the_declarations() -> None:
    schemas = DOCUMENT["components"]["schemas"]
    assert set(schemas) >= SCHEMAS
    session = schemas["Session"]
    assert list(session["properties"]) == sorted(Session.__annotations__)
    assert set(session["required"]) == set(Session.__annotations__)
    for field, schema in session["properties"].items():
        assert schema["description"] == model.describe(field)
    assert set(schemas["NewSession"]["properties"]) == set(NewSession.__struct_fields__)
    assert schemas["NewSession"]["required"] == ["repo", "target_branch"]
    for name in ("SessionReplace", "SessionPatch"):
        assert set(schemas[name]["properties"]) == {*SessionChanges.FIELDS, *READ_ONLY}
    assert schemas["SessionPatch"]["additionalProperties"] is False
    assert set(schemas["InboxStatus"]["enum"]) == {"pending", "active", "completed", "archived"}
    assert set(resolve(schemas["Error"]["properties"]["code"])["enum"]) == set(Code)


def test_the_page_size_has_bounds_and_no_default() -> None:
    [limit] = [
        p for p in DOCUMENT["paths"]["/sessions"]["get"]["parameters"] if p["name"] == "limit"
    ]
    assert limit["schema"] == {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}


# Real responses against the declared schemas --------------------------------------------------


async def test_every_success_response_matches_its_schema(client: httpx.AsyncClient) -> None:
    body = {"repo": "acme/app", "target_branch": "main", "messages": {"content": "a"}}
    full = {"Prefer": "return=representation"}
    created = await client.post("/sessions", json=body, headers={"Idempotency-Key": "k"})
    replayed = await client.post("/sessions", json=body, headers={"Idempotency-Key": "k"})
    session_id = created.json()["id"]
    child = await client.post(
        "/sessions",
        json={"repo": "acme/app", "target_branch": "main", "parent": session_id},
        headers=full,
    )
    url = f"/sessions/{session_id}"
    responses = [
        created,
        replayed,
        child,
        await client.post("/sessions", json={**body, "messages": "a string"}),
        await client.get(url),
        await client.patch(url, json={"sbx_config": [1, "two", None]}),
        await client.patch(url, json={"messages": 3}, headers={"Prefer": "return=minimal"}),
        await client.put(url, json={"inbox_status": "Pending", "messages": []}),
        replaced := await client.put(
            url, json={"inbox_status": "active", "messages": True}, headers=full
        ),
        await client.get("/sessions"),
        await client.get("/sessions", params={"limit": "1"}),
        await client.get("/sessions", params={"inbox_status": "pending"}),
        await client.get("/openapi.json"),
        await client.delete(url),
    ]

    for response in responses:
        assert response.is_success, response.text
        openapi_check.check_response(CHECKED, response)
    assert "session" not in created.json()
    assert child.json()["session"]["parent"] == session_id
    assert replaced.json()["session"]["messages"] is True


async def test_every_error_response_matches_its_schema(client: httpx.AsyncClient) -> None:
    a = (await client.post("/sessions", json={"repo": "r", "target_branch": "m"})).json()
    b = (
        await client.post(
            "/sessions",
            json={"repo": "r", "target_branch": "m"},
            headers={"Prefer": "return=representation"},
        )
    ).json()
    url = f"/sessions/{a['id']}"
    unknown_id = "6f1c2b8e-3d4a-4e5f-8a9b-0c1d2e3f4a5b"
    unknown = f"/sessions/{unknown_id}"
    text = {"Content-Type": "text/plain"}
    checks = [
        (await client.post("/sessions", content=b"{"), 422, Code.INVALID_INPUT),
        (await client.post("/sessions", json={"repo": ""}), 422, Code.INVALID_INPUT),
        (
            await client.post("/sessions", json={"repo": "r", "target_branch": "m", "parent": "x"}),
            400,
            Code.INVALID_INPUT,
        ),
        (
            await client.post(
                "/sessions", json={"repo": "r", "target_branch": "m", "parent": unknown_id}
            ),
            422,
            Code.PARENT_NOT_FOUND,
        ),
        (
            await client.post("/sessions", content=b"{}", headers=text),
            415,
            Code.UNSUPPORTED_MEDIA_TYPE,
        ),
        (await client.get("/sessions", params={"limit": "0"}), 422, Code.INVALID_INPUT),
        (await client.get("/sessions", params={"parent": "x"}), 400, Code.INVALID_INPUT),
        (await client.get("/sessions/x"), 400, Code.INVALID_INPUT),
        (await client.get(unknown), 404, Code.NOT_FOUND),
        (await client.delete(unknown), 404, Code.NOT_FOUND),
        (await client.put(url, json={}), 422, Code.INVALID_INPUT),
        (
            await client.put(url, json={"inbox_status": "active", "id": b["id"]}),
            400,
            Code.INVALID_INPUT,
        ),
        (await client.put(url, content=b"{}", headers=text), 415, Code.UNSUPPORTED_MEDIA_TYPE),
        (
            await client.patch(url, json={"branch": b["session"]["branch"]}),
            409,
            Code.BRANCH_TAKEN,
        ),
        (
            await client.patch(url, json={"title": "t"}, headers={"If-Match": '"7"'}),
            412,
            Code.VERSION_CONFLICT,
        ),
        (await client.patch(url, json={"parent": a["id"]}), 422, Code.PARENT_CYCLE),
        (await client.put("/sessions"), 405, Code.METHOD_NOT_ALLOWED),
    ]

    for response, status, code in checks:
        assert response.status_code == status, response.text
        openapi_check.check_response(CHECKED, response)
        # A method the path lacks is not an operation of the document; its body is still one.
        assert satisfies("/components/schemas/Error", response.json()), response.text
        assert response.json()["code"] == code, response.text


# Request schemas and the server agree ---------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "valid"),
    [
        pytest.param({"repo": "acme/app", "target_branch": "main"}, True, id="minimal"),
        pytest.param(
            {"repo": "r", "target_branch": "m", "messages": [], "parent": None, "x": 1},
            True,
            id="other-fields-ignored",
        ),
        pytest.param(
            {"repo": "r", "target_branch": "m", "messages": "text"}, True, id="messages-string"
        ),
        pytest.param(
            {"repo": "r", "target_branch": "m", "messages": 3.5}, True, id="messages-number"
        ),
        pytest.param({"repo": "", "target_branch": "main"}, False, id="repo-empty"),
        pytest.param({"repo": " ", "target_branch": "main"}, False, id="repo-blank"),
        pytest.param({"repo": "a\x00", "target_branch": "main"}, False, id="repo-nul"),
        pytest.param({"repo": "r" * 501, "target_branch": "main"}, False, id="repo-too-long"),
        pytest.param({"repo": "r"}, False, id="target-branch-missing"),
        pytest.param(
            {"repo": "r", "target_branch": "m", "messages": {"a": ["\x00"]}},
            False,
            id="messages-nul",
        ),
        pytest.param({"repo": "r", "target_branch": "m", "parent": "x"}, False, id="parent-text"),
        pytest.param({"repo": "r", "target_branch": "m", "parent": 5}, False, id="parent-number"),
    ],
)
async def test_the_create_schema_accepts_what_the_server_accepts(
    client: httpx.AsyncClient, body: Any, valid: bool
) -> None:
    assert satisfies(request_schema("/sessions", "post"), body) == valid
    response = await client.post("/sessions", json=body)
    assert (response.status_code < 400) == valid, response.text


@pytest.mark.parametrize(
    ("body", "valid"),
    [
        pytest.param(
            {"inbox_status": "Active", "title": "New", "branch": "feat/x"},
            True,
            id="status-any-case",
        ),
        pytest.param(
            {"inbox_status": "archived", "sbx_config": 3, "unknown": 1},
            True,
            id="other-fields-ignored",
        ),
        pytest.param({"inbox_status": "active", "messages": "text"}, True, id="messages-string"),
        pytest.param({"inbox_status": "done"}, False, id="status-unknown"),
        pytest.param({"title": "New"}, False, id="status-missing"),
        pytest.param({"inbox_status": "active", "title": "two\nlines"}, False, id="title-lines"),
        pytest.param({"inbox_status": "active", "branch": "a..b"}, False, id="branch-invalid"),
        pytest.param(
            {"inbox_status": "active", "sbx_config": {"\x00": 1}}, False, id="sbx-config-nul"
        ),
    ],
)
async def test_the_replace_schema_accepts_what_the_server_accepts(
    client: httpx.AsyncClient, make_session: SessionFactory, body: Any, valid: bool
) -> None:
    assert satisfies(request_schema(ONE, "put"), body) == valid
    made = await make_session()
    response = await client.put(f"/sessions/{made['id']}", json=body)
    assert (response.status_code < 400) == valid, response.text


@pytest.mark.parametrize(
    ("body", "valid"),
    [
        pytest.param({}, True, id="empty"),
        pytest.param(
            {"messages": None, "parent": None, "sbx_config": None, "version": 3},
            True,
            id="nulls-and-read-only",
        ),
        pytest.param({"inbox_status": "COMPLETED"}, True, id="status-any-case"),
        pytest.param({"messages": "text"}, True, id="messages-string"),
        pytest.param({"unknown": 1}, False, id="unknown-field"),
        pytest.param({"inbox_status": None}, False, id="status-null"),
        pytest.param({"title": None}, False, id="title-null"),
    ],
)
async def test_the_patch_schema_accepts_what_the_server_accepts(
    client: httpx.AsyncClient, make_session: SessionFactory, body: Any, valid: bool
) -> None:
    assert satisfies(request_schema(ONE, "patch"), body) == valid
    made = await make_session()
    response = await client.patch(f"/sessions/{made['id']}", json=body)
    assert (response.status_code < 400) == valid, response.text


# Each field's schema and the declaration's check agree, on any text ------------------------------


@given(
    st.text() | st.sampled_from(["", " ", "\x1c", "a\x00", "\u3000x\u3000", "\ufeff", "r" * 501])
)
def test_the_text_schema_is_the_servers_rule(value: str) -> None:
    for field in ("repo", "target_branch"):
        values = {"repo": "r", "target_branch": "m", field: value}
        assert satisfies(field_schema("NewSession", field), value) == accepted(NewSession, values)


@given(
    st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
    | st.sampled_from(["pending", "Active", " ARCHIVED\n", "completed\x00", "actíve", "\u212a"])
)
def test_the_status_schema_is_the_servers_rule(value: str) -> None:
    matches = satisfies(field_schema("SessionPatch", "inbox_status"), value)
    assert matches == accepted(SessionChanges, {"inbox_status": value})


BRANCHES = st.text(alphabet="ab./-@{}~^: \n\\*[]lockHEAD\x00\x7fé", max_size=12)


@given(BRANCHES | st.text() | st.sampled_from(["HEAD", "@", "a.lock/b", "a/.b", "x" * 101]))
# A no-break space: git takes it as a branch, so the body must (it once was refused as blank).
@example("\xa0")
def test_the_branch_schema_is_gits_rule(value: str) -> None:
    matches = satisfies(field_schema("SessionPatch", "branch"), value)
    assert matches == is_valid_branch(value) == accepted(SessionChanges, {"branch": value})


@given(st.text() | st.sampled_from(["Title", "two\nlines", " ", "x" * 81, "a\u202eb", "A\n"]))
def test_the_title_schema_accepts_every_valid_title(value: str) -> None:
    matches = satisfies(field_schema("SessionPatch", "title"), value)
    # Only "at least one visible character" is looser in the pattern (JSON Schema has no
    # Unicode categories), so the schema never refuses a title the server takes.
    if accepted(SessionChanges, {"title": value}):
        assert matches
