"""GraphiQL in headless Chromium, against the real server: the app made by `create_app`, served by
uvicorn over a fresh PostgreSQL database that its own lifespan migrates."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from dataclasses import replace

import asyncpg
import httpx
import pytest
from playwright.async_api import Page

from app import model
from app.config import load_settings
from app.main import create_app
from tests.browser.conftest import page_log, run_graphiql_query, serve_app
from tests.conftest import POSTGRES_SERVER

pytestmark = pytest.mark.browser

CREATE = """mutation ($input: CreateSessionInput!) {
  createSession(input: $input) { session { title } userErrors { message } }
}"""
TIMEOUT_MS = 15_000
TASKS = ("Fix the login redirect", "Write the release notes", "Speed up the test suite")


async def admin(sql: str) -> None:
    connection = await asyncpg.connect(f"{POSTGRES_SERVER}/postgres")
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@pytest.fixture
async def server() -> AsyncIterator[str]:
    """The base URL of a running server over a database of its own, with three sessions."""
    name = f"session_inbox_browser_{os.getpid()}"
    await admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin(f'CREATE DATABASE "{name}"')
    settings = replace(
        load_settings(environ={}, env_file=None), database_url=f"{POSTGRES_SERVER}/{name}"
    )
    try:
        async with serve_app(create_app(settings)) as url:
            async with httpx.AsyncClient(base_url=url) as http:
                for task in TASKS:
                    response = await http.post(
                        "/graphql",
                        json={
                            "query": CREATE,
                            "variables": {
                                "input": {
                                    "repo": "acme/app",
                                    "targetBranch": "main",
                                    "messages": {"content": task},
                                }
                            },
                        },
                    )
                    assert response.json()["data"]["createSession"]["userErrors"] == []
            yield url
    finally:
        await admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_graphiql_runs_a_sessions_query(server: str, browser_page: Page) -> None:
    # Chromium asks for the page as a browser does (Accept: text/html…), so it gets GraphiQL.
    query = "{\n  sessions(orderBy: {field: TITLE, direction: ASC}) {\n    nodes { title }\n  }\n}"

    response = await run_graphiql_query(browser_page, f"{server}/graphql", query)

    assert json.loads(response) == {
        "data": {"sessions": {"nodes": [{"title": title} for title in sorted(TASKS)]}}
    }
    # The result is on the page, not only in the editor's model.
    pane = browser_page.locator(".graphiql-response")
    for title in TASKS:
        await pane.get_by_text(title).wait_for()


async def test_graphiql_docs_show_the_descriptions(server: str, browser_page: Page) -> None:
    page = browser_page
    try:
        await page.goto(f"{server}/graphql", timeout=TIMEOUT_MS)
        await page.get_by_role("button", name="Show Documentation Explorer").click(
            timeout=TIMEOUT_MS
        )
        docs = page.locator(".graphiql-doc-explorer")
        await docs.locator(".graphiql-doc-explorer-type-name", has_text="Query").first.click(
            timeout=TIMEOUT_MS
        )
        await docs.get_by_text("The session with this id, or null").wait_for(timeout=TIMEOUT_MS)
        await docs.locator(".graphiql-doc-explorer-field-name", has_text="session").first.click(
            timeout=TIMEOUT_MS
        )
        await docs.locator(".graphiql-doc-explorer-type-name", has_text="Session").first.click(
            timeout=TIMEOUT_MS
        )
        # A session's fields, as the declaration describes them.
        for name in ("repo", "parent", "version"):
            first_words = model.describe(name).split("`")[0]
            await docs.get_by_text(first_words).first.wait_for(timeout=TIMEOUT_MS)
        # A scalar's page, reached from the `id` field.
        await docs.locator(".graphiql-doc-explorer-type-name", has_text="UUID").first.click(
            timeout=TIMEOUT_MS
        )
        await docs.get_by_text("A UUID as text").wait_for(timeout=TIMEOUT_MS)
    except Exception as error:
        raise AssertionError(f"{error}\n{page_log(page).describe()}") from error
