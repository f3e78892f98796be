"""A Python client generated from the served `/openapi.json` by openapi-python-client performs
every REST operation against a real server process and parses every answer into its models.

The generator runs with `--fail-on-warning`: a schema it cannot read makes it drop the models
built on it, and the calls that answer with them come back unparsed. Every answer the client
gets is also held to the document by `tests.openapi_check`."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any
from uuid import UUID

import httpx
import orjson
import pytest
from openapi_python_client.strings import PythonIdentifier

from app.config import Settings
from app.db import Database
from bench.server import Server, serve
from tests import openapi_check

GENERATOR = Path(sys.executable).parent / "openapi-python-client"
PACKAGE = "session_inbox_client"
# No post hooks: by default the generator runs ruff over its output, which adds nothing here.
GENERATOR_CONFIG: dict[str, list[str]] = {"post_hooks": []}
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00")
ONE = "/sessions/{id}"


def generate(document: bytes, directory: Path) -> Path:
    """Generates the client package for `document` under `directory`; returns its parent."""
    (directory / "openapi.json").write_bytes(document)
    (directory / "config.json").write_bytes(orjson.dumps(GENERATOR_CONFIG))
    root = directory / "generated"
    root.mkdir()
    command = [
        str(GENERATOR),
        "generate",
        "--path",
        str(directory / "openapi.json"),
        "--config",
        str(directory / "config.json"),
        "--meta",
        "none",
        "--output-path",
        str(root / PACKAGE),
        "--fail-on-warning",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"the generator warned:\n{result.stdout}\n{result.stderr}"
    return root


@dataclass
class GeneratedClient:
    """The generated package, the document it came from, and a client that records what it
    sends and checks every answer against the document."""

    package: ModuleType
    root: Path
    document: openapi_check.Document
    base_url: str
    sent: list[httpx.Request] = field(default_factory=list)

    def client(self) -> Any:
        hooks = {
            "request": [self.sent.append],
            "response": [openapi_check.sync_hook(self.document)],
        }
        return self.package.Client(
            base_url=self.base_url,
            raise_on_unexpected_status=True,
            timeout=httpx.Timeout(10.0),
            httpx_args={"event_hooks": hooks},
        )

    def operation(self, path: str, method: str) -> Any:
        """The generated module of the operation at `path` and `method`."""
        paths = self.document.document["paths"]
        assert path in paths, f"{path} is not in the document's paths {sorted(paths)}"
        operation_id = paths[path][method]["operationId"]
        name = PythonIdentifier(operation_id, prefix="field_")
        (found,) = (self.root / PACKAGE / "api").glob(f"*/{name}.py")
        return importlib.import_module(f"{PACKAGE}.api.{found.parent.name}.{name}")

    def body(self, operation: Any, fields: dict[str, Any]) -> Any:
        """`fields` as the generated model of `operation`'s request body."""
        hint = typing.get_type_hints(operation.sync_detailed)["body"]
        models = [arg for arg in typing.get_args(hint) or (hint,) if hasattr(arg, "from_dict")]
        assert models, f"no model for the body of {operation.__name__}: {hint}"
        return models[0].from_dict(fields)


@pytest.fixture
def server(settings: Settings, db: Database) -> Iterator[Server]:
    # `db` empties the table the server process uses, so the lists hold only this test's.
    with serve("ours", settings.database_url) as running:
        yield running


@pytest.fixture(scope="session")
def generate_once(tmp_path_factory: pytest.TempPathFactory) -> Callable[[bytes], Path]:
    """`generate`, run once for each distinct document (the engines serve the same one)."""
    roots: dict[bytes, Path] = {}

    def generated_root(document: bytes) -> Path:
        if document not in roots:
            roots[document] = generate(document, tmp_path_factory.mktemp("client"))
        return roots[document]

    return generated_root


@pytest.fixture
def generated(
    server: Server, generate_once: Callable[[bytes], Path], monkeypatch: pytest.MonkeyPatch
) -> Iterator[GeneratedClient]:
    served = httpx.get(f"{server.base_url}/openapi.json", timeout=10)
    assert served.status_code == 200, served.text
    document = openapi_check.load(served.content)
    root = generate_once(served.content)
    monkeypatch.syspath_prepend(str(root))
    try:
        package = importlib.import_module(PACKAGE)
        yield GeneratedClient(package, root, document, server.base_url)
    finally:
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def _comparable(value: Any) -> Any:
    """`value` with timestamps as datetimes: a parsed one is written back without the
    fraction when it is zero."""
    if isinstance(value, dict):
        return {key: _comparable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_comparable(item) for item in value]
    if isinstance(value, str) and TIMESTAMP.fullmatch(value):
        return datetime.fromisoformat(value)
    return value


def is_generated_model(value: Any) -> bool:
    return type(value).__module__.startswith(f"{PACKAGE}.models.")


def parsed(response: Any, status: int) -> Any:
    """The answer's parsed model, after checking that it is one of the generated models and
    that it holds the whole body: written back, it is the JSON the server sent."""
    assert response.status_code == status, response.content
    model = response.parsed
    assert is_generated_model(model), f"{type(model)}: {response.content!r}"
    assert _comparable(model.to_dict()) == _comparable(orjson.loads(response.content))
    return model


def test_a_generated_client_performs_every_operation(generated: GeneratedClient) -> None:
    with generated.client() as client:
        exercise(generated, client)


def exercise(generated: GeneratedClient, client: Any) -> None:
    create = generated.operation("/sessions", "post")
    list_sessions = generated.operation("/sessions", "get")
    get = generated.operation(ONE, "get")
    patch = generated.operation(ONE, "patch")
    put = generated.operation(ONE, "put")
    delete = generated.operation(ONE, "delete")

    ids: list[str] = []
    for messages in ({"content": "fix the login"}, "just text", [1, "two"]):
        body = {"repo": "acme/app", "target_branch": "main", "messages": messages}
        response = create.sync_detailed(client=client, body=generated.body(create, body))
        created = parsed(response, 201)
        assert set(orjson.loads(response.content)) == {"success", "message", "id"}
        assert (created.success, created.message) == (True, "Session created successfully")
        ids.append(str(created.id))
    first, second, third = ids

    one = parsed(get.sync_detailed(UUID(first), client=client), 200).session
    assert is_generated_model(one)
    assert (str(one.id), one.repo, one.target_branch) == (first, "acme/app", "main")
    assert (one.inbox_status, one.version) == ("active", 1)

    # Without paging arguments, the call sends none, and gets every session.
    everything = parsed(list_sessions.sync_detailed(client=client), 200)
    assert not generated.sent[-1].url.params, generated.sent[-1].url
    assert [str(s.id) for s in everything.sessions] == [third, second, first]
    assert all(is_generated_model(s) for s in everything.sessions)

    page = parsed(list_sessions.sync_detailed(client=client, limit=2), 200)
    assert generated.sent[-1].url.params["limit"] == "2"
    assert [str(s.id) for s in page.sessions] == [third, second]
    assert isinstance(page.next_cursor, str)
    last = parsed(list_sessions.sync_detailed(client=client, limit=2, cursor=page.next_cursor), 200)
    assert [str(s.id) for s in last.sessions] == [first]
    assert last.next_cursor is None

    change = {"title": "Renamed by a generated client", "sbx_config": {"image": "python:3.11"}}
    response = patch.sync_detailed(UUID(first), client=client, body=generated.body(patch, change))
    patched = parsed(response, 200)
    assert (patched.success, patched.message) == (True, "Session updated successfully")
    assert is_generated_model(patched.session)
    assert (patched.session.title, patched.session.version) == (change["title"], 2)

    replacement = {"inbox_status": "completed", "messages": ["step one", "step two"]}
    response = put.sync_detailed(UUID(first), client=client, body=generated.body(put, replacement))
    replaced = parsed(response, 200)
    assert orjson.loads(response.content) == {
        "success": True,
        "message": "Session updated successfully",
    }
    assert (replaced.success, replaced.message) == (True, "Session updated successfully")
    now = parsed(get.sync_detailed(UUID(first), client=client), 200).session
    assert (now.inbox_status, now.version, now.title) == ("completed", 3, change["title"])
    assert (now.messages, now.sbx_config) == (["step one", "step two"], None)

    deleted = parsed(delete.sync_detailed(UUID(second), client=client), 200)
    assert (deleted.success, deleted.message) == (True, "Session deleted successfully")
    missing = parsed(get.sync_detailed(UUID(second), client=client), 404)
    assert (missing.err, missing.msg, missing.code) == (
        "Not Found",
        "Session not found",
        "NOT_FOUND",
    )

    remaining = parsed(list_sessions.sync_detailed(client=client), 200)
    assert [str(s.id) for s in remaining.sessions] == [third, first]
