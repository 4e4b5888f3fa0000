"""Messages: sending through the chat's sequence, listing, edits, tombstones, read marks, typing and search.

The seq protocol (no repeats, no gaps, idempotent retries) is app.services.sequence's; a page of
the listing is a seq range, and a listing that finds a provably old gap has the sequence fill it.
"""

from __future__ import annotations

from typing import Any

import msgspec

from app import events
from app.auth import Identity
from app.config import Config
from app.errors import APIError, conflict, forbidden, invalid, not_found
from app.outbox import Check, Outbox
from app.schemas.chats import MANAGERS
from app.schemas.common import valid_id
from app.schemas.messages import (
    MessageCreateIn,
    MessageListQuery,
    MessageOut,
    MessagePage,
    MessageUpdateIn,
    SearchOut,
    SearchQuery,
    message_out,
)
from app.services import membership
from app.services.files import FileService
from app.services.membership import ChatAccess
from app.services.ratelimit import RateLimiter
from app.services.sequence import ChatSequence, repair_info
from app.store import Store, new_id, utcnow


class _NoChange(Exception):
    """The change turned out to change nothing: no event."""


class MessageService:
    def __init__(
        self,
        store: Store,
        outbox: Outbox,
        access: ChatAccess,
        sequence: ChatSequence,
        files: FileService,
        limiter: RateLimiter,
        config: Config,
    ):
        self.store = store
        self.outbox = outbox
        self.access = access
        self.sequence = sequence
        self.files = files
        self.limiter = limiter
        self.config = config

    # -- send --------------------------------------------------------------------------------

    async def send(self, user: Identity, chat_id: str, body: MessageCreateIn) -> tuple[MessageOut, bool]:
        """(message, created); a retry with the same idempotency key gets the first message and False."""
        # The membership alone authorizes (it carries the chat's workspace); the chat is not read:
        # the seq's $inc, filtered on that workspace, tells a chat deleted meanwhile.
        member = await self.access.membership(user, chat_id)
        chat = {"_id": chat_id, "workspace_id": member["workspace_id"]}
        key = body.idempotency_key
        if key is not None:
            first = await self.sequence.sent(chat_id, user.user_id, key)
            if first is not None:
                return message_out(first), False
        if self.limiter.enabled:  # off (limits.enabled=false): not even the key is built
            await self.limiter.hit(
                f"messages:user:{user.user_id}", limit=self.config.limits.messages_per_minute_per_user,
                window=60, what="messages",
            )
        await self._check_references(user, chat_id, body)
        return await self.sequence.send(
            chat_id, chat["workspace_id"], user.user_id, key, lambda seq: self._insert(user, chat, body, seq)
        )

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

        await self.outbox.apply(event, Check("messages", doc["_id"]), change, repair=repair_info(seq))
        return out

    async def _check_references(self, user: Identity, chat_id: str, body: MessageCreateIn) -> None:
        if body.reply_to is not None:
            target = await self.store.messages.find_one({"_id": body.reply_to, "chat_id": chat_id}, {"_id": 1})
            if target is None:
                raise invalid("reply_to", "no such message in this chat")
        if body.files:
            await self.files.check_ids(user.workspace_id, list(dict.fromkeys(body.files)))

    # -- list --------------------------------------------------------------------------------

    async def list(self, user: Identity, chat_id: str, query: MessageListQuery) -> MessagePage:
        """Seqs are dense, so a page is a seq range: no cursor to forge, `has_more` from the range."""
        chat, _ = await self.access.access(user, chat_id)
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
        if len(docs) < hi - lo + 1 and await self.sequence.repair_gaps(chat, docs, lo, hi):
            docs = await self._range(chat_id, lo, hi)
        return MessagePage(messages=[message_out(doc) for doc in docs], has_more=has_more)

    async def _range(self, chat_id: str, lo: int, hi: int) -> list[dict[str, Any]]:
        cursor = self.store.messages.find({"chat_id": chat_id, "seq": {"$gte": lo, "$lte": hi}})
        return [doc async for doc in cursor.sort([("seq", 1)])]

    # -- edit, delete ------------------------------------------------------------------------

    async def _message(self, chat_id: str, message_id: str) -> dict[str, Any]:
        doc = None
        if valid_id(message_id):
            doc = await self.store.messages.find_one({"_id": message_id, "chat_id": chat_id})
        if doc is None or doc.get("gap"):
            raise not_found("message")
        return doc

    async def edit(self, user: Identity, chat_id: str, message_id: str, body: MessageUpdateIn) -> MessageOut:
        member = await self.access.membership(user, chat_id)
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
        member = await self.access.membership(user, chat_id)
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
        chat, member = await self.access.require_member(user, chat_id)
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
        member = await self.access.membership(user, chat_id)
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
