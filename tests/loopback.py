"""`serve_on_loopback`: an ASGI app served by uvicorn on a free loopback port, in the test's
own event loop, with the settings `session-inbox serve` runs (`app.server`), started and stopped
within deadlines."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn

from app.config import Settings
from app.server import server_config

DEADLINE_S = 30.0


@asynccontextmanager
async def serve_on_loopback(
    app: Any, *, settings: Settings | None = None, **config: Any
) -> AsyncIterator[str]:
    """Serves `app` as `session-inbox serve` would under `settings` (default: the defaults),
    uvicorn's own settings overridden by `config`, until the block ends; yields
    `http://127.0.0.1:<port>`."""
    # uvicorn gets the socket already bound, so no other test process can take the port first.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    server = uvicorn.Server(server_config(app, settings or Settings(), **config))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(DEADLINE_S):
            # uvicorn says nothing when it has started but its flag.
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("uvicorn stopped before it started")
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        async with asyncio.timeout(DEADLINE_S):
            await task
        sock.close()
