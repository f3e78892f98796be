"""graphql-http's GraphQL-over-HTTP audit (`auditServer`, npm `graphql-http`, pinned in
tests/graphql_http) against the app served by uvicorn on loopback: every audit passes, with no
warning and no notice. scripts/bootstrap installs the package; without it the test fails, it is
not skipped."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from app.config import Settings
from app.main import create_app
from app.state import AppState
from tests.conftest import with_state
from tests.loopback import serve_on_loopback

AUDIT = Path(__file__).parents[1] / "graphql_http" / "audit.mjs"
# The audit sends 61 small requests at once; seconds are plenty, a minute is a hang.
AUDIT_DEADLINE_S = 60.0


@pytest.fixture
async def graphql_url(settings: Settings, app_state: AppState) -> AsyncIterator[str]:
    app = with_state(create_app(settings), {"inbox": app_state})
    async with serve_on_loopback(app, lifespan="off", log_config=None) as base:
        yield f"{base}/graphql"


async def audit(url: str) -> list[dict[str, Any]]:
    """The audit's results for the endpoint at `url`, as audit.mjs prints them."""
    process = await asyncio.create_subprocess_exec(
        "node",
        str(AUDIT),
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(AUDIT_DEADLINE_S):
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, (
        f"the audit did not run (is tests/graphql_http installed? scripts/bootstrap does it):\n"
        f"{err.decode()}"
    )
    results: list[dict[str, Any]] = json.loads(out)
    return results


async def test_every_graphql_over_http_audit_passes(graphql_url: str) -> None:
    results = await audit(graphql_url)
    failed = [result for result in results if result["status"] != "ok"]
    assert len(results) > 60
    assert failed == [], "\n".join(
        f"{r['status']} {r['id']} {r['name']}: {r['reason']} {r.get('response')}" for r in failed
    )
