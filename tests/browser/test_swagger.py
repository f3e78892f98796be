"""Swagger UI in headless Chromium, against the real server: the app made by `create_app`, served by
uvicorn over a SQLite file its own lifespan migrates (the page reads no session)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from playwright.async_api import Page, Request, Route

from app.config import load_settings
from app.main import create_app
from tests.browser.conftest import page_log, serve_app

pytestmark = pytest.mark.browser

TIMEOUT_MS = 15_000


@pytest.fixture
async def server(tmp_sqlite_url: str) -> AsyncIterator[str]:
    """The base URL of a running server."""
    settings = replace(load_settings(environ={}, env_file=None), database_url=tmp_sqlite_url)
    async with serve_app(create_app(settings)) as url:
        yield url


async def test_docs_shows_the_create_body_schema_with_no_request_leaving_the_server(
    server: str, browser_page: Page
) -> None:
    page = browser_page
    requested: list[str] = []
    left: list[str] = []
    page.on("request", lambda request: requested.append(request.url))

    # A page-level route runs before browser_page's context-level one, so unpkg.com and every
    # other host is refused here instead of being answered from node_modules.
    async def only_this_server(route: Route, request: Request) -> None:
        if request.url.startswith(server + "/"):
            await route.continue_()
        else:
            left.append(request.url)
            await route.abort("blockedbyclient")

    await page.route("**/*", only_this_server)

    try:
        await page.goto(f"{server}/docs", timeout=TIMEOUT_MS)
        operation = page.locator(".opblock-post").filter(
            has=page.locator('.opblock-summary-path[data-path="/sessions"]')
        )
        await operation.locator(".opblock-summary").click(timeout=TIMEOUT_MS)
        await operation.locator('.opblock-section-request-body [data-name="model"]').click(
            timeout=TIMEOUT_MS
        )
        schema = operation.locator(".opblock-section-request-body .model-box")
        await schema.get_by_text("target_branch", exact=True).wait_for(timeout=TIMEOUT_MS)
        await schema.get_by_text("repo", exact=True).wait_for(timeout=TIMEOUT_MS)
    except Exception as error:
        raise AssertionError(
            f"Swagger UI at {server}/docs did not show POST /sessions' body schema: {error}\n"
            f"requests: {requested}\nleft the server: {left}\n{page_log(page).describe()}"
        ) from error

    assert f"{server}/openapi.json" in requested
    # The page's Content-Security-Policy stops a request to another host in the browser, where
    # `requested` still sees it; the route above records any that gets past the policy.
    assert [url for url in requested if not url.startswith(server + "/")] == []
    assert left == []
    log = page_log(page)
    assert (log.page_errors, log.console_errors) == ([], [])
