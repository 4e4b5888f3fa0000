"""Handlers for reactions and pins."""

from __future__ import annotations

from app.openapi import Operation
from app.schemas.messages import PinsPage, PinsQuery
from app.web import authenticated, route
from roles.api.base import ApiHandler

TAGS = ("messages",)


class ReactionHandler(ApiHandler):
    api_doc = {
        "put": Operation(
            "React to a message with one emoji (URL-encoded) or a short name [a-z0-9_+-]{1,32}; idempotent. "
            "At most 20 different emoji per message (422 too_many_reactions); a deleted message is a 404",
            responses={204: None}, errors=(403, 404, 422, 429), tags=TAGS,
        ),
        "delete": Operation("Take the caller's reaction back; idempotent", responses={204: None},
                            errors=(403, 404, 422, 429), tags=TAGS),
    }

    @authenticated
    async def put(self, chat_id: str, message_id: str, emoji: str) -> None:
        await self.services.reactions.add(self.current_user, chat_id, message_id, emoji)
        self.no_content()

    @authenticated
    async def delete(self, chat_id: str, message_id: str, emoji: str) -> None:
        await self.services.reactions.remove(self.current_user, chat_id, message_id, emoji)
        self.no_content()


class PinHandler(ApiHandler):
    api_doc = {
        "put": Operation(
            "Pin a message of the chat; idempotent. Any member, but in a channel of more than 50 members only "
            "its owner and admins", responses={204: None}, errors=(403, 404, 429), tags=TAGS,
        ),
        "delete": Operation("Unpin a message; idempotent, the same rule", responses={204: None},
                            errors=(403, 404, 429), tags=TAGS),
    }

    @authenticated
    async def put(self, chat_id: str, message_id: str) -> None:
        await self.services.pins.pin(self.current_user, chat_id, message_id)
        self.no_content()

    @authenticated
    async def delete(self, chat_id: str, message_id: str) -> None:
        await self.services.pins.unpin(self.current_user, chat_id, message_id)
        self.no_content()


class PinsHandler(ApiHandler):
    api_doc = {
        "get": Operation("The chat's pinned messages, newest pin first; `cursor` is the next_cursor of the last page",
                         query=PinsQuery, responses={200: PinsPage}, errors=(404,), tags=TAGS),
    }

    @authenticated
    async def get(self, chat_id: str) -> None:
        query = self.parse_query(PinsQuery)
        self.write_json(await self.services.pins.list(self.current_user, chat_id, query))


routes = [
    route("/api/chats/{chat_id}/messages/{message_id}/reactions/{emoji}", ReactionHandler),
    route("/api/chats/{chat_id}/pins", PinsHandler),
    route("/api/chats/{chat_id}/pins/{message_id}", PinHandler),
]
