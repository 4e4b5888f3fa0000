"""Who may see a chat: membership queries for both roles, and the api's access checks built on them."""

from __future__ import annotations

import asyncio
from typing import Any, Iterable

from app.auth import Identity
from app.errors import APIError, forbidden, not_found
from app.schemas.chats import PUBLIC_CHANNEL
from app.schemas.common import valid_id
from app.store import Store


# A user's memberships (and their chats) in one reply, not a find and getMores: each command costs ~1 ms
# on the embedded server whatever it returns.
MEMBERSHIPS_BATCH = 2000


async def user_chat_ids(store: Store, user_id: str) -> set[str]:
    """Every chat the user is a member of: the distinct chat ids of their memberships."""
    # {"$eq": v}, never a plain {f: v}: the embedded server compiles plain equality to an array-containment
    # test no index serves (docs/embedded-mongo.md); on MongoDB the two mean the same for a scalar field.
    # distinct: the ids alone in one reply, no document decoded per membership (tests/test_store_conformance.py).
    return set(await store.members.distinct("chat_id", {"user_id": {"$eq": user_id}}))


async def is_member(store: Store, chat_id: str, user_id: str) -> bool:
    member = await store.members.find_one(
        {"chat_id": {"$eq": chat_id}, "user_id": {"$eq": user_id}}, projection={"_id": 1}
    )
    return member is not None


async def user_names(store: Store, user_ids: Iterable[str], workspace_id: str) -> list[dict[str, str]]:
    """[{id, fullname}] of those users, limited to one workspace so no other workspace's name can leak."""
    ids = list(user_ids)
    if not ids:
        return []
    cursor = store.users.find(
        {"_id": {"$in": ids}, "workspace_id": {"$eq": workspace_id}}, projection={"fullname": 1}
    )
    users = [{"id": doc["_id"], "fullname": doc.get("fullname", "")} async for doc in cursor]
    users.sort(key=lambda user: (user["fullname"].casefold(), user["id"]))
    return users


async def members_among(store: Store, chat_ids: Iterable[str], user_ids: Iterable[str]) -> set[str]:
    """Those of `user_ids` who are members of at least one of `chat_ids` (notify's online-users).

    One read per chat or per user, whichever there are fewer of, each a range of a compound members
    index with the other list as a filter on the rows of that range. A lone `$in` on a field other
    than _id is a scan of every membership on the embedded server (docs/embedded-mongo.md).
    """
    chats, users = sorted(set(chat_ids)), sorted(set(user_ids))
    if not chats or not users:
        return set()
    found: set[str] = set()
    if len(chats) <= len(users):
        for chat_id in chats:
            cursor = store.members.find(
                {"chat_id": {"$eq": chat_id}, "user_id": {"$in": users}}, projection={"user_id": 1, "_id": 0}
            )
            found.update([doc["user_id"] async for doc in cursor])
            users = [user_id for user_id in users if user_id not in found]
            if not users:
                break
        return found
    for user_id in users:
        member = await store.members.find_one(
            {"user_id": {"$eq": user_id}, "chat_id": {"$in": chats}}, projection={"_id": 1}
        )
        if member is not None:
            found.add(user_id)
    return found


def chat_archived() -> APIError:
    return APIError(403, "chat_archived", "this chat is archived and read-only; unarchive it to write in it")


def writable(doc: dict[str, Any]) -> None:
    """The rule of archived chats, for every write into one (send, edit, delete, react, typing, members, changes):
    403 `chat_archived`. `doc` is the chat or the caller's membership, which carries the chat's `archived`
    (ChatService.set_archived keeps both), so a send's path reads nothing more for it."""
    if doc.get("archived"):
        raise chat_archived()


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
            self.store.members.find_one({"chat_id": {"$eq": chat_id}, "user_id": {"$eq": user.user_id}}),
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
            {"chat_id": {"$eq": chat_id}, "user_id": {"$eq": user.user_id}},
            {"workspace_id": 1, "role": 1, "archived": 1},
        )
        if member is None or member.get("workspace_id") != user.workspace_id:
            _, member = await self.require_member(user, chat_id)
        return member

    async def writable(self, user: Identity, chat_id: str) -> dict[str, Any]:
        """`membership`, and 403 `chat_archived` when the chat is archived: every write into a chat calls this."""
        member = await self.membership(user, chat_id)
        writable(member)
        return member
