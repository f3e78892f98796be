"""Naming through the service, against the fake Anthropic server and a real database: names are
unique per repo under concurrency, and a slow model never holds a database connection."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

import pytest

from app.config import Settings
from app.db import Database, make_engine
from app.events import LocalEvents
from app.naming import is_valid_branch, make_namer
from app.service import SessionService
from tests.fake_anthropic import FakeAnthropic, FakeResponse


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        yield server


def _anthropic_settings(settings: Settings, fake: FakeAnthropic, timeout_s: float) -> Settings:
    return replace(
        settings,
        anthropic_api_key="test-key",
        anthropic_base_url=fake.url,
        naming_timeout_s=timeout_s,
    )


@pytest.fixture
async def anthropic_service(
    settings: Settings, db: Database, fake: FakeAnthropic
) -> AsyncIterator[SessionService]:
    namer, close = make_namer(_anthropic_settings(settings, fake, timeout_s=5))
    yield SessionService(db, namer, LocalEvents())
    await close()


async def test_creation_uses_the_model_names_and_logs_the_namer(
    anthropic_service: SessionService, fake: FakeAnthropic, caplog: pytest.LogCaptureFixture
) -> None:
    fake.enqueue(FakeResponse.tool_use("Add OAuth login", "add-oauth-login"))
    with caplog.at_level(logging.INFO, logger="app.service"):
        created = await anthropic_service.create(
            repo="acme/app", target_branch="main", messages=[{"text": "Please add OAuth"}]
        )
    assert created.session["title"] == "Add OAuth login"
    assert created.session["branch"] == "add-oauth-login"
    assert any("namer=anthropic" in record.getMessage() for record in caplog.records)
    assert "Please add OAuth" in fake.requests[0].prompt


async def test_concurrent_creations_proposed_one_branch_all_get_distinct_branches(
    anthropic_service: SessionService, fake: FakeAnthropic
) -> None:
    fake.default = FakeResponse.tool_use("Same work", "same-branch")
    results = await asyncio.gather(
        *(
            anthropic_service.create(repo="acme/app", target_branch="main", messages=["x"])
            for _ in range(20)
        )
    )
    branches = [result.session["branch"] for result in results]
    assert len(set(branches)) == 20
    assert "same-branch" in branches
    assert all(branch.startswith("same-branch") and is_valid_branch(branch) for branch in branches)


async def test_slow_model_does_not_starve_reads(
    settings: Settings, fake: FakeAnthropic, capsys: pytest.CaptureFixture[str]
) -> None:
    """200 creations wait 2 s each on the model with a pool of 10 connections; reads go on
    being answered meanwhile, none waiting for the model."""
    delay_s = 2.0
    fake.default = FakeResponse.tool_use("Slow", "slow", delay_s=delay_s)
    db = Database(make_engine(settings), pool_size=10)
    await db.open()
    namer, close = make_namer(_anthropic_settings(settings, fake, timeout_s=10))
    service = SessionService(db, namer, LocalEvents())
    seed = (await service.create(repo="seed", target_branch="main")).session
    try:
        creations = asyncio.gather(
            *(service.create(repo="slow/repo", target_branch="main") for _ in range(200))
        )
        await fake.requests_arrived(201, timeout_s=30)
        latencies: list[float] = []
        while not creations.done():
            started = time.perf_counter()
            assert await service.get(seed["id"]) is not None
            await service.list_page(first=10)
            latencies.append(time.perf_counter() - started)
        results = await creations
    finally:
        await close()
        await db.close()
    assert len({result.session["id"] for result in results}) == 200
    assert all(result.session["title"] == "Slow" for result in results)
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    with capsys.disabled():
        print(f"\nreads during 200 slow creations: n={len(latencies)}, p99={p99 * 1000:.1f} ms")
    # A read that had to wait for a connection held through naming would take the model's delay.
    assert latencies[-1] < delay_s
    assert len(latencies) > 20
