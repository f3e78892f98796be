"""How the app is served: uvicorn's settings for `session-inbox serve`, in one place.

The CLI runs them; tests and benchmarks that serve the app over a socket build theirs here too, so
they exercise the protocol, limits and timeouts that users run."""

from __future__ import annotations

import sys
from typing import Any

import uvicorn
from uvicorn.supervisors import ChangeReload, Multiprocess

from app.config import Settings
from app.http_limits import HEAD_TIMEOUT_S, HeadLimitedConfig, HeadLimitedHttpTools, HeadLimits

# uvicorn's exit status when the server could not start (as `uvicorn.run` exits).
_STARTUP_FAILURE = 3


def server_config(
    app: Any, settings: Settings, *, head_timeout_s: float = HEAD_TIMEOUT_S, **options: Any
) -> HeadLimitedConfig:
    """uvicorn's configuration serving `app` (an ASGI app, or an import string) under `settings`;
    `options` are uvicorn's own (`workers`, `log_config`, …) and win over the ones set here.
    `head_timeout_s` is there for tests, which cannot wait the real one out."""
    served: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        # httptools (uvicorn's choice when installed, several times h11's speed), with each
        # request's head bounded by MAX_HEADER_BYTES and MAX_HEADERS, and its arrival in time.
        "http": HeadLimitedHttpTools,
        # What uvicorn picks when `websockets` is installed, named so that the limit below is
        # known to hold: a message larger than a body may be (frames and compressed messages
        # counted once inflated) closes the socket with 1009. It reads one message at a time,
        # pausing the socket until the app takes it, so `ws_max_queue` does not apply.
        "ws": "websockets-sansio",
        "ws_max_size": settings.max_body_bytes,
        # X-Forwarded-For/-Proto are believed from `forwarded_allow_ips` only (uvicorn's default:
        # 127.0.0.1, a reverse proxy on the same machine).
        "proxy_headers": True,
    }
    head_limits = HeadLimits(settings.max_header_bytes, settings.max_headers, head_timeout_s)
    return HeadLimitedConfig(app, head_limits=head_limits, **(served | options))


def run(config: uvicorn.Config) -> None:
    """Serves `config` until interrupted, as `uvicorn.run` does: in this process, in `workers`
    processes (each gets `config`, pickled), or under the reloader. Exits with uvicorn's status
    when the server could not start."""
    if (config.reload or config.workers > 1) and not isinstance(config.app, str):
        raise ValueError("reload and workers need the app as an import string")
    server = uvicorn.Server(config)
    try:
        if config.should_reload:
            ChangeReload(config, target=server.run, sockets=[config.bind_socket()]).run()
        elif config.workers > 1:
            Multiprocess(config, sockets=[config.bind_socket()]).run()
        else:
            server.run()
    except KeyboardInterrupt:
        pass
    if not server.started and not config.should_reload and config.workers == 1:
        sys.exit(_STARTUP_FAILURE)
