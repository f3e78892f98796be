"""What a REST request says besides its path: the body (JSON only), `Prefer`, `If-Match` and the
session id in the path."""

from __future__ import annotations

import enum
import re
from uuid import UUID

import msgspec
from starlette.requests import Request

from app.errors import InvalidInput, MalformedId
from app.model import C
from app.rest.errors import Code, HTTPError

# The 8-4-4-4-12 form, or its 32 digits alone, in either case: what msgspec takes in a body.
# (Python's UUID() also takes braces, "urn:uuid:", signs, underscores and non-ASCII digits.)
_UUID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{32}"
)
# `"3"`, `W/"3"` or a bare `3`.
_ETAG = re.compile(r'(?:W/)?"([0-9]{1,18})"|([0-9]{1,18})')
# What an If-Match that names no version expects: no session is ever at it.
NO_VERSION = -1


class Return(enum.StrEnum):
    """RFC 7240's `return` preference."""

    REPRESENTATION = "representation"
    MINIMAL = "minimal"


def is_json(content_type: str | None) -> bool:
    """`application/json`, `application/merge-patch+json` or another `…+json` type; a body with
    no Content-Type is read as JSON too."""
    if content_type is None:
        return True
    media_type = content_type.partition(";")[0].strip().lower()
    kind, _, subtype = media_type.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


async def body(request: Request, command: type[C]) -> C:
    """The JSON body as `command`. A body of another media type is refused (415) before any of
    it is read, so a cross-site form or `text/plain` post cannot write."""
    content_type = request.headers.get("content-type")
    if not is_json(content_type):
        raise HTTPError(
            415,
            "Unsupported Media Type",
            f"request bodies are JSON (application/json), not {content_type}",
            Code.UNSUPPORTED_MEDIA_TYPE,
        )
    raw = await request.body()
    try:
        return command.decode(raw)
    except msgspec.DecodeError as exc:
        raise HTTPError(422, "Parse Error", f"body is not valid JSON: {exc}") from None
    except MalformedId as exc:
        if exc.field == "parent":
            raise HTTPError(400, "Bad Request", "Invalid parent UUID format") from None
        raise
    except InvalidInput as exc:
        if exc.field is None:
            raise InvalidInput("body must be a JSON object") from None
        raise


def preference(request: Request) -> Return | None:
    """The `return` preference of the request's `Prefer` headers; others are ignored."""
    for header in request.headers.getlist("prefer"):
        for token in header.split(","):
            name, _, value = token.partition(";")[0].partition("=")
            if name.strip().lower() == "return":
                try:
                    return Return(value.strip().strip('"').lower())
                except ValueError:
                    continue
    return None


def session_id(request: Request) -> UUID:
    parsed = uuid_or_none(request.path_params["id"])
    if parsed is None:
        raise HTTPError(400, "Bad Request", "Invalid UUID format")
    return parsed


def uuid_or_none(value: object) -> UUID | None:
    """The UUID `value` spells, or None."""
    if isinstance(value, str) and _UUID.fullmatch(value):
        return UUID(value)
    return None


def uuid_param(name: str, raw: str) -> UUID:
    parsed = uuid_or_none(raw)
    if parsed is None:
        raise HTTPError(400, "Bad Request", f"Invalid {name} UUID format")
    return parsed


def expected_version(request: Request) -> int | None:
    """The version named by `If-Match`; None when there is no condition (absent, or `*`), and
    NO_VERSION for a header that names no version of ours."""
    header = request.headers.get("if-match")
    if header is None or header.strip() == "*":
        return None
    match = _ETAG.fullmatch(header.strip())
    if match is None:
        return NO_VERSION
    return int(match[1] or match[2])
