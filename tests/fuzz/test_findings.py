"""What the fuzzers found, pinned as plain tests so that it stays found whatever a fuzz run
happens to generate."""

from __future__ import annotations

import httpx
import orjson
import pytest


@pytest.mark.parametrize("value", [1.2345678901234567, 7.234133626019361e-171, 0.1 + 0.2])
async def test_a_number_as_the_whole_of_messages_is_read_back_exactly(
    client: httpx.AsyncClient, value: float
) -> None:
    created = await client.post(
        "/sessions", json={"repo": "acme/app", "target_branch": "main", "messages": value}
    )
    assert created.status_code == 201, created.text

    read = await client.get(f"/sessions/{created.json()['id']}")

    assert orjson.loads(read.content)["session"]["messages"] == value
