"""Messages: sending through the chat's sequence, listing, edits, tombstones, read marks and typing.

The seq protocol (no repeats, no gaps, idempotent retries) and the chat's counters are
app.services.sequence's; a page of the listing is a seq range, and a listing that finds a provably
old gap has the sequence fill it. `message_doc` is the one builder of a message document, for a send
and for `append_many` (seeding, imports) alike.
"""

from __future__ import annotations

import asyncio
import datetime
from dataclasses import dataclass, field
from typing import Any, Sequence

import msgspec
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from app import events
from app.auth import Identity
from app.config import Config
from app.errors import APIError, conflict, forbidden, invalid, not_found
from app.outbox import Check, Outbox
from app.schemas.chats import MANAGERS
from app.schemas.common import valid_id
from app.schemas.messages import (
    SYSTEM_KIND,
    MessageCreateIn,
    MessageListQuery,
    MessageOut,
    MessagePage,
    MessageUpdateIn,
    MessageVersionOut,
    RepliesQuery,
    ThreadUpdatedOut,
    message_out,
    stored_message,
)
from app.services.files import FileService
from app.services.membership import ChatAccess
from app.richtext import Renderer, mention_targets, plain
from app.services.mentions import NOBODY, Mentioned, MentionService
from app.services.ratelimit import RateLimiter
from app.services.reactions import MessageMarks
from app.services.search_flags import flagged
from app.services.sequence import ChatSequence, Draft, by_sender, repair_info
from app.store import Store, isoformat, new_id, utcnow

# GET .../history answers at most this many versions (the newest), oldest first.
HISTORY_MAX = 100


@dataclass(frozen=True)
class MessageDraft:
    """A message for `append_many`: what a send's body gives, plus its sender and time."""

    sender_id: str
    content: str
    files: Sequence[str] = ()
    reply_to: str | None = None
    created_at: datetime.datetime | None = None
    idempotency_key: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def message_doc(
    chat_id: str, sender_id: str, content: str, *, files: Sequence[str] = (), reply_to: str | None = None,
    created_at: datetime.datetime | None = None, idempotency_key: str | None = None,
    content_html: str | None = None, thread_root_id: str | None = None,
) -> dict[str, Any]:
    """A message document as a send writes it, without `seq` and `ord` (its take gives them) or `version`.

    `content_html` is the rendering of `content` (MessageService.rendered); without it the escaped text (a
    system line). `thread_root_id` makes it a reply in that root's thread; null (indexed) for every other message.
    """
    doc: dict[str, Any] = {
        "_id": new_id(),
        "chat_id": chat_id,
        "sender_id": sender_id,
        "content": content,
        "files": list(dict.fromkeys(files)),
        "reply_to": reply_to,
        "thread_root_id": thread_root_id,
        "reply_count": 0,  # a root's, by $inc (MessageService._thread_changed); edits' replaces are guarded on it
        "content_html": content_html if content_html is not None else (plain(content) if content else ""),
        "created_at": created_at or utcnow(),
        "edited_at": None,
        "deleted": False,
        **NOBODY.fields(),  # a send sets what it mentions (app.services.mentions)
    }
    if idempotency_key is not None:
        doc["idempotency_key"] = idempotency_key
    return flagged(doc)  # search's has_* booleans and created_ms; set again by whoever changes what they derive from


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
        mentions: MentionService,
        *,
        renderer: Renderer,
        marks: MessageMarks,
    ):
        self.store = store
        self.outbox = outbox
        self.access = access
        self.sequence = sequence
        self.files = files
        self.limiter = limiter
        self.config = config
        self.mentions = mentions
        # Built once by the composition (app.services.build_api_services): rendering happens per write.
        self.renderer = renderer
        self.marks = marks

    def rendered(self, content: str, mentioned: Mentioned = NOBODY) -> str:
        """The `content_html` a write stores: mentions of resolved members (and @all when it counts) as spans."""
        return self.renderer.render(content, mention_targets(dict(mentioned.names), mentioned.all))

    async def payloads(self, docs: Sequence[dict[str, Any]], caller_id: str | None) -> list[MessageOut]:
        """The one page hook: stored messages → payloads, decorated per page (reactions, pins) with one
        store command whatever the page holds (none for an empty page)."""
        await self.files.describe(list(docs))
        outs = [message_out(doc, self.files.links) for doc in docs]
        await self.marks.decorate(outs, caller_id)
        return outs

    # -- send --------------------------------------------------------------------------------

    async def send(self, user: Identity, chat_id: str, body: MessageCreateIn) -> tuple[MessageOut, bool]:
        """(message, created); a retry with the same idempotency key gets the first message and False."""
        # The membership alone authorizes (it carries the chat's workspace); the chat is not read:
        # the seq's $inc, filtered on that workspace, tells a chat deleted meanwhile. Archived: 403 chat_archived.
        member = await self.access.writable(user, chat_id)
        chat = {"_id": chat_id, "workspace_id": member["workspace_id"]}
        key = body.idempotency_key
        if key is not None:
            first = await self.sequence.sent(chat_id, user.user_id, key)
            if first is not None:
                return message_out(first, self.files.links), False
        await self.limiter.per_user("messages", user.user_id, limit=self.config.limits.messages_per_minute_per_user,
                                    window=60, what="messages")
        root_id, file_info = await self._check_references(user, chat_id, body)
        # No read at all for a message without an "@"; else two point reads per distinct name.
        mentioned = await self.mentions.resolve(member["workspace_id"], chat_id, user.user_id, body.content)
        # Built before the seq is taken: the take sets it as the chat's last message.
        draft = Draft(
            flagged(message_doc(chat_id, user.user_id, body.content, files=body.files, reply_to=body.reply_to,
                                idempotency_key=key, content_html=self.rendered(body.content, mentioned),
                                thread_root_id=root_id) | mentioned.fields() | file_info),
            version=new_id(),
        )
        out, created = await self.sequence.send(
            chat_id, chat["workspace_id"], user.user_id, key,
            lambda seq: self._insert(user, chat, draft, seq, member["_id"], mentioned), draft,
        )
        if created and root_id is not None:
            await self._thread_changed(user.user_id, chat, root_id, +1)
        return out, created

    async def _insert(self, user: Identity, chat: dict[str, Any], draft: Draft, seq: int, member_id: str,
                      mentioned: Mentioned) -> MessageOut:
        # Before the insert, so a crash between the two cannot leave the sender's own message unread
        # for them: a seq whose insert never happens becomes a gap, counted as deleted, not as own.
        # Posting reads the chat: the sender's mark moves to the message (ChatSequence.sender_saw).
        saw = self.sequence.sender_saw(member_id, seq, draft.ord)
        if mentioned.user_ids or mentioned.all:
            moved_from, _ = await asyncio.gather(
                saw, self.mentions.sent(chat["_id"], seq, draft.doc["_id"], draft.doc["created_at"], mentioned))
        else:
            moved_from = await saw
        doc = {**draft.doc, "seq": seq}
        if draft.ord is not None:
            doc["ord"] = draft.ord
        out = message_out(doc, self.files.links)
        event = events.make_event(
            events.MESSAGE_CREATED, msgspec.to_builtins(out),
            chat_id=chat["_id"], workspace_id=chat["workspace_id"], actor_id=user.user_id, event_id=draft.version,
        )
        doc["version"] = event.id

        async def change() -> None:
            await self.store.messages.insert_one(doc)

        # The sender's other tabs clear the chat's badge; it rides in the message's outbox entry, so the
        # mark's move costs no store command of its own, and goes to the sender's streams alone. Only when
        # the mark jumped over messages it had not read: a sender whose tabs kept up (their POST /read came
        # first) has no badge to clear, so a conversation does not double its events.
        read = events.personal_event(
            events.READ, {"chat_id": chat["_id"], "user_id": user.user_id, "seq": seq},
            user_id=user.user_id, workspace_id=chat["workspace_id"],
        ) if moved_from is not None and moved_from < seq - 1 else None
        await self.outbox.apply(event, Check("messages", doc["_id"]), change, repair=repair_info(seq), then=read)
        return out

    async def append_many(self, chat: dict[str, Any], drafts: Sequence[MessageDraft]) -> list[MessageOut]:
        """Messages written exactly as sends write them, in order, with n seqs from one $inc; no event.

        For seeding and imports: no rate limit, no reference checks (the caller's data is trusted),
        no outbox, no mentions resolved (an `@name` stays text and counts for nobody). Every counter is
        kept as a send keeps it, except that each sender's read mark moves to its last message of the
        batch (as a post does in Slack) instead of growing its `own_seqs`.
        """
        if not drafts:
            return []
        docs = [
            flagged(message_doc(chat["_id"], d.sender_id, d.content, files=d.files, reply_to=d.reply_to,
                                created_at=d.created_at, idempotency_key=d.idempotency_key,
                                content_html=self.rendered(d.content)) | d.extra)
            for d in drafts
        ]
        outside = await self._bulk_threads(chat["_id"], docs)
        versions = [new_id() for _ in docs]
        last = Draft(docs[-1], versions[-1])
        taken = await self.sequence.take_many(chat["_id"], chat["workspace_id"], len(docs), last)
        first_seq, first_ord = taken.seq - len(docs) + 1, taken.ord - len(docs) + 1
        for i, (doc, version) in enumerate(zip(docs, versions)):
            doc.update(seq=first_seq + i, ord=first_ord + i, version=version)
        try:
            await self.store.messages.insert_many(docs, ordered=True)
        except BaseException:
            # Whatever did not land is a gap: fill them now, so the chat stays dense.
            for doc in docs:
                await self.sequence.fill_gap(chat["_id"], doc["seq"])
            raise
        await self.sequence.senders_saw(chat["_id"], by_sender(docs))
        for root_id, n in outside.items():
            await self.store.messages.update_one(
                {"_id": root_id}, {"$inc": {"reply_count": n}, "$currentDate": {"last_reply_at": True}})
        return [message_out(doc, self.files.links) for doc in docs]

    async def _bulk_threads(self, chat_id: str, docs: list[dict[str, Any]]) -> dict[str, int]:
        """Threads of a batch's replies: a root in the batch gets its counters in its document; the replies to
        earlier messages are counted per root, returned for one update each after the insert."""
        by_id = {doc["_id"]: doc for doc in docs}  # a draft's `extra` may give its _id, for replies in the batch
        wanted = list({d["reply_to"] for d in docs if d.get("reply_to") and d["reply_to"] not in by_id})
        earlier: dict[str, str] = {}
        if wanted:  # one $in per batch (a scan on nx-27017): seeding and imports, never a request path
            async for found in self.store.messages.find(
                {"_id": {"$in": wanted}, "chat_id": {"$eq": chat_id}}, {"thread_root_id": 1}
            ):
                earlier[found["_id"]] = found.get("thread_root_id") or found["_id"]
        outside: dict[str, int] = {}
        for doc in docs:
            target = doc.get("reply_to")
            if not target:
                continue
            if target in by_id:
                root_id = by_id[target].get("thread_root_id") or target
            elif target in earlier:
                root_id = earlier[target]
            else:
                continue  # not in this chat: stays a plain message
            doc["thread_root_id"] = root_id
            if root_id in by_id:
                root = by_id[root_id]
                root["reply_count"] = root.get("reply_count", 0) + 1
                root["last_reply_at"] = max(root.get("last_reply_at") or doc["created_at"], doc["created_at"])
            else:
                outside[root_id] = outside.get(root_id, 0) + 1
        return outside

    async def _check_references(self, user: Identity, chat_id: str, body: MessageCreateIn) -> tuple[str | None, dict]:
        """The thread root of a reply (a reply to a reply joins the same thread), None for a plain message; and
        the fields that copy the files' name, size and type into the message (`file_info`, a document keyed by
        file id: not an array of subdocuments, which nx-27017 corrupts)."""
        root_id = None
        if body.reply_to is not None:
            target = await self.store.messages.find_one(
                {"_id": body.reply_to, "chat_id": {"$eq": chat_id}}, {"_id": 1, "thread_root_id": 1, "gap": 1}
            )
            if target is None or target.get("gap"):
                raise invalid("reply_to", "No such message in this chat")
            root_id = target.get("thread_root_id") or target["_id"]
        file_info: dict = {}
        if body.files:
            file_info = {"file_info": await self.files.check_ids(user.workspace_id, list(dict.fromkeys(body.files)))}
        return root_id, file_info

    async def _thread_changed(self, actor_id: str, chat: dict[str, Any], root_id: str, delta: int) -> None:
        """The root's counters after a reply was sent (+1) or deleted (-1), and `thread.updated` with them.

        An $inc (and $currentDate: a `$set` of a datetime is a string on nx-27017) returning the root after
        it, so concurrent replies each publish the count they made. The event goes through the outbox after
        the change: its data is the change's result; a crash between the two leaves the count right and
        the event unsent (a client sees it at its next read of the root)."""
        update: dict[str, Any] = {"$inc": {"reply_count": delta}}
        if delta > 0:
            update["$currentDate"] = {"last_reply_at": True}
        root = await self.store.messages.find_one_and_update(
            {"_id": root_id, **({"reply_count": {"$gt": 0}} if delta < 0 else {})}, update,
            projection={"reply_count": 1, "last_reply_at": 1}, return_document=ReturnDocument.AFTER,
        )
        if root is None:
            return
        data = ThreadUpdatedOut(chat_id=chat["_id"], message_id=root_id, reply_count=max(0, root.get("reply_count", 0)),
                                last_reply_at=isoformat(root.get("last_reply_at")))
        event = events.make_event(events.THREAD_UPDATED, msgspec.to_builtins(data), chat_id=chat["_id"],
                                  workspace_id=chat["workspace_id"], actor_id=actor_id)

        async def done() -> None:
            return None

        await self.outbox.apply(event, Check("messages", root_id), done)

    # -- list --------------------------------------------------------------------------------

    async def list(self, user: Identity, chat_id: str, query: MessageListQuery) -> MessagePage:
        """Seqs are dense, so a page is a seq range: no cursor to forge, `has_more` from the range."""
        chat, _ = await self.access.access(user, chat_id)
        if query.before is not None and query.after is not None:
            raise APIError(422, "validation_failed", "give before or after, not both",
                           fields={"before": "give before or after, not both"})
        if query.threads == "roots":
            return await self._roots(user, chat, query)
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
        return MessagePage(messages=await self.payloads(docs, user.user_id), has_more=has_more)

    async def _roots(self, user: Identity, chat: dict[str, Any], query: MessageListQuery) -> MessagePage:
        """Roots and plain messages (thread_root_id null): not a seq range, so one indexed read of limit + 1
        over (chat_id, thread_root_id, seq), the extra one telling has_more; no gap repair (gaps are none's)."""
        flt: dict[str, Any] = {"chat_id": {"$eq": chat["_id"]}, "thread_root_id": {"$eq": None}}
        if query.after is not None:
            flt["seq"] = {"$gt": query.after}
            order = 1
        else:
            flt["seq"] = {"$lt": query.before} if query.before is not None else {"$gte": 1}
            order = -1
        docs = await self.store.messages.find(flt).sort([("seq", order)]).limit(query.limit + 1).to_list()
        has_more = len(docs) > query.limit
        docs = sorted(docs[:query.limit], key=lambda doc: doc["seq"])
        return MessagePage(messages=await self.payloads(docs, user.user_id), has_more=has_more)

    async def replies(self, user: Identity, chat_id: str, message_id: str, query: RepliesQuery) -> MessagePage:
        """A thread's replies in seq order after `after`; a reply's id gives its thread too."""
        await self.access.access(user, chat_id)
        doc = await self._message(chat_id, message_id)
        root_id = doc.get("thread_root_id") or doc["_id"]
        docs = await self.store.messages.find(
            {"chat_id": {"$eq": chat_id}, "thread_root_id": {"$eq": root_id}, "seq": {"$gt": query.after}}
        ).sort([("seq", 1)]).limit(query.limit + 1).to_list()
        has_more = len(docs) > query.limit
        return MessagePage(messages=await self.payloads(docs[:query.limit], user.user_id), has_more=has_more)

    async def history(self, user: Identity, chat_id: str, message_id: str) -> list[MessageVersionOut]:
        """Every version of a message's text, oldest first: the original, each edit's, the current last
        (just the current one for a message never edited); 404 for a deleted message."""
        await self.access.access(user, chat_id)
        doc = await self._message(chat_id, message_id)
        if doc.get("deleted"):
            raise not_found("message")
        older = await self.store.message_versions.find(
            {"message_id": {"$eq": message_id}, "rev": {"$gte": 0}}
        ).sort([("rev", -1)]).limit(HISTORY_MAX - 1).to_list()
        versions = [MessageVersionOut(content=v["content"], content_html=v.get("content_html") or plain(v["content"]),
                                      edited_at=isoformat(v["edited_at"])) for v in reversed(older)]
        versions.append(MessageVersionOut(content=doc.get("content", ""), content_html=message_out(doc).content_html,
                                          edited_at=isoformat(doc.get("edited_at") or doc["created_at"])))
        return versions

    async def _range(self, chat_id: str, lo: int, hi: int) -> list[dict[str, Any]]:
        cursor = self.store.messages.find({"chat_id": {"$eq": chat_id}, "seq": {"$gte": lo, "$lte": hi}})
        return [doc async for doc in cursor.sort([("seq", 1)])]

    # -- edit, delete ------------------------------------------------------------------------

    async def _message(self, chat_id: str, message_id: str) -> dict[str, Any]:
        doc = None
        if valid_id(message_id):
            doc = await self.store.messages.find_one({"_id": message_id, "chat_id": {"$eq": chat_id}})
        if doc is None or doc.get("gap"):
            raise not_found("message")
        return doc

    async def _per_minute(self, user: Identity, kind: str, limit: int, what: str) -> None:
        """One more `kind` change by the user this minute, or 429: each is a durable event in every
        notify process's replay window, which a flood would empty of others' missed messages."""
        await self.limiter.per_user(kind, user.user_id, limit=limit, window=60, what=what)

    async def edit(self, user: Identity, chat_id: str, message_id: str, body: MessageUpdateIn) -> MessageOut:
        member = await self.access.writable(user, chat_id)
        await self._per_minute(user, "edits", self.config.limits.edits_per_minute_per_user, "message edits")
        doc = await self._message(chat_id, message_id)
        if doc.get("kind") == SYSTEM_KIND:
            raise forbidden("a system message cannot be changed")
        if doc["sender_id"] != user.user_id:
            raise forbidden("only the sender may edit a message")
        if doc.get("deleted"):
            raise conflict("message_deleted", "the message was deleted")
        mentioned = await self.mentions.resolve(member["workspace_id"], chat_id, user.user_id, body.content)
        event_id = new_id()
        rev = doc.get("rev", 0) + 1
        edited = flagged({**doc, "content": body.content, "edited_at": utcnow(), "version": event_id, "rev": rev,
                          "content_html": self.rendered(body.content, mentioned), **mentioned.fields()})
        [out] = await self.payloads([edited], user.user_id)
        event = events.make_event(
            events.MESSAGE_UPDATED, msgspec.to_builtins(out),
            chat_id=chat_id, workspace_id=member["workspace_id"], actor_id=user.user_id, event_id=event_id,
        )
        await self.outbox.apply(
            event, Check("messages", message_id, "eq", "version", event_id), self._replace(doc, edited, keep=True)
        )
        await self.sequence.set_last_message(chat_id, stored_message(edited), message_id, rev, replacing=message_id)
        # Only the winner of the version-guarded replace gets here: what the edit added counts, what it removed not.
        await self.mentions.edited(doc, mentioned)
        return out

    async def delete(self, user: Identity, chat_id: str, message_id: str) -> None:
        member = await self.access.writable(user, chat_id)
        await self._per_minute(user, "deletes", self.config.limits.deletes_per_minute_per_user, "message deletions")
        doc = await self._message(chat_id, message_id)
        if doc.get("kind") == SYSTEM_KIND:
            raise forbidden("a system message cannot be changed")
        if doc["sender_id"] != user.user_id and member["role"] not in MANAGERS:
            raise forbidden("only the sender or the chat's owner or admins may delete a message")
        if doc.get("deleted"):
            return
        event_id = new_id()
        rev = doc.get("rev", 0) + 1
        tombstone = flagged({**doc, "content": "", "content_html": "", "files": [], "deleted": True,
                             "version": event_id, "rev": rev, **NOBODY.fields()})
        event = events.make_event(
            events.MESSAGE_DELETED, {"id": message_id, "chat_id": chat_id, "seq": doc["seq"]},
            chat_id=chat_id, workspace_id=member["workspace_id"], actor_id=user.user_id, event_id=event_id,
        )
        await self.outbox.apply(
            event, Check("messages", message_id, "eq", "version", event_id), self._replace(doc, tombstone)
        )
        # Only the winner of the version-guarded replace gets here, so the deletion counts once.
        if doc.get("thread_root_id"):
            await self._thread_changed(user.user_id, {"_id": chat_id, "workspace_id": member["workspace_id"]},
                                       doc["thread_root_id"], -1)
        # A deleted message's earlier texts go with it (the history route is 404 for it).
        await self.store.message_versions.delete_many({"message_id": {"$eq": message_id}, "rev": {"$gte": 0}})
        counters = await self.sequence.count_deleted(chat_id, doc["seq"])
        if counters is None or counters.get("last_message_id") == message_id:
            await self.sequence.set_last_message(chat_id, stored_message(tombstone), message_id, rev,
                                                 replacing=message_id)
        await self.mentions.deleted(doc)

    def _replace(self, old: dict[str, Any], new: dict[str, Any], *, keep: bool = False):
        """`keep`: an edit, which keeps the replaced text as a version of its own (message_versions)."""
        guard: dict[str, Any] = {"_id": old["_id"], "version": old.get("version")}
        if "reply_count" in old:
            # A root's counters move by $inc (a reply), not by version: the replace must not undo one.
            guard["reply_count"] = old["reply_count"]

        async def change() -> None:
            # The whole document, so booleans and datetimes stay typed; the version guards against
            # a concurrent edit or delete being overwritten.
            result = await self.store.messages.replace_one(guard, new)
            if result.matched_count == 0:
                raise conflict("message_changed", "the message changed meanwhile; reload and retry")
            if keep:
                # After the replace, so only its winner keeps a version; the _id makes a retry insert it once.
                rev = old.get("rev", 0)
                try:
                    await self.store.message_versions.insert_one({
                        "_id": f"{old['_id']}:{rev}", "message_id": old["_id"], "chat_id": old["chat_id"],
                        "rev": rev, "content": old.get("content", ""),
                        "content_html": message_out(old).content_html,
                        "edited_at": old.get("edited_at") or old["created_at"],
                    })
                except DuplicateKeyError:
                    pass

        return change

    # -- read marks, typing ------------------------------------------------------------------

    async def read(self, user: Identity, chat_id: str, seq: int) -> None:
        chat, member = await self.access.require_member(user, chat_id)
        if seq > chat.get("last_seq", 0):
            raise invalid("seq", "beyond the chat's latest message")
        if seq <= member.get("last_read_seq", 0):
            return  # a read mark never goes backwards
        await self._per_minute(user, "reads", self.config.limits.reads_per_minute_per_user, "read marks")
        event = events.make_event(
            events.READ, {"chat_id": chat_id, "user_id": user.user_id, "seq": seq},
            chat_id=chat_id, workspace_id=chat["workspace_id"], actor_id=user.user_id,
        )

        read_ord = await self.sequence.ord_at(chat, seq)
        # The sender's own seqs at or below the new mark no longer matter; one not seen here (a send
        # racing this read) makes own_n too small, which only loosens OWN_SEQS_MAX a little.
        own_n = sum(1 for own in member.get("own_seqs") or () if own > seq)
        # The same for the mentions it has now read (app.services.mentions).
        mention_n = sum(1 for mentioned in member.get("mention_seqs") or () if mentioned > seq)

        async def change() -> None:
            result = await self.store.members.update_one(
                {"_id": member["_id"], "last_read_seq": {"$lt": seq}},
                {"$set": {"last_read_seq": seq, "read_ord": read_ord, "own_n": own_n, "mention_n": mention_n},
                 "$pull": {"own_seqs": {"$lte": seq}, "mention_seqs": {"$lte": seq}}},
            )
            if result.modified_count == 0:
                raise _NoChange()

        try:
            await self.outbox.apply(event, Check("members", member["_id"], "gte", "last_read_seq", seq), change)
        except _NoChange:
            pass

    async def typing(self, user: Identity, chat_id: str) -> None:
        member = await self.access.writable(user, chat_id)
        # Fire-and-forget for the client (the web UI ignores the answer), but past the limit it is
        # told so: 429 with Retry-After, and nothing goes to anyone's stream.
        await self.limiter.per_user("typing", user.user_id, limit=self.config.limits.typing_per_10_seconds_per_user,
                                    window=10, what="typing indicators")
        await self.outbox.publish_ephemeral(
            events.make_event(
                events.TYPING, {"chat_id": chat_id, "user_id": user.user_id},
                chat_id=chat_id, workspace_id=member["workspace_id"], actor_id=user.user_id,
            )
        )
