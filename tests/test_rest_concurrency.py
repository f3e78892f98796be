"""Concurrent requests through the app: optimistic concurrency, parent cycles, idempotent
creation. The requests run at once on the test's loop; the ASGI app and the database pool are
real, so on PostgreSQL the transactions really overlap (the pool holds 20 connections)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import pytest

from app.db import Database

CONCURRENT = 50


async def create(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {"repo": "acme/app", "target_branch": "main", **fields}
    response = await client.post(
        "/sessions", json=body, headers={"Prefer": "return=representation"}
    )
    assert response.status_code == 201, response.text
    session: dict[str, Any] = response.json()["session"]
    return session


async def parents(db: Database) -> dict[str, str | None]:
    rows = await db.fetch("SELECT id, parent FROM session")
    return {str(row["id"]): None if row["parent"] is None else str(row["parent"]) for row in rows}


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
async def test_of_concurrent_changes_with_the_same_if_match_exactly_one_wins(
    client: httpx.AsyncClient, method: str
) -> None:
    session = await create(client)
    url = f"/sessions/{session['id']}"

    responses = await asyncio.gather(
        *(
            client.request(
                method,
                url,
                json={"inbox_status": "completed", "title": f"Writer {n}"},
                headers={"If-Match": '"1"', "Prefer": "return=representation"},
            )
            for n in range(CONCURRENT)
        )
    )

    assert Counter(r.status_code for r in responses) == {200: 1, 412: CONCURRENT - 1}
    for response in responses:
        if response.status_code == 412:
            assert response.json()["err"] == "Precondition Failed"
    (winner,) = (r.json()["session"] for r in responses if r.status_code == 200)
    stored = (await client.get(url)).json()["session"]
    assert stored["version"] == 2
    assert stored == winner


async def test_concurrent_attempts_at_a_two_node_cycle_never_store_one(
    client: httpx.AsyncClient, db: Database
) -> None:
    a = await create(client)
    b = await create(client)

    async def set_parent(child: dict[str, Any], parent: dict[str, Any]) -> tuple[str, int]:
        response = await client.patch(f"/sessions/{child['id']}", json={"parent": parent["id"]})
        return child["id"], response.status_code

    results = await asyncio.gather(
        *(set_parent(a, b) if n % 2 == 0 else set_parent(b, a) for n in range(2 * CONCURRENT))
    )

    stored = await parents(db)
    assert not (stored[a["id"]] == b["id"] and stored[b["id"]] == a["id"])
    # One direction won (every attempt at it succeeds); every attempt the other way is refused.
    succeeded = {child for child, status in results if status == 200}
    refused = {child for child, status in results if status == 422}
    assert len(succeeded) == 1
    assert refused == {a["id"], b["id"]} - succeeded
    assert {status for _, status in results} == {200, 422}
    (child,) = succeeded
    other = b["id"] if child == a["id"] else a["id"]
    assert stored == {child: other, other: None}


async def test_concurrent_creations_with_one_idempotency_key_make_one_session(
    client: httpx.AsyncClient, db: Database
) -> None:
    body = {"repo": "acme/app", "target_branch": "main", "messages": {"content": "once"}}

    responses = await asyncio.gather(
        *(
            client.post("/sessions", json=body, headers={"Idempotency-Key": "burst"})
            for _ in range(CONCURRENT)
        )
    )

    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    replayed = [r for r in responses if r.headers.get("idempotent-replayed") == "true"]
    assert len(replayed) == CONCURRENT - 1
    assert len(await db.fetch("SELECT id FROM session")) == 1


async def test_deleting_a_parent_while_children_attach_to_it_leaves_no_dangling_parent(
    client: httpx.AsyncClient, db: Database
) -> None:
    parent = await create(client)
    children = [await create(client) for _ in range(10)]

    attach = [
        client.patch(f"/sessions/{child['id']}", json={"parent": parent["id"]})
        for child in children
    ]
    delete = client.delete(f"/sessions/{parent['id']}")
    *attached, deleted = await asyncio.gather(*attach, delete)

    assert deleted.status_code == 200
    assert {r.status_code for r in attached} <= {200, 422}
    assert set((await parents(db)).values()) == {None}
    # A child that was attached lost its parent as a change of its own: version 3.
    versions = {str(row["id"]): row["version"] for row in await db.fetch("SELECT * FROM session")}
    for child, response in zip(children, attached, strict=True):
        assert versions[child["id"]] == (3 if response.status_code == 200 else 1)
