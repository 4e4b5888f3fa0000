"""A chat's seq, 1, 2, 3 … with no repeats and no gaps: taking one, send claims, and repairing gaps.

- A seq is taken with one atomic `$inc` of the chat's `last_seq` (find_one_and_update, AFTER), so
  concurrent senders in any number of api processes never get the same one; the message is then
  inserted under a unique (chat_id, seq) index.
- A send with an `idempotency_key` first claims (chat, sender, key) in `store.send_claims` (unique
  `_id`), then takes a seq and records it in the claim, then inserts. A retry finds the message
  (200), or waits for the claim's holder, or — when the holder failed or is older than
  api.outbox_grace_seconds — takes the claim over and reuses its seq: a retry never takes a
  second seq. Claims are kept, so a late retry cannot claim again.
- A seq can still be left without a message when a process dies (or MongoDB goes away) between
  the `$inc` and the insert. Such a gap is repaired with a tombstone (`deleted: true`,
  `content: ""`, `sender_id: null`) once it is older than the grace period, in two places:
  the outbox gives an abandoned `message.created` entry to `on_abandoned`, which fills its seq, and
  the message listing fills any missing seq of its page whose age it can prove (a later message,
  or the chat's last `$inc`, is older than the grace period). A send that finds its seq filled by
  such a tombstone simply takes a new one. A failed insert also tries to fill its seq at once.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import time
from typing import Any, Awaitable, Callable

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError, PyMongoError

from app import events
from app.errors import APIError, not_found
from app.outbox import Abandoned, RepairInfo
from app.schemas.messages import MessageOut, message_out
from app.store import Store, new_id, utcnow

# A send that keeps finding its seq filled by gap repair gives up after this many seqs.
MAX_SEQ_ATTEMPTS = 3
# How often a retry looks again while the claim's holder is mid-send: its message appears in milliseconds.
CLAIM_POLL_SECONDS = 0.05

Insert = Callable[[int], Awaitable[MessageOut]]


def claim_id(chat_id: str, sender_id: str, key: str) -> str:
    return hashlib.sha256(f"{chat_id}\0{sender_id}\0{key}".encode()).hexdigest()


def repair_info(seq: int) -> RepairInfo:
    """What a message's outbox entry stores so `on_abandoned` can fill its seq: `seq` at the top, as always."""
    return {"seq": seq}


class ChatSequence:
    """The send protocol over one chat's seq; the caller brings the insert that saves the message."""

    def __init__(self, store: Store, grace_seconds: float):
        self.store = store
        self.grace = grace_seconds

    async def sent(self, chat_id: str, sender_id: str, key: str) -> dict[str, Any] | None:
        """The message an earlier send with this idempotency key saved, if any."""
        return await self.store.messages.find_one({"chat_id": chat_id, "sender_id": sender_id, "idempotency_key": key})

    async def send(
        self, chat_id: str, workspace_id: str, sender_id: str, key: str | None, insert: Insert
    ) -> tuple[MessageOut, bool]:
        """(message, created): `insert(seq)` under a seq of its own, or the first message of this key."""
        claim: dict[str, Any] | None = None
        seq: int | None = None
        if key is not None:
            claimed = await self.claim(chat_id, sender_id, key)
            if isinstance(claimed, MessageOut):
                return claimed, False
            claim = claimed
            seq = claim.get("seq")
            if seq is not None and await self.store.chats.find_one(
                {"_id": chat_id, "workspace_id": workspace_id}, {"_id": 1}
            ) is None:
                # A retry reusing its claimed seq takes no $inc, which would have told a deleted chat.
                raise not_found("chat")

        for _ in range(MAX_SEQ_ATTEMPTS):
            if seq is None:
                seq = await self.take(chat_id, workspace_id)
                if claim is not None:
                    await self.store.send_claims.update_one(
                        {"_id": claim["_id"], "owner": claim["owner"]}, {"$set": {"seq": seq}}
                    )
            try:
                return await insert(seq), True
            except DuplicateKeyError:
                if key is not None and (first := await self.sent(chat_id, sender_id, key)) is not None:
                    return message_out(first), False
                seq = None  # the seq was filled by gap repair while we were slow: take another
            except PyMongoError:
                await self._after_failed_insert(chat_id, seq, claim)
                raise
        raise APIError(503, "send_failed", "the message could not be saved; retry",
                       headers={"Retry-After": "1"})

    async def take(self, chat_id: str, workspace_id: str) -> int:
        """The chat's next seq; 404 when the chat is gone (or not of that workspace)."""
        # The workspace in the filter keeps the membership's word honest: no seq outside it.
        taken = await self.store.chats.find_one_and_update(
            {"_id": chat_id, "workspace_id": workspace_id},
            {"$inc": {"last_seq": 1}, "$currentDate": {"last_message_at": True}},
            projection={"last_seq": 1},
            return_document=ReturnDocument.AFTER,
        )
        if taken is None:
            raise not_found("chat")  # deleted meanwhile
        return taken["last_seq"]

    async def claim(self, chat_id: str, sender_id: str, key: str) -> dict[str, Any] | MessageOut:
        """The claim of (chat, sender, key) for this request, or the message a previous attempt saved."""
        cid = claim_id(chat_id, sender_id, key)
        owner = new_id()
        deadline = time.monotonic() + self.grace
        while True:
            try:
                doc = {"_id": cid, "chat_id": chat_id, "sender_id": sender_id, "owner": owner,
                       "state": "active", "created_ts": time.time()}
                await self.store.send_claims.insert_one(doc)
                return doc
            except DuplicateKeyError:
                pass
            first = await self.sent(chat_id, sender_id, key)
            if first is not None:
                return message_out(first)
            held = await self.store.send_claims.find_one({"_id": cid})
            if held is None:
                continue
            if held.get("state") == "failed" or time.time() - held.get("created_ts", 0) > self.grace:
                taken = await self.store.send_claims.find_one_and_update(
                    {"_id": cid, "owner": held["owner"]},
                    {"$set": {"owner": owner, "state": "active"}},
                    return_document=ReturnDocument.AFTER,
                )
                if taken is not None:
                    return taken
            if time.monotonic() > deadline:
                raise APIError(409, "send_in_progress",
                               "a message with this idempotency key is still being sent; retry shortly",
                               headers={"Retry-After": "1"})
            await asyncio.sleep(CLAIM_POLL_SECONDS)

    async def _after_failed_insert(self, chat_id: str, seq: int, claim: dict[str, Any] | None) -> None:
        """Best effort; if MongoDB is away, the listing and the drainer repair the gap later."""
        try:
            if claim is not None:
                # The client's retry takes the claim over at once and reuses the seq.
                await self.store.send_claims.update_one(
                    {"_id": claim["_id"], "owner": claim["owner"]}, {"$set": {"state": "failed"}}
                )
            else:
                await self.fill_gap(chat_id, seq)
        except PyMongoError:
            pass

    # -- gap repair --------------------------------------------------------------------------

    async def fill_gap(self, chat_id: str, seq: int) -> bool:
        """Put a tombstone at a seq that has no message; False if a message holds it already."""
        try:
            await self.store.messages.insert_one(
                {
                    "_id": new_id(),
                    "chat_id": chat_id,
                    "seq": seq,
                    "sender_id": None,
                    "content": "",
                    "files": [],
                    "reply_to": None,
                    "created_at": utcnow(),
                    "edited_at": None,
                    "deleted": True,
                    "gap": True,
                }
            )
        except DuplicateKeyError:
            return False
        return True

    async def repair_gaps(self, chat: dict[str, Any], docs: list[dict[str, Any]], lo: int, hi: int) -> bool:
        """Fill the missing seqs lo..hi of a page (`docs`) that are provably older than the grace period."""
        cutoff = utcnow() - datetime.timedelta(seconds=self.grace)
        # Seqs are taken in order, so a missing seq is older than anything taken after it.
        proven_old = isinstance(chat.get("last_message_at"), datetime.datetime) and chat["last_message_at"] < cutoff
        by_seq = {doc["seq"]: doc for doc in docs}
        filled = False
        for seq in range(hi, lo - 1, -1):
            doc = by_seq.get(seq)
            if doc is not None:
                proven_old = proven_old or doc["created_at"] < cutoff
            elif proven_old:
                filled = await self.fill_gap(chat["_id"], seq) or filled
        return filled

    async def on_abandoned(self, entry: Abandoned) -> bool:
        """The outbox's hook: a send died between its $inc and its insert, so fill the seq it took.

        True when a message holds the seq (the send landed after all: the outbox checks again).
        """
        seq = entry.repair.get("seq")
        if entry.event_type != events.MESSAGE_CREATED or entry.chat_id is None or not isinstance(seq, int):
            return False
        return not await self.fill_gap(entry.chat_id, seq)
