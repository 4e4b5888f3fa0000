"""Who may see a chat: membership queries for both roles, and the api's access checks built on them."""

from __future__ import annotations

import asyncio
from typing import Any, Iterable

from app.auth import Identity
from app.errors import forbidden, not_found
from app.schemas.chats import PUBLIC_CHANNEL
from app.schemas.common import valid_id
from app.store import Store


async def user_chat_ids(store: Store, user_id: str) -> set[str]:
    """Every chat the user is a member of, from one document per membership."""
    cursor = store.members.find({"user_id": user_id}, projection={"chat_id": 1, "_id": 0})
    return {doc["chat_id"] async for doc in cursor}


async def is_member(store: Store, chat_id: str, user_id: str) -> bool:
    return await store.members.find_one({"chat_id": chat_id, "user_id": user_id}, projection={"_id": 1}) is not None


async def user_names(store: Store, user_ids: Iterable[str], workspace_id: str) -> list[dict[str, str]]:
    """[{id, fullname}] of those users, limited to one workspace so no other workspace's name can leak."""
    ids = list(user_ids)
    if not ids:
        return []
    cursor = store.users.find(
        {"_id": {"$in": ids}, "workspace_id": workspace_id}, projection={"fullname": 1}
    )
    users = [{"id": doc["_id"], "fullname": doc.get("fullname", "")} async for doc in cursor]
    users.sort(key=lambda user: (user["fullname"].casefold(), user["id"]))
    return users


async def members_among(store: Store, chat_ids: Iterable[str], user_ids: Iterable[str]) -> set[str]:
    """Those of `user_ids` who are members of at least one of `chat_ids` (notify's online-users)."""
    chats, users = list(chat_ids), sorted(user_ids)
    if not chats or not users:
        return set()
    cursor = store.members.find(
        {"chat_id": {"$in": chats}, "user_id": {"$in": users}}, projection={"user_id": 1, "_id": 0}
    )
    return {doc["user_id"] async for doc in cursor}


class ChatAccess:
    """A caller sees chats they belong to and the public channels of their workspace; nothing else exists.

    Every answer for a chat the caller may not see is the same 404, so none tells that it exists.
    """

    def __init__(self, store: Store):
        self.store = store

    async def access(self, user: Identity, chat_id: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """(chat, membership or None); 404 unless the caller is a member or it is a public channel of theirs."""
        if not valid_id(chat_id):
            raise not_found("chat")
        chat, member = await asyncio.gather(
            self.store.chats.find_one({"_id": chat_id}),
            self.store.members.find_one({"chat_id": chat_id, "user_id": user.user_id}),
        )
        if chat is None or chat["workspace_id"] != user.workspace_id:
            raise not_found("chat")
        if member is None and chat["type"] != PUBLIC_CHANNEL:
            raise not_found("chat")
        return chat, member

    async def require_member(self, user: Identity, chat_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        chat, member = await self.access(user, chat_id)
        if member is None:
            # Only a visible public channel gets here, so the 403 reveals nothing.
            raise forbidden("join this channel first")
        return chat, member

    async def membership(self, user: Identity, chat_id: str) -> dict[str, Any]:
        """The caller's membership (at least _id, workspace_id, role), without reading the chat: a send's path.

        The chat is read only when there is no membership, to answer exactly as require_member
        does (404, or 403 for a public channel of the caller's workspace).
        """
        if not valid_id(chat_id):
            raise not_found("chat")
        # Only what a send needs: less for MongoDB to encode and the driver to decode.
        member = await self.store.members.find_one(
            {"chat_id": chat_id, "user_id": user.user_id}, {"workspace_id": 1, "role": 1}
        )
        if member is None or member.get("workspace_id") != user.workspace_id:
            _, member = await self.require_member(user, chat_id)
        return member
