"""`private_cluster`: a PostgreSQL cluster of a test's own (initdb in a temporary directory, a free
loopback port), which the test may stop, start, freeze (SIGSTOP) and thaw, and which is stopped and
removed when the block ends, however it ends.

initdb and pg_ctl refuse to run as root: they run as the `postgres` user, in a directory it owns."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

from tests.ports import free_port

BIN = Path(os.environ.get("TEST_POSTGRES_BIN", "/usr/lib/postgresql/15/bin"))
# Bounds each pg_ctl and initdb run.
COMMAND_DEADLINE_S = 60.0


class Cluster:
    """A cluster in `directory`, listening on 127.0.0.1:`port` (and a socket in `directory`)."""

    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.port = port
        self.frozen: list[int] = []

    @property
    def url(self) -> str:
        """The cluster's `postgres` database, as user root (trusted)."""
        return f"postgres://root@127.0.0.1:{self.port}/postgres"

    async def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        await _as_postgres(
            BIN / "pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start"
        )

    async def stop(self, mode: str = "fast") -> None:
        """Stops the cluster (`fast`: clients are disconnected, as a restart does)."""
        await _as_postgres(BIN / "pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def freeze(self) -> None:
        """SIGSTOP for the postmaster and every process of the cluster: connections are
        accepted by the kernel, and nothing ever answers them, until `thaw`."""
        self.frozen = self.processes()
        for pid in self.frozen:
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self.frozen:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self.frozen = []

    def processes(self) -> list[int]:
        """The postmaster (first) and its children, now."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        children = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # The command may hold spaces and parentheses: the fields after the last ")".
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            if parent == postmaster:
                children.append(int(entry.name))
        return [postmaster, *children]

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def log(self) -> Path:
        return self.directory / "log"


@asynccontextmanager
async def private_cluster() -> AsyncIterator[Cluster]:
    """A new cluster, started; stopped (thawed first if it is frozen) and removed at the end."""
    directory = Path(tempfile.mkdtemp(prefix="pg-cluster-"))
    try:
        shutil.chown(directory, "postgres", "postgres")
        cluster = Cluster(directory, free_port())
        await _as_postgres(
            BIN / "initdb", "-D", str(cluster.data), "-A", "trust", "-U", "root", "--no-sync"
        )
        await cluster.start()
        try:
            yield cluster
        finally:
            cluster.thaw()
            if (cluster.data / "postmaster.pid").exists():
                await cluster.stop("immediate")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def _as_postgres(*command: str | Path) -> None:
    process = await asyncio.create_subprocess_exec(
        "runuser",
        "-u",
        "postgres",
        "--",
        *map(str, command),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(COMMAND_DEADLINE_S):
            output, _ = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    if process.returncode != 0:
        raise RuntimeError(f"{command[0]} failed ({process.returncode}): {output.decode()}")
