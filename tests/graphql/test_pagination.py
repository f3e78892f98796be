"""Keyset pagination holds still while sessions are inserted: walking 250 sessions forward and
backward, with new ones arriving between pages, returns each original exactly once, in order."""

from __future__ import annotations

import itertools
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import pytest

from app.db import Database
from app.model import SessionChanges
from app.service import SessionService
from app.tables import InboxStatus
from tests.conftest import SessionFactory
from tests.graphql.conftest import Run

TOTAL = 250
PAGE = 20

PAGE_QUERY = """
query ($orderBy: SessionOrder, $first: Int, $after: String, $last: Int, $before: String) {
  sessions(orderBy: $orderBy, first: $first, after: $after, last: $last, before: $before) {
    edges { cursor node { id } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}
"""

# Few distinct words, so many titles tie and the id decides between them.
WORDS = ("alpha", "bravo", "charlie", "delta", "echo")


async def walk_forward(
    execute: Run, order: dict[str, str], between_pages: Callable[[], Awaitable[None]]
) -> list[str]:
    seen: list[str] = []
    after: str | None = None
    while True:
        data = (await execute(PAGE_QUERY, orderBy=order, first=PAGE, after=after)).ok()
        connection = data["sessions"]
        seen += [edge["node"]["id"] for edge in connection["edges"]]
        await between_pages()
        if not connection["pageInfo"]["hasNextPage"]:
            return seen
        assert connection["pageInfo"]["endCursor"] == connection["edges"][-1]["cursor"]
        after = connection["pageInfo"]["endCursor"]


async def walk_backward(
    execute: Run, order: dict[str, str], between_pages: Callable[[], Awaitable[None]]
) -> list[str]:
    """The ids from the end to the start, put back in the order's direction."""
    pages: list[list[str]] = []
    before: str | None = None
    while True:
        data = (await execute(PAGE_QUERY, orderBy=order, last=PAGE, before=before)).ok()
        connection = data["sessions"]
        pages.append([edge["node"]["id"] for edge in connection["edges"]])
        await between_pages()
        if not connection["pageInfo"]["hasPreviousPage"]:
            return list(itertools.chain.from_iterable(reversed(pages)))
        assert connection["pageInfo"]["startCursor"] == connection["edges"][0]["cursor"]
        before = connection["pageInfo"]["startCursor"]


@pytest.mark.parametrize(
    ("order", "key", "descending"),
    [
        ({}, "created_at", True),
        ({"field": "TITLE", "direction": "ASC"}, "title", False),
        ({"field": "UPDATED_AT", "direction": "ASC"}, "updated_at", False),
    ],
    ids=["newest-first", "title-asc", "updated-at-asc"],
)
async def test_walks_have_no_duplicate_and_no_gap_while_sessions_are_inserted(
    execute: Run,
    db: Database,
    make_session: SessionFactory,
    service: SessionService,
    order: dict[str, str],
    key: str,
    descending: bool,
) -> None:
    rng = random.Random(TOTAL)
    rows: dict[Any, Mapping[str, Any]] = {}
    # One commit, not 250. A repo each, so equal titles need no retry for a free branch (which
    # a failed INSERT inside a PostgreSQL transaction would not allow).
    async with db.transaction():
        for i in range(TOTAL):
            row = await make_session(repo=f"acme/{i}", messages={"content": rng.choice(WORDS)})
            rows[row["id"]] = row
    # Touched sessions move in updated_at order away from their creation order.
    for session_id in rng.sample(sorted(rows, key=str), 25):
        rows[session_id] = dict(
            await service.update(session_id, SessionChanges(inbox_status=InboxStatus.PENDING))
        )
    expected = [
        str(row["id"])
        for row in sorted(rows.values(), key=lambda r: (r[key], str(r["id"])), reverse=descending)
    ]
    originals = set(expected)
    inserted: list[str] = []

    async def insert_some() -> None:
        for _ in range(3):
            row = await make_session(messages={"content": rng.choice(WORDS)})
            inserted.append(str(row["id"]))

    for walk in (walk_forward, walk_backward):
        seen = await walk(execute, order, insert_some)
        assert len(seen) == len(set(seen)), "a session was returned twice"
        assert [session_id for session_id in seen if session_id in originals] == expected
        # Whatever else the walk met was inserted during it.
        assert set(seen) - originals <= set(inserted)
    assert len(inserted) > 2 * TOTAL // PAGE
