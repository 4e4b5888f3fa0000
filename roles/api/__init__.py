"""The api role: a stateless HTTP API over MongoDB that publishes one event per change to NATS."""

from __future__ import annotations

from pathlib import Path

from app.config import Config
from app.deps import Deps
from app.openapi import Operation, build_openapi
from app.services import build_api_services
from app.web import BaseHandler, RoleApp, route
from roles.api import accounts, bots, chats, files, messages, people, reactions
from roles.api import export as workspace_export
from roles.api import webhooks as webhooks_out
from roles.api.docs import make_routes as docs_routes

ROOT = Path(__file__).resolve().parent.parent.parent
if not (ROOT / "templates" / "index.html").is_file():  # installed by `pip install .`: the fechatter package's data
    ROOT = ROOT / "fechatter"


class OpenAPIHandler(BaseHandler):
    """The OpenAPI 3.1 document of both roles (the api's paths and the notify role's, each with its servers)."""

    api_doc = {"get": Operation("This OpenAPI document", responses={200: None}, auth=False, tags=("docs",))}

    def get(self) -> None:
        self.write_json(self.application.openapi)


_ANY_ADDRESS = frozenset({"", "0.0.0.0", "::", "[::]"})


def notify_url_for_pages(config: Config) -> str:
    """Where the page's browser finds the notify role, from config alone: never from a request's Host,
    which anyone (or a cache between) can set, and the page sends its access token there.

    `api.public_notify_url` when set (behind a proxy: the public origin); otherwise the address notify
    listens on, or the api's when notify takes any address (`make run`: http://127.0.0.1:6687). With
    both on any address, "" and the page's script uses its own location's host and port 6687.
    """
    if config.api.public_notify_url:
        return config.api.public_notify_url.rstrip("/")
    host = next((h for h in (config.notify.host, config.api.host) if h not in _ANY_ADDRESS), "")
    if not host:
        return ""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{config.notify.port}"


class IndexHandler(BaseHandler):
    """The demo UI's single page; it finds the notify role from config (notify_url_for_pages).

    A BaseHandler like every route, so that its errors (`POST /`, `TRACE /`) are JSON too.
    """

    api_doc = {"get": Operation("The web app's page", responses={200: None}, auth=False, tags=("docs",),
                                response_content_type="text/html")}

    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        # The page names where its token goes: no shared cache may keep one and serve it to others.
        self.set_header("Cache-Control", "no-store")
        self.render("index.html", notify_url=notify_url_for_pages(self.settings["config"]))


class ApiApp(RoleApp):
    async def start(self) -> None:
        for task in self.settings["background"]:
            await task.start()

    async def stop(self) -> None:
        for task in reversed(self.settings["background"]):
            await task.stop()


def make_app(deps: Deps, **settings) -> ApiApp:
    services = build_api_services(deps)
    api_routes = [*accounts.routes, *people.routes, *chats.routes, *messages.routes, *reactions.routes, *files.routes,
                  *bots.routes]
    api_routes += webhooks_out.routes
    api_routes += workspace_export.routes
    routes = [
        route("/", IndexHandler),
        route("/api/openapi.json", OpenAPIHandler),
        *docs_routes(),
        *api_routes,
    ]
    app = ApiApp(
        routes,
        role="api",
        deps=deps,
        services=services,
        # The outbox drainer publishes events saved while NATS was away or by a crashed request;
        # the limiter deletes rate-limit windows that ended.
        # sessions hears every api process's logout-all.
        background=[services.outbox, services.limiter, services.sessions],
        session_check=services.sessions.live,
        template_path=str(ROOT / "templates"),
        static_path=str(ROOT / "static"),
        compress_response=True,
        **settings,
    )
    deps.metrics.watch_outbox(lambda: deps.store.outbox.count_documents({}))  # read at each scrape
    config = deps.config
    notify_url = notify_url_for_pages(config) or f"http://127.0.0.1:{config.notify.port}"
    app.openapi = build_openapi(routes, title="Fechatter API", version="1.0.0", notify_url=notify_url)
    return app
