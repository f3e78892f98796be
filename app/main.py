"""The ASGI application: routes, middleware and the lifespan that opens and closes clients."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware

from app import health, rest
from app.access_log import AccessLog
from app.auth import Authenticator, RequireBearer
from app.body_limit import BodyLimit
from app.config import Settings, load_settings
from app.cors import CORS
from app.db import Database, make_engine
from app.events import Events
from app.graphql.view import graphql_route
from app.metrics import Metrics, metrics_route
from app.migrate import bind_engine, migrate
from app.naming import make_namer
from app.naming.measured import MeasuredNamer
from app.rest import docs
from app.service import SessionService
from app.state import AppState

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> Starlette:
    """The application for `settings` (default: read from the environment and `.env`)."""
    settings = settings or load_settings()
    # One for the HTTP middleware and the WebSocket's `connection_init`: one key cache.
    authenticator = Authenticator.for_settings(settings)
    # This app's own: tests make many apps in one process (and `metrics_of` finds it).
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[dict[str, Any]]:
        if settings.run_migrations:
            report = await migrate(make_engine(settings, for_migrations=True))
            log.info("%s", report)
        engine = make_engine(settings)
        bind_engine(engine)
        db = Database(engine)
        await db.open()
        namer, close_namer = make_namer(settings)
        events = Events.for_settings(db, settings)
        events.start()
        service = SessionService(db, MeasuredNamer(namer, metrics.observe_naming), events)
        state = AppState(settings, db, events, service)
        # What startup made (modules, the schema, clients) lives as long as the app: frozen, the
        # collector stops walking it on every full collection, which paused a loaded server for
        # tens of ms (REST by id: 3,230 → 3,550 requests/s, p99 47 → 33 ms). Thawed at the end,
        # so an app stopped in a longer-lived process (tests) leaves nothing uncollectable.
        gc.freeze()
        try:
            async with metrics.sampling(state):
                yield {"inbox": state}
        finally:
            gc.unfreeze()
            await events.stop()
            await close_namer()
            await db.close()

    app = Starlette(
        # Tried in order, and no two paths overlap: the busiest first (each route passed costs a
        # regular expression's match, 9 of them before /graphql).
        routes=[
            graphql_route(settings, authenticator),
            *rest.routes,
            *docs.routes,
            *health.routes(),
            metrics_route(metrics),
        ],
        middleware=[
            # Outermost: every answer (a preflight, a 401, a 413) carries X-Request-ID, gets an
            # access line and is counted and timed.
            Middleware(AccessLog, metrics=metrics),
            Middleware(
                CORS,
                allow_origins=list(settings.cors_origins),
                allow_methods=["*"],
                allow_headers=["*"],
                expose_headers=[
                    "ETag",
                    "Location",
                    "Link",
                    "Preference-Applied",
                    "Idempotent-Replayed",
                    "WWW-Authenticate",
                    "Retry-After",
                    "X-Request-ID",
                ],
            ),
            # Inside CORS (a preflight is answered, a 401 carries its headers), before the rest.
            Middleware(RequireBearer, authenticator=authenticator),
            # Inside CORS too, so that a 413 carries its headers.
            Middleware(BodyLimit, max_bytes=settings.max_body_bytes),
            # Innermost: the liveness probe, answered without the router.
            Middleware(health.HealthzShortcut),
        ],
        exception_handlers=rest.exception_handlers,
        lifespan=lifespan,
    )
    app.state.metrics = metrics
    # No redirect built from the client's Host header: a path with a stray slash is not found
    # (the REST paths that clients of the earlier service reach with one answer their own 307).
    app.router.redirect_slashes = False
    return app
