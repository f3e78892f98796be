"""Server processes for the benchmarks: ours (`session-inbox serve`) and the raw baseline, each
a uvicorn single worker on 127.0.0.1 (or any command, with `start`), and a sampler of their
resident memory."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil  # type: ignore[import-untyped]

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MB = 1024 * 1024
# Settings that would change what the server does if inherited from the caller's environment.
_CLEARED = ("API_TOKENS", "REDIS_URL", "ANTHROPIC_API_KEY", "NAMING_BRANCH_PREFIX")


@dataclass(frozen=True, slots=True)
class Server:
    name: str
    process: subprocess.Popen[bytes]
    base_url: str
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def ours_command(port: int) -> list[str]:
    return [str(BIN / "session-inbox"), "serve", "--host", "127.0.0.1", "--port", str(port)]


def raw_command(port: int, log_level: str) -> list[str]:
    return [
        str(BIN / "python"),
        "-m",
        "uvicorn",
        "bench.raw_server:app",
        "--app-dir",
        str(REPO_ROOT),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        log_level,
    ]


# Whether a server answers: by default a page of one session.
Probe = Callable[[httpx.Client], bool]


def _lists_a_page(client: httpx.Client) -> bool:
    return client.get("/sessions", params={"limit": 1}).status_code == 200


@contextmanager
def serve(
    name: str,
    database_url: str,
    *,
    raw: bool = False,
    log_level: str = "info",
    env: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Iterator[Server]:
    """Our server (or with `raw`, the baseline) over `database_url`, ready to answer; stopped
    with SIGINT, as a terminal would, on exit. It runs in an empty working directory, so no
    `.env` file is read, with migrations off: the database is expected to be migrated. `env`
    adds settings (API_TOKENS, REDIS_URL…); `headers` go with the readiness probe."""
    port = free_port()
    settings = {"DATABASE_URL": database_url, "RUN_MIGRATIONS": "false", "LOG_LEVEL": log_level}
    command = raw_command(port, log_level) if raw else ours_command(port)
    with start(name, command, port, {**settings, **(env or {})}, headers=headers) as server:
        yield server


@contextmanager
def start(
    name: str,
    command: list[str],
    port: int,
    env: Mapping[str, str],
    *,
    probe: Probe = _lists_a_page,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> Iterator[Server]:
    """`command`, listening on `port`, with the caller's environment (less the settings that
    would change what our server does) plus `env`, in an empty working directory; yielded once
    `probe` says it answers, and stopped with SIGINT on exit."""
    environ = {key: value for key, value in os.environ.items() if key not in _CLEARED}
    environ.update(env)
    with tempfile.TemporaryDirectory(prefix="session-inbox-bench-") as workdir:
        log = Path(workdir) / "server.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                command, cwd=workdir, env=environ, stdout=output, stderr=subprocess.STDOUT
            )
        server = Server(name, process, f"http://127.0.0.1:{port}", log)
        try:
            _wait_ready(server, timeout, probe=probe, headers=headers)
            yield server
        finally:
            _stop(process)


def _wait_ready(
    server: Server,
    timeout: float = 30.0,
    *,
    probe: Probe = _lists_a_page,
    headers: Mapping[str, str] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=server.base_url, timeout=2.0, headers=headers) as client:
        while True:
            if server.process.poll() is not None:
                raise RuntimeError(f"{server.name} exited at start:\n{tail(server.log)}")
            try:
                if probe(client):
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{server.name} not ready after {timeout} s:\n{tail(server.log)}"
                )
            time.sleep(0.05)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def rss(pid: int) -> int:
    """Resident bytes of `pid` and its children (a single uvicorn worker has none)."""
    process = psutil.Process(pid)
    total = int(process.memory_info().rss)
    for child in process.children(recursive=True):
        with suppress(psutil.NoSuchProcess):
            total += int(child.memory_info().rss)
    return total


def cpu_seconds(pid: int) -> float:
    """User and system CPU time `pid` has used so far."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


@dataclass
class RSSSampler:
    """Polls the resident memory of `pid` every `interval` seconds in a thread while active."""

    pid: int
    interval: float = 0.05
    samples: list[int] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> RSSSampler:
        self.samples.append(rss(self.pid))
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.samples.append(rss(self.pid))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.samples.append(rss(self.pid))

    @property
    def peak(self) -> int:
        return max(self.samples)
