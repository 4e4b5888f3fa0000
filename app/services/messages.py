"""Messages: gap-free per-chat seq, idempotent send, edits, tombstones, read marks, typing and search.

How seq stays 1, 2, 3 … with no repeats and no gaps:

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
  the outbox drainer fills the seq of an abandoned `message.created` entry, and the message
  listing fills any missing seq of its page whose age it can prove (a later message, or the
  chat's last `$inc`, is older than the grace period). A send that finds its seq filled by such
  a tombstone simply takes a new one. A failed insert also tries to fill its seq at once.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import re
import time
from typing import TYPE_CHECKING, Any

import msgspec
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError, PyMongoError

from app import events
from app.auth import Identity
from app.config import Config
from app.errors import APIError, conflict, forbidden, invalid, not_found
from app.schemas.messages import (
    MessageCreateIn,
    MessageListQuery,
    MessageOut,
    MessagePage,
    MessageUpdateIn,
    SearchOut,
    SearchQuery,
)
from app.schemas.chats import MANAGERS
from app.services import membership
from app.services.outbox import Check, Outbox
from app.store import Store, isoformat, new_id, utcnow

if TYPE_CHECKING:
    from app.services.chats import ChatService
    from app.services.files import FileService
    from app.services.ratelimit import RateLimiter

VALID_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# A send that keeps finding its seq filled by gap repair gives up after this many seqs.
MAX_SEQ_ATTEMPTS = 3


def valid_id(value: str) -> bool:
    """Ids in paths: anything else is a 404 without asking MongoDB."""
    return bool(VALID_ID.match(value))


def message_out(doc: dict[str, Any]) -> MessageOut:
    return MessageOut(
        id=doc["_id"],
        chat_id=doc["chat_id"],
        seq=doc["seq"],
        sender_id=doc.get("sender_id"),
        content=doc.get("content", ""),
        files=list(doc.get("files") or []),
        reply_to=doc.get("reply_to"),
        created_at=isoformat(doc["created_at"]),
        edited_at=isoformat(doc.get("edited_at")),
        deleted=bool(doc.get("deleted")),
    )


def _claim_id(chat_id: str, sender_id: str, key: str) -> str:
    return hashlib.sha256(f"{chat_id}\0{sender_id}\0{key}".encode()).hexdigest()


class _NoChange(Exception):
    """The change turned out to change nothing: no event."""


class MessageService:
    def __init__(
        self,
        store: Store,
        outbox: Outbox,
        chats: "ChatService",
        files: "FileService",
        limiter: "RateLimiter",
        config: Config,
    ):
        self.store = store
        self.outbox = outbox
        self.chats = chats
        self.files = files
        self.limiter = limiter
        self.config = config
        self.grace = config.api.outbox_grace_seconds
        outbox.repair_message_gap = self.fill_gap

    # -- send --------------------------------------------------------------------------------

    async def send(self, user: Identity, chat_id: str, body: MessageCreateIn) -> tuple[MessageOut, bool]:
        """(message, created); a retry with the same idempotency key gets the first message and False."""
        # The membership alone authorizes (it carries the chat's workspace); the chat is not read:
        # the seq's $inc, filtered on that workspace, tells a chat deleted meanwhile.
        member = await self.chats.membership(user, chat_id)
        chat = {"_id": chat_id, "workspace_id": member["workspace_id"]}
        key = body.idempotency_key
        if key is not None:
            first = await self._by_key(chat_id, user.user_id, key)
            if first is not None:
                return message_out(first), False
        if self.limiter.enabled:  # off (limits.enabled=false): not even the key is built
            await self.limiter.hit(
                f"messages:user:{user.user_id}", limit=self.config.limits.messages_per_minute_per_user,
                window=60, what="messages",
            )
        await self._check_references(user, chat_id, body)

        claim: dict[str, Any] | None = None
        seq: int | None = None
        if key is not None:
            claimed = await self._claim(chat_id, user.user_id, key)
            if isinstance(claimed, MessageOut):
                return claimed, False
            claim = claimed
            seq = claim.get("seq")
            if seq is not None and await self.store.chats.find_one(
                {"_id": chat_id, "workspace_id": chat["workspace_id"]}, {"_id": 1}
            ) is None:
                # A retry reusing its claimed seq takes no $inc, which would have told a deleted chat.
                raise not_found("chat")

        for _ in range(MAX_SEQ_ATTEMPTS):
            if seq is None:
                seq = await self._next_seq(chat)
                if claim is not None:
                    await self.store.send_claims.update_one(
                        {"_id": claim["_id"], "owner": claim["owner"]}, {"$set": {"seq": seq}}
                    )
            try:
                return await self._insert(user, chat, body, seq), True
            except DuplicateKeyError:
                if key is not None and (first := await self._by_key(chat_id, user.user_id, key)) is not None:
                    return message_out(first), False
                seq = None  # the seq was filled by gap repair while we were slow: take another
            except PyMongoError:
                await self._after_failed_insert(chat_id, seq, claim)
                raise
        raise APIError(503, "send_failed", "the message could not be saved; retry",
                       headers={"Retry-After": "1"})

    async def _next_seq(self, chat: dict[str, Any]) -> int:
        # The workspace in the filter keeps the membership's word honest: no seq outside it.
        taken = await self.store.chats.find_one_and_update(
            {"_id": chat["_id"], "workspace_id": chat["workspace_id"]},
            {"$inc": {"last_seq": 1}, "$currentDate": {"last_message_at": True}},
            projection={"last_seq": 1},
            return_document=ReturnDocument.AFTER,
        )
        if taken is None:
            raise not_found("chat")  # deleted meanwhile
        return taken["last_seq"]

    async def _insert(self, user: Identity, chat: dict[str, Any], body: MessageCreateIn, seq: int) -> MessageOut:
        doc: dict[str, Any] = {
            "_id": new_id(),
            "chat_id": chat["_id"],
            "seq": seq,
            "sender_id": user.user_id,
            "content": body.content,
            "files": list(dict.fromkeys(body.files)),
            "reply_to": body.reply_to,
            "created_at": utcnow(),
            "edited_at": None,
            "deleted": False,
        }
        if body.idempotency_key is not None:
            doc["idempotency_key"] = body.idempotency_key
        out = message_out(doc)
        event = events.make_event(
            events.MESSAGE_CREATED, msgspec.to_builtins(out),
            chat_id=chat["_id"], workspace_id=chat["workspace_id"], actor_id=user.user_id,
        )
        doc["version"] = event.id

        async def change() -> None:
            await self.store.messages.insert_one(doc)

        await self.outbox.apply(event, Check("messages", doc["_id"]), change, seq=seq)
        return out

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

    async def _by_key(self, chat_id: str, sender_id: str, key: str) -> dict[str, Any] | None:
        return await self.store.messages.find_one({"chat_id": chat_id, "sender_id": sender_id, "idempotency_key": key})

    async def _claim(self, chat_id: str, sender_id: str, key: str) -> dict[str, Any] | MessageOut:
        """The claim of (chat, sender, key) for this request, or the message a previous attempt saved."""
        claim_id = _claim_id(chat_id, sender_id, key)
        owner = new_id()
        deadline = time.monotonic() + self.grace
        while True:
            try:
                doc = {"_id": claim_id, "chat_id": chat_id, "sender_id": sender_id, "owner": owner,
                       "state": "active", "created_ts": time.time()}
                await self.store.send_claims.insert_one(doc)
                return doc
            except DuplicateKeyError:
                pass
            first = await self._by_key(chat_id, sender_id, key)
            if first is not None:
                return message_out(first)
            held = await self.store.send_claims.find_one({"_id": claim_id})
            if held is None:
                continue
            if held.get("state") == "failed" or time.time() - held.get("created_ts", 0) > self.grace:
                taken = await self.store.send_claims.find_one_and_update(
                    {"_id": claim_id, "owner": held["owner"]},
                    {"$set": {"owner": owner, "state": "active"}},
                    return_document=ReturnDocument.AFTER,
                )
                if taken is not None:
                    return taken
            if time.monotonic() > deadline:
                raise APIError(409, "send_in_progress",
                               "a message with this idempotency key is still being sent; retry shortly",
                               headers={"Retry-After": "1"})
            await asyncio.sleep(0.05)  # the holder is mid-send: its message appears in milliseconds

    async def _check_references(self, user: Identity, chat_id: str, body: MessageCreateIn) -> None:
        if body.reply_to is not None:
            target = await self.store.messages.find_one({"_id": body.reply_to, "chat_id": chat_id}, {"_id": 1})
            if target is None:
                raise invalid("reply_to", "no such message in this chat")
        if body.files:
            await self.files.check_ids(user.workspace_id, list(dict.fromkeys(body.files)))

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

    # -- list --------------------------------------------------------------------------------

    async def list(self, user: Identity, chat_id: str, query: MessageListQuery) -> MessagePage:
        """Seqs are dense, so a page is a seq range: no cursor to forge, `has_more` from the range."""
        chat, _ = await self.chats.access(user, chat_id)
        if query.before is not None and query.after is not None:
            raise APIError(422, "validation_failed", "give before or after, not both",
                           fields={"before": "give before or after, not both"})
        last = chat.get("last_seq", 0)
        if query.after is not None:
            lo = query.after + 1
            hi = min(last, query.after + query.limit)
            has_more = hi < last
        else:
            hi = last if query.before is None else min(query.before - 1, last)
            lo = max(1, hi - query.limit + 1)
            has_more = lo > 1
        if hi < lo:
            return MessagePage(messages=[], has_more=False)
        docs = await self._range(chat_id, lo, hi)
        if len(docs) < hi - lo + 1 and await self._repair_gaps(chat, docs, lo, hi):
            docs = await self._range(chat_id, lo, hi)
        return MessagePage(messages=[message_out(doc) for doc in docs], has_more=has_more)

    async def _range(self, chat_id: str, lo: int, hi: int) -> list[dict[str, Any]]:
        cursor = self.store.messages.find({"chat_id": chat_id, "seq": {"$gte": lo, "$lte": hi}})
        return [doc async for doc in cursor.sort([("seq", 1)])]

    async def _repair_gaps(self, chat: dict[str, Any], docs: list[dict[str, Any]], lo: int, hi: int) -> bool:
        """Fill the missing seqs of a page that are provably older than the grace period."""
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

    # -- edit, delete ------------------------------------------------------------------------

    async def _message(self, chat_id: str, message_id: str) -> dict[str, Any]:
        doc = None
        if valid_id(message_id):
            doc = await self.store.messages.find_one({"_id": message_id, "chat_id": chat_id})
        if doc is None or doc.get("gap"):
            raise not_found("message")
        return doc

    async def edit(self, user: Identity, chat_id: str, message_id: str, body: MessageUpdateIn) -> MessageOut:
        member = await self.chats.membership(user, chat_id)
        doc = await self._message(chat_id, message_id)
        if doc["sender_id"] != user.user_id:
            raise forbidden("only the sender may edit a message")
        if doc.get("deleted"):
            raise conflict("message_deleted", "the message was deleted")
        event_id = new_id()
        edited = {**doc, "content": body.content, "edited_at": utcnow(), "version": event_id}
        out = message_out(edited)
        event = events.make_event(
            events.MESSAGE_UPDATED, msgspec.to_builtins(out),
            chat_id=chat_id, workspace_id=member["workspace_id"], actor_id=user.user_id, event_id=event_id,
        )
        await self.outbox.apply(
            event, Check("messages", message_id, "eq", "version", event_id), self._replace(doc, edited)
        )
        return out

    async def delete(self, user: Identity, chat_id: str, message_id: str) -> None:
        member = await self.chats.membership(user, chat_id)
        doc = await self._message(chat_id, message_id)
        if doc["sender_id"] != user.user_id and member["role"] not in MANAGERS:
            raise forbidden("only the sender or the chat's owner or admins may delete a message")
        if doc.get("deleted"):
            return
        event_id = new_id()
        tombstone = {**doc, "content": "", "files": [], "deleted": True, "version": event_id}
        event = events.make_event(
            events.MESSAGE_DELETED, {"id": message_id, "chat_id": chat_id, "seq": doc["seq"]},
            chat_id=chat_id, workspace_id=member["workspace_id"], actor_id=user.user_id, event_id=event_id,
        )
        await self.outbox.apply(
            event, Check("messages", message_id, "eq", "version", event_id), self._replace(doc, tombstone)
        )

    def _replace(self, old: dict[str, Any], new: dict[str, Any]):
        async def change() -> None:
            # The whole document, so booleans and datetimes stay typed; the version guards against
            # a concurrent edit or delete being overwritten.
            result = await self.store.messages.replace_one({"_id": old["_id"], "version": old.get("version")}, new)
            if result.matched_count == 0:
                raise conflict("message_changed", "the message changed meanwhile; reload and retry")

        return change

    # -- read marks, typing ------------------------------------------------------------------

    async def read(self, user: Identity, chat_id: str, seq: int) -> None:
        chat, member = await self.chats.require_member(user, chat_id)
        if seq > chat.get("last_seq", 0):
            raise invalid("seq", "beyond the chat's latest message")
        if seq <= member.get("last_read_seq", 0):
            return  # a read mark never goes backwards
        event = events.make_event(
            events.READ, {"chat_id": chat_id, "user_id": user.user_id, "seq": seq},
            chat_id=chat_id, workspace_id=chat["workspace_id"], actor_id=user.user_id,
        )

        async def change() -> None:
            result = await self.store.members.update_one(
                {"_id": member["_id"], "last_read_seq": {"$lt": seq}}, {"$set": {"last_read_seq": seq}}
            )
            if result.modified_count == 0:
                raise _NoChange()

        try:
            await self.outbox.apply(event, Check("members", member["_id"], "gte", "last_read_seq", seq), change)
        except _NoChange:
            pass

    async def typing(self, user: Identity, chat_id: str) -> None:
        member = await self.chats.membership(user, chat_id)
        await self.outbox.publish_ephemeral(
            events.make_event(
                events.TYPING, {"chat_id": chat_id, "user_id": user.user_id},
                chat_id=chat_id, workspace_id=member["workspace_id"], actor_id=user.user_id,
            )
        )

    # -- search ------------------------------------------------------------------------------

    async def search(self, user: Identity, query: SearchQuery) -> SearchOut:
        """Text search over the chats the caller belongs to, newest first."""
        text = query.q.strip()
        limit = self.config.limits.search_query_max_chars
        if not text:
            raise invalid("q", "required")
        if len(text) > limit:
            raise APIError(422, "validation_failed", f"the search query is longer than {limit} characters",
                           fields={"q": f"at most {limit} characters"})
        if query.chat_id is not None:
            if not valid_id(query.chat_id) or not await membership.is_member(self.store, query.chat_id, user.user_id):
                raise not_found("chat")
            chat_ids = [query.chat_id]
        else:
            chat_ids = list(await membership.user_chat_ids(self.store, user.user_id))
        if not chat_ids:
            return SearchOut(messages=[])
        cursor = self.store.messages.find(
            {"$text": {"$search": text}, "chat_id": {"$in": chat_ids}, "deleted": False}
        )
        docs = [doc async for doc in cursor.sort([("created_at", -1), ("_id", -1)]).limit(query.limit)]
        return SearchOut(messages=[message_out(doc) for doc in docs])
