"""The `session-inbox` command: serve, migrate, export-schema."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from app.config import ConfigError, Settings, load_settings
from app.logs import configure_logging, logging_config

# The printed schema; run from the repository root, this is the file a test keeps identical.
SCHEMA_FILE = Path("schema.graphql")


def _serve(settings: Settings, args: argparse.Namespace) -> None:
    from app.metrics import multiprocess_directory
    from app.server import run, server_config

    # Events reach every process's subscribers through Redis only; and SQLite's outbox relay
    # assumes it is the one process writing to the file.
    if args.workers > 1 and not settings.is_postgres:
        sys.exit("session-inbox: SQLite serves one process: run --workers 1, or PostgreSQL")
    if args.workers > 1 and not settings.redis_url:
        sys.exit("session-inbox: several workers need REDIS_URL to share events")

    config = server_config(
        "app.main:create_app",
        settings,
        factory=True,
        host=args.host or settings.host,
        port=args.port if args.port is not None else settings.port,
        workers=args.workers,
        reload=args.reload,
        log_config=logging_config(settings),
    )
    # Around the whole run, in this parent: the workers inherit PROMETHEUS_MULTIPROC_DIR, where
    # each writes its metrics for any one of them to add up.
    with multiprocess_directory(args.workers):
        run(config)


def _migrate(settings: Settings) -> None:
    from app.db import make_engine
    from app.migrate import migrate

    print(asyncio.run(migrate(make_engine(settings, for_migrations=True))))


def _export_schema(args: argparse.Namespace) -> None:
    from strawberry.printer import print_schema

    from app.graphql.schema import build_schema

    output = Path(args.output) if args.output else SCHEMA_FILE
    output.write_text(print_schema(build_schema()) + "\n")
    print(output)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="session-inbox", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host", help="interface to bind (default: HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind (default: PORT or 8000)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes")
    serve.add_argument("--reload", action="store_true", help="restart on code changes")
    commands.add_parser("migrate", help="apply pending migrations and exit")
    export = commands.add_parser(
        "export-schema", help="write the printed GraphQL schema (default: schema.graphql)"
    )
    export.add_argument("--output", help="file to write (default: schema.graphql here)")
    args = parser.parse_args(argv)

    if args.command == "export-schema":
        # The schema does not depend on the environment, so none is read.
        _export_schema(args)
        return

    try:
        settings = load_settings()
    except ConfigError as exc:
        sys.exit(f"session-inbox: configuration error: {exc}")
    configure_logging(settings)
    if args.command == "serve":
        _serve(settings, args)
    elif args.command == "migrate":
        _migrate(settings)
