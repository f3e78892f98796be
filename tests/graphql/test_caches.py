"""The document cache: a query sent again is neither parsed nor validated again; a long one is
never kept, and all that is kept stays within the byte budget."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import strawberry.schema.schema as strawberry_schema
from graphql import parse

from app.config import Settings
from app.graphql.caches import MAX_ENTRY_BYTES, DocumentCache
from app.graphql.schema import build_schema

SMALL = "{ __typename }"


@pytest.fixture
def parsed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The query texts Strawberry parsed."""
    texts: list[str] = []

    def counted(source: Any, **options: Any) -> Any:
        texts.append(source)
        return parse(source, **options)

    monkeypatch.setattr(strawberry_schema, "parse", counted)
    return texts


async def test_a_repeated_query_is_parsed_once(parsed: list[str]) -> None:
    cache = DocumentCache()
    schema = build_schema(document_cache=cache)
    for _ in range(3):
        result = await schema.execute(SMALL)
        assert result.errors is None
        assert result.data == {"__typename": "Query"}
    assert parsed == [SMALL]
    assert len(cache) == 1
    assert 0 < cache.bytes < MAX_ENTRY_BYTES


async def test_a_refused_query_sent_again_is_refused_again_from_the_cache(
    parsed: list[str],
) -> None:
    schema = build_schema(document_cache=DocumentCache())
    query = "{ sessionz { id } }"
    first, second = [await schema.execute(query) for _ in range(2)]
    assert first.errors is not None
    assert second.errors is not None
    assert [e.message for e in first.errors] == [e.message for e in second.errors]
    assert parsed == [query]


async def test_long_documents_are_never_kept(parsed: list[str]) -> None:
    cache = DocumentCache()
    # A token limit that lets a megabyte through (by default, 64,000 characters at most).
    schema = build_schema(Settings(max_tokens=50_000), document_cache=cache)
    # Comments cost no token: 20 distinct documents of about a megabyte each.
    padding = ("#" + "x" * 1000 + "\n") * 1000
    for n in range(20):
        query = f"{{ __typename }} # {n}\n{padding}"
        assert (await schema.execute(query)).errors is None
    assert len(parsed) == 20
    assert len(cache) == 0
    assert cache.bytes == 0


async def test_many_tokens_make_a_document_too_large_to_keep() -> None:
    cache = DocumentCache()
    schema = build_schema(document_cache=cache)
    # 1,999 tokens in 7 KB of text: about 900 KB once parsed.
    body = " ".join(["parent { parent { id } }"] * 284)
    await schema.execute(f'{{ session(id: "{uuid.uuid4()}") {{ {body} }} }}')
    assert len(cache) == 0


async def test_distinct_queries_stay_within_the_budget() -> None:
    cache = DocumentCache(budget_bytes=100_000)
    schema = build_schema(document_cache=cache)
    for _ in range(200):
        await schema.execute(f'{{ session(id: "{uuid.uuid4()}") {{ id title }} }}')
    assert 0 < cache.bytes <= 100_000
    assert 0 < len(cache) < 200
    # The most recent stay.
    last = f'{{ session(id: "{uuid.uuid4()}") {{ id }} }}'
    await schema.execute(last)
    key = cache.key(last)
    assert key is not None
    assert cache.document(key) is not None


async def test_each_schema_keeps_its_own_documents() -> None:
    strict = build_schema()
    # Parsed and kept by a schema whose token limit allows it, refused by the default one.
    loose = build_schema(Settings(max_tokens=5000))
    statuses = ", ".join(["ACTIVE"] * 2100)
    query = f"{{ sessions(filter: {{inboxStatus: [{statuses}]}}) {{ totalCount }} }}"
    # It runs (and fails without a database to read): it parsed and validated.
    ran = await loose.execute(query)
    assert ran.errors is not None
    assert [error.path for error in ran.errors] == [["sessions"]]
    refused = await strict.execute(query)
    assert refused.errors is not None
    assert "2000 tokens" in refused.errors[0].message
