"""Start-up migrations: counters of chats and memberships written before they were kept (issues 12, 14), usernames, search flags."""

from __future__ import annotations

import logging
from typing import Any

from app.richtext import Renderer
from app.schemas.chats import DIRECT, GROUP
from app.schemas.messages import stored_message
from app.services.accounts import backfill_user_name_keys, backfill_usernames
from app.services.chats import ensure_default_channels
from app.services.rich_backfill import backfill_rich_text
from app.services.search_flags import backfill_search_flags
from app.services.sequence import DELETED_SEQS_MAX
from app.store import Store

log = logging.getLogger("fechatter.migrations")


async def migrate(store: Store, renderer: Renderer | None = None) -> dict[str, int]:
    """Idempotent, and safe to run from several processes at once: every write is conditional on
    the field it adds being absent. Run before the api serves (old processes stopped first: their
    sends would not keep the counters). O(documents of the chats without counters), once."""
    chats = 0
    async for chat in store.chats.find({"msg_count": {"$exists": False}}):
        chats += await migrate_chat(store, chat)
    # Memberships added to a counted chat by an old process: in old data every seq is a countable
    # message, so the ord at a mark is the mark; their own messages above the mark are not known.
    members = 0
    async for doc in store.members.find({"read_ord": {"$exists": False}}, {"last_read_seq": 1}):
        result = await store.members.update_one(
            {"_id": doc["_id"], "read_ord": {"$exists": False}},
            {"$set": {"read_ord": doc.get("last_read_seq", 0), "own_seqs": [], "own_n": 0}},
        )
        members += result.modified_count
    # Users stored before the name_key paging key: without it they would be missing from /api/users.
    users = await backfill_user_name_keys(store)
    # Mention counters (app.services.mentions): the arrays must exist, as the embedded server's
    # $addToSet on a missing field does nothing. Nothing was ever mentioned before them, so every
    # document gets the same value: one update_many per collection, not a command per document.
    members_done = await store.members.update_many(
        {"mention_seqs": {"$exists": False}}, {"$set": {"mention_seqs": [], "mention_n": 0}})
    chats_done = await store.chats.update_many(
        {"mention_all_seqs": {"$exists": False}}, {"$set": {"mention_all_seqs": [], "mention_all_ids": []}})
    mentions = members_done.modified_count + chats_done.modified_count
    usernames = await backfill_usernames(store)
    # Workspaces made before default channels get their #general (issue 16). Logged, not returned: callers
    # compare the counters' dict.
    workspaces = await ensure_default_channels(store)
    if workspaces:
        log.info("default channels for %d workspaces", workspaces)
    # Search's `has` booleans of messages written before them (issue 17). Logged, not returned, as above.
    flags = await backfill_search_flags(store)
    if flags:
        log.info("search flags set on %d messages", flags)
    # content_html and thread fields of messages from before rich text and threads (issue 15). The renderer
    # is the caller's, else one built for this run (its build costs ~50 ms once).
    rich = await backfill_rich_text(store, renderer or Renderer())
    if rich:
        log.info("content_html rendered for %d messages", rich)
    if chats or members or users or mentions or usernames:
        log.info("counters built for %d chats and %d further memberships; %d users keyed; mention counters for "
                 "%d documents; %d usernames", chats, members, users, mentions, usernames)
    return {"chats": chats, "members": members, "users": users, "mentions": mentions, "usernames": usernames}


async def migrate_chat(store: Store, chat: dict[str, Any]) -> int:
    """The counters of one chat from its messages and memberships; the chat's own write comes last,
    so a migration that dies half-way is done again at the next start."""
    chat_id = chat["_id"]
    last_seq = chat.get("last_seq", 0)
    members = [
        doc async for doc in store.members.find({"chat_id": {"$eq": chat_id}}).sort([("joined_at", 1), ("_id", 1)])
    ]
    # Every seq of an old chat was a user's send, so ord(seq) == seq and msg_count == last_seq.
    marks = {doc["user_id"]: doc.get("last_read_seq", 0) for doc in members if "read_ord" not in doc}
    # One pass over the chat's messages keeping only what the counters need, not the messages.
    deleted: list[int] = []
    own: dict[str, list[int]] = {}
    cursor = store.messages.find({"chat_id": {"$eq": chat_id}}, {"seq": 1, "sender_id": 1, "deleted": 1, "_id": 0})
    async for doc in cursor:
        sender = doc.get("sender_id")
        if doc.get("deleted"):
            deleted.append(doc["seq"])
        elif sender in marks and doc["seq"] > marks[sender]:
            own.setdefault(sender, []).append(doc["seq"])
    deleted.sort()

    plain_marks: set[int] = set()
    for member in members:
        if "read_ord" in member:
            continue
        mark = marks[member["user_id"]]
        above = sorted(own.get(member["user_id"], ()))
        if not above:
            plain_marks.add(mark)
            continue
        await store.members.update_one(
            {"_id": member["_id"], "read_ord": {"$exists": False}},
            {"$set": {"read_ord": mark, "own_seqs": above, "own_n": len(above)}},
        )
    for mark in plain_marks:
        await store.members.update_many(
            {"chat_id": {"$eq": chat_id}, "read_ord": {"$exists": False}, "last_read_seq": {"$eq": mark}},
            {"$set": {"read_ord": mark, "own_seqs": [], "own_n": 0}},
        )

    kept = deleted[-(DELETED_SEQS_MAX // 2):] if len(deleted) > DELETED_SEQS_MAX else deleted
    floor = deleted[-len(kept) - 1] if len(kept) < len(deleted) else 0
    counters: dict[str, Any] = {
        "msg_count": last_seq,
        "deleted_seqs": kept,
        "deleted_floor": floor,
        "deleted_total": len(deleted),
        "member_count": len(members),
        "last_message": None,
        "last_message_id": None,
        "last_message_rev": 0,
    }
    if chat.get("type") in (DIRECT, GROUP):
        counters["member_ids"] = [doc["user_id"] for doc in members]
    last = await store.messages.find_one({"chat_id": {"$eq": chat_id}}, sort=[("seq", -1)])
    if last is not None:
        counters.update(
            last_message=stored_message(last), last_message_id=last["_id"], last_message_rev=last.get("rev", 0)
        )
    result = await store.chats.update_one({"_id": chat_id, "msg_count": {"$exists": False}}, {"$set": counters})
    return result.modified_count
