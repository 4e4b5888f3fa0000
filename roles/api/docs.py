"""/api/docs: Swagger UI over /api/openapi.json, its files served from the swagger-ui-py package (no CDN)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from app.openapi import Operation
from app.web import BaseHandler, StaticHandler, route


def swagger_ui_dir() -> Path:
    """The static files of the installed swagger-ui-py (Swagger UI 5, which reads OpenAPI 3.1)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("swagger-ui-py is not installed: pip install . (it is a dependency)")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Fechatter API</title>
  <link rel="stylesheet" href="/api/docs/assets/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/api/docs/assets/swagger-ui-bundle.js"></script>
  <script src="/api/docs/init.js"></script>
</body>
</html>
"""

# No validator badge (it would call validator.swagger.io): everything the page loads comes from this server.
INIT = """window.ui = SwaggerUIBundle({
  url: "/api/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis],
});
"""


class DocsHandler(BaseHandler):
    """The API reference: Swagger UI rendering /api/openapi.json, with every file from this server."""

    api_doc = {"get": Operation("API reference (Swagger UI)", responses={200: None}, auth=False, tags=("docs",),
                                response_content_type="text/html")}

    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.set_header("Cache-Control", "no-cache")
        self.finish(PAGE)


class DocsInitHandler(BaseHandler):
    """The script that starts Swagger UI on /api/openapi.json."""

    api_doc = {"get": Operation("Swagger UI's start-up script", responses={200: None}, auth=False, tags=("docs",),
                                response_content_type="text/javascript")}

    def get(self) -> None:
        self.set_header("Content-Type", "text/javascript; charset=UTF-8")
        self.set_header("Cache-Control", "no-cache")
        self.finish(INIT)


class DocsAssetHandler(StaticHandler):
    """Swagger UI's own files (script, styles), from the installed package."""

    api_doc = {"get": Operation("Swagger UI's files", responses={200: bytes}, auth=False, tags=("docs",),
                                response_content_type="application/octet-stream", errors=(404,))}


class DocsRedirectHandler(BaseHandler):
    """/docs, where people look first: a redirect to /api/docs."""

    api_doc = {"get": Operation("Redirect to /api/docs", responses={302: None}, auth=False, tags=("docs",),
                                operation_id="getDocsRedirect")}

    def get(self) -> None:
        self.redirect("/api/docs")


def make_routes() -> list:
    return [
        route("/api/docs", DocsHandler),
        route("/api/docs/init.js", DocsInitHandler),
        route("/api/docs/assets/{path}", DocsAssetHandler, path=str(swagger_ui_dir())),
        route("/docs", DocsRedirectHandler),
    ]
