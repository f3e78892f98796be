"""Fixtures of the fuzzers: the real application (its own lifespan, pool and events) over the
test's emptied database, with a bearer token required as when it is exposed, and a check of the
stored sessions' invariants once a fuzz run is over."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from starlette.applications import Starlette

from app.config import Settings
from app.db import Database
from app.main import create_app
from tests.fuzz.invariants import violations

TOKEN = "fuzz-token"
AUTHORIZATION = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def fuzz_settings(settings: Settings) -> Settings:
    return replace(settings, api_tokens=(TOKEN,))


@pytest.fixture
def fuzz_app(fuzz_settings: Settings, db: Database) -> Starlette:
    """The application as the server builds it; its lifespan runs in the fuzzer's client."""
    return create_app(fuzz_settings)


@pytest.fixture
async def intact_database(db: Database) -> AsyncIterator[None]:
    """Fails the test, after it ran, when a stored session breaks an invariant."""
    yield
    broken = await violations(db)
    assert not broken, "\n".join(broken)
