"""Bearer JWTs of an OpenID provider (`AUTH_JWKS_URL`, `AUTH_ISSUER`, `AUTH_AUDIENCE`).

`JwtVerifier` checks a token's signature against the provider's published key set and its
claims against the configured issuer and audience. The key set is fetched with PyJWT's
`PyJWKClient` (with a timeout; the URL is http(s), checked at start) in a worker thread, so the
event loop never waits on the network; the keys are kept, and fetched again when a token names
a `kid` they lack, or when they are `KEYS_MAX_AGE_S` old. Fetches are rate-limited
(`REFRESH_INTERVAL_S`), and requests that need one at the same moment share it: a flood of
made-up `kid`s costs the provider at most one request per interval. While the provider is down
or answers garbage, the keys already held keep working, tokens signed by other keys are refused
(`invalid_token`), and a warning is logged now and then, not per request.

Only asymmetric algorithms are accepted, each bound to its key (`none` and HS* never are, so a
public key cannot be used as an HMAC secret); `exp` is required, `nbf` and `iat` are checked when
present."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import jwt
from jwt import PyJWK, PyJWKClient

log = logging.getLogger(__name__)

ALGORITHMS = frozenset(
    {
        *("RS256", "RS384", "RS512"),
        *("PS256", "PS384", "PS512"),
        *("ES256", "ES384", "ES512"),
        "EdDSA",
    }
)
# Claims a token must carry (`nbf` and `iat` are checked when present).
REQUIRED_CLAIMS = ["exp", "iss", "aud"]
# Clock skew tolerated between the provider and this server, on `exp`, `nbf` and `iat`.
LEEWAY_S = 30
# A fetch of the key set gives up after this long (each socket operation, and the wait for it).
FETCH_TIMEOUT_S = 5.0
# At most one fetch per interval, whatever the tokens say: a flood of unknown `kid`s costs the
# provider one request per interval, and a rotated key is picked up within one interval.
REFRESH_INTERVAL_S = 10.0
# Keys this old are fetched again (in the background: the request does not wait), so a key the
# provider withdrew stops being accepted.
KEYS_MAX_AGE_S = 300.0
# While fetches keep failing, the warning is repeated at most once per interval.
WARNING_INTERVAL_S = 60.0


class JwtVerifier:
    """JWTs signed by a key of the set at `jwks_url`, for `audience`, from `issuer`."""

    def __init__(
        self,
        jwks_url: str,
        issuer: str,
        audience: str,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.jwks_url = jwks_url
        self.issuer = issuer
        self.audience = audience
        # Its own cache is off: the keys are kept here, so that a fetch happens only where this
        # class decides (rate-limited, in a thread), never inside a lookup.
        self._client = PyJWKClient(jwks_url, cache_jwk_set=False, timeout=FETCH_TIMEOUT_S)
        self._clock = clock
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at: float | None = None  # the last fetch that succeeded
        self._attempted_at: float | None = None  # the last fetch started
        self._fetch: asyncio.Task[None] | None = None  # the fetch in flight, shared
        self._fetch_deadline = 0.0  # its end at the latest, in the event loop's time
        self._warned_at: float | None = None

    def verify_at_once(self, token: str) -> bool | None:
        """None: a signature is checked in `verify`, whose key may have to be fetched."""
        return None

    async def verify(self, token: str) -> bool:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return False  # not a JWT: no reason to ask the provider anything
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str) or alg not in ALGORITHMS or not isinstance(kid, str):
            return False
        key = await self._key(kid)
        if key is None:
            return False
        try:
            # A PyJWK is bound to one algorithm: a token whose `alg` differs is refused.
            jwt.decode(
                token,
                key,
                algorithms=[alg],
                issuer=self.issuer,
                audience=self.audience,
                leeway=LEEWAY_S,
                options={"require": REQUIRED_CLAIMS, "enforce_minimum_key_length": True},
            )
        except jwt.PyJWTError as error:
            log.debug("JWT refused: %s", error)
            return False
        return True

    async def _key(self, kid: str) -> PyJWK | None:
        """The key named `kid`, fetching the set first when it may be there and is not held."""
        now = self._clock()
        key = self._keys.get(kid)
        if key is not None:
            if self._fetched_at is None or now - self._fetched_at >= KEYS_MAX_AGE_S:
                self._refresh(now)  # stale: renewed in the background, used meanwhile
            return key
        fetch = self._refresh(now)
        if fetch is None:
            return None  # fetched a moment ago (or tried): the key is not there
        try:
            async with asyncio.timeout_at(self._fetch_deadline):
                # Shielded: a request that gives up (or is cancelled) leaves the fetch to others.
                await asyncio.shield(fetch)
        except TimeoutError:
            return None
        return self._keys.get(kid)

    def _refresh(self, now: float) -> asyncio.Task[None] | None:
        """The fetch in flight, or a new one if the interval allows it; None otherwise."""
        if self._fetch is not None:
            return self._fetch
        if self._attempted_at is not None and now - self._attempted_at < REFRESH_INTERVAL_S:
            return None
        self._attempted_at = now
        self._fetch_deadline = asyncio.get_running_loop().time() + FETCH_TIMEOUT_S
        self._fetch = asyncio.create_task(self._fetch_keys(now))
        return self._fetch

    async def _fetch_keys(self, now: float) -> None:
        try:
            keys = await asyncio.to_thread(self._load)
        # Whatever goes wrong with the provider (down, slow, not JSON, no usable key), the keys
        # held stay as they are, and the request answers 401, never 500.
        except Exception as error:
            self._failed(now, error)
        else:
            if self._warned_at is not None:
                log.info("the key set at %s answers again (%d keys)", self.jwks_url, len(keys))
                self._warned_at = None
            self._keys = keys
            self._fetched_at = now
        finally:
            self._fetch = None

    def _load(self) -> dict[str, PyJWK]:
        """The usable signing keys of the set, by `kid` (in a worker thread: it blocks)."""
        keys = {
            key.key_id: key
            for key in self._client.get_jwk_set(refresh=True).keys
            if key.key_id
            and key.public_key_use in ("sig", None)
            and key.algorithm_name in ALGORITHMS
        }
        if not keys:
            raise ValueError("it holds no signing key for an asymmetric algorithm")
        return keys

    def _failed(self, now: float, error: Exception) -> None:
        if self._warned_at is not None and now - self._warned_at < WARNING_INTERVAL_S:
            return
        self._warned_at = now
        log.warning(
            "could not fetch the key set at %s (%s: %s): JWTs signed by a key not already held "
            "are refused until it answers",
            self.jwks_url,
            type(error).__name__,
            error,
        )
