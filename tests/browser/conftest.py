"""Browser tests: Debian's headless Chromium driven by Playwright.

This machine reaches no CDN, so every `https://unpkg.com/<package>@<version>/<path>` request a page
makes is answered from `tests/browser/node_modules` (installed by `scripts/bootstrap` from
`package.json`, the exact versions Strawberry's GraphiQL page loads; its `integrity=` hashes hold
because the files come from the same npm tarballs). Requests to loopback go through; every other
external request is aborted, so a test never depends on the network.

`run_graphiql_query` drives Strawberry's GraphiQL page; `serve_app` serves an ASGI app.
"""

import contextlib
import ipaddress
import json
import re
import urllib.parse
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, Route, async_playwright

from tests.loopback import serve_on_loopback

BROWSER_DIR = Path(__file__).resolve().parent
NODE_MODULES = BROWSER_DIR / "node_modules"
CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium keeps calling Google's hosts, which this
# machine's closed network refuses; --no-sandbox because CI runs as root.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

CONTENT_TYPES = {
    ".js": "application/javascript; charset=utf-8",
    ".mjs": "application/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json; charset=utf-8",
    ".map": "application/json; charset=utf-8",
    ".svg": "image/svg+xml",
    ".woff2": "font/woff2",
    ".woff": "font/woff",
    ".ttf": "font/ttf",
}
_UNPKG_PATH = re.compile(r"^/(?P<package>(?:@[^/@]+/)?[^/@]+)@(?P<version>[^/]+)/(?P<file>.+)$")


def _require_setup() -> None:
    """Fails (never skips: CI must prove the browser tests) when bootstrap has not run."""
    for what, path in (
        ("Chromium", CHROMIUM),
        ("GraphiQL's assets", NODE_MODULES / "graphiql" / "package.json"),
    ):
        if not path.is_file():
            pytest.fail(f"{what} ({path}) is missing: run scripts/bootstrap")


@dataclass
class PageLog:
    """What happened to one page's requests and scripts, for failure messages."""

    missing_assets: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def describe(self) -> str:
        parts = [
            f"{title}:\n  " + "\n  ".join(items)
            for title, items in (
                ("unpkg.com assets not in tests/browser/node_modules", self.missing_assets),
                ("blocked external requests", self.blocked),
                ("page errors", self.page_errors),
                ("console errors", self.console_errors),
            )
            if items
        ]
        return "\n".join(parts) or "no failed requests, page errors or console errors"


_logs: "weakref.WeakKeyDictionary[Page, PageLog]" = weakref.WeakKeyDictionary()


def page_log(page: Page) -> PageLog:
    """The log of a page made by the `browser_page` fixture (empty for any other page)."""
    return _logs.get(page, PageLog())


def unpkg_file(url: str) -> Path | None:
    """The file in node_modules that answers an unpkg.com URL, or None when there is none.

    The version must be the installed one: a newer Strawberry asking for other versions is an
    error to fix in package.json, not something to paper over.
    """
    match = _UNPKG_PATH.match(urllib.parse.urlsplit(url).path)
    if match is None:
        return None
    package_dir = NODE_MODULES / match["package"]
    try:
        installed = json.loads((package_dir / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None
    if installed != match["version"]:
        return None
    path = (package_dir / match["file"]).resolve()
    if not path.is_relative_to(package_dir.resolve()) or not path.is_file():
        return None
    return path


def _is_loopback(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _route_offline(route: Route, log: PageLog) -> None:
    url = route.request.url
    if _is_loopback(url):
        await route.continue_()
    elif urllib.parse.urlsplit(url).hostname == "unpkg.com":
        path = unpkg_file(url)
        if path is None:
            log.missing_assets.append(url)
            await route.fulfill(
                status=404,
                body=f"not in tests/browser/node_modules: {url}",
                headers={"content-type": "text/plain; charset=utf-8"},
            )
            return
        content_type = CONTENT_TYPES.get(path.suffix, "application/octet-stream")
        # The page loads these with `crossorigin`, so the response must allow it, as unpkg's does.
        headers = {"content-type": content_type, "access-control-allow-origin": "*"}
        await route.fulfill(status=200, body=path.read_bytes(), headers=headers)
    else:
        log.blocked.append(url)
        await route.abort("blockedbyclient")


@pytest.fixture(scope="session")
async def chromium_browser() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless, launched once per test process."""
    _require_setup()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield browser
        await browser.close()


@pytest.fixture
async def browser_page(chromium_browser: Browser) -> AsyncIterator[Page]:
    """A page in a fresh context: unpkg.com from node_modules, loopback open, all else aborted.

    Fails at teardown when the page asked unpkg.com for an asset that node_modules lacks.
    """
    context = await chromium_browser.new_context()
    log = PageLog()

    async def route(route: Route) -> None:
        await _route_offline(route, log)

    await context.route("**/*", route)
    page = await context.new_page()
    _logs[page] = log

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            log.console_errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: log.page_errors.append(str(error)))
    yield page
    await context.close()
    if log.missing_assets:
        pytest.fail(
            "the page asked unpkg.com for files tests/browser/node_modules lacks; align "
            "tests/browser/package.json with strawberry/static/graphiql.html and run "
            "scripts/bootstrap:\n  " + "\n  ".join(log.missing_assets)
        )


@contextlib.asynccontextmanager
async def serve_app(app: Any) -> AsyncIterator[str]:
    """Serves an ASGI app with uvicorn on a free loopback port; yields `http://127.0.0.1:<port>`."""
    async with serve_on_loopback(app, log_level="warning", ws="websockets-sansio") as base:
        yield base


_QUERY_EDITOR = ".graphiql-query-editor .CodeMirror"
_RESPONSE = ".graphiql-response .CodeMirror"
_EXECUTE_BUTTON = ".graphiql-execute-button"
# GraphiQL 3 uses CodeMirror 5, which keeps its instance on the wrapper element; its getValue()
# gives the whole text, where the DOM holds only the lines scrolled into view.
_EDITOR_VALUE = "selector => document.querySelector(selector)?.CodeMirror?.getValue() ?? null"
_RESPONSE_READY = """selector => {
  const text = document.querySelector(selector)?.CodeMirror?.getValue() ?? "";
  return text.trim() !== "" && document.querySelector(".graphiql-spinner") === null;
}"""


async def run_graphiql_query(
    page: Page,
    graphiql_url: str,
    query: str,
    *,
    variables: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    timeout_ms: float = 15_000,
) -> str:
    """Opens GraphiQL, enters `query` in its editor, presses the run button, returns the response.

    The query is put in as one text insertion (as a paste does): typed key by key, CodeMirror's
    bracket auto-closing and autocomplete rewrite multi-line queries. `variables` and `headers`
    go in through the page's own `?variables=` and `?headers=` URL parameters. Returns the
    response pane's text (GraphiQL's pretty-printed JSON), e.g. `json.loads()` it.
    """
    params = {
        key: json.dumps(value)
        for key, value in (("variables", variables), ("headers", headers))
        if value is not None
    }
    # The page decodes its parameters with decodeURIComponent, which leaves "+" as it is.
    query_string = urllib.parse.urlencode(params, quote_via=urllib.parse.quote)
    url = graphiql_url + ("?" + query_string if query_string else "")
    try:
        await page.goto(url, timeout=timeout_ms)
        editor = page.locator(_QUERY_EDITOR)
        await editor.wait_for(timeout=timeout_ms)
        await editor.click()
        await page.keyboard.press("ControlOrMeta+A")
        await page.keyboard.insert_text(query)
        entered = await page.evaluate(_EDITOR_VALUE, _QUERY_EDITOR)
        if entered != query:
            raise AssertionError(f"GraphiQL's editor holds {entered!r}, not {query!r}")
        await page.locator(_EXECUTE_BUTTON).click(timeout=timeout_ms)
        await page.wait_for_function(_RESPONSE_READY, arg=_RESPONSE, timeout=timeout_ms)
    except Exception as error:
        raise AssertionError(
            f"GraphiQL at {url} gave no response: {error}\n{page_log(page).describe()}"
        ) from error
    response: str = await page.evaluate(_EDITOR_VALUE, _RESPONSE)
    return response
