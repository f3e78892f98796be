"""Swagger UI over `/openapi.json`, at `/docs` and at `/swagger-ui/` (the earlier service's path).

Swagger UI's files come from the swagger-ui-py package (Swagger UI 5, which reads OpenAPI 3.1) and
are served by this server under `/docs/static/`, so the page works with no internet. The page is our
own: it holds no inline script (its initializer is `/docs/init.js`), and its Content-Security-Policy
lets it reach this server only.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

OPENAPI_URL = "/openapi.json"
STATIC_URL = "/docs/static"
INIT_URL = "/docs/init.js"


def _package_dir(name: str) -> Path:
    # find_spec locates the package without importing it (swagger_ui's own code, an integration for
    # other frameworks, pulls in Jinja2 and PyYAML, which serving its files does not need).
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the {name} package is not installed: pip install swagger-ui-py")
    return Path(next(iter(spec.submodule_search_locations)))


STATIC_DIR = _package_dir("swagger_ui") / "static"

PAGE = f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>session-inbox REST API</title>
  <link rel="icon" type="image/png" href="{STATIC_URL}/favicon-32x32.png">
  <link rel="stylesheet" href="{STATIC_URL}/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{STATIC_URL}/swagger-ui-bundle.js"></script>
  <script src="{INIT_URL}"></script>
</body>
</html>
"""

# validatorUrl: null, or Swagger UI sends the document to validator.swagger.io for a badge.
INIT_JS = f"""window.ui = SwaggerUIBundle({{
  url: "{OPENAPI_URL}",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
}});
"""

# Swagger UI sets inline styles and draws its icons as data: images; everything else is ours.
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


async def page(_request: Request) -> Response:
    return HTMLResponse(PAGE, headers={"Content-Security-Policy": CSP})


async def init_js(_request: Request) -> Response:
    return Response(INIT_JS, media_type="text/javascript")


# Both spellings of each path are answered: Starlette's own slash redirect would send an absolute
# URL built from the Host header.
routes: list[BaseRoute] = [
    *(Route(path, page) for path in ("/docs", "/docs/", "/swagger-ui/", "/swagger-ui")),
    Route(INIT_URL, init_js),
    Mount(STATIC_URL, app=StaticFiles(directory=STATIC_DIR), name="swagger-ui"),
]
