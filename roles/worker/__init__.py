"""The worker role: delivers events to outgoing webhooks from a durable JetStream consumer shared by every worker."""

from __future__ import annotations

from app.deps import Deps
from app.services.webhooks_out import DeliveryMetrics, WebhookDeliverer
from app.web import RoleApp


class WorkerApp(RoleApp):
    """Answers /health, /health/ready and /metrics; the deliverer runs between start and stop."""

    def __init__(self, deps: Deps, **settings):
        super().__init__([], role="worker", deps=deps, **settings)
        self.deliverer = WebhookDeliverer(deps.store, deps.bus, deps.config, DeliveryMetrics(deps.metrics.registry))

    async def start(self) -> None:
        await self.deliverer.start()

    async def stop(self) -> None:
        await self.deliverer.stop()


def make_app(deps: Deps, **settings) -> WorkerApp:
    return WorkerApp(deps, **settings)
