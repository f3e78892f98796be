"""The invariant checker the fuzzers end with finds what it is meant to find."""

from __future__ import annotations

import pytest

from app.db import Database
from tests.conftest import SessionFactory
from tests.fuzz.invariants import violations


async def test_sessions_made_by_the_service_break_no_invariant(
    db: Database, make_session: SessionFactory
) -> None:
    root = await make_session()
    await make_session(parent=root["id"])

    assert await violations(db) == []


async def test_a_bad_title_a_bad_branch_and_a_cycle_are_reported(
    db: Database, make_session: SessionFactory
) -> None:
    first = await make_session()
    second = await make_session(parent=first["id"])
    # Written past the service, as only a defect could.
    await db.execute(
        "UPDATE session SET title = {}, branch = {}, parent = {} WHERE id = {}",
        "two\nlines",
        "bad..branch",
        second["id"],
        first["id"],
    )

    found = "\n".join(await violations(db))

    assert f"session {first['id']}: invalid title 'two\\nlines'" in found
    assert f"session {first['id']}: invalid branch 'bad..branch'" in found
    assert f"session {first['id']}: its parent chain returns to" in found
    assert f"session {second['id']}: its parent chain returns to" in found


@pytest.mark.parametrize("version", [0, -1])
async def test_a_version_below_one_is_reported(
    db: Database, make_session: SessionFactory, version: int
) -> None:
    session = await make_session()
    await db.execute("UPDATE session SET version = {} WHERE id = {}", version, session["id"])

    assert await violations(db) == [f"session {session['id']}: version {version} below 1"]
