"""Bearer JWTs (`AUTH_JWKS_URL`, `AUTH_ISSUER`, `AUTH_AUDIENCE`) against a key set served on
loopback by `tests.jwks_server`: what REST, GraphQL and a WebSocket's `connection_init` answer to
good and bad tokens; key rotation; a provider that is down, answers garbage or hangs; how many
times the provider is asked; and `API_TOKENS` beside JWTs.

Authentication reads no data, so these run on one engine (SQLite)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace

import httpx
import jwt
import orjson
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from app import jwt_auth
from app.config import Settings
from app.db import Database
from app.jwt_auth import JwtVerifier
from app.state import AppState
from tests.graphql.test_subscriptions_ws import serving
from tests.jwks_server import AUDIENCE, ISSUER, JwksServer, SigningKey, claims
from tests.ports import free_port
from tests.test_auth import QUERY, client_for, init

# Authentication reads no data: the tests that serve the app do it on one engine.
one_engine = pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)


INVALID = 'Bearer error="invalid_token"'
API_TOKEN = "s3cret-Token-1"
DEADLINE_S = 10.0


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate("RS256")


@pytest.fixture
def jwks(key: SigningKey) -> Iterator[JwksServer]:
    with JwksServer(key) as server:
        yield server


def with_jwt(settings: Settings, jwks_url: str, api_tokens: tuple[str, ...] = ()) -> Settings:
    return replace(
        settings,
        auth_jwks_url=jwks_url,
        auth_issuer=ISSUER,
        auth_audience=AUDIENCE,
        api_tokens=api_tokens,
    )


@pytest.fixture
async def http(
    settings: Settings, jwks: JwksServer, app_state: AppState
) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(with_jwt(settings, jwks.url), app_state) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def rest_status(http: httpx.AsyncClient, token: str) -> int:
    return (await http.get("/sessions", headers=bearer(token))).status_code


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hmac_with_public_key(key: SigningKey) -> str:
    """The algorithm-confusion attack: HS256 with the provider's public key as the secret."""
    pem = key.private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    signing_input = ".".join(
        b64(orjson.dumps(part))
        for part in ({"alg": "HS256", "typ": "JWT", "kid": key.kid}, claims())
    )
    signature = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def unsigned(key: SigningKey) -> str:
    return jwt.encode(claims(), "", algorithm="none", headers={"kid": key.kid})


def tampered(key: SigningKey) -> str:
    header, _, signature = key.sign(claims()).split(".")
    return f"{header}.{b64(orjson.dumps(claims(sub='admin')))}.{signature}"


def as_ps256(key: SigningKey) -> str:
    """Signed by the right RSA key, but with PS256 where the key set says RS256."""
    return jwt.encode(claims(), key.private, "PS256", headers={"kid": key.kid})


NOW = int(time.time())
# Each: a bad token made from the published key. None of them is accepted.
BAD_TOKENS: dict[str, Callable[[SigningKey], str]] = {
    "wrong signature (another key, same kid)": lambda key: SigningKey.generate(
        "RS256", kid=key.kid
    ).sign(claims()),
    "payload changed after signing": tampered,
    "expired": lambda key: key.sign(claims(iat=NOW - 3600, nbf=NOW - 3600, exp=NOW - 600)),
    "no exp": lambda key: key.sign(claims(exp=None)),
    "not valid yet (nbf)": lambda key: key.sign(claims(nbf=NOW + 3600, exp=NOW + 7200)),
    "issued in the future (iat)": lambda key: key.sign(claims(iat=NOW + 3600, exp=NOW + 7200)),
    "wrong issuer": lambda key: key.sign(claims(iss="https://id.example/realms/other")),
    "no issuer": lambda key: key.sign(claims(iss=None)),
    "wrong audience": lambda key: key.sign(claims(aud="another-app")),
    "no audience": lambda key: key.sign(claims(aud=None)),
    "unknown kid": lambda key: SigningKey.generate("ES256").sign(claims()),
    "no kid": lambda key: jwt.encode(claims(), key.private, "RS256"),
    "alg none": unsigned,
    "HS256 signed with the public key": hmac_with_public_key,
    "alg not the key's": as_ps256,
    "not a JWT": lambda key: "not.a-jwt",
}


@one_engine
async def test_a_good_jwt_is_accepted_by_rest_and_graphql(
    http: httpx.AsyncClient, key: SigningKey, jwks: JwksServer
) -> None:
    token = key.sign(claims())
    assert await rest_status(http, token) == 200
    response = await http.post("/graphql", json=QUERY, headers=bearer(token))
    assert response.status_code == 200
    assert "errors" not in response.json()
    # A single audience (a string, not a list) is as good.
    assert await rest_status(http, key.sign(claims(aud=AUDIENCE))) == 200
    # A few seconds of clock skew with the provider are tolerated (`LEEWAY_S`).
    just_expired = key.sign(claims(exp=int(time.time()) - 5))
    assert await rest_status(http, just_expired) == 200
    # The key set was fetched once, then held.
    assert jwks.fetches == 1


@one_engine
@pytest.mark.parametrize("alg", ["PS256", "ES256", "EdDSA"])
async def test_jwts_of_other_asymmetric_algorithms_are_accepted(
    settings: Settings, app_state: AppState, alg: str
) -> None:
    key = SigningKey.generate(alg)
    with JwksServer(key) as jwks:
        async with client_for(with_jwt(settings, jwks.url), app_state) as http:
            assert await rest_status(http, key.sign(claims())) == 200
            impostor = SigningKey.generate(alg, kid=key.kid)
            assert await rest_status(http, impostor.sign(claims())) == 401


@one_engine
@pytest.mark.parametrize("make", BAD_TOKENS.values(), ids=BAD_TOKENS.keys())
async def test_a_bad_jwt_is_refused_with_401_invalid_token(
    http: httpx.AsyncClient, key: SigningKey, make: Callable[[SigningKey], str]
) -> None:
    token = make(key)
    rest = await http.get("/sessions", headers=bearer(token))
    assert rest.status_code == 401
    assert rest.headers["www-authenticate"] == INVALID
    assert (rest.json()["err"], rest.json()["code"]) == ("Unauthorized", "UNAUTHORIZED")

    graphql = await http.post("/graphql", json=QUERY, headers=bearer(token))
    assert graphql.status_code == 401
    assert graphql.headers["www-authenticate"] == INVALID
    [error] = graphql.json()["errors"]
    assert error["extensions"] == {"code": "UNAUTHENTICATED"}


@one_engine
async def test_a_token_that_is_not_a_jwt_or_of_a_refused_algorithm_fetches_nothing(
    http: httpx.AsyncClient, key: SigningKey, jwks: JwksServer
) -> None:
    for token in ("not-a-jwt", "a.b.c", unsigned(key), hmac_with_public_key(key)):
        assert await rest_status(http, token) == 401
    assert jwks.fetches == 0


@one_engine
async def test_a_websocket_is_accepted_with_a_good_jwt_and_closed_with_4403_otherwise(
    settings: Settings, db: Database, key: SigningKey, jwks: JwksServer
) -> None:
    bad = {name: make(key) for name, make in BAD_TOKENS.items()}
    async with serving(with_jwt(settings, jwks.url)) as server:
        good = await init(server.ws, {"Authorization": f"Bearer {key.sign(claims())}"})
        refused = {
            name: await init(server.ws, {"Authorization": f"Bearer {token}"})
            for name, token in bad.items()
        }
    assert good == {"type": "connection_ack"}
    assert refused == dict.fromkeys(bad, (4403, "Forbidden"))


@one_engine
async def test_a_jwt_signed_by_a_short_rsa_key_of_the_set_is_refused(
    settings: Settings, app_state: AppState
) -> None:
    short = SigningKey.generate("RS256", rsa_bits=1024)
    strong = SigningKey.generate("ES256")
    with warnings.catch_warnings(category=jwt.InsecureKeyLengthWarning, action="ignore"):
        weak = short.sign(claims())  # PyJWT warns as it signs with such a key
    with JwksServer(short, strong) as jwks:
        async with client_for(with_jwt(settings, jwks.url), app_state) as http:
            assert await rest_status(http, weak) == 401
            assert await rest_status(http, strong.sign(claims())) == 200


@one_engine
async def test_a_key_published_by_rotation_is_accepted_after_the_refresh(
    http: httpx.AsyncClient, key: SigningKey, jwks: JwksServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert await rest_status(http, key.sign(claims())) == 200
    rotated = SigningKey.generate("ES256")
    jwks.publish(rotated)
    # The set was fetched a moment ago: an unknown kid does not fetch it again at once.
    assert await rest_status(http, rotated.sign(claims())) == 401
    assert jwks.fetches == 1
    # Once the interval has passed (made nil here), the new kid fetches the set and verifies.
    monkeypatch.setattr(jwt_auth, "REFRESH_INTERVAL_S", 0.0)
    assert await rest_status(http, rotated.sign(claims())) == 200
    assert jwks.fetches == 2
    # The withdrawn key is gone with the old set.
    assert await rest_status(http, key.sign(claims())) == 401


@one_engine
async def test_a_burst_of_random_kids_fetches_the_key_set_once(
    http: httpx.AsyncClient, key: SigningKey, jwks: JwksServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One interval that lasts the whole test, so the count does not depend on the machine's speed.
    monkeypatch.setattr(jwt_auth, "REFRESH_INTERVAL_S", 3600.0)
    strangers = [key.sign(claims(), kid=uuid.uuid4().hex) for _ in range(50)]
    statuses = await asyncio.gather(*(rest_status(http, token) for token in strangers))
    assert statuses == [401] * 50
    # Concurrent requests shared one fetch.
    assert jwks.fetches == 1
    statuses = await asyncio.gather(*(rest_status(http, token) for token in strangers))
    assert statuses == [401] * 50
    assert jwks.fetches == 1
    # The one fetch brought the real key.
    assert await rest_status(http, key.sign(claims())) == 200
    assert jwks.fetches == 1


@one_engine
async def test_with_the_key_set_down_from_the_start_jwts_get_401_and_the_rest_is_served(
    settings: Settings,
    app_state: AppState,
    key: SigningKey,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(jwt_auth, "REFRESH_INTERVAL_S", 0.0)  # every request may try
    caplog.set_level(logging.WARNING, logger="app.jwt_auth")
    jwks = JwksServer(key)  # not started: its port refuses connections
    guarded = with_jwt(settings, jwks.url, api_tokens=(API_TOKEN,))
    async with client_for(guarded, app_state) as http:
        for _ in range(5):
            response = await http.get("/sessions", headers=bearer(key.sign(claims())))
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == INVALID
        # The server answers everything else as usual.
        assert await rest_status(http, API_TOKEN) == 200
        assert (await http.get("/openapi.json")).status_code == 200
        # The failure is said once, not per request.
        warnings = [r.getMessage() for r in caplog.records if r.name == "app.jwt_auth"]
        assert len(warnings) == 1
        assert jwks.url in warnings[0]
        assert "Connection refused" in warnings[0]

        # When it answers, tokens verify again.
        with jwks:
            assert await rest_status(http, key.sign(claims())) == 200


@one_engine
async def test_a_websocket_with_a_jwt_is_closed_with_4403_while_the_key_set_is_down(
    settings: Settings, db: Database, key: SigningKey
) -> None:
    jwks = JwksServer(key)  # not started
    async with serving(with_jwt(settings, jwks.url, api_tokens=(API_TOKEN,))) as server:
        refused = await init(server.ws, {"Authorization": f"Bearer {key.sign(claims())}"})
        accepted = await init(server.ws, {"Authorization": f"Bearer {API_TOKEN}"})
    assert refused == (4403, "Forbidden")
    assert accepted == {"type": "connection_ack"}


@one_engine
async def test_a_key_set_answering_garbage_refuses_unknown_keys_until_it_is_well_again(
    settings: Settings,
    app_state: AppState,
    key: SigningKey,
    jwks: JwksServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(jwt_auth, "REFRESH_INTERVAL_S", 0.0)
    caplog.set_level(logging.INFO, logger="app.jwt_auth")
    jwks.garbage = True
    async with client_for(with_jwt(settings, jwks.url), app_state) as http:
        assert await rest_status(http, key.sign(claims())) == 401
        assert await rest_status(http, key.sign(claims())) == 401
        jwks.garbage = False
        assert await rest_status(http, key.sign(claims())) == 200
    records = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "app.jwt_auth"]
    assert [level for level, _ in records] == [logging.WARNING, logging.INFO]
    assert "JSONDecodeError" in records[0][1]
    assert "answers again" in records[1][1]


@one_engine
async def test_keys_already_held_keep_working_while_the_key_set_is_down(
    http: httpx.AsyncClient, key: SigningKey, jwks: JwksServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert await rest_status(http, key.sign(claims())) == 200
    jwks.stop()
    monkeypatch.setattr(jwt_auth, "REFRESH_INTERVAL_S", 0.0)
    assert await rest_status(http, key.sign(claims())) == 200
    assert await rest_status(http, SigningKey.generate().sign(claims())) == 401
    assert await rest_status(http, key.sign(claims())) == 200


@one_engine
async def test_a_hanging_key_set_blocks_no_other_request_and_its_fetch_is_shared(
    settings: Settings, app_state: AppState, key: SigningKey, jwks: JwksServer
) -> None:
    jwks.hold()
    async with client_for(with_jwt(settings, jwks.url, api_tokens=(API_TOKEN,)), app_state) as http:
        waiting = [asyncio.create_task(rest_status(http, key.sign(claims()))) for _ in range(3)]
        await jwks.requests_arrived(1, DEADLINE_S)
        # The fetch waits in a thread: the event loop serves other requests meanwhile.
        assert await rest_status(http, API_TOKEN) == 200
        assert (await http.get("/openapi.json")).status_code == 200
        assert not any(task.done() for task in waiting)
        jwks.release()
        async with asyncio.timeout(DEADLINE_S):
            assert await asyncio.gather(*waiting) == [200, 200, 200]
    assert jwks.fetches == 1


@one_engine
async def test_a_key_set_that_never_answers_gets_401_after_the_fetch_timeout(
    settings: Settings,
    app_state: AppState,
    key: SigningKey,
    jwks: JwksServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(jwt_auth, "FETCH_TIMEOUT_S", 0.5)
    jwks.hold()
    try:
        async with client_for(with_jwt(settings, jwks.url), app_state) as http:
            started = time.monotonic()
            assert await rest_status(http, key.sign(claims())) == 401
            assert time.monotonic() - started < 0.5 + 1.0
    finally:
        jwks.release()


@one_engine
async def test_api_tokens_and_jwts_configured_together_both_work(
    settings: Settings, app_state: AppState, key: SigningKey, jwks: JwksServer
) -> None:
    guarded = with_jwt(settings, jwks.url, api_tokens=(API_TOKEN,))
    async with client_for(guarded, app_state) as http:
        assert await rest_status(http, API_TOKEN) == 200
        assert await rest_status(http, key.sign(claims())) == 200
        assert await rest_status(http, "wrong") == 401
        assert await rest_status(http, SigningKey.generate().sign(claims())) == 401
        assert (await http.get("/sessions")).status_code == 401
        response = await http.post("/graphql", json=QUERY, headers=bearer(key.sign(claims())))
        assert response.status_code == 200
    # The configured token is not a JWT: it never made the verifier ask the provider.
    assert jwks.fetches == 1


@one_engine
async def test_with_only_a_key_set_configured_no_open_api_warning_is_logged(
    settings: Settings, app_state: AppState, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="app.auth")
    guarded = with_jwt(settings, f"http://127.0.0.1:{free_port()}/jwks")
    async with client_for(guarded, app_state) as http:
        # Starlette builds the middleware, and so says it, on the first request.
        assert (await http.get("/sessions")).status_code == 401
    assert [r for r in caplog.records if r.name == "app.auth"] == []


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_the_key_set_is_fetched_at_most_once_per_interval_and_renewed_when_old(
    jwks: JwksServer, key: SigningKey
) -> None:
    clock = FakeClock()
    verifier = JwtVerifier(jwks.url, ISSUER, AUDIENCE, clock=clock)
    rotated = SigningKey.generate("EdDSA")
    assert await verifier.verify(key.sign(claims()))
    jwks.publish(rotated)

    clock.now += jwt_auth.REFRESH_INTERVAL_S - 1
    assert not await verifier.verify(rotated.sign(claims()))
    assert jwks.fetches == 1
    clock.now += 1
    assert await verifier.verify(rotated.sign(claims()))
    assert jwks.fetches == 2
    # The old key is held no more; the new one is used without asking again.
    assert not await verifier.verify(key.sign(claims()))
    assert await verifier.verify(rotated.sign(claims()))
    assert jwks.fetches == 2

    # Keys that have grown old are still used, and renewed in the background: a key the
    # provider withdrew stops being accepted once the renewal lands.
    jwks.publish(key)
    clock.now += jwt_auth.KEYS_MAX_AGE_S
    assert await verifier.verify(rotated.sign(claims()))
    await jwks.requests_arrived(3, DEADLINE_S)
    async with asyncio.timeout(DEADLINE_S):
        while await verifier.verify(rotated.sign(claims())):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    assert await verifier.verify(key.sign(claims()))
    assert jwks.fetches == 3


async def test_a_failing_key_set_is_warned_about_at_most_once_per_interval(
    key: SigningKey, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="app.jwt_auth")
    clock = FakeClock()
    verifier = JwtVerifier(f"http://127.0.0.1:{free_port()}/jwks", ISSUER, AUDIENCE, clock=clock)

    def warnings() -> int:
        return len([r for r in caplog.records if r.name == "app.jwt_auth"])

    for _ in range(int(jwt_auth.WARNING_INTERVAL_S // jwt_auth.REFRESH_INTERVAL_S)):
        assert not await verifier.verify(key.sign(claims()))
        clock.now += jwt_auth.REFRESH_INTERVAL_S
    assert warnings() == 1
    assert not await verifier.verify(key.sign(claims()))
    assert warnings() == 2
