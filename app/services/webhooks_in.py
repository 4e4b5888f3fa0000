"""Incoming webhooks: a secret URL per chat that posts, through the normal send, as the webhook's own bot."""

from __future__ import annotations

import hashlib
import math
import secrets
from typing import Any

from app.auth import Identity
from app.errors import forbidden, invalid, not_found
from app.schemas.bots import HookPostIn, WebhookCreatedOut, WebhookCreateIn, WebhookOut
from app.schemas.chats import DIRECT, MANAGERS, MembersAddIn
from app.schemas.messages import MessageCreateIn, MessageOut
from app.services.bots import BotService
from app.services.chats import ChatService
from app.services.membership import ChatAccess, writable
from app.services.messages import MessageService
from app.store import Store, isoformat, new_id, new_secret, utcnow

HOOK_PATH = "/hooks/"


def secret_hash(secret: str) -> str:
    """The stored form, looked up by equality: the secret never sits in the database, and finding a row by
    its hash leaks nothing an attacker could use to guess the next byte (no byte-wise compare of secrets)."""
    return hashlib.sha256(secret.encode()).hexdigest()


class IncomingWebhooks:
    """Create, list and delete a chat's incoming webhooks (its owner or admins), and post through one."""

    def __init__(self, store: Store, access: ChatAccess, chats: ChatService, messages: MessageService,
                 bots: BotService):
        self.store = store
        self.access = access
        self.chats = chats
        self.messages = messages
        self.bots = bots

    async def _require_manager(self, me: Identity, chat_id: str) -> dict[str, Any]:
        chat, member = await self.access.require_member(me, chat_id)
        if member["role"] not in MANAGERS:
            raise forbidden("only the chat's owner or an admin manages its webhooks")
        return chat

    async def create(self, me: Identity, chat_id: str, body: WebhookCreateIn) -> WebhookCreatedOut:
        chat = await self._require_manager(me, chat_id)
        if chat["type"] == DIRECT:
            raise invalid("chat_id", "a direct chat takes no webhooks")
        writable(chat)
        hook_id, secret = new_id(), new_secret(32)
        bot, _token = await self.bots.make_bot(
            chat["workspace_id"], body.name, f"hook-{secrets.token_hex(5)}", created_by=me.user_id,
            extra={"webhook_id": hook_id})
        # Added like a person, by the caller: the chat shows "… added <hook>". Refused (a limit), no bot is left.
        try:
            await self.chats.add_members(me, chat_id, MembersAddIn(user_ids=[bot["_id"]]))
        except BaseException:
            await self.store.users.delete_one({"_id": bot["_id"]})
            raise
        await self.store.incoming_webhooks.insert_one({
            "_id": hook_id, "chat_id": chat_id, "workspace_id": chat["workspace_id"], "name": body.name.strip(),
            "bot_id": bot["_id"], "secret_hash": secret_hash(secret), "created_by": me.user_id,
            "created_at": utcnow(),
        })
        return WebhookCreatedOut(id=hook_id, url=HOOK_PATH + secret, name=body.name.strip(), bot_id=bot["_id"])

    async def list(self, me: Identity, chat_id: str) -> list[WebhookOut]:
        await self._require_manager(me, chat_id)
        cursor = self.store.incoming_webhooks.find({"chat_id": {"$eq": chat_id}})
        docs = sorted([d async for d in cursor], key=lambda d: d["_id"])
        return [WebhookOut(id=d["_id"], chat_id=d["chat_id"], name=d["name"], bot_id=d["bot_id"],
                           created_at=isoformat(d["created_at"])) for d in docs]

    async def delete(self, me: Identity, chat_id: str, hook_id: str) -> None:
        await self._require_manager(me, chat_id)
        doc = await self.store.incoming_webhooks.find_one({"_id": {"$eq": hook_id}, "chat_id": {"$eq": chat_id}})
        if doc is None:
            raise not_found("webhook")
        await self.store.incoming_webhooks.delete_one({"_id": hook_id})
        await self.bots.deactivate(doc["bot_id"])

    async def post(self, secret: str, body: HookPostIn) -> tuple[MessageOut, bool]:
        """(message, created) as the hook's bot; an unknown or deleted secret is 404."""
        doc = await self.store.incoming_webhooks.find_one({"secret_hash": {"$eq": secret_hash(secret)}})
        if doc is None:
            raise not_found("webhook")
        bot = Identity(user_id=doc["bot_id"], workspace_id=doc["workspace_id"], expires_at=math.inf, is_bot=True)
        return await self.messages.send(
            bot, doc["chat_id"], MessageCreateIn(content=body.content, idempotency_key=body.idempotency_key))
