"""What each middleware layer costs per request, in CPU of the process, driven in-process.

    python -m bench.middleware_cost                    # fresh database, dropped after
    python -m bench.middleware_cost --rounds 9 --requests 4000

The app is `create_app` as users run it: `API_TOKENS` set (each request carries the token),
`REDIS_URL` set (`BENCH_REDIS_URL`, default redis://127.0.0.1:6379/14), text access lines at
`LOG_LEVEL=info` (written to /dev/null through the handler `app.logs` configures), metrics on,
over a PostgreSQL database of a few sessions (`BENCH_POSTGRES_URL`), with its own lifespan.

Each request is one ASGI call, as a server makes it (a fresh scope, the lifespan's state, a
`receive` that hands over an empty body, a `send` that drops what it is given): `GET /healthz`
(no I/O) and `GET /sessions/{id}` (one read). Variants: the full stack, the full stack less one
middleware (for each, by class name), and the bare router with none. A layer's cost is the full
stack's figure less the figure without it. Rounds rotate the variants, and each figure is the
best round (a busy neighbour inflates none more than another). Nothing is asserted."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, TextIO

from starlette.applications import Starlette

from app.config import load_settings
from app.logs import configure_logging
from app.main import create_app
from app.model import NewSession
from bench.seed import POSTGRES_SERVER, drop, fresh_postgres

TOKEN = "bench-token-1"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
FULL = "full"
BARE = "bare"
Asgi = Any


def _settings(url: str) -> Any:
    return replace(
        load_settings(environ={}, env_file=None),
        database_url=url,
        api_tokens=(TOKEN,),
        redis_url=REDIS_URL,
        log_level="info",
        run_migrations=False,
    )


def _variant(settings: Any, without: str | None) -> Starlette:
    """The app, its middleware all there (`FULL`), none (`BARE`) or all but `without`."""
    app = create_app(settings)
    if without == BARE:
        app.user_middleware = []
    elif without != FULL:
        app.user_middleware = [m for m in app.user_middleware if _name(m) != without]
    return app


def _name(middleware: Any) -> str:
    return str(middleware.cls.__name__)


def _scope(path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": "GET",
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"user-agent", b"wrk"),
            (b"accept", b"*/*"),
            (b"authorization", f"Bearer {TOKEN}".encode()),
        ],
    }


async def _drive(app: Asgi, state: dict[str, Any], path: str, requests: int) -> tuple[int, float]:
    """Status of the last answer, and CPU µs per request over `requests` calls."""
    template = _scope(path)
    request = {"type": "http.request", "body": b"", "more_body": False}
    status = 0

    async def receive() -> dict[str, Any]:
        return request

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    gc.collect()
    started = time.process_time()
    for _ in range(requests):
        scope = dict(template)
        scope["state"] = dict(state)
        await app(scope, receive, send)
    return status, (time.process_time() - started) / requests * 1e6


def _logging_to_devnull(settings: Any) -> TextIO:
    """Logging as `serve` configures it, its handler writing to /dev/null (closed by the caller)."""
    configure_logging(settings)
    devnull = open(os.devnull, "w")  # noqa: SIM115 - for the whole run
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(devnull)
    return devnull


def _rotations(names: list[str], rounds: int) -> Iterator[list[str]]:
    for i in range(rounds):
        k = i % len(names)
        yield names[k:] + names[:k]


async def bench(url: str, rounds: int, requests: int) -> None:
    settings = _settings(url)
    devnull = _logging_to_devnull(settings)
    probe = create_app(settings)
    layers = [_name(m) for m in probe.user_middleware]
    names = [FULL, *layers, BARE]
    apps = {name: _variant(settings, name) for name in names}
    async with probe.router.lifespan_context(probe) as lifespan_state:
        state = dict(lifespan_state or {})
        created = await state["inbox"].service.create(
            NewSession.convert(
                {"repo": "acme/app", "target_branch": "main", "messages": {"content": "Fix it"}}
            )
        )
        paths = {
            "GET /healthz": "/healthz",
            "GET /sessions/{id}": f"/sessions/{created.session['id']}",
        }
        best: dict[tuple[str, str], float] = {}
        for label, path in paths.items():
            for name in names:  # warm up, and check that each answers 200
                status, _ = await _drive(apps[name], state, path, 200)
                assert status == 200, (name, path, status)
            for order in _rotations(names, rounds):
                for name in order:
                    _, us = await _drive(apps[name], state, path, requests)
                    key = (label, name)
                    best[key] = min(us, best.get(key, us))
    devnull.close()
    for label in paths:
        full = best[label, FULL]
        print(f"{label}: full stack {full:.1f} µs, bare {best[label, BARE]:.1f} µs CPU/request")
        for layer in layers:
            print(f"  {layer:<16} +{full - best[label, layer]:5.1f} µs")
        print(f"  {'all layers':<16} +{full - best[label, BARE]:5.1f} µs")


async def main_async(args: argparse.Namespace) -> None:
    url = args.url or await fresh_postgres(f"bench_middleware_{uuid.uuid4().hex[:8]}")
    try:
        await bench(url, args.rounds, args.requests)
    finally:
        if args.url is None:
            await drop(url)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--url", help=f"a migrated database (default: a fresh one on {POSTGRES_SERVER})"
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=3000)
    asyncio.run(main_async(parser.parse_args(argv)))


if __name__ == "__main__":
    main(sys.argv[1:])
