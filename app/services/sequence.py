"""A chat's seq, 1, 2, 3 … with no repeats and no gaps, and the chat's counters kept with it.

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

Counters, so a chat list reads no message (docs/architecture.md, "Unread counts"):
- The same `$inc` adds 1 to `msg_count` (countable messages ever given a seq; every send is one)
  and sets `last_message` (the message as served, without its seq: it is the one at `last_seq`)
  with `last_message_id` / `last_message_rev` (the message's count of changes) for the conditional
  updates of an edit or a delete. The message stores `ord` = `msg_count` after its take: ord(seq X) counts seq <= X.
- `deleted_seqs` holds the deleted countable seqs above `deleted_floor` (bounded by
  DELETED_SEQS_MAX; the oldest half is dropped by raising the floor); a gap tombstone is one.
- A member's `read_ord` is the ord at its `last_read_seq`; a send moves the sender's mark to its message
  (posting reads the chat, as in Slack and Mattermost). `own_seqs` holds the seqs of its own messages
  above its mark that a send did not move past: those of a member coming back (ChatService._add_member),
  or of a retried send whose ord is unknown, at most about OWN_SEQS_MAX.
  `unread` is then msg_count - read_ord - |deleted above mark| - |own above mark, not deleted|.
- Mentions (app.services.mentions) keep `mention_seqs` on the member and `mention_all_seqs` /
  `mention_all_ids` on the chat; every move of a mark here prunes the member's at or below it.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError, PyMongoError

from app import events
from app.errors import APIError, not_found
from app.outbox import Abandoned, RepairInfo
from app.file_links import FileLinks
from app.schemas.messages import MessageOut, message_out, stored_message
from app.store import Store, new_id, utcnow

# A send that keeps finding its seq filled by gap repair gives up after this many seqs.
MAX_SEQ_ATTEMPTS = 3
# How often a retry looks again while the claim's holder is mid-send: its message appears in milliseconds.
CLAIM_POLL_SECONDS = 0.05
# A chat keeps the seqs of this many deletions above its floor; a mark below the floor costs one count.
DELETED_SEQS_MAX = 500
# A member keeps about this many of its own seqs above its mark; past that a send moves its mark.
OWN_SEQS_MAX = 200

Insert = Callable[[int], Awaitable[MessageOut]]


def claim_id(chat_id: str, sender_id: str, key: str) -> str:
    return hashlib.sha256(f"{chat_id}\0{sender_id}\0{key}".encode()).hexdigest()


def repair_info(seq: int) -> RepairInfo:
    """What a message's outbox entry stores so `on_abandoned` can fill its seq: `seq` at the top, as always."""
    return {"seq": seq}


def new_chat_counters(member_count: int, member_ids: list[str] | None) -> dict[str, Any]:
    """The counter fields of a new chat document; `member_ids` only for direct and group chats.

    Every array exists from the start: the embedded server's `$addToSet` on a missing field does nothing.
    """
    counters: dict[str, Any] = {
        "last_seq": 0, "msg_count": 0, "deleted_seqs": [], "deleted_floor": 0, "deleted_total": 0,
        "last_message": None, "last_message_id": None, "last_message_rev": 0,
        "member_count": member_count, "mention_all_seqs": [], "mention_all_ids": [],
    }
    if member_ids is not None:
        counters["member_ids"] = list(member_ids)
    return counters


def new_member_counters() -> dict[str, Any]:
    """The read-mark fields of a new membership: nothing read, nothing of its own or mentioning it above the mark."""
    return {"last_read_seq": 0, "read_ord": 0, "own_seqs": [], "own_n": 0, "mention_seqs": [], "mention_n": 0}


def unread_count(chat: dict[str, Any], member: dict[str, Any]) -> int | None:
    """Others' countable, non-deleted messages above the member's mark; None when the mark is below the
    chat's deleted floor (then `count_unread` answers, with one count)."""
    mark = member.get("last_read_seq", 0)
    last = chat.get("last_seq", 0)
    if mark >= last:
        return 0
    if mark < chat.get("deleted_floor", 0) or "msg_count" not in chat or "read_ord" not in member:
        return None
    deleted = [seq for seq in chat.get("deleted_seqs") or () if seq > mark]
    own = [seq for seq in member.get("own_seqs") or () if seq > mark]
    if own and deleted:
        own = set(own).difference(deleted)  # a deleted own message (or a gap) is subtracted once
    unread = chat["msg_count"] - member["read_ord"] - len(deleted) - len(own)
    return max(0, min(unread, last - mark))


async def count_unread(store: Store, chat: dict[str, Any], member: dict[str, Any], user_id: str) -> int:
    """The exact count for a mark below the chat's deleted floor: one `count` over (mark, last_seq],
    O(messages in that range); never count_documents, an aggregate copying the collection here."""
    reply = await store.db.command(
        "count", store.messages.name,
        query={
            "chat_id": {"$eq": chat["_id"]},
            "seq": {"$gt": member.get("last_read_seq", 0), "$lte": chat.get("last_seq", 0)},
            "deleted": {"$eq": False},
            "sender_id": {"$ne": user_id},
            # System lines are never unread; only they have `system` (a $ne on `kind` misses the messages that
            # have no kind on the embedded server, where a missing field is never "not equal").
            "system": {"$exists": False},
        },
    )
    return int(reply.get("n", 0))


@dataclass
class Draft:
    """A message being sent: its document without seq and ord (the sequence completes them), and its
    version (its message.created event's id; a new one for each seq the send tries)."""

    doc: dict[str, Any]
    version: str
    ord: int | None = None

    def last_message(self) -> dict[str, Any]:
        return stored_message(self.doc)


@dataclass(frozen=True)
class Taken:
    seq: int  # the last seq taken
    ord: int  # the chat's msg_count after the take


class ChatSequence:
    """The send protocol over one chat's seq and the chat's counters; the caller brings the insert."""

    def __init__(self, store: Store, grace_seconds: float, links: FileLinks | None = None):
        self.store = store
        self.links = links  # signs the file URLs of a send answered again
        self.grace = grace_seconds

    async def sent(self, chat_id: str, sender_id: str, key: str) -> dict[str, Any] | None:
        """The message an earlier send with this idempotency key saved, if any."""
        return await self.store.messages.find_one(
            {"chat_id": {"$eq": chat_id}, "sender_id": {"$eq": sender_id}, "idempotency_key": {"$eq": key}}
        )

    async def send(
        self, chat_id: str, workspace_id: str, sender_id: str, key: str | None, insert: Insert,
        draft: Draft | None = None,
    ) -> tuple[MessageOut, bool]:
        """(message, created): `insert(seq)` under a seq of its own, or the first message of this key.

        With a `draft`, the take also sets the chat's last message to it, and `draft.ord` is set
        before `insert` runs.
        """
        claim: dict[str, Any] | None = None
        seq: int | None = None
        if key is not None:
            claimed = await self.claim(chat_id, sender_id, key)
            if isinstance(claimed, MessageOut):
                return claimed, False
            claim = claimed
            seq = claim.get("seq")
            if seq is not None and await self.store.chats.find_one(
                {"_id": chat_id, "workspace_id": {"$eq": workspace_id}}, {"_id": 1}
            ) is None:
                # A retry reusing its claimed seq takes no $inc, which would have told a deleted chat.
                raise not_found("chat")
            if seq is not None and draft is not None:
                draft.ord = claim.get("ord")

        reused = seq is not None
        for attempt in range(MAX_SEQ_ATTEMPTS):
            if seq is None:
                if draft is not None and attempt:
                    draft.version = new_id()  # the failed attempt's outbox entry may linger under the old one
                taken = await self.take_many(chat_id, workspace_id, 1, draft)
                seq, reused = taken.seq, False
                if draft is not None:
                    draft.ord = taken.ord
                if claim is not None:
                    await self.store.send_claims.update_one(
                        {"_id": claim["_id"], "owner": {"$eq": claim["owner"]}},
                        {"$set": {"seq": seq, "ord": taken.ord}},
                    )
            try:
                out = await insert(seq)
            except DuplicateKeyError:
                if key is not None and (first := await self.sent(chat_id, sender_id, key)) is not None:
                    return message_out(first, self.links), False
                seq = None  # the seq was filled by gap repair while we were slow: take another
                continue
            except PyMongoError:
                await self._after_failed_insert(chat_id, seq, claim)
                raise
            if reused and draft is not None:
                # The $inc that took this seq described the first attempt's message.
                await self.set_last_message(chat_id, {**draft.last_message(), "seq": seq}, draft.doc["_id"], 0,
                                            at_seq=seq)
            return out, True
        raise APIError(503, "send_failed", "the message could not be saved; retry",
                       headers={"Retry-After": "1"})

    async def take(self, chat_id: str, workspace_id: str) -> int:
        """The chat's next seq; 404 when the chat is gone (or not of that workspace)."""
        return (await self.take_many(chat_id, workspace_id, 1)).seq

    async def take_many(self, chat_id: str, workspace_id: str, n: int, last: Draft | None = None, *,
                        countable: bool = True) -> Taken:
        """n consecutive seqs (the last one is returned) and n countable messages, in one $inc.

        `last`, the message that gets the last of them, becomes the chat's last message. Not `countable`
        (system messages, never unread): the seqs are taken and msg_count stays, so no unread count moves.
        """
        update: dict[str, Any] = {
            "$inc": {"last_seq": n, "msg_count": n if countable else 0}, "$currentDate": {"last_message_at": True},
        }
        if last is not None:
            update["$set"] = {
                "last_message": last.last_message(), "last_message_id": last.doc["_id"], "last_message_rev": 0,
            }
        # The workspace in the filter keeps the membership's word honest: no seq outside it.
        taken = await self.store.chats.find_one_and_update(
            {"_id": chat_id, "workspace_id": {"$eq": workspace_id}},
            update,
            projection={"last_seq": 1, "msg_count": 1},
            return_document=ReturnDocument.AFTER,
        )
        if taken is None:
            raise not_found("chat")  # deleted meanwhile
        return Taken(taken["last_seq"], taken["msg_count"])

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
                return message_out(first, self.links)
            held = await self.store.send_claims.find_one({"_id": cid})
            if held is None:
                continue
            if held.get("state") == "failed" or time.time() - held.get("created_ts", 0) > self.grace:
                taken = await self.store.send_claims.find_one_and_update(
                    {"_id": cid, "owner": {"$eq": held["owner"]}},
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
                    {"_id": claim["_id"], "owner": {"$eq": claim["owner"]}}, {"$set": {"state": "failed"}}
                )
            else:
                await self.fill_gap(chat_id, seq)
        except PyMongoError:
            pass

    # -- the chat's counters -----------------------------------------------------------------

    async def set_last_message(
        self, chat_id: str, stored: dict[str, Any], message_id: str, rev: int, *,
        at_seq: int | None = None, replacing: str | None = None,
    ) -> bool:
        """Replace the chat's last message, only while it is still the one at `at_seq` (a retry, a gap)
        or the message `replacing` at an older `rev` (an edit, a delete: each adds 1 to the message's)."""
        query: dict[str, Any] = {"_id": chat_id}
        if at_seq is not None:
            query["last_seq"] = {"$eq": at_seq}
        if replacing is not None:
            # Two edits' updates may arrive here in either order: the later change wins.
            query["last_message_id"] = {"$eq": replacing}
            query["last_message_rev"] = {"$lt": rev}
        result = await self.store.chats.update_one(
            query, {"$set": {"last_message": stored, "last_message_id": message_id, "last_message_rev": rev}}
        )
        return result.modified_count == 1

    async def count_deleted(self, chat_id: str, seq: int) -> dict[str, Any] | None:
        """Count a countable message at `seq` as deleted, once (the caller won the tombstone's write).

        The chat's counters after it (deleted_seqs, deleted_floor, last_message_id), or None.
        """
        after = await self.store.chats.find_one_and_update(
            {"_id": chat_id, "deleted_floor": {"$lt": seq}},
            {"$addToSet": {"deleted_seqs": seq}, "$inc": {"deleted_total": 1}},
            projection={"deleted_seqs": 1, "deleted_floor": 1, "last_message_id": 1},
            return_document=ReturnDocument.AFTER,
        )
        if after is None:
            # At or below the floor (or a chat from before counters: the migration counts it).
            await self.store.chats.update_one(
                {"_id": chat_id, "deleted_floor": {"$gte": seq}}, {"$inc": {"deleted_total": 1}}
            )
            return None
        seqs = sorted(after.get("deleted_seqs") or [])
        if len(seqs) > DELETED_SEQS_MAX:
            floor = seqs[len(seqs) // 2 - 1]
            # One update moves the floor and drops what is now below it: never counted twice or lost.
            await self.store.chats.update_one(
                {"_id": chat_id, "deleted_floor": {"$eq": after.get("deleted_floor", 0)}},
                {"$set": {"deleted_floor": floor}, "$pull": {"deleted_seqs": {"$lte": floor}}},
            )
        return after

    async def ord_at(self, chat: dict[str, Any], seq: int) -> int:
        """ord(seq): the countable messages with a seq <= `seq` (<= the chat's last_seq), for a read mark."""
        if seq <= 0:
            return 0
        if chat.get("msg_count") == chat.get("last_seq"):
            # Every seq this chat ever gave is a countable message (today every chat's: each take adds
            # as many to both), so ord is seq exactly, without reading the message.
            return seq
        doc = await self.store.messages.find_one(
            {"chat_id": {"$eq": chat["_id"]}, "seq": {"$eq": seq}}, {"ord": 1}
        )
        if doc is not None and isinstance(doc.get("ord"), int):
            return doc["ord"]
        # A gap, a send in flight, or a chat from before counters (no msg_count yet): at most its seq.
        return min(seq, chat.get("msg_count", seq))

    async def sender_saw(self, member_id: str, seq: int, ord_: int | None) -> int | None:
        """After a send: the sender has read the chat up to their message (as Slack and Mattermost mark
        it on every post), so its mark moves there, in one command; the mark it moved from, or None.

        Without the message's ord (a retry reusing a claim that recorded none) the mark cannot move: the
        seq goes to `own_seqs` instead, while there is room, so the sender's own message never counts.
        The counts of own_n and mention_n restart at 0: what stays above the new mark is only what
        concurrent sends added, which only loosens their caps a little.
        """
        if ord_ is None:
            await self.store.members.update_one(
                {"_id": member_id, "last_read_seq": {"$lt": seq}, "own_n": {"$lt": OWN_SEQS_MAX}},
                {"$addToSet": {"own_seqs": seq}, "$inc": {"own_n": 1}},
            )
            return None
        before = await self.store.members.find_one_and_update(
            {"_id": member_id, "last_read_seq": {"$lt": seq}},
            {"$set": {"last_read_seq": seq, "read_ord": ord_, "own_n": 0, "mention_n": 0},
             "$pull": {"own_seqs": {"$lte": seq}, "mention_seqs": {"$lte": seq}}},
            projection={"last_read_seq": 1, "_id": 0},
            return_document=ReturnDocument.BEFORE,
        )
        return None if before is None else before.get("last_read_seq", 0)

    async def senders_saw(self, chat_id: str, last_seq_of: dict[str, Taken]) -> None:
        """After a bulk append: each sender's mark moves to its last message of the batch."""
        for user_id, taken in last_seq_of.items():
            await self.store.members.update_one(
                {"chat_id": {"$eq": chat_id}, "user_id": {"$eq": user_id}, "last_read_seq": {"$lt": taken.seq}},
                {"$set": {"last_read_seq": taken.seq, "read_ord": taken.ord, "own_n": 0, "mention_n": 0},
                 "$pull": {"own_seqs": {"$lte": taken.seq}, "mention_seqs": {"$lte": taken.seq}}},
            )

    # -- gap repair --------------------------------------------------------------------------

    async def fill_gap(self, chat_id: str, seq: int, countable: bool = True) -> bool:
        """Put a tombstone at a seq that has no message; False if a message holds it already."""
        tombstone = {
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
            "version": new_id(),
        }
        try:
            await self.store.messages.insert_one(tombstone)
        except DuplicateKeyError:
            return False
        # The send that died took its seq as a countable message: it counts as deleted (a system one did not).
        if countable:
            await self.count_deleted(chat_id, seq)
        await self.set_last_message(chat_id, stored_message(tombstone), tombstone["_id"], 0, at_seq=seq)
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
        return not await self.fill_gap(entry.chat_id, seq, countable=entry.repair.get("countable", 1) != 0)


def by_sender(docs: Iterable[dict[str, Any]]) -> dict[str, Taken]:
    """Each sender's last (seq, ord) among `docs`."""
    last: dict[str, Taken] = {}
    for doc in docs:
        sender = doc.get("sender_id")
        if sender is not None and (sender not in last or last[sender].seq < doc["seq"]):
            last[sender] = Taken(doc["seq"], doc["ord"])
    return last
