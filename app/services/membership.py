"""Read-only membership queries the notify role needs: a user's chats, membership checks, display names."""

from __future__ import annotations

from typing import Iterable

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
