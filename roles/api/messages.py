"""Handlers for messages, read marks, typing and search."""

from __future__ import annotations

from app.openapi import Operation
from app.schemas.messages import (
    MentionsPage,
    MentionsQuery,
    MessageCreateIn,
    MessageListQuery,
    MessageOut,
    MessagePage,
    MessageUpdateIn,
    MessageVersionOut,
    ReadIn,
    RepliesQuery,
    SearchOut,
    SearchQuery,
)
from app.web import authenticated, route
from roles.api.base import ApiHandler

TAGS = ("messages",)


class MessagesHandler(ApiHandler):
    api_doc = {
        "get": Operation(
            "A page of messages in ascending seq: the latest, or before / after a seq; with threads=roots only "
            "the messages that are not replies in a thread (roots carry reply_count and last_reply_at)",
            query=MessageListQuery, responses={200: MessagePage}, errors=(404,), tags=TAGS,
        ),
        "post": Operation(
            "Send a message; a retry with the same idempotency_key answers the first message with 200",
            body=MessageCreateIn, responses={201: MessageOut, 200: MessageOut}, errors=(403, 404, 409, 429),
            tags=TAGS,
        ),
    }

    @authenticated
    async def get(self, chat_id: str) -> None:
        query = self.parse_query(MessageListQuery)
        self.write_json(await self.services.messages.list(self.current_user, chat_id, query))

    @authenticated
    async def post(self, chat_id: str) -> None:
        body = self.parse_body(MessageCreateIn)
        message, created = await self.services.messages.send(self.current_user, chat_id, body)
        self.write_json(message, status=201 if created else 200)


class MessageHandler(ApiHandler):
    api_doc = {
        "patch": Operation("Edit a message; sender only", body=MessageUpdateIn, responses={200: MessageOut},
                           errors=(403, 404, 409, 429), tags=TAGS),
        "delete": Operation("Delete a message, leaving a tombstone; sender or chat owner/admin",
                            responses={204: None}, errors=(403, 404, 409, 429), tags=TAGS),
    }

    @authenticated
    async def patch(self, chat_id: str, message_id: str) -> None:
        body = self.parse_body(MessageUpdateIn)
        self.write_json(await self.services.messages.edit(self.current_user, chat_id, message_id, body))

    @authenticated
    async def delete(self, chat_id: str, message_id: str) -> None:
        await self.services.messages.delete(self.current_user, chat_id, message_id)
        self.no_content()


class RepliesHandler(ApiHandler):
    api_doc = {
        "get": Operation(
            "The replies in a message's thread, in seq order after `after` (a reply's id names its thread too); "
            "a message sent with reply_to is a reply in the thread of reply_to's root",
            query=RepliesQuery, responses={200: MessagePage}, errors=(404,), tags=TAGS,
        )
    }

    @authenticated
    async def get(self, chat_id: str, message_id: str) -> None:
        query = self.parse_query(RepliesQuery)
        self.write_json(await self.services.messages.replies(self.current_user, chat_id, message_id, query))


class HistoryHandler(ApiHandler):
    api_doc = {
        "get": Operation(
            "Every version of a message's text, oldest first: the original (edited_at = its created_at), each "
            "edit's text, and the current text last (a message never edited has one version); at most 100, the "
            "newest; 404 for a deleted message",
            responses={200: list[MessageVersionOut]}, errors=(404,), tags=TAGS,
        )
    }

    @authenticated
    async def get(self, chat_id: str, message_id: str) -> None:
        self.write_json(await self.services.messages.history(self.current_user, chat_id, message_id))


class ReadHandler(ApiHandler):
    api_doc = {
        "post": Operation("Move the caller's read mark forward (never backwards)", body=ReadIn,
                          responses={204: None}, errors=(403, 404, 429), tags=TAGS)
    }

    @authenticated
    async def post(self, chat_id: str) -> None:
        body = self.parse_body(ReadIn)
        await self.services.messages.read(self.current_user, chat_id, body.seq)
        self.no_content()


class TypingHandler(ApiHandler):
    api_doc = {
        "post": Operation("Tell the chat the caller is typing; nothing is stored", responses={204: None},
                          errors=(403, 404, 429), tags=TAGS)
    }

    @authenticated
    async def post(self, chat_id: str) -> None:
        await self.services.messages.typing(self.current_user, chat_id)
        self.no_content()


class SearchHandler(ApiHandler):
    api_doc = {
        "get": Operation(
            "Messages of the caller's chats (public channels only once joined; never a deleted message) holding "
            "every word of q (any case) and passing every filter given (from, has, after, before, chat_id), "
            "newest first, each with the highlights of its words; a short page with a next_cursor when the scan "
            "budget ran out first. q may be empty when a filter is given",
            query=SearchQuery, responses={200: SearchOut}, errors=(404, 429), tags=TAGS,
        )
    }

    @authenticated
    async def get(self) -> None:
        query = self.parse_query(SearchQuery)
        self.write_json(await self.services.search.search(self.current_user, query))


class MentionsHandler(ApiHandler):
    api_doc = {
        "get": Operation(
            "Messages of the caller's chats that mention them (by @username, or @channel/@here/@everyone), newest "
            "first; `before` is the next_cursor of the previous page",
            query=MentionsQuery, responses={200: MentionsPage}, tags=TAGS,
        )
    }

    @authenticated
    async def get(self) -> None:
        query = self.parse_query(MentionsQuery)
        self.write_json(await self.services.mentions.list(self.current_user, query))


routes = [
    route("/api/chats/{chat_id}/messages", MessagesHandler),
    route("/api/chats/{chat_id}/messages/{message_id}", MessageHandler),
    route("/api/chats/{chat_id}/messages/{message_id}/replies", RepliesHandler),
    route("/api/chats/{chat_id}/messages/{message_id}/history", HistoryHandler),
    route("/api/chats/{chat_id}/read", ReadHandler),
    route("/api/chats/{chat_id}/typing", TypingHandler),
    route("/api/search/messages", SearchHandler),
    route("/api/mentions", MentionsHandler),
]
