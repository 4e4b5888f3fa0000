"""Start-up backfill of `content_html` and the thread fields for messages written before rich text and threads."""

from __future__ import annotations

from typing import Any

from pymongo import UpdateOne

from app.richtext import Renderer, mention_targets
from app.store import Store

# Seqs of one chat read per command: a range of the (chat_id, seq) index, its updates one bulk write.
BACKFILL_SEQS = 1000


async def backfill_rich_text(store: Store, renderer: Renderer) -> int:
    """`content_html` (and `thread_root_id: null`, `reply_count: 0`) for the messages without it, streamed chat
    by chat over (chat_id, seq) ranges; idempotent, O(messages / BACKFILL_SEQS) commands. A chat is marked
    (`rich_text: 1`) once done, so later starts read only chats created since.

    An older message's `reply_to` was a quote of another message, from before threads: it stays a plain
    message (not in a thread), as `threads=roots` lists it. Mentions become spans by the users' current
    usernames (the message stores their ids, not the names typed). Returns the messages updated."""
    updated = 0
    async for chat in store.chats.find({"rich_text": {"$exists": False}}, {"last_seq": 1}):
        chat_id, top = chat["_id"], chat.get("last_seq", 0)
        for lo in range(1, top + 1, BACKFILL_SEQS):
            docs = await store.messages.find(
                {"chat_id": {"$eq": chat_id}, "seq": {"$gte": lo, "$lt": lo + BACKFILL_SEQS},
                 "content_html": {"$exists": False}},
                {"content": 1, "mentions": 1, "mentions_all": 1, "deleted": 1},
            ).to_list()
            if not docs:
                continue
            names = await _usernames(store, {uid for doc in docs for uid in doc.get("mentions") or ()})
            updates = [
                UpdateOne({"_id": doc["_id"], "content_html": {"$exists": False}}, {"$set": {
                    "content_html": _html(renderer, doc, names), "thread_root_id": None, "reply_count": 0,
                }})
                for doc in docs
            ]
            result = await store.messages.bulk_write(updates, ordered=False)
            updated += result.modified_count
        await store.chats.update_one({"_id": chat_id}, {"$set": {"rich_text": 1}})
    return updated


async def _usernames(store: Store, user_ids: set[str]) -> dict[str, str]:
    if not user_ids:
        return {}
    return {user["_id"]: user["username"] async for user in
            store.users.find({"_id": {"$in": sorted(user_ids)}}, {"username": 1}) if user.get("username")}


def _html(renderer: Renderer, doc: dict[str, Any], names: dict[str, str]) -> str:
    if doc.get("deleted") or not doc.get("content"):
        return ""
    mentioned = {names[uid]: uid for uid in doc.get("mentions") or () if uid in names}
    return renderer.render(doc["content"], mention_targets(mentioned, bool(doc.get("mentions_all"))))
