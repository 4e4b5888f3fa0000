"""Handlers for chats, their members and joining public channels."""

from __future__ import annotations

from app.openapi import Operation
from app.schemas.chats import (
    ChannelsPage,
    ChatCreateIn,
    ChatOut,
    ChatSettingsIn,
    ChatSettingsOut,
    ChatSummaryOut,
    ChatUpdateIn,
    MemberOut,
    MemberRoleIn,
    MembersAddIn,
    MembersPage,
)
from app.schemas.common import PageQuery
from app.web import authenticated, route
from roles.api.base import ApiHandler

TAGS = ("chats",)


class ChatsHandler(ApiHandler):
    api_doc = {
        "get": Operation(
            "The caller's chats with unread and mention counts, the caller's read mark and settings, and last "
            "messages, most recent activity first",
            responses={200: list[ChatSummaryOut]}, tags=TAGS,
        ),
        "post": Operation(
            "Create a chat (members excludes the caller); an existing direct chat is returned with 200",
            body=ChatCreateIn, responses={201: ChatOut, 200: ChatOut}, errors=(409, 429), tags=TAGS,
        ),
    }

    @authenticated
    async def get(self) -> None:
        self.write_json(await self.services.chats.list_mine(self.current_user))

    @authenticated
    async def post(self) -> None:
        body = self.parse_body(ChatCreateIn)
        chat, created = await self.services.chats.create(self.current_user, body)
        self.write_json(chat, status=201 if created else 200)


class PublicChannelsHandler(ApiHandler):
    api_doc = {
        "get": Operation(
            "Public channels of the caller's workspace that the caller has not joined, by name; with limit or "
            "cursor a page {channels, next_cursor}, else the array (at most 1,000, a Link header to the rest)",
            query=PageQuery, responses={200: list[ChatOut] | ChannelsPage}, tags=TAGS,
        )
    }

    @authenticated
    async def get(self) -> None:
        query = self.parse_query(PageQuery)
        page = await self.services.chats.list_public(self.current_user, query)
        self.write_page(query, page, ChannelsPage(channels=page.items, next_cursor=page.next_cursor))


class ChatHandler(ApiHandler):
    api_doc = {
        "get": Operation("A chat the caller belongs to, or a public channel of their workspace",
                         responses={200: ChatOut}, errors=(404,), tags=TAGS),
        "patch": Operation(
            "Rename a chat, or change its description or topic (owner or admin; 403 chat_archived when archived); "
            "`default` makes a public channel one every user joining the workspace joins (workspace owner only)",
            body=ChatUpdateIn, responses={200: ChatOut}, errors=(403, 404, 409, 429), tags=TAGS),
        "delete": Operation("Delete a chat with its messages; owner only", responses={204: None},
                            errors=(403, 404), tags=TAGS),
    }

    @authenticated
    async def get(self, chat_id: str) -> None:
        self.write_json(await self.services.chats.get(self.current_user, chat_id))

    @authenticated
    async def patch(self, chat_id: str) -> None:
        body = self.parse_body(ChatUpdateIn)
        self.write_json(await self.services.chats.update(self.current_user, chat_id, body))

    @authenticated
    async def delete(self, chat_id: str) -> None:
        await self.services.chats.delete(self.current_user, chat_id)
        self.no_content()


class MembersHandler(ApiHandler):
    api_doc = {
        "get": Operation(
            "Members of a chat; with limit or cursor a page {members, next_cursor} by user id, else the array "
            "in join order (at most 1,000, a Link header to the rest)",
            query=PageQuery, responses={200: list[MemberOut] | MembersPage}, errors=(404,), tags=TAGS,
        ),
        "post": Operation(
            "Add members (not to direct chats; private channels: owner or admin only); answers all members",
            body=MembersAddIn, responses={200: list[MemberOut]}, errors=(403, 404, 429), tags=TAGS,
        ),
    }

    @authenticated
    async def get(self, chat_id: str) -> None:
        query = self.parse_query(PageQuery)
        page = await self.services.chats.members(self.current_user, chat_id, query)
        self.write_page(query, page, MembersPage(members=page.items, next_cursor=page.next_cursor))

    @authenticated
    async def post(self, chat_id: str) -> None:
        body = self.parse_body(MembersAddIn)
        self.write_json(await self.services.chats.add_members(self.current_user, chat_id, body))


class MemberHandler(ApiHandler):
    api_doc = {
        "delete": Operation(
            "Remove a member (owner or admin), or leave (your own user id); the owner leaves only after giving "
            "the ownership to another member (409 owner_must_transfer)",
            responses={204: None}, errors=(403, 404, 409), tags=TAGS,
        ),
        "patch": Operation(
            "Change a member's role (the owner only); role owner transfers the ownership, the owner becoming an "
            "admin; every member hears member.updated",
            body=MemberRoleIn, responses={200: MemberOut}, errors=(403, 404, 409, 422, 429), tags=TAGS,
        ),
    }

    @authenticated
    async def patch(self, chat_id: str, user_id: str) -> None:
        body = self.parse_body(MemberRoleIn)
        self.write_json(await self.services.chats.set_role(self.current_user, chat_id, user_id, body))

    @authenticated
    async def delete(self, chat_id: str, user_id: str) -> None:
        await self.services.chats.remove_member(self.current_user, chat_id, user_id)
        self.no_content()


class ChatSettingsHandler(ApiHandler):
    api_doc = {
        "patch": Operation(
            "Change the caller's own settings of a chat they belong to: notify level (all, mentions, none) and "
            "mute; every tab of theirs hears chat.settings",
            body=ChatSettingsIn, responses={200: ChatSettingsOut}, errors=(404, 409), tags=TAGS,
        )
    }

    @authenticated
    async def patch(self, chat_id: str) -> None:
        body = self.parse_body(ChatSettingsIn)
        self.write_json(await self.services.chats.update_settings(self.current_user, chat_id, body))


class ArchiveHandler(ApiHandler):
    archived = True
    api_doc = {
        "post": Operation(
            "Archive a chat (owner or admin): read-only (403 chat_archived on writes) and listed last",
            responses={200: ChatOut}, errors=(403, 404, 422, 429), tags=TAGS,
        )
    }

    @authenticated
    async def post(self, chat_id: str) -> None:
        self.write_json(await self.services.chats.set_archived(self.current_user, chat_id, self.archived))


class UnarchiveHandler(ArchiveHandler):
    archived = False
    api_doc = {
        "post": Operation("Unarchive a chat (owner or admin)", responses={200: ChatOut}, errors=(403, 404, 422, 429),
                          tags=TAGS)
    }


class JoinHandler(ApiHandler):
    api_doc = {
        "post": Operation("Join a public channel of your workspace", responses={200: ChatOut},
                          errors=(404, 429), tags=TAGS)
    }

    @authenticated
    async def post(self, chat_id: str) -> None:
        self.write_json(await self.services.chats.join(self.current_user, chat_id))


routes = [
    route("/api/chats", ChatsHandler),
    route("/api/channels/public", PublicChannelsHandler),
    route("/api/chats/{chat_id}", ChatHandler),
    route("/api/chats/{chat_id}/members", MembersHandler),
    route("/api/chats/{chat_id}/members/{user_id}", MemberHandler),
    route("/api/chats/{chat_id}/join", JoinHandler),
    route("/api/chats/{chat_id}/archive", ArchiveHandler),
    route("/api/chats/{chat_id}/unarchive", UnarchiveHandler),
    route("/api/chats/{chat_id}/settings", ChatSettingsHandler),
]
