"""Mentions: `@username` and `@channel` parsed from a message, the counters they keep, and GET /api/mentions."""

from __future__ import annotations

import asyncio
import bisect
import datetime
import re
from dataclasses import dataclass
from typing import Any, Iterable

from pymongo import ReturnDocument
from pymongo.errors import BulkWriteError, DuplicateKeyError

from app.auth import Identity
from app.schemas.accounts import USERNAME_CHARS, USERNAME_MAX
from app.file_links import FileLinks
from app.schemas.messages import MentionsPage, MentionsQuery, message_out
from app.services.membership import MEMBERSHIPS_BATCH, user_chat_ids
from app.services.reactions import MessageMarks
from app.store import Store

# The names that mention every member of the chat; never a username.
ALL_NAMES = frozenset({"channel", "here", "everyone"})
# At most this many distinct names are looked up per message, and at most this many members mentioned.
MENTION_NAMES_MAX = 50
MENTIONS_MAX = 50
# A member keeps about this many unread direct mentions per chat; past that the count stays there.
MENTION_SEQS_MAX = 200
# A chat keeps its newest @all messages up to this many; a member far behind counts at most that many.
MENTION_ALL_MAX = 100
# GET /api/mentions reads at most this many candidate batches before answering a short page.
LIST_ROUNDS_MAX = 5

# `@name` not glued to a word, an address or another mention before it (ada@example.com is no mention).
_MENTION = re.compile(f"(?<![@{USERNAME_CHARS}])@([{USERNAME_CHARS}]+)")


def parse(content: str) -> tuple[list[list[str]], bool]:
    """(each mention's candidate names, lower-cased, best first; whether it mentions all).

    A name may end in `.`, `-` or `_` (all allowed in usernames), or be followed by one as punctuation
    ("thanks @bob."): both are candidates, the longer first.
    """
    if "@" not in content:
        return [], False
    mentions: list[list[str]] = []
    everyone = False
    for match in _MENTION.finditer(content):
        token = match.group(1).lower()
        stripped = token.rstrip("._-")
        names = [name for name in dict.fromkeys((token, stripped)) if 0 < len(name) <= USERNAME_MAX]
        if not names:
            continue
        if any(name in ALL_NAMES for name in names):
            everyone = True
            continue
        mentions.append(names)
    return mentions, everyone


@dataclass(frozen=True)
class Mentioned:
    """Whom a message mentions: members of its chat (user and membership ids, in order), and all."""

    user_ids: tuple[str, ...] = ()
    member_ids: tuple[str, ...] = ()
    all: bool = False
    # (name as typed, lower-cased; user id) of each member mentioned: what content_html makes a span. Not stored.
    names: tuple[tuple[str, str], ...] = ()

    def fields(self) -> dict[str, Any]:
        """What a message document stores of it."""
        return {"mentions": list(self.user_ids), "mentions_all": self.all, "mention_members": list(self.member_ids)}

    @staticmethod
    def of(doc: dict[str, Any]) -> "Mentioned":
        """What a stored message mentions (nothing for one from before mentions)."""
        users, members = doc.get("mentions") or [], doc.get("mention_members") or []
        pairs = list(zip(users, members))
        return Mentioned(tuple(u for u, _ in pairs), tuple(m for _, m in pairs), bool(doc.get("mentions_all")))


NOBODY = Mentioned()


def mention_count(chat: dict[str, Any], member: dict[str, Any]) -> int:
    """Messages above the member's mark that mention it (or all), not deleted, not its own.

    A deletion pulls its seq from these arrays; `deleted_seqs` is subtracted too for the seqs that a send
    which died before its insert left there (a gap's tombstone).
    """
    mark = member.get("last_read_seq", 0)
    seqs = {seq for seq in member.get("mention_seqs") or () if seq > mark}
    seqs.update(seq for seq in chat.get("mention_all_seqs") or () if seq > mark)
    if not seqs:
        return 0
    seqs.difference_update(member.get("own_seqs") or ())
    seqs.difference_update(chat.get("deleted_seqs") or ())
    return len(seqs)


def mention_doc_id(user_id: str, message_id: str) -> str:
    # One per (member, message): a retried send or a repeated edit inserts it once.
    return f"{user_id}:{message_id}"


class MentionService:
    """Whom a message mentions, and what that changes.

    Counting costs what unread counting costs (app.services.sequence): GET /api/chats reads no message.
    - A member keeps `mention_seqs`, the seqs above its read mark of messages that mention it by name (at
      most about MENTION_SEQS_MAX, `mention_n` counting them like `own_n`); each move of its mark pulls
      those at or below it.
    - A chat keeps `mention_all_seqs` and `mention_all_ids`, the seqs and ids of its newest messages with
      @channel/@here/@everyone (at most MENTION_ALL_MAX: the oldest half goes when full), for every member.
    - mention_count = |{s in mention_seqs ∪ mention_all_seqs : s > last_read_seq, s not own, s not deleted}|.
    - GET /api/mentions pages `store.mentions` (one small document per direct mention, by user and
      message id) merged with the @all ids of the caller's chats; the messages are then read by _id.

    A message stores `mentions` (user ids), `mentions_all`, and `mention_members` (the members' _ids, so an
    edit or a delete updates their counters by _id without a lookup). Resolving names costs two point reads
    per distinct name (the user by (workspace_id, username), then the membership), never a read of the members.
    """

    def __init__(self, store: Store, marks: MessageMarks | None = None, links: FileLinks | None = None):
        self.store = store
        self.links = links  # signs the messages' file URLs
        # The page's reactions and pins: one read of them per page.
        self.marks = marks or MessageMarks(store)

    # -- parsing a message ---------------------------------------------------------------------

    async def resolve(self, workspace_id: str, chat_id: str, sender_id: str, content: str) -> Mentioned:
        """The members of the chat that `content` mentions, the sender excepted; names of anyone else stay text."""
        mentions, everyone = parse(content)
        names = list(dict.fromkeys(name for names in mentions for name in names))[:MENTION_NAMES_MAX]
        if not names:
            return Mentioned(all=everyone)
        users = await asyncio.gather(*(
            self.store.users.find_one({"workspace_id": {"$eq": workspace_id}, "username": {"$eq": name}}, {"_id": 1})
            for name in names
        ))
        user_of = {name: user["_id"] for name, user in zip(names, users) if user is not None}
        candidates = list(dict.fromkeys(uid for uid in user_of.values() if uid != sender_id))
        members = await asyncio.gather(*(
            self.store.members.find_one({"chat_id": {"$eq": chat_id}, "user_id": {"$eq": uid}}, {"_id": 1})
            for uid in candidates
        ))
        member_of = {uid: member["_id"] for uid, member in zip(candidates, members) if member is not None}
        found: dict[str, str] = {}
        spans: dict[str, str] = {}
        for names_of_one in mentions:
            # The first candidate that is a member: "@bob." is bob. when there is one, else bob.
            name = next((n for n in names_of_one if user_of.get(n) in member_of), None)
            uid = user_of[name] if name is not None else None
            if uid is not None and uid not in found:
                found[uid] = member_of[uid]
                if len(found) >= MENTIONS_MAX:
                    spans[name] = uid
                    break
            if name is not None and uid in found:
                spans[name] = uid
        return Mentioned(tuple(found), tuple(found.values()), everyone, tuple(spans.items()))

    # -- the counters and documents of a message's mentions -------------------------------------

    async def sent(self, chat_id: str, seq: int, message_id: str, created_at: datetime.datetime,
                   mentioned: Mentioned) -> None:
        """Before the message's insert, like the sender's mark: a seq whose insert never happens becomes a
        gap, a deleted seq, which the count subtracts; its mention documents name a message that the
        listing does not find, and skips."""
        await self._change(chat_id, seq, message_id, created_at, NOBODY, mentioned)

    async def edited(self, doc: dict[str, Any], mentioned: Mentioned) -> None:
        """After an edit's replace (only its winner gets here): what it added counts, what it removed not."""
        await self._change(doc["chat_id"], doc["seq"], doc["_id"], doc["created_at"], Mentioned.of(doc), mentioned)

    async def deleted(self, doc: dict[str, Any]) -> None:
        """After a delete's tombstone (only its winner gets here): the message stops counting and is not listed."""
        await self._change(doc["chat_id"], doc["seq"], doc["_id"], doc["created_at"], Mentioned.of(doc), NOBODY)

    async def _change(self, chat_id: str, seq: int, message_id: str, created_at: datetime.datetime,
                      old: Mentioned, new: Mentioned) -> None:
        before = dict(zip(old.user_ids, old.member_ids))
        after = dict(zip(new.user_ids, new.member_ids))
        added = {uid: mid for uid, mid in after.items() if uid not in before}
        removed = {uid: mid for uid, mid in before.items() if uid not in after}
        work = []
        if added:
            work.append(self._count(list(added.values()), seq))
            work.append(self._insert_docs(chat_id, message_id, created_at, list(added)))
        if removed:
            work.append(self.store.members.update_many(
                {"_id": {"$in": list(removed.values())}}, {"$pull": {"mention_seqs": seq}}))
            work.append(self.store.mentions.delete_many(
                {"_id": {"$in": [mention_doc_id(uid, message_id) for uid in removed]}}))
        if new.all and not old.all:
            work.append(self._count_all(chat_id, seq, message_id))
        elif old.all and not new.all:
            work.append(self.store.chats.update_one(
                {"_id": chat_id}, {"$pull": {"mention_all_seqs": seq, "mention_all_ids": message_id}}))
        if work:
            await asyncio.gather(*work)

    async def _count(self, member_ids: list[str], seq: int) -> None:
        # By _id (an $in on any other field is a scan on the embedded server); only members still behind it.
        await self.store.members.update_many(
            {"_id": {"$in": member_ids}, "last_read_seq": {"$lt": seq}, "mention_n": {"$lt": MENTION_SEQS_MAX}},
            {"$addToSet": {"mention_seqs": seq}, "$inc": {"mention_n": 1}},
        )

    async def _insert_docs(self, chat_id: str, message_id: str, created_at: datetime.datetime,
                           user_ids: list[str]) -> None:
        docs = [{"_id": mention_doc_id(uid, message_id), "user_id": uid, "chat_id": chat_id,
                 "message_id": message_id, "created_at": created_at} for uid in user_ids]
        try:
            await self.store.mentions.insert_many(docs, ordered=False)
        except DuplicateKeyError:
            pass  # a retried send: already there
        except BulkWriteError as e:
            if any(error.get("code") != 11000 for error in e.details.get("writeErrors", ())):
                raise

    async def _count_all(self, chat_id: str, seq: int, message_id: str) -> None:
        after = await self.store.chats.find_one_and_update(
            {"_id": chat_id},
            {"$addToSet": {"mention_all_seqs": seq, "mention_all_ids": message_id}},
            projection={"mention_all_seqs": 1, "mention_all_ids": 1, "_id": 0},
            return_document=ReturnDocument.AFTER,
        )
        if after is None:
            return  # the chat was deleted meanwhile
        seqs, ids = after.get("mention_all_seqs") or [], after.get("mention_all_ids") or []
        if len(seqs) <= MENTION_ALL_MAX and len(ids) <= MENTION_ALL_MAX:
            return
        # The oldest half goes in one update, so a full chat pays this once per MENTION_ALL_MAX / 2 of them.
        keep = MENTION_ALL_MAX // 2
        pull: dict[str, Any] = {}
        if len(seqs) > keep:
            pull["mention_all_seqs"] = {"$lte": sorted(seqs)[-keep - 1]}
        if len(ids) > keep:
            pull["mention_all_ids"] = {"$in": sorted(ids)[:-keep]}
        await self.store.chats.update_one({"_id": chat_id}, {"$pull": pull})

    async def left(self, chat_id: str, user_id: str) -> None:
        """A member left or was removed: their mentions of that chat are no longer theirs to list."""
        await self.store.mentions.delete_many({"chat_id": {"$eq": chat_id}, "user_id": {"$eq": user_id}})

    async def chat_deleted(self, chat_id: str) -> None:
        await self.store.mentions.delete_many({"chat_id": {"$eq": chat_id}})

    # -- GET /api/mentions --------------------------------------------------------------------

    async def list(self, user: Identity, query: MentionsQuery) -> MentionsPage:
        """Newest first by message id (ids are time-ordered), `before` exclusive.

        Two candidate lists, each in id order: the caller's direct mentions (a range of the (user_id,
        message_id) index) and the @all ids of the caller's chats (on the chat documents, as GET /api/chats
        reads them). The newest of their union are read by _id and kept when still valid: in a chat of the
        caller's, not deleted, not the caller's own, still mentioning the caller.
        """
        chat_ids = await user_chat_ids(self.store, user.user_id)
        if not chat_ids:
            return MentionsPage(messages=[], next_cursor=None)
        mine: set[str] = set()
        everyone: list[str] = []
        async for chat in self.store.chats.find(
            {"_id": {"$in": list(chat_ids)}, "workspace_id": {"$eq": user.workspace_id}}, {"mention_all_ids": 1},
            batch_size=MEMBERSHIPS_BATCH,
        ):
            mine.add(chat["_id"])
            everyone.extend(chat.get("mention_all_ids") or ())
        everyone = sorted(set(everyone))  # oldest first, so each round's slice below the cursor is a bisection

        found: list[dict[str, Any]] = []
        cursor = query.before
        more = True
        for _ in range(LIST_ROUNDS_MAX):
            want = query.limit - len(found) + 1
            direct_query: dict[str, Any] = {"user_id": {"$eq": user.user_id}}
            if cursor is not None:
                direct_query["message_id"] = {"$lt": cursor}
            direct = [doc async for doc in self.store.mentions.find(
                direct_query, {"message_id": 1, "chat_id": 1, "_id": 0}).sort([("message_id", -1)]).limit(want)]
            below = len(everyone) if cursor is None else bisect.bisect_left(everyone, cursor)
            alls = everyone[max(0, below - want):below][::-1]
            # Below the last id of a full list, that list may hold more: only what is above both is complete.
            floor = max([batch[-1] for batch in ([d["message_id"] for d in direct], alls) if len(batch) == want],
                        default=None)
            candidates = sorted(
                {d["message_id"] for d in direct if d.get("chat_id") in mine}.union(alls), reverse=True)
            if floor is not None:
                candidates = [mid for mid in candidates if mid >= floor]
            more = floor is not None
            if not candidates:
                cursor = floor
                if not more:
                    break
                continue
            docs = {doc["_id"]: doc async for doc in self.store.messages.find({"_id": {"$in": candidates}})}
            for mid in candidates:
                doc = docs.get(mid)
                if doc is not None and self._for(doc, user.user_id, mine):
                    found.append(doc)
                cursor = mid
                if len(found) > query.limit:
                    break
            if len(found) > query.limit or not more:
                break
        more = more or len(found) > query.limit
        found = found[:query.limit]
        if len(found) == query.limit and more:
            next_cursor = found[-1]["_id"]
        elif more:
            next_cursor = cursor  # the candidate budget ran out: a short page, and where to go on
        else:
            next_cursor = None
        messages = [message_out(doc, self.links) for doc in found]
        await self.marks.decorate(messages, user.user_id)
        return MentionsPage(messages=messages, next_cursor=next_cursor)

    @staticmethod
    def _for(doc: dict[str, Any], user_id: str, chats: Iterable[str]) -> bool:
        return (
            doc.get("chat_id") in chats
            and not doc.get("deleted")
            and doc.get("sender_id") != user_id
            and (bool(doc.get("mentions_all")) or user_id in (doc.get("mentions") or ()))
        )
