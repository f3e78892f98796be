"""How the app is served: uvicorn's settings for `session-inbox serve`, in one place.

The CLI runs them; tests and benchmarks that serve the app over a socket build theirs here too, so
they exercise the protocol, limits and timeouts that users run."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import uvicorn
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.supervisors import ChangeReload, Multiprocess

from app.config import Settings
from app.http_limits import HEAD_TIMEOUT_S, HeadLimitedConfig, HeadLimitedHttpTools, HeadLimits

# uvicorn's exit status when the server could not start (as `uvicorn.run` exits).
_STARTUP_FAILURE = 3
# Seconds the requests in flight when SIGTERM (or SIGINT) comes have to finish, once the server
# has stopped accepting connections; past it, they are cancelled (and answered 500 if nothing
# was sent yet). Then the app stops: the relay's last flush, clients closed. An orchestrator's
# grace period before SIGKILL should exceed it by a few seconds (Kubernetes': 30 s).
SHUTDOWN_GRACE_S = 10.0
# The close code of a WebSocket open when the server shuts down, and its reason.
GOING_AWAY = 1001
GOING_AWAY_REASON = "the server is shutting down"


class GoingAwayWebSockets(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol, but a WebSocket still open at shutdown is closed with
    1001 (going away: reconnect, to another instance) where uvicorn's says 1012 (service
    restart). As uvicorn's, the app is told the socket is gone, which ends its subscriptions,
    and the connection is closed without waiting for the client's close frame, so an open
    subscription never holds the shutdown up."""

    def shutdown(self) -> None:
        if not self.handshake_complete or self.close_sent:
            # Before the handshake (a 500) or after a close already sent: as uvicorn does.
            super().shutdown()
            return
        self.stop_keepalive()
        self.queue.put_nowait({"type": "websocket.disconnect", "code": GOING_AWAY})
        self.conn.send_close(GOING_AWAY, GOING_AWAY_REASON)
        self.close_sent = True
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.transport.close()


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
        # The socket open at shutdown is closed with 1001.
        "ws": GoingAwayWebSockets,
        "ws_max_size": settings.max_body_bytes,
        # X-Forwarded-For/-Proto are believed from `forwarded_allow_ips` only (uvicorn's default:
        # 127.0.0.1, a reverse proxy on the same machine).
        "proxy_headers": True,
        # On SIGTERM uvicorn stops accepting, tells each connection to close once its answer is
        # sent, and waits this long for the requests in flight; without it, for ever.
        "timeout_graceful_shutdown": SHUTDOWN_GRACE_S,
    }
    head_limits = HeadLimits(settings.max_header_bytes, settings.max_headers, head_timeout_s)
    return HeadLimitedConfig(app, head_limits=head_limits, **(served | options))


def run(config: uvicorn.Config) -> None:
    """Serves `config` until interrupted, as `uvicorn.run` does: in this process, in `workers`
    processes (each gets `config`, pickled), or under the reloader. Exits with uvicorn's status
    when the server could not start, 0 when SIGTERM or SIGINT stopped it."""
    if (config.reload or config.workers > 1) and not isinstance(config.app, str):
        raise ValueError("reload and workers need the app as an import string")
    server = uvicorn.Server(config)
    with _served_signal_kept(), suppress(KeyboardInterrupt):
        if config.should_reload:
            ChangeReload(config, target=server.run, sockets=[config.bind_socket()]).run()
        elif config.workers > 1:
            Multiprocess(config, sockets=[config.bind_socket()]).run()
        else:
            server.run()
    if not server.started and not config.should_reload and config.workers == 1:
        sys.exit(_STARTUP_FAILURE)


@contextmanager
def _served_signal_kept() -> Iterator[None]:
    """Once a signal has shut the server down gracefully, uvicorn raises it again with the
    handler there was before it started: SIGTERM's default would end the process with that
    signal, not with 0 after a clean stop. While serving, a SIGTERM raised again is taken as
    served; the handler before is restored after."""
    before = signal.signal(signal.SIGTERM, _served)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def _served(_signal: int, _frame: object) -> None:
    """SIGTERM raised again by uvicorn after its graceful shutdown: nothing left to do."""
