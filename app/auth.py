"""Bearer authentication: who may call the API, and the 401 for those who may not.

An `Authenticator` asks its verifiers, in turn, whether a bearer token is theirs: `TokenVerifier`
(`API_TOKENS`) and `JwtVerifier` (`AUTH_JWKS_URL`, in `app.jwt_auth`), either or both. With no
verifier the API is open, and `RequireBearer` says so once, when the app starts.

`RequireBearer` guards every HTTP request but the open paths (health, the Swagger UI page and its
assets, the OpenAPI document, the GraphiQL page); it sits inside `CORS` (`app.cors`), so a preflight
is answered before it and a 401 still carries the CORS headers. A WebSocket is let through: its
token comes in `connection_init`, which the GraphQL view checks (`on_ws_connect`)."""

from __future__ import annotations

import enum
import hashlib
import hmac
import logging
from collections.abc import Awaitable, Mapping, Sequence
from typing import Protocol

from starlette.datastructures import Headers, QueryParams
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.config import Settings
from app.graphql.http_errors import refused_before_the_view
from app.jwt_auth import JwtVerifier
from app.rest.errors import Code, error_response

log = logging.getLogger(__name__)

GRAPHQL_PATH = "/graphql"
# Paths anyone may GET: probes and metrics (a scraper rarely carries the app's tokens; they hold
# counts, no session data: keep them off the public network), and pages a browser loads without
# the header (the OpenAPI document too: Swagger UI fetches it before anyone can type a token).
OPEN_PATHS = frozenset(
    {"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs/", "/swagger-ui"}
)
OPEN_PREFIXES = ("/docs/", "/swagger-ui/")
# The GraphQL code of a request refused for want of credentials (the REST body says UNAUTHORIZED,
# as the contract's error table has it).
GRAPHQL_CODE = "UNAUTHENTICATED"


class Verifier(Protocol):
    """One kind of credential: configured tokens, or JWTs of a key set."""

    async def verify(self, token: str) -> bool:
        """Whether `token` is a credential of this kind that is valid now."""
        ...

    def verify_at_once(self, token: str) -> bool | None:
        """`verify`'s answer when it needs no waiting; None when only `verify` can say."""
        ...


class TokenVerifier:
    """The tokens of `API_TOKENS`, compared in constant time."""

    def __init__(self, tokens: Sequence[str]) -> None:
        # Digests, so each comparison takes the same time whatever the lengths of the two.
        self._digests = tuple(_digest(token) for token in tokens)

    async def verify(self, token: str) -> bool:
        return self.verify_at_once(token)

    def verify_at_once(self, token: str) -> bool:
        offered = _digest(token)
        matched = False
        # Every configured token is compared, without stopping at a match, so the time taken
        # does not say which one matched.
        for digest in self._digests:
            matched |= hmac.compare_digest(offered, digest)
        return matched


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class Outcome(enum.Enum):
    ACCEPTED = "accepted"
    MISSING = "missing"  # no `Authorization`, or not a bearer token
    INVALID = "invalid"  # a bearer token that no verifier accepts


class Authenticator:
    """Decides a request's `Authorization` value with its verifiers; open when it has none."""

    def __init__(self, verifiers: Sequence[Verifier]) -> None:
        self.verifiers = tuple(verifiers)
        # Open when it has no verifier: asked for every request, so worked out once.
        self.is_open = not self.verifiers

    @classmethod
    def for_settings(cls, settings: Settings) -> Authenticator:
        verifiers: list[Verifier] = []
        if settings.api_tokens:
            verifiers.append(TokenVerifier(settings.api_tokens))
        # `load_settings` has checked that the three come together.
        if settings.auth_jwks_url and settings.auth_issuer and settings.auth_audience:
            verifiers.append(
                JwtVerifier(settings.auth_jwks_url, settings.auth_issuer, settings.auth_audience)
            )
        return cls(verifiers)

    async def check(self, authorization: str | None) -> Outcome:
        decided = self.check_at_once(authorization)
        if decided is not None:
            return decided
        token = _bearer_token(authorization)
        assert token is not None  # or it would have been decided: MISSING
        # Only a verifier that cannot answer at once is waited for.
        for verifier in self.verifiers:
            verified = verifier.verify_at_once(token)
            if verified is None:
                verified = await verifier.verify(token)
            if verified:
                return Outcome.ACCEPTED
        return Outcome.INVALID

    def check_at_once(self, authorization: str | None) -> Outcome | None:
        """`check`'s outcome when every verifier asked can give its answer without waiting
        (configured tokens can; a JWT whose key is not known yet cannot): None otherwise."""
        if self.is_open:
            return Outcome.ACCEPTED
        token = _bearer_token(authorization)
        if token is None:
            return Outcome.MISSING
        for verifier in self.verifiers:
            verified = verifier.verify_at_once(token)
            if verified is None:
                return None
            if verified:
                return Outcome.ACCEPTED
        return Outcome.INVALID

    async def check_params(self, params: Mapping[str, object]) -> Outcome:
        """As `check`, for a WebSocket's `connection_init` payload (`{"Authorization": …}`)."""
        value = next((v for k, v in params.items() if k.lower() == "authorization"), None)
        return await self.check(value if isinstance(value, str) else None)


def _bearer_token(authorization: str | None) -> str | None:
    """The token of a `Bearer` credential; None for another scheme or no header."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    # The scheme is case-insensitive (RFC 9110, 11.1); the token is not.
    return token.strip() if scheme.lower() == "bearer" else None


def is_open_path(scope: Scope) -> bool:
    if scope["method"] not in ("GET", "HEAD"):
        return False
    path: str = scope["path"]
    if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
        return True
    # The GraphiQL page, as Strawberry decides to render it: a browser's GET without a query.
    if path == GRAPHQL_PATH:
        accept = Headers(scope=scope).get("accept", "")
        query = QueryParams(scope["query_string"])
        return "text/html" in accept and "query" not in query
    return False


def unauthorized(scope: Scope, outcome: Outcome) -> Response:
    """The 401 for a request refused with `outcome`, in the body of the API it asked."""
    challenge = 'Bearer error="invalid_token"' if outcome is Outcome.INVALID else "Bearer"
    headers = {"WWW-Authenticate": challenge}
    message = (
        "the bearer token is not valid"
        if outcome is Outcome.INVALID
        else "an Authorization: Bearer <token> header is required"
    )
    if scope["path"] == GRAPHQL_PATH:
        return refused_before_the_view(scope, 401, message, GRAPHQL_CODE, headers)
    return error_response(401, "Unauthorized", message, Code.UNAUTHORIZED, headers)


def _authorization(scope: Scope) -> str | None:
    """The request's first `Authorization` value, as `Headers(scope=scope).get` reads it,
    without building the whole mapping on every request."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            found: str = value.decode("latin-1")
            return found
    return None


class RequireBearer:
    """ASGI middleware: an HTTP request off the open paths needs a bearer token."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator) -> None:
        self.app = app
        self.authenticator = authenticator
        # Its verifiers are fixed when it is made: asked once, not at every request.
        self.is_open = authenticator.is_open
        # Starlette builds its middleware once, as the app starts: so this is said once.
        if authenticator.is_open:
            log.warning(
                "no API_TOKENS nor AUTH_JWKS_URL configured: the API is open, anyone may read "
                "and write"
            )

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not a coroutine: a request let through at once is handed on as the app's own
        # awaitable, so this layer adds no frame that each of its suspensions goes through.
        if scope["type"] != "http" or self.is_open or is_open_path(scope):
            return self.app(scope, receive, send)
        authorization = _authorization(scope)
        outcome = self.authenticator.check_at_once(authorization)
        if outcome is Outcome.ACCEPTED:
            return self.app(scope, receive, send)
        return self._checked(scope, receive, send, authorization, outcome)

    async def _checked(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        authorization: str | None,
        outcome: Outcome | None,
    ) -> None:
        """Refused (`outcome`), or when it could not be decided at once, let through or refused
        by `Authenticator.check`."""
        if outcome is None:
            outcome = await self.authenticator.check(authorization)
        if outcome is Outcome.ACCEPTED:
            await self.app(scope, receive, send)
            return
        await unauthorized(scope, outcome)(scope, receive, send)
