"""The probes: `GET /healthz` (the process is alive: no I/O) and `GET /readyz` (the database
answers, and Redis when REDIS_URL is set, each within `READY_TIMEOUT_S`).

A load balancer sends traffic to an instance while `/readyz` is 200 and takes it out on 503;
an orchestrator restarts an instance when `/healthz` stops answering. A readiness that fails is
logged once when it starts failing and once when it passes again, not at every probe."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from app.rest.errors import JSON_TYPE, Code
from app.state import AppState

log = logging.getLogger(__name__)

# How long each dependency has to answer a readiness probe.
READY_TIMEOUT_S = 1.0
# Seconds a 503 of /readyz asks the prober to wait.
RETRY_AFTER_S = 5
OK = "ok"

_HEALTHY = orjson.dumps({"status": OK})


async def healthz(_request: Request) -> Response:
    return Response(_HEALTHY, media_type=JSON_TYPE)


HEALTHZ = Route("/healthz", healthz, methods=["GET"])
_HEALTHZ_HEADERS = Response(_HEALTHY, media_type=JSON_TYPE).raw_headers


class HealthzShortcut:
    """ASGI middleware, innermost: `GET /healthz` answered here as its route answers it (the
    same bytes), without the router's walk through every route and Starlette's request and
    response objects; `scope["route"]` is its route, so the access line and the metrics name it
    as before. Anything else (a HEAD, a path under a root path) goes on to the router."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not a coroutine: a request it does not answer is handed on as the app's own awaitable,
        # so this layer adds no frame that each of the request's suspensions goes through.
        if (
            scope["type"] != "http"
            or scope["path"] != HEALTHZ.path
            or scope["method"] != "GET"
            or scope.get("root_path")
        ):
            return self.app(scope, receive, send)
        scope["route"] = HEALTHZ
        scope["endpoint"] = healthz
        scope["path_params"] = {}
        return _answer_healthz(send)


async def _answer_healthz(send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": list(_HEALTHZ_HEADERS)})
    await send({"type": "http.response.body", "body": _HEALTHY})


class Readiness:
    """`/readyz` for one app: what failed the last probe, to log changes only."""

    def __init__(self) -> None:
        self._failing: frozenset[str] = frozenset()

    async def probe(self, request: Request) -> Response:
        state: AppState = request.state.inbox
        checks: dict[str, Callable[[], Awaitable[None]]] = {"database": state.db.ping}
        if state.settings.redis_url:
            checks["redis"] = _redis_ping(state)
        names = list(checks)
        results = await asyncio.gather(*(_answers(checks[name]) for name in names))
        found = dict(zip(names, results, strict=True))
        self._note(found)
        failed = [name for name, result in found.items() if result != OK]
        if not failed:
            return Response(orjson.dumps({"status": OK, "checks": found}), media_type=JSON_TYPE)
        body = {
            "err": "Service Unavailable",
            "msg": "; ".join(f"{name}: {found[name]}" for name in failed),
            "code": Code.SERVICE_UNAVAILABLE.value,
            "checks": found,
        }
        return Response(
            orjson.dumps(body),
            503,
            {"Retry-After": str(RETRY_AFTER_S)},
            media_type=JSON_TYPE,
        )

    def _note(self, found: dict[str, str]) -> None:
        failing = frozenset(name for name, result in found.items() if result != OK)
        for name in sorted(failing - self._failing):
            log.warning("not ready: %s %s", name, found[name])
        for name in sorted(self._failing - failing):
            log.info("ready again: %s answers", name)
        self._failing = failing


def _redis_ping(state: AppState) -> Callable[[], Awaitable[None]]:
    # REDIS_URL set means the event log is the Redis stream (`Events.for_settings`).
    from app.events.redis_log import RedisLog

    events_log = state.events.log
    assert isinstance(events_log, RedisLog)
    return events_log.ping


async def _answers(ping: Callable[[], Awaitable[None]]) -> str:
    """ "ok", or why `ping` did not answer in time (short: the probe is open to anyone)."""
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            await ping()
    except TimeoutError:
        return f"no answer within {READY_TIMEOUT_S:g} s"
    except Exception as error:
        return f"unreachable ({type(error).__name__})"
    return OK


def routes() -> list[BaseRoute]:
    """The probes' routes, for one app."""
    return [
        HEALTHZ,
        Route("/readyz", Readiness().probe, methods=["GET"]),
    ]
