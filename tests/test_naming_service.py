"""Naming through the service, against the fake Anthropic server and a real database: names are
unique per repo under concurrency, and a slow model never holds a database connection."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

import pytest

import app.db
from app.config import Settings
from app.db import Database, make_engine
from app.model import NewSession
from app.naming import is_valid_branch, make_namer
from app.service import SessionService
from tests.conftest import idle_events
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
    yield SessionService(db, namer, idle_events(db))
    await close()


async def test_creation_uses_the_model_names_and_logs_the_namer(
    anthropic_service: SessionService, fake: FakeAnthropic, caplog: pytest.LogCaptureFixture
) -> None:
    fake.enqueue(FakeResponse.tool_use("Add OAuth login", "add-oauth-login"))
    with caplog.at_level(logging.INFO, logger="app.service"):
        created = await anthropic_service.create(
            NewSession(
                repo="acme/app", target_branch="main", messages=[{"text": "Please add OAuth"}]
            )
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
            anthropic_service.create(
                NewSession(repo="acme/app", target_branch="main", messages=["x"])
            )
            for _ in range(20)
        )
    )
    branches = [result.session["branch"] for result in results]
    assert len(set(branches)) == 20
    assert "same-branch" in branches
    assert all(branch.startswith("same-branch") and is_valid_branch(branch) for branch in branches)


async def test_slow_model_does_not_starve_reads(
    settings: Settings, fake: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    """200 creations ask the model at once with a pool of 10 connections, and reads are
    answered while every one of them is still waiting for its answer: no creation holds a
    connection (or SQLite's write lock) while the model is asked."""
    # Once the model answers, the 200 creations queue for the 10 connections at once; on a
    # loaded machine (the whole suite in parallel) the last of them waited past the pool's
    # 2 s and got DatabaseUnavailable. That burst is not what this test is about.
    monkeypatch.setattr(app.db, "POOL_WAIT_S", 60.0)
    db = Database(make_engine(settings), pool_size=10)
    await db.open()
    # The namer's deadline outlasts the test's own waits, so no creation gives up on the model.
    namer, close = make_namer(_anthropic_settings(settings, fake, timeout_s=300))
    service = SessionService(db, namer, idle_events(db))
    try:
        seed = (await service.create(NewSession(repo="seed", target_branch="main"))).session
        # No answer leaves the model until the reads are done (`release()`), so a read that
        # needed a connection held by a creation would wait for ever, not just a little longer.
        fake.default = FakeResponse.tool_use("Slow", "slow", held=True)
        creations = asyncio.gather(
            *(
                service.create(NewSession(repo="slow/repo", target_branch="main"))
                for _ in range(200)
            )
        )
        try:
            # All 200 are asking the model: were each holding a connection meanwhile, no more
            # than 10 would have got there (one, with SQLite's single writer).
            await fake.requests_arrived(201, timeout_s=60)
            # The timeout turns a read that waits for ever into a failure; nothing else is timed.
            async with asyncio.timeout(60):
                for _ in range(50):
                    assert await service.get(seed["id"]) is not None
                    await service.list_page(first=10)
            assert not creations.done()
        finally:
            fake.release()
            results = await creations
    finally:
        await close()
        await db.close()
    assert len({result.session["id"] for result in results}) == 200
    assert all(result.session["title"] == "Slow" for result in results)
