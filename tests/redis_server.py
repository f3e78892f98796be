"""A redis-server of a test's own, on a free loopback port, for tests that stop Redis and start
it again. The shared server is never stopped.

    with RedisServer(tmp_path) as server:  # started; stopped at the end, whatever happens
        log = RedisLog(server.url, retention=10)
        server.stop()                      # down: connections are refused
        server.start()                     # up again on the same port, with no data

It keeps nothing: no RDB, no AOF (`--save ""`, `--appendonly no`), so a restart empties it."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from tests.ports import free_port

_START_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 10.0


class RedisServer:
    """`redis-server` on 127.0.0.1, its files (a log) in `directory`."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not on PATH")
        self._binary = binary
        self._directory = directory
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Starts the server, on the same port each time, and returns once it answers PING."""
        if self._process is not None:
            raise RuntimeError("the Redis server is already running")
        log = self._directory / "redis.log"
        self._process = subprocess.Popen(
            [
                self._binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self._directory),
                "--logfile", str(log),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not _answers_ping(self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                output = log.read_text() if log.exists() else ""
                raise RuntimeError(f"redis-server did not start on port {self.port}:\n{output}")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stops the server (SIGTERM, then SIGKILL if it lingers) and waits until it is gone."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(_STOP_TIMEOUT_S)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(16).startswith(b"+PONG")
    except OSError:
        return False
