"""Request ids: the client's `X-Request-ID` when it is short and printable, a new one otherwise.

The id of the request being served is held in a context variable, so that every log line written
while serving it can name it (`app.logs`) without being handed it. `app.access_log` sets it."""

from __future__ import annotations

import random
import re
from contextvars import ContextVar

HEADER = "X-Request-ID"
# As it is looked for among ASGI's headers (lower case) and added to an answer's.
HEADER_KEY = b"x-request-id"
# Longer than any id a proxy or tracer makes (a UUID is 36, a W3C trace parent 55): a client's id
# is echoed on the answer and written in every log line of the request, so it is kept short.
MAX_LENGTH = 128
# Printable ASCII without the space: what cannot break a log line, a header or a search.
_ACCEPTED = re.compile(rb"[\x21-\x7e]{1,%d}" % MAX_LENGTH)

# Not reset when a request ends: each request runs in a task of its own (a copy of the server's
# context), and the server logs an error escaping the app after the app has returned.
_current: ContextVar[str | None] = ContextVar("request_id", default=None)


def new() -> str:
    """A fresh id: 32 random hex digits, as nginx's `$request_id` (a UUID's worth of randomness,
    without building one). From `random`, which the interpreter seeds from the system and again
    in a forked worker: an id names a request, it guards nothing, and `os.urandom` is a system
    call per request (5% of a loaded server's CPU on GraphQL by id)."""
    return f"{random.getrandbits(128):032x}"


def accept(given: bytes | None) -> str:
    """The id for a request that sent `given` (None: no header): it, when short and printable;
    a new one otherwise."""
    if given is not None and _ACCEPTED.fullmatch(given):
        return given.decode("ascii")
    return new()


def current() -> str | None:
    """The id of the request being served here, if any."""
    return _current.get()


def begin(given: bytes | None) -> str:
    """Makes the id of a request that sent `given` the current one, and returns it."""
    request_id = accept(given)
    _current.set(request_id)
    return request_id


def response_headers() -> dict[str, str]:
    """`X-Request-ID` for an answer made outside `AccessLog`: Starlette answers an error that
    escapes every middleware (a 500) with the app's handler, further out than them all."""
    current = _current.get()
    return {} if current is None else {HEADER: current}
