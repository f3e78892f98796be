"""CPU per request of each middleware layer, in process: the real app (`create_app`) with the
settings users run (a bearer token, access lines at `info` through `serve`'s logging
configuration, written to a file), driven through its ASGI callable without a socket.

    python -m bench.middleware                       # 1,000 seeded sessions, 7 rounds
    python -m bench.middleware --requests 3000 --rounds 9 --log-format json

Each variant is the whole app with one layer taken out of its middleware (or the access logger
set to WARNING, or no middleware at all); a layer's cost is the full stack's CPU per request less
its variant's. Variants run in turn within every round (a slow moment of a shared machine lands
on all of them) and the figure is the median over rounds of the process's CPU time (the logging
thread's included, if there is one) per request. Paths: `GET /healthz` (no I/O: nearly all of it
is middleware) and `GET /sessions/{id}` (one PostgreSQL read, cycling through the seeded ids).

Nothing is asserted: this says where the time goes, `bench.rest_vs_raw` what it costs over a
socket."""

from __future__ import annotations

import argparse
import asyncio
import logging
import logging.config
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import uvloop
from starlette.applications import Starlette

from app.config import Settings, load_settings
from app.logs import logging_config
from app.main import create_app
from bench import seed

TOKEN = "bench-token-0123456789abcdef"
ACCESS_LOGGER = "session_inbox.access"
FULL = "full stack"
NONE = "no middleware"
QUIET = "access log at WARNING"


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    # Which of the app's middleware classes stay (by class name).
    keep: Callable[[str], bool]
    access_level: int = logging.INFO


def variants(layers: list[str]) -> list[Variant]:
    found = [Variant(FULL, lambda _name: True), Variant(QUIET, lambda _name: True, logging.WARNING)]
    for layer in layers:
        found.append(Variant(f"without {layer}", lambda name, layer=layer: name != layer))  # type: ignore[misc]
    found.append(Variant(NONE, lambda _name: False))
    return found


def app_for(settings: Settings, variant: Variant) -> Starlette:
    app = create_app(settings)
    # Starlette builds its middleware stack from this list at the first call.
    app.user_middleware = [m for m in app.user_middleware if variant.keep(_name(m.cls))]
    return app


def _name(cls: Any) -> str:
    return str(getattr(cls, "__name__", cls))


def scope_for(path: str, state: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"user-agent", b"wrk"),
            (b"accept", b"*/*"),
            (b"authorization", f"Bearer {TOKEN}".encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": dict(state),
        "extensions": {},
    }


async def drive(app: Any, paths: list[str], state: dict[str, Any]) -> tuple[float, float]:
    """CPU and wall seconds for one request to each of `paths`, in turn."""
    request = {"type": "http.request", "body": b"", "more_body": False}
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return request

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    cpu, wall = time.process_time(), time.perf_counter()
    for path in paths:
        await app(scope_for(path, state), receive, send)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if set(statuses) != {200}:
        raise RuntimeError(f"unexpected statuses {sorted(set(statuses))}")
    return cpu, wall


def flush_logs() -> None:
    for handler in logging.getLogger().handlers:
        handler.flush()


async def run(args: argparse.Namespace, url: str, log_file: Path) -> dict[str, dict[str, float]]:
    environ = {
        "DATABASE_URL": url,
        "RUN_MIGRATIONS": "false",
        "API_TOKENS": TOKEN,
        "LOG_LEVEL": "info",
        "LOG_FORMAT": args.log_format,
    }
    if args.redis_url:
        environ["REDIS_URL"] = args.redis_url
    settings = load_settings(environ=environ, env_file=None)
    connection = await asyncpg.connect(url)
    try:
        ids = [str(r["id"]) for r in await connection.fetch("SELECT id FROM session LIMIT 1000")]
    finally:
        await connection.close()

    # `serve`'s configuration, its stream (stderr) a file, as a service manager would have it.
    with log_file.open("a") as stream:
        sys.stderr, saved = stream, sys.stderr
        try:
            logging.config.dictConfig(logging_config(settings))
        finally:
            sys.stderr = saved
        owner = create_app(settings)
        layers = [_name(m.cls) for m in owner.user_middleware]
        chosen = variants(layers)
        apps = {v.name: app_for(settings, v) for v in chosen}
        access = logging.getLogger(ACCESS_LOGGER)
        figures: dict[str, dict[str, list[float]]] = {}
        async with owner.router.lifespan_context(owner) as state:
            lifespan = dict(state or {})
            scenarios = {
                "GET /healthz": ["/healthz"] * args.requests,
                "GET /sessions/{id}": [
                    f"/sessions/{ids[i % len(ids)]}" for i in range(args.requests)
                ],
            }
            for round_ in range(args.rounds + 1):
                order = chosen if round_ % 2 else chosen[::-1]
                for scenario, paths in scenarios.items():
                    for variant in order:
                        access.setLevel(variant.access_level)
                        cpu, _wall = await drive(apps[variant.name], paths, lifespan)
                        flush_logs()
                        access.setLevel(logging.NOTSET)
                        if round_:  # round 0 warms up
                            per = figures.setdefault(scenario, {}).setdefault(variant.name, [])
                            per.append(cpu / len(paths) * 1e6)
        logging.shutdown()
    return {
        scenario: {name: statistics.median(values) for name, values in per.items()}
        for scenario, per in figures.items()
    }


def print_table(figures: dict[str, dict[str, float]]) -> None:
    for scenario, per in figures.items():
        full = per[FULL]
        print(f"\n{scenario}: CPU us per request (median of rounds)")
        print(f"  {'variant':<32}{'us':>8}{'layer (full - variant)':>26}")
        for name, value in per.items():
            delta = "" if name == FULL else f"{full - value:+.1f}"
            print(f"  {name:<32}{value:>8.1f}{delta:>26}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.middleware", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--rows", type=int, default=1000, help="sessions to seed")
    parser.add_argument("--url", help="a migrated, seeded PostgreSQL database, used as it is")
    parser.add_argument("--requests", type=int, default=2000, help="per variant and round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--log-format", choices=("text", "json"), default="text")
    parser.add_argument("--redis-url", help="REDIS_URL for the app (a private Redis)")
    parser.add_argument("--log-file", help="where the lines go (default: a temporary file)")
    args = parser.parse_args(argv)
    url = args.url or asyncio.run(
        seed.prepare("postgres", f"bench_middleware_{args.rows}", args.rows, reuse=True)
    )
    with tempfile.TemporaryDirectory(prefix="session-inbox-bench-") as workdir:
        log_file = Path(args.log_file or Path(workdir) / "server.log")
        figures = uvloop.run(run(args, url, log_file))
        lines = sum(1 for _ in log_file.open())
    print_table(figures)
    print(f"\n{lines:,} lines written to the log")
    return 0


if __name__ == "__main__":
    sys.exit(main())
