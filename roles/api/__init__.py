"""The api role: a stateless HTTP API over MongoDB that publishes one event per change to NATS."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import tornado.web

from app.config import Config
from app.deps import Deps
from app.openapi import build_openapi
from app.services import build_api_services
from app.web import BaseHandler, RoleApp, route
from roles.api import accounts, chats, files, messages

ROOT = Path(__file__).resolve().parent.parent.parent


class OpenAPIHandler(BaseHandler):
    def get(self) -> None:
        self.write_json(self.application.openapi)


class IndexHandler(tornado.web.RequestHandler):
    """The demo UI's single page; it finds the notify role from config or the page's own host."""

    def get(self) -> None:
        config: Config = self.settings["config"]
        notify_url = config.api.public_notify_url
        if not notify_url:
            host = urlsplit(f"//{self.request.host}").hostname or "127.0.0.1"
            if ":" in host:
                host = f"[{host}]"
            notify_url = f"{self.request.protocol}://{host}:{config.notify.port}"
        self.render("index.html", notify_url=notify_url.rstrip("/"))


class ApiApp(RoleApp):
    async def start(self) -> None:
        for task in self.settings["background"]:
            await task.start()

    async def stop(self) -> None:
        for task in reversed(self.settings["background"]):
            await task.stop()


def make_app(deps: Deps, **settings) -> ApiApp:
    services = build_api_services(deps)
    api_routes = [*accounts.routes, *chats.routes, *messages.routes, *files.routes]
    routes = [
        route("/", IndexHandler),
        route("/api/openapi.json", OpenAPIHandler),
        *api_routes,
    ]
    app = ApiApp(
        routes,
        role="api",
        deps=deps,
        services=services,
        # The outbox drainer publishes events saved while NATS was away or by a crashed request.
        background=[services.outbox],
        template_path=str(ROOT / "templates"),
        static_path=str(ROOT / "static"),
        compress_response=True,
        **settings,
    )
    app.openapi = build_openapi(api_routes, title="Fechatter API", version="1.0.0")
    return app
