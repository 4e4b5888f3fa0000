"""The api role: a stateless HTTP API over MongoDB that publishes one event per change to NATS."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import tornado.web

from app.auth import PasswordHashing, TokenIssuer
from app.config import Config
from app.events import EventBus
from app.metrics import Metrics
from app.openapi import build_openapi
from app.services.accounts import AccountService
from app.services.chats import ChatService
from app.services.files import FileService
from app.services.messages import MessageService
from app.services.outbox import Outbox
from app.services.ratelimit import RateLimiter
from app.store import Store
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


def make_services(config: Config, store: Store, bus: EventBus, issuer: TokenIssuer) -> SimpleNamespace:
    limiter = RateLimiter(store, config.limits.enabled)
    outbox = Outbox(store, bus, config.api)
    chat_service = ChatService(store, outbox)
    file_service = FileService(store, config.files.max_bytes)
    return SimpleNamespace(
        limiter=limiter,
        accounts=AccountService(store, issuer, PasswordHashing(), config.auth, config.limits, limiter),
        outbox=outbox,
        chats=chat_service,
        files=file_service,
        messages=MessageService(store, outbox, chat_service, file_service, limiter, config),
    )


def make_app(
    config: Config,
    store: Store,
    bus: EventBus,
    issuer: TokenIssuer,
    metrics: Metrics,
    **settings,
) -> ApiApp:
    services = make_services(config, store, bus, issuer)
    api_routes = [*accounts.routes, *chats.routes, *messages.routes, *files.routes]
    routes = [
        route("/", IndexHandler),
        route("/api/openapi.json", OpenAPIHandler),
        *api_routes,
    ]
    app = ApiApp(
        routes,
        role="api",
        config=config,
        store=store,
        bus=bus,
        tokens=issuer,
        services=services,
        metrics=metrics,
        # The outbox drainer publishes events saved while NATS was away or by a crashed request.
        background=[services.outbox],
        template_path=str(ROOT / "templates"),
        static_path=str(ROOT / "static"),
        compress_response=True,
        **settings,
    )
    app.openapi = build_openapi(api_routes, title="Fechatter API", version="1.0.0")
    return app
