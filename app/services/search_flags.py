"""What search's filters read of a message: `has` booleans and its time in ms, computed whenever it is written."""

from __future__ import annotations

import datetime
import re
from typing import Any

from pymongo import UpdateOne

from app.store import Store

# The fields, one per value of SearchQuery.has: plain booleans, as the embedded store serves no array operator well.
FLAGS = {"file": "has_file", "link": "has_link", "mention": "has_mention"}

# A link is what a reader sees as one: a scheme's URL or a `www.` name, not glued to a word before it
# (an address's `@` or a path's `/`; markdown's `[text](https://…)` holds one), or whatever the message's
# rendering (app.richtext: bare domains too) made an <a> of.
_LINK = re.compile(r"(?<![\w@/.])(?:https?://|www\.)[^\s<>()\[\]]", re.IGNORECASE)


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def created_ms(value: Any) -> int | None:
    """A created_at as ms since the epoch: what `after`/`before` compare. An int, because a datetime range
    on nx-27017 first copies the whole collection into a temporary table (tests/test_search_filters.py)."""
    if not isinstance(value, datetime.datetime):
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    return (value - _EPOCH) // datetime.timedelta(milliseconds=1)


def search_flags(doc: dict[str, Any]) -> dict[str, Any]:
    """The fields of a message document for search: `has` flags of its content, files and resolved
    mentions (all False once deleted), and `created_ms`."""
    fields: dict[str, Any] = dict.fromkeys(FLAGS.values(), False)
    if not doc.get("deleted"):
        fields.update(
            has_file=bool(doc.get("files")),
            has_link=_LINK.search(doc.get("content") or "") is not None or "<a " in (doc.get("content_html") or ""),
            has_mention=bool(doc.get("mentions")) or bool(doc.get("mentions_all")),
        )
    fields["created_ms"] = created_ms(doc.get("created_at"))
    return fields


def flagged(doc: dict[str, Any]) -> dict[str, Any]:
    """The document with its flags (set again from what it holds now: after an edit, mentions resolved…)."""
    doc.update(search_flags(doc))
    return doc


# The backfill reads a chat's messages this many seqs at a time, and writes their fields in one bulk write.
BACKFILL_SEQS = 1000


async def backfill_search_flags(store: Store) -> int:
    """The fields of messages written before them, streamed chat by chat over (chat_id, seq) ranges; idempotent.

    A chat is marked (`search_flags: 1`, an int: the embedded server stores a `$set` bool as 0/1, which its
    `$eq: true` still matches) once its messages are done, so later starts read only the chats created since
    (whose messages have the fields already: a walk of them once). Each range's updates go as one bulk write:
    O(messages / 1000) commands. Returns the messages updated."""
    updated = 0
    async for chat in store.chats.find({"search_flags": {"$exists": False}}, {"last_seq": 1}):
        chat_id, top = chat["_id"], chat.get("last_seq", 0)
        for lo in range(1, top + 1, BACKFILL_SEQS):
            cursor = store.messages.find(
                {"chat_id": {"$eq": chat_id}, "seq": {"$gte": lo, "$lt": lo + BACKFILL_SEQS},
                 "created_ms": {"$exists": False}},
                {"content": 1, "content_html": 1, "files": 1, "mentions": 1, "mentions_all": 1, "deleted": 1,
                 "created_at": 1},
            )
            updates = [UpdateOne({"_id": doc["_id"], "created_ms": {"$exists": False}}, {"$set": search_flags(doc)})
                       async for doc in cursor]
            if updates:
                result = await store.messages.bulk_write(updates, ordered=False)
                updated += result.modified_count
        await store.chats.update_one({"_id": chat_id}, {"$set": {"search_flags": 1}})
    return updated
