"""Handlers for outgoing webhooks: create, list, delete, and the log of delivery attempts (workspace owner)."""

from __future__ import annotations

from app.openapi import Operation
from app.services.webhooks_out import WebhookDeliveryList, OutgoingWebhookCreated, OutgoingWebhookIn, OutgoingWebhookList
from app.web import authenticated, route
from roles.api.base import ApiHandler

TAGS = ("webhooks",)


class WebhooksHandler(ApiHandler):
    api_doc = {
        "get": Operation("The workspace's outgoing webhooks (owner)", responses={200: OutgoingWebhookList},
                         errors=(403,), tags=TAGS),
        "post": Operation(
            "Create an outgoing webhook (owner): each matching event is POSTed to `url` as its envelope JSON, "
            "signed `X-Fechatter-Signature: sha256=<HMAC-SHA256 of the body with secret>`; the secret is shown "
            "once. The host must be in webhooks.allowed_hosts (422 url_not_allowed)",
            body=OutgoingWebhookIn, responses={201: OutgoingWebhookCreated}, errors=(400, 403, 409, 422), tags=TAGS,
        ),
    }

    @authenticated
    async def get(self) -> None:
        self.write_json(await self.services.webhooks.list(self.current_user))

    @authenticated
    async def post(self) -> None:
        body = self.parse_body(OutgoingWebhookIn)
        self.write_json(await self.services.webhooks.create(self.current_user, body), status=201)


class WebhookHandler(ApiHandler):
    api_doc = {
        "delete": Operation("Delete an outgoing webhook (owner); its queued deliveries go with it",
                            responses={204: None}, errors=(403, 404), tags=TAGS),
    }

    @authenticated
    async def delete(self, webhook_id: str) -> None:
        await self.services.webhooks.delete(self.current_user, webhook_id)
        self.no_content()


class WebhookDeliveriesHandler(ApiHandler):
    api_doc = {
        "get": Operation("The webhook's last 100 delivery attempts, newest first (owner)",
                         responses={200: WebhookDeliveryList}, errors=(403, 404), tags=TAGS),
    }

    @authenticated
    async def get(self, webhook_id: str) -> None:
        self.write_json(await self.services.webhooks.deliveries(self.current_user, webhook_id))


routes = [
    route("/api/webhooks", WebhooksHandler),
    route("/api/webhooks/{webhook_id}", WebhookHandler),
    route("/api/webhooks/{webhook_id}/deliveries", WebhookDeliveriesHandler),
]
