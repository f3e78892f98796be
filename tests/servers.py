"""Server processes for tests that run several instances, or make one fail: `session-inbox serve`
on a free loopback port, in an empty working directory of its own (so no `.env` is read), with
only the environment it is given; and a small client of the `graphql-transport-ws` protocol that
stamps each message with the time it arrived.

    with Servers(tmp_path, DATABASE_URL=url, REDIS_URL=redis.url) as servers:
        a = await servers.start("a")                   # answering, or an error with its log
        w = await servers.start("w", "--workers", "2") # arguments of `session-inbox serve`
        b = await servers.start("b", REDIS_URL=other)  # the environment, per server
        a.kill()                                       # SIGKILL; `a.stop()`: SIGTERM, bounded
    # whatever still runs is stopped here, killed if it lingers

    async with GraphQLSocket.connect(b.graphql_ws_url) as socket:
        events = await socket.subscribe(DOCUMENT, {"id": session_id})
        message = await events.next(timeout_s=5)       # data, and when it arrived
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from tests.ports import free_port

BIN = Path(sys.executable).parent
# The only variables a server inherits from the test's environment: none of them is a setting.
INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
# A free port may be taken by someone else before the server binds it: try another.
START_ATTEMPTS = 3

GRAPHQL_TRANSPORT_WS = Subprotocol("graphql-transport-ws")


@dataclass(eq=False)
class Server:
    """One `session-inbox serve` process; its output goes to `log`."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def graphql_ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql"

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, as an orchestrator stops a server, then SIGKILL if it has not exited within
        `timeout_s`; its exit status (negative: the signal that ended it)."""
        if self.running:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.process.returncode

    def kill(self) -> None:
        """SIGKILL: the process ends at once, with no chance to finish anything."""
        if self.running:
            self.process.kill()
        self.process.wait(STOP_TIMEOUT_S)


class Servers:
    """Starts servers with a shared environment, each in a directory of its own under
    `directory`; `close` (or leaving the `with`) stops every one still running."""

    def __init__(self, directory: Path, **environ: str) -> None:
        self.directory = directory
        self.environ = environ
        self._started: list[Server] = []
        self._numbers = itertools.count(1)

    async def start(self, name: str, *args: str, **environ: str) -> Server:
        """A server (`session-inbox serve *args`) with the shared environment updated by
        `environ`, once it answers HTTP."""
        for attempt in range(1, START_ATTEMPTS + 1):
            server = self._spawn(name, args, environ)
            try:
                await _until_answering(server)
            except RuntimeError:
                server.kill()
                if "address already in use" in server.output() and attempt < START_ATTEMPTS:
                    continue
                raise
            return server
        raise AssertionError("unreachable")  # pragma: no cover

    def _spawn(self, name: str, args: Sequence[str], environ: Mapping[str, str]) -> Server:
        workdir = self.directory / f"{name}-{next(self._numbers)}"
        workdir.mkdir(parents=True)
        port = free_port()
        env = {key: os.environ[key] for key in INHERITED if key in os.environ}
        env.update(HOST="127.0.0.1", RUN_MIGRATIONS="false", LOG_LEVEL="info")
        env.update(self.environ)
        env.update(environ)
        env["PORT"] = str(port)
        log = workdir / "server.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [str(BIN / "session-inbox"), "serve", *args],
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        server = Server(name, port, process, log)
        self._started.append(server)
        return server

    def close(self) -> None:
        for server in self._started:
            server.stop()

    def __enter__(self) -> Servers:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


async def _until_answering(server: Server, timeout_s: float = START_TIMEOUT_S) -> None:
    """Returns once `server` answers a read; RuntimeError, with its log, when it exits first or
    does not answer within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(base_url=server.base_url, timeout=2.0, trust_env=False) as http:
        while True:
            if not server.running:
                raise RuntimeError(
                    f"server {server.name} exited with {server.process.returncode}:\n"
                    f"{server.output()}"
                )
            with suppress(httpx.TransportError):
                if (await http.get("/sessions", params={"limit": 1})).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"server {server.name} did not answer within {timeout_s} s:\n{server.output()}"
                )
            await asyncio.sleep(0.05)


class OperationEnded(Exception):
    """The server ended the operation (`error` or `complete`), sent errors, or the connection
    closed."""


@dataclass(frozen=True, slots=True)
class Next:
    """A result of an operation, and when it arrived (`time.monotonic()`)."""

    at: float
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Message:
    at: float
    type: str
    payload: Any


class Operation:
    """One running operation of a `GraphQLSocket`: its results as they arrive."""

    def __init__(self, graphql_socket: GraphQLSocket, id: str) -> None:
        self.id = id
        self._socket = graphql_socket
        self._messages: asyncio.Queue[_Message] = asyncio.Queue()

    async def next(self, timeout_s: float) -> Next:
        """The next result; TimeoutError when none comes within `timeout_s`, OperationEnded
        when the operation ends or fails instead."""
        async with asyncio.timeout(timeout_s):
            message = await self._messages.get()
        if message.type != "next":
            raise OperationEnded(f"operation {self.id}: {message.type} {message.payload!r}")
        if message.payload.get("errors"):
            raise OperationEnded(f"operation {self.id}: {message.payload['errors']!r}")
        return Next(message.at, message.payload["data"])

    async def complete(self) -> None:
        """Ends the operation from this side."""
        await self._socket.send({"id": self.id, "type": "complete"})

    def _deliver(self, message: _Message) -> None:
        self._messages.put_nowait(message)


class GraphQLSocket:
    """A `graphql-transport-ws` connection. One task reads every message as it comes (answering
    pings), so each result is stamped with its arrival, whenever the test gets to it."""

    def __init__(self, connection: ClientConnection) -> None:
        self._connection = connection
        self._operations: dict[str, Operation] = {}
        self._ids = itertools.count(1)

    @classmethod
    @asynccontextmanager
    async def connect(
        cls, url: str, *, payload: Mapping[str, Any] | None = None, timeout_s: float = 10.0
    ) -> AsyncIterator[GraphQLSocket]:
        """Connected and acknowledged (`connection_init` with `payload`, `connection_ack`)."""
        async with connect(
            url,
            subprotocols=[GRAPHQL_TRANSPORT_WS],
            open_timeout=timeout_s,
            close_timeout=2.0,
            proxy=None,
        ) as connection:
            await connection.send(json.dumps({"type": "connection_init", "payload": payload or {}}))
            async with asyncio.timeout(timeout_s):
                ack = json.loads(await connection.recv())
            if ack.get("type") != "connection_ack":
                raise OperationEnded(f"the server did not acknowledge the connection: {ack!r}")
            graphql_socket = cls(connection)
            reader = asyncio.create_task(graphql_socket._read())
            try:
                yield graphql_socket
            finally:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)

    async def subscribe(self, query: str, variables: Mapping[str, Any] | None = None) -> Operation:
        """Starts an operation. The protocol does not acknowledge it: its first result is the
        first sign that it runs."""
        operation = Operation(self, str(next(self._ids)))
        self._operations[operation.id] = operation
        payload: dict[str, Any] = {"query": query}
        if variables is not None:
            payload["variables"] = dict(variables)
        await self.send({"id": operation.id, "type": "subscribe", "payload": payload})
        return operation

    async def send(self, message: Mapping[str, Any]) -> None:
        await self._connection.send(json.dumps(message))

    async def _read(self) -> None:
        try:
            async for raw in self._connection:
                at = time.monotonic()
                message = json.loads(raw)
                kind = message.get("type")
                if kind == "ping":
                    await self.send({"type": "pong"})
                    continue
                operation = self._operations.get(message.get("id"))
                if operation is not None:
                    operation._deliver(_Message(at, kind, message.get("payload")))
        except ConnectionClosed:
            pass
        finally:
            closed = _Message(time.monotonic(), "closed", self._connection.close_reason)
            for operation in self._operations.values():
                operation._deliver(closed)
