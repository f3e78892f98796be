"""The application's lifespan and the embedded default: no configuration at all serves the API
from a SQLite file it creates and migrates."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import orjson
import pytest

from app.config import load_settings
from app.main import create_app
from tests.conftest import with_state
from tests.ports import free_port

BIN = Path(sys.executable).parent


def _wait_until_answering(url: str, process: subprocess.Popen[bytes], deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError(f"server did not answer within {deadline_s} s")


@pytest.fixture
def bare_server(tmp_path: Path) -> Iterator[str]:
    """`session-inbox serve` in an empty directory with no DATABASE_URL or other settings."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    env["PORT"] = str(port)
    process = subprocess.Popen(
        [str(BIN / "session-inbox"), "serve"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_answering(f"{base}/sessions?limit=1", process, 30)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_embedded_default_creates_and_migrates_sqlite(bare_server: str, tmp_path: Path) -> None:
    created = httpx.post(
        f"{bare_server}/sessions",
        json={"repo": "acme/app", "target_branch": "main", "messages": {"content": "Hi"}},
    )
    assert created.status_code == 201
    listed = httpx.get(f"{bare_server}/sessions").json()
    assert [s["id"] for s in listed["sessions"]] == [created.json()["id"]]
    assert (tmp_path / "session-inbox.sqlite3").is_file()


async def test_lifespan_migrates_and_serves(tmp_sqlite_url: str) -> None:
    settings = replace(load_settings(environ={}, env_file=None), database_url=tmp_sqlite_url)
    app = create_app(settings)
    async with app.router.lifespan_context(app) as state:
        transport = httpx.ASGITransport(app=with_state(app, dict(state or {})))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            created = await client.post("/sessions", json={"repo": "r", "target_branch": "main"})
            assert created.status_code == 201
            fetched = await client.get(created.headers["location"])
            assert fetched.json()["session"]["id"] == created.json()["id"]


async def test_unexpected_errors_are_masked_json(
    tmp_sqlite_url: str,
) -> None:
    settings = replace(
        load_settings(environ={}, env_file=None), database_url=tmp_sqlite_url, run_migrations=False
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app) as state:
        transport = httpx.ASGITransport(
            app=with_state(app, dict(state or {})), raise_app_exceptions=False
        )
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.get("/sessions?limit=1")
    assert response.status_code == 500
    assert response.json() == {
        "err": "Internal Server Error",
        "msg": "an unexpected error occurred",
        "code": "INTERNAL_SERVER_ERROR",
    }


def test_several_workers_need_postgresql_and_redis(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    sqlite = subprocess.run(
        [str(BIN / "session-inbox"), "serve", "--workers", "2"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert sqlite.returncode != 0
    assert "SQLite serves one process" in sqlite.stderr
    env["DATABASE_URL"] = "postgres://root@127.0.0.1:1/none"
    no_redis = subprocess.run(
        [str(BIN / "session-inbox"), "serve", "--workers", "2"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert no_redis.returncode != 0
    assert "need REDIS_URL" in no_redis.stderr


def test_every_worker_logs_as_configured(tmp_path: Path, database_urls: dict[str, str]) -> None:
    """With --workers, logging is set up in each worker process, where the requests run."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    env.update(
        {
            "PORT": str(port),
            "LOG_FORMAT": "json",
            "DATABASE_URL": database_urls["postgres"],
            "REDIS_URL": "redis://127.0.0.1:6379/0",
        }
    )
    log_file = tmp_path / "server.log"
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [str(BIN / "session-inbox"), "serve", "--workers", "2"],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_until_answering(f"{base}/sessions?limit=1", process, 60)
            created = httpx.post(f"{base}/sessions", json={"repo": "r", "target_branch": "m"})
            assert created.status_code == 201
            deadline = time.monotonic() + 10
            while "POST /sessions 201" not in log_file.read_text():
                assert time.monotonic() < deadline, log_file.read_text()
                time.sleep(0.05)
        finally:
            process.terminate()
            process.wait(timeout=30)
    lines = [orjson.loads(line) for line in log_file.read_text().splitlines() if line.strip()]
    # The create's access line, written by the worker that served it, as configured.
    served = [line for line in lines if line["message"].startswith("POST /sessions 201")]
    assert served
    assert served[0]["logger"] == "session_inbox.access"
