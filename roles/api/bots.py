"""Handlers for bot users and incoming webhooks (the chat's settings, and the secret URL they post to)."""

from __future__ import annotations

from app.openapi import Operation
from app.schemas.accounts import UserOut
from app.schemas.bots import BotCreatedOut, BotCreateIn, HookPostIn, WebhookCreatedOut, WebhookCreateIn, WebhookOut
from app.schemas.messages import MessageOut
from app.web import authenticated, route
from roles.api.base import ApiHandler

TAGS = ("bots",)


class BotsHandler(ApiHandler):
    api_doc = {
        "get": Operation("The workspace's bots (workspace owner only)", responses={200: list[UserOut]},
                         errors=(403,), tags=TAGS),
        "post": Operation(
            "Create a bot user (workspace owner only); its Bearer token, good on the api and on notify's /events, "
            "is in this answer only (stored as a SHA-256)",
            body=BotCreateIn, responses={201: BotCreatedOut}, errors=(403, 409), tags=TAGS),
    }

    @authenticated
    async def get(self) -> None:
        self.write_json(await self.services.bots.list(self.current_user))

    @authenticated
    async def post(self) -> None:
        body = self.parse_body(BotCreateIn)
        self.write_json(await self.services.bots.create(self.current_user, body), status=201)


class BotHandler(ApiHandler):
    api_doc = {
        "delete": Operation("Revoke a bot (workspace owner only): its token is refused at once, its streams end",
                            responses={204: None}, errors=(403, 404), tags=TAGS),
    }

    @authenticated
    async def delete(self, bot_id: str) -> None:
        await self.services.bots.revoke(self.current_user, bot_id)
        self.no_content()


class WebhooksHandler(ApiHandler):
    api_doc = {
        "get": Operation("A chat's incoming webhooks (its owner or admins)", responses={200: list[WebhookOut]},
                         errors=(403, 404), tags=TAGS),
        "post": Operation(
            "Create an incoming webhook (chat owner or admin): a bot member of the chat and the secret URL "
            "`/hooks/<secret>` that posts as it, shown in this answer only",
            body=WebhookCreateIn, responses={201: WebhookCreatedOut}, errors=(403, 404, 429), tags=TAGS),
    }

    @authenticated
    async def get(self, chat_id: str) -> None:
        self.write_json(await self.services.incoming_webhooks.list(self.current_user, chat_id))

    @authenticated
    async def post(self, chat_id: str) -> None:
        body = self.parse_body(WebhookCreateIn)
        self.write_json(await self.services.incoming_webhooks.create(self.current_user, chat_id, body), status=201)


class WebhookHandler(ApiHandler):
    api_doc = {
        "delete": Operation("Delete an incoming webhook: its URL answers 404 from now on",
                            responses={204: None}, errors=(403, 404), tags=TAGS),
    }

    @authenticated
    async def delete(self, chat_id: str, hook_id: str) -> None:
        await self.services.incoming_webhooks.delete(self.current_user, chat_id, hook_id)
        self.no_content()


class HookHandler(ApiHandler):
    api_doc = {
        "post": Operation(
            "Post a message as the webhook's bot, with a send's validation, idempotency and rate limits; "
            "the secret URL is the credential (404 when unknown or deleted)",
            body=HookPostIn, responses={201: MessageOut, 200: MessageOut}, auth=False, errors=(403, 404, 409, 429),
            tags=TAGS),
    }

    async def post(self, secret: str) -> None:
        body = self.parse_body(HookPostIn)
        message, created = await self.services.incoming_webhooks.post(secret, body)
        self.write_json(message, status=201 if created else 200)


routes = [
    route("/api/bots", BotsHandler),
    route("/api/bots/{bot_id}", BotHandler),
    route("/api/chats/{chat_id}/webhooks", WebhooksHandler),
    route("/api/chats/{chat_id}/webhooks/{hook_id}", WebhookHandler),
    route("/hooks/{secret}", HookHandler),
]
