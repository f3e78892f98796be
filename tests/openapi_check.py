"""Real responses held against the served OpenAPI document.

`load` reads `/openapi.json` as the server sent it and validates it with openapi-spec-validator;
`check_response` then fails unless a response is one the document declares for its operation: a
status it names (`default` stands only for 5xx, so that every expected error must be written
out), a content type it names, a body its schema accepts and the headers it requires.
`ResponseCheck` does both as an httpx event hook, so a test client checks every answer it gets.

Paths the document does not describe (`/graphql`, `/docs`, an unknown path) are not checked: the
document speaks only for its own paths."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import httpx
import orjson
from jsonschema.exceptions import best_match  # type: ignore[import-untyped]
from openapi_schema_validator import OAS31Validator, oas31_format_checker
from openapi_spec_validator import validate as validate_spec
from referencing import Registry
from referencing.jsonschema import DRAFT202012

# The document's address in the validators' registry; its own `#/components/…` references
# resolve against it.
_URI = "urn:session-inbox:openapi.json"
_NO_BODY = frozenset({204, 304})


def _escape(segment: str) -> str:
    """`segment` as one JSON pointer token (RFC 6901)."""
    return segment.replace("~", "~0").replace("/", "~1")


def _template_pattern(template: str) -> re.Pattern[str]:
    """`/sessions/{id}` as a pattern that matches `/sessions/<one segment>`."""
    parts = re.split(r"\{[^}/]+\}", template)
    return re.compile("[^/]+".join(re.escape(part) for part in parts))


def _media_type(response: httpx.Response) -> str:
    content_type = str(response.headers.get("content-type", ""))
    return content_type.split(";")[0].strip().lower()


def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or media_type.endswith("+json")


def _header_value(schema: Mapping[str, Any], raw: str) -> Any:
    """A header's text as the value its schema describes (OpenAPI's `simple` style)."""
    kind = schema.get("type")
    try:
        if kind == "integer":
            return int(raw)
        if kind == "number":
            return float(raw)
    except ValueError:
        pass
    return raw


class Document:
    """A validated OpenAPI 3.1 document, with what checking a response needs compiled once."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        if not str(document.get("openapi", "")).startswith("3.1."):
            raise AssertionError(f"not an OpenAPI 3.1 document: openapi={document.get('openapi')}")
        validate_spec(document)
        self.document = document
        resource = DRAFT202012.create_resource(document)
        self._registry: Registry[Any] = Registry().with_resource(_URI, resource)
        # Concrete paths are matched before templated ones, as the specification says.
        templates: list[str] = sorted(document.get("paths", {}), key=lambda p: p.count("{"))
        self._paths: list[tuple[re.Pattern[str], str]] = [
            (_template_pattern(path), path) for path in templates
        ]
        self._validators: dict[str, Any] = {}

    def node(self, pointer: str) -> tuple[Any, str]:
        """What `pointer` names, after following `$ref`s, and the pointer where it was found."""
        seen: set[str] = set()
        while True:
            node: Any = self.document
            for token in pointer.split("/")[1:]:
                token = token.replace("~1", "/").replace("~0", "~")
                node = node[int(token) if isinstance(node, list) else token]
            if not isinstance(node, Mapping) or "$ref" not in node:
                return node, pointer
            ref = node["$ref"]
            if not ref.startswith("#/") or ref in seen:
                raise AssertionError(f"{pointer}: unsupported or circular $ref {ref!r}")
            seen.add(ref)
            pointer = ref[1:]

    def validate(self, pointer: str, value: Any, what: str) -> None:
        """Fails, naming `what`, unless `value` satisfies the schema at `pointer`."""
        validator = self._validators.get(pointer)
        if validator is None:
            validator = OAS31Validator(
                {"$ref": f"{_URI}#{quote(pointer, safe='/~+')}"},
                registry=self._registry,
                format_checker=oas31_format_checker,
            )
            self._validators[pointer] = validator
        error = best_match(validator.iter_errors(value))
        if error is not None:
            raise AssertionError(
                f"{what} does not match {pointer}: {error.message} at {error.json_path}"
            )

    def template(self, path: str) -> str | None:
        """The path template of the document that `path` falls under, if any."""
        for pattern, template in self._paths:
            if pattern.fullmatch(path):
                return template
        return None


@functools.lru_cache(maxsize=8)
def load(served: bytes) -> Document:
    """The document as `/openapi.json` served it (bytes, so each distinct document is validated
    once however many tests fetch it)."""
    return Document(orjson.loads(served))


def _response_key(responses: Mapping[str, Any], status: int, what: str) -> str:
    for key in (str(status), f"{status // 100}XX", f"{status // 100}xx"):
        if key in responses:
            return key
    if status >= 500 and "default" in responses:
        return "default"
    raise AssertionError(f"{what}: status {status} is not declared (declared: {sorted(responses)})")


def check_response(document: Document, response: httpx.Response) -> None:
    """Fails unless `response` (read already) is an answer `document` declares for its request's
    operation: status, content type, body schema and headers."""
    method = response.request.method.lower()
    path = response.request.url.path
    template = document.template(path)
    if template is None:
        return
    what = f"{method.upper()} {path} -> {response.status_code} {response.text[:300]!r}"
    item, item_pointer = document.node(f"/paths/{_escape(template)}")
    declared_method = "get" if method == "head" and "head" not in item else method
    if declared_method not in item:
        if method == "options":
            return  # A CORS preflight, answered by the middleware.
        if response.status_code != 405 or "allow" not in response.headers:
            raise AssertionError(f"{what}: the method is not declared, so 405 with Allow was due")
        return
    responses_pointer = f"{item_pointer}/{declared_method}/responses"
    responses, responses_pointer = document.node(responses_pointer)
    key = _response_key(responses, response.status_code, what)
    declared, pointer = document.node(f"{responses_pointer}/{_escape(key)}")
    _check_headers(document, declared, pointer, response, what)
    if method == "head" or response.status_code in _NO_BODY:
        return
    content: Mapping[str, Any] = declared.get("content", {})
    if not content:
        if response.content:
            raise AssertionError(f"{what}: a body where the document declares none")
        return
    media_type = _media_type(response)
    family = media_type.split("/")[0]
    for candidate in (media_type, f"{family}/*", "*/*"):
        if candidate in content:
            break
    else:
        raise AssertionError(f"{what}: content type {media_type!r} not in {sorted(content)}")
    if "schema" in content[candidate] and _is_json(media_type):
        schema_pointer = f"{pointer}/content/{_escape(candidate)}/schema"
        document.validate(schema_pointer, response.json(), f"{what}: the body")


def _check_headers(
    document: Document,
    declared: Mapping[str, Any],
    pointer: str,
    response: httpx.Response,
    what: str,
) -> None:
    for name in declared.get("headers", {}):
        if name.lower() == "content-type":
            continue  # OpenAPI ignores a declared Content-Type header.
        header, header_pointer = document.node(f"{pointer}/headers/{_escape(name)}")
        raw = response.headers.get(name)
        if raw is None:
            if header.get("required"):
                raise AssertionError(f"{what}: the required header {name} is missing")
            continue
        if "schema" in header:
            schema, schema_pointer = document.node(f"{header_pointer}/schema")
            value = _header_value(schema, raw)
            document.validate(schema_pointer, value, f"{what}: the header {name}")


class ResponseCheck:
    """An httpx (async) response event hook: reads each response and checks it against the
    document the app serves, fetched once through `transport` at the first response.

    `httpx.AsyncClient(..., event_hooks={"response": [ResponseCheck(transport)]})`"""

    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        self._transport = transport
        self._document: Document | None = None

    async def __call__(self, response: httpx.Response) -> None:
        await response.aread()
        if self._document is None:
            # Straight through the transport: a client around it would close it on exit.
            request = response.request
            url = request.url.copy_with(raw_path=b"/openapi.json")
            # The client's credentials, for a server that wants them on every path.
            auth = {k: v for k, v in request.headers.items() if k.lower() == "authorization"}
            served = await self._transport.handle_async_request(
                httpx.Request("GET", url, headers=auth)
            )
            body = await served.aread()
            if served.status_code != 200:
                raise AssertionError(f"GET /openapi.json -> {served.status_code}: {body!r}")
            self._document = load(body)
        check_response(self._document, response)


def sync_hook(document: Document) -> Callable[[httpx.Response], None]:
    """The same check for a synchronous `httpx.Client`, over a document already loaded."""

    def hook(response: httpx.Response) -> None:
        response.read()
        check_response(document, response)

    return hook
