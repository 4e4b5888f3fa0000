"""The notify role: holds browsers' SSE streams and pushes each event to the online members of its chat."""

from __future__ import annotations

from app.auth import TokenVerifier
from app.config import Config
from app.events import EventBus
from app.metrics import Metrics
from app.store import Store
from app.web import HealthHandler, MetricsHandler, NotFoundHandler, ReadyHandler, RoleApp, log_request, route


class NotifyApp(RoleApp):
    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass


def make_app(
    config: Config,
    store: Store,
    bus: EventBus,
    verifier: TokenVerifier,
    metrics: Metrics,
    **settings,
) -> NotifyApp:
    routes = [
        route("/health", HealthHandler),
        route("/health/ready", ReadyHandler),
        route("/metrics", MetricsHandler),
        route(r"/api/.*", NotFoundHandler),
    ]
    return NotifyApp(
        routes,
        role="notify",
        config=config,
        store=store,
        bus=bus,
        tokens=verifier,
        metrics=metrics,
        log_function=log_request,
        default_handler_class=NotFoundHandler,
        **settings,
    )
