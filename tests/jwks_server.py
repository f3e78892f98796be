"""An OpenID provider's key set on loopback, and the keys that sign the tests' tokens.

A real HTTP server (the standard library's, threaded) on 127.0.0.1 serves the published keys as
a JWKS document; the test publishes, rotates, breaks and restarts it, and counts its requests.

    key = SigningKey.generate("RS256")
    with JwksServer(key) as jwks:             # serving on a free port; `jwks.url`
        token = key.sign(claims())             # a JWT with `kid`, for the default issuer
        jwks.publish(key, SigningKey.generate("ES256"))   # rotation
        jwks.garbage = True                    # answers 200 with a body that is not JSON
        jwks.stop(); jwks.start()              # down, then back on the same port
        jwks.hold(); ...; jwks.release()       # requests wait for `release()` (or `stop()`)
        await jwks.requests_arrived(3, timeout_s=10)
        assert jwks.fetches == 3
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import jwt
import orjson
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from tests.ports import free_port

ISSUER = "https://id.example/realms/inbox"
AUDIENCE = "session-inbox"
JWKS_PATH = "/realms/inbox/protocol/openid-connect/certs"
STOP_TIMEOUT_S = 10.0

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


@dataclass(frozen=True)
class SigningKey:
    """A private key, its `kid` and algorithm; `jwk()` is what the provider publishes."""

    kid: str
    alg: str
    private: PrivateKey

    @classmethod
    def generate(
        cls, alg: str = "RS256", kid: str | None = None, rsa_bits: int = 2048
    ) -> SigningKey:
        private: PrivateKey
        if alg.startswith(("RS", "PS")):
            private = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
        elif alg == "ES256":
            private = ec.generate_private_key(ec.SECP256R1())
        elif alg == "EdDSA":
            private = ed25519.Ed25519PrivateKey.generate()
        else:
            raise ValueError(f"no test key for {alg}")
        return cls(kid or uuid.uuid4().hex, alg, private)

    def jwk(self) -> dict[str, Any]:
        public = self.private.public_key()
        jwk: dict[str, Any]
        if isinstance(public, rsa.RSAPublicKey):
            jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
        elif isinstance(public, ec.EllipticCurvePublicKey):
            jwk = ECAlgorithm.to_jwk(public, as_dict=True)
        else:
            jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig"}

    def sign(self, claims: dict[str, Any], **header: Any) -> str:
        """A JWT of `claims` signed by this key; `header` adds to (or overrides) the header."""
        return jwt.encode(claims, self.private, self.alg, headers={"kid": self.kid, **header})


def claims(**overrides: Any) -> dict[str, Any]:
    """The claims of a good token for the tests' issuer and audience, valid for five minutes."""
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": ["account", AUDIENCE],
        "sub": "user-1",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
    }
    base.update(overrides)
    return {key: value for key, value in base.items() if value is not None}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up on a held answer is expected; anything else is printed.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class JwksServer:
    """The key set of `keys`, served at `url` until `stop()`; `start()` serves it again on the
    same port."""

    def __init__(self, *keys: SigningKey) -> None:
        self.port = free_port()
        self.garbage = False
        self._document = b""
        self._fetches = 0
        self._lock = threading.Condition()
        self._released = threading.Event()
        self._released.set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.publish(*keys)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{JWKS_PATH}"

    @property
    def fetches(self) -> int:
        """Requests for the key set received so far."""
        with self._lock:
            return self._fetches

    def publish(self, *keys: SigningKey) -> None:
        """Serves exactly these keys from now on."""
        document = orjson.dumps({"keys": [key.jwk() for key in keys]})
        with self._lock:
            self._document = document

    def hold(self) -> None:
        """Requests wait, unanswered, until `release()` or `stop()`."""
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    async def requests_arrived(self, count: int, timeout_s: float) -> None:
        """Waits until at least `count` requests have arrived (held ones included)."""
        await asyncio.to_thread(self.wait_for_requests, count, timeout_s)

    def wait_for_requests(self, count: int, timeout_s: float) -> None:
        with self._lock:
            if not self._lock.wait_for(lambda: self._fetches >= count, timeout_s):
                raise TimeoutError(f"{self._fetches} requests, not {count}, in {timeout_s} s")

    def _answer(self) -> bytes:
        with self._lock:
            self._fetches += 1
            self._lock.notify_all()
        self._released.wait(STOP_TIMEOUT_S)
        with self._lock:
            return b"<html>Bad gateway</html>" if self.garbage else self._document

    def start(self) -> None:
        jwks = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != JWKS_PATH:
                    self.send_error(404)
                    return
                body = jwks._answer()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = _Server(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stops answering: connections to the port are refused until `start()`."""
        self.release()
        if self._server is None or self._thread is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(STOP_TIMEOUT_S)
        self._server = self._thread = None

    def __enter__(self) -> JwksServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
