"""Swagger UI's page and files, over HTTP through the app that `create_app` builds.

The page needs no database: these requests never reach the lifespan's state.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from urllib.parse import urlsplit

import httpx
import pytest

from app.config import load_settings
from app.main import create_app

PAGE_PATHS = ("/docs", "/docs/", "/swagger-ui/", "/swagger-ui")
JAVASCRIPT = ("text/javascript", "application/javascript")


class _Assets(HTMLParser):
    """The URLs a page loads (`<script src>`, `<link href>`, `<img src>`) and its inline scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str]] = []
        self.inline_scripts = 0
        self._in_script_without_src = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        url = attributes.get("src") if tag in ("script", "img") else attributes.get("href")
        if url is not None:
            self.urls.append((tag, url))
        self._in_script_without_src = tag == "script" and url is None

    def handle_data(self, data: str) -> None:
        if self._in_script_without_src and data.strip():
            self.inline_scripts += 1

    def handle_endtag(self, tag: str) -> None:
        self._in_script_without_src = False


def assets_of(html: str) -> _Assets:
    parser = _Assets()
    parser.feed(html)
    parser.close()
    return parser


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(load_settings(environ={}, env_file=None)))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.mark.parametrize("path", PAGE_PATHS)
async def test_page_is_served_as_html_at_each_path(http: httpx.AsyncClient, path: str) -> None:
    response = await http.get(path)

    assert response.status_code == 200  # not a redirect, least of all one built from Host
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert 'id="swagger-ui"' in response.text


@pytest.mark.parametrize("path", PAGE_PATHS)
async def test_head_answers_like_get(http: httpx.AsyncClient, path: str) -> None:
    got, head = await http.get(path), await http.head(path)

    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    assert head.headers["content-length"] == str(len(got.content))


async def test_page_loads_only_assets_of_this_server_and_no_inline_script(
    http: httpx.AsyncClient,
) -> None:
    response = await http.get("/docs")
    assets = assets_of(response.text)

    assert {tag for tag, _ in assets.urls} == {"script", "link"}
    for _, url in assets.urls:
        # A path on this origin: no scheme and no host (not even a protocol-relative "//host").
        assert urlsplit(url)[:2] == ("", ""), url
        assert url.startswith("/"), url
    assert assets.inline_scripts == 0
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "script-src" not in policy  # so scripts fall back to 'self' alone


async def test_every_asset_the_page_references_is_served_with_its_type(
    http: httpx.AsyncClient,
) -> None:
    page = await http.get("/swagger-ui/")
    urls = [url for _, url in assets_of(page.text).urls]
    expected = {".js": JAVASCRIPT, ".css": ("text/css",), ".png": ("image/png",)}

    assert any(url.endswith("/swagger-ui-bundle.js") for url in urls)
    assert any(url.endswith("/swagger-ui.css") for url in urls)
    for url in urls:
        response = await http.get(url)
        assert response.status_code == 200, url
        assert response.content, url
        media_type = response.headers["content-type"].split(";")[0]
        assert media_type in expected[url[url.rindex(".") :]], (url, media_type)


async def test_page_points_swagger_ui_at_the_openapi_document(http: httpx.AsyncClient) -> None:
    page = await http.get("/docs")
    scripts = [
        (await http.get(url)).text for tag, url in assets_of(page.text).urls if tag == "script"
    ]
    document = await http.get("/openapi.json")

    assert any('url: "/openapi.json"' in script for script in scripts)
    assert document.status_code == 200
    assert document.json()["openapi"].startswith("3.1.")


async def test_shipped_swagger_ui_reads_openapi_3_1(http: httpx.AsyncClient) -> None:
    # Swagger UI renders OpenAPI 3.1 from version 5 on; swagger-ui-bundle's 4.15 does not.
    bundle = await http.get("/docs/static/swagger-ui-bundle.js")
    version = re.search(r'PACKAGE_VERSION:"(\d+)\.(\d+)\.(\d+)"', bundle.text)

    assert version is not None
    assert int(version[1]) >= 5


async def test_static_files_stay_inside_the_package(http: httpx.AsyncClient) -> None:
    for path in ("/docs/static/missing.js", "/docs/static/%2e%2e/__init__.py", "/docs/static/"):
        response = await http.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"] == "application/json"
