"""What a benchmark ran on and what it measured: the machine, its load, the versions and the
commit, printed with the figures because they mean nothing without it."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from bench.server import REPO_ROOT


def _output(*command: str) -> str:
    try:
        completed = subprocess.run(
            command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return completed.stdout.strip() if completed.returncode == 0 else ""


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


async def postgres_version(url: str) -> str:
    connection = await asyncpg.connect(url)
    try:
        return str(await connection.fetchval("SHOW server_version"))
    finally:
        await connection.close()


@dataclass
class Machine:
    started: str
    cores: int
    cpu: str
    kernel: str
    python: str
    postgres: str
    commit: str
    # Files of the work tree that differ from the commit (others may be editing app/).
    uncommitted: list[str]
    load_start: str
    load_end: str = ""
    tools: str = ""

    @classmethod
    def describe(cls, postgres: str, tools: str = "") -> Machine:
        changed = _output("git", "diff", "--name-only", "HEAD")
        return cls(
            started=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            cores=os.cpu_count() or 0,
            cpu=_cpu_model(),
            kernel=platform.release(),
            python=platform.python_version(),
            postgres=postgres,
            commit=_output("git", "rev-parse", "--short", "HEAD") or "unknown",
            uncommitted=changed.splitlines(),
            load_start=load_average(),
            tools=tools,
        )

    def lines(self) -> list[str]:
        changed = (
            f", plus uncommitted changes to {', '.join(self.uncommitted[:8])}"
            + (" …" if len(self.uncommitted) > 8 else "")
            if self.uncommitted
            else ""
        )
        return [
            f"started {self.started}; {self.cores} cores ({self.cpu}), Linux {self.kernel}",
            f"load average (1, 5, 15 min) at start {self.load_start}, at end {self.load_end}",
            f"Python {self.python}, PostgreSQL {self.postgres}"
            + (f", {self.tools}" if self.tools else ""),
            f"commit {self.commit}{changed}",
        ]
