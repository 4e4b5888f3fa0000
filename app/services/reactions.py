"""Reactions and pins: documents of their own, their rules and events, and the marks a page of messages shows."""

from __future__ import annotations

import asyncio
import datetime
import re
from typing import Any, Iterable, Sequence

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from app import events
from app.auth import Identity
from app.config import LimitsConfig
from app.errors import APIError, forbidden, invalid, not_found
from app.outbox import Check, Outbox
from app.schemas.chats import CHANNELS, MANAGERS
from app.schemas.common import valid_id
from app.file_links import FileLinks
from app.schemas.messages import MessageOut, PinOut, PinsPage, PinsQuery, ReactionOut, message_out
from app.services.membership import ChatAccess, writable
from app.services.paging import decode_cursor, encode_cursor, key_range
from app.services.ratelimit import RateLimiter
from app.store import Store, isoformat, new_id, utcnow

# Distinct emoji one message may carry (contract section 12); a new one past it is a 422.
MAX_EMOJI_PER_MESSAGE = 20
# The reactors a payload names per emoji, first come first; `count` tells how many there are in all.
USERS_SHOWN = 20
# In a channel of more members than this only its owner and admins pin: a pin shows to everyone there.
PIN_ANYONE_MAX_MEMBERS = 50

# -- what an emoji is --------------------------------------------------------------------------

SHORT_NAME = re.compile(r"[a-z0-9_+-]{1,32}", re.ASCII)
# The longest sequences in use (a kiss of two people with skin tones) are 10 code points.
MAX_CODEPOINTS = 16
ZWJ, VS16, KEYCAP, CANCEL_TAG, BLACK_FLAG = 0x200D, 0xFE0F, 0x20E3, 0xE007F, 0x1F3F4
_KEYCAP_BASES = frozenset(map(ord, "0123456789#*"))
# Unicode's Extended_Pictographic property (emoji-data.txt), as ranges: the bases an emoji is made of.
_PICTOGRAPHIC = (
    (0x00A9, 0x00A9), (0x00AE, 0x00AE), (0x203C, 0x203C), (0x2049, 0x2049), (0x2122, 0x2122), (0x2139, 0x2139),
    (0x2194, 0x2199), (0x21A9, 0x21AA), (0x231A, 0x231B), (0x2328, 0x2328), (0x2388, 0x2388), (0x23CF, 0x23CF),
    (0x23E9, 0x23F3), (0x23F8, 0x23FA), (0x24C2, 0x24C2), (0x25AA, 0x25AB), (0x25B6, 0x25B6), (0x25C0, 0x25C0),
    (0x25FB, 0x25FE), (0x2600, 0x2605), (0x2607, 0x2612), (0x2614, 0x2685), (0x2690, 0x2705), (0x2708, 0x2712),
    (0x2714, 0x2714), (0x2716, 0x2716), (0x271D, 0x271D), (0x2721, 0x2721), (0x2728, 0x2728), (0x2733, 0x2734),
    (0x2744, 0x2744), (0x2747, 0x2747), (0x274C, 0x274C), (0x274E, 0x274E), (0x2753, 0x2755), (0x2757, 0x2757),
    (0x2763, 0x2767), (0x2795, 0x2797), (0x27A1, 0x27A1), (0x27B0, 0x27B0), (0x27BF, 0x27BF), (0x2934, 0x2935),
    (0x2B05, 0x2B07), (0x2B1B, 0x2B1C), (0x2B50, 0x2B50), (0x2B55, 0x2B55), (0x3030, 0x3030), (0x303D, 0x303D),
    (0x3297, 0x3297), (0x3299, 0x3299), (0x1F000, 0x1F0FF), (0x1F10D, 0x1F10F), (0x1F12F, 0x1F12F),
    (0x1F16C, 0x1F171), (0x1F17E, 0x1F17F), (0x1F18E, 0x1F18E), (0x1F191, 0x1F19A), (0x1F1AD, 0x1F1E5),
    (0x1F201, 0x1F20F), (0x1F21A, 0x1F21A), (0x1F22F, 0x1F22F), (0x1F232, 0x1F23A), (0x1F23C, 0x1F23F),
    (0x1F249, 0x1F3FA), (0x1F400, 0x1F53D), (0x1F546, 0x1F64F), (0x1F680, 0x1F6FF), (0x1F774, 0x1F77F),
    (0x1F7D5, 0x1F7FF), (0x1F80C, 0x1F80F), (0x1F848, 0x1F84F), (0x1F85A, 0x1F85F), (0x1F888, 0x1F88F),
    (0x1F8AE, 0x1F8FF), (0x1F90C, 0x1F93A), (0x1F93C, 0x1F945), (0x1F947, 0x1FAFF), (0x1FC00, 0x1FFFD),
)


def _pictographic(cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in _PICTOGRAPHIC)


def _regional(cp: int) -> bool:
    return 0x1F1E6 <= cp <= 0x1F1FF


def _skin_tone(cp: int) -> bool:
    return 0x1F3FB <= cp <= 0x1F3FF


def _tag(cp: int) -> bool:
    return 0xE0020 <= cp <= 0xE007E


def _element(cps: list[int], i: int) -> int | None:
    """The index after the emoji element starting at cps[i] (UTS #51), or None when none starts there."""
    cp, n = cps[i], len(cps)
    if _regional(cp):  # a flag: exactly two regional indicators
        return i + 2 if i + 1 < n and _regional(cps[i + 1]) else None
    if cp in _KEYCAP_BASES:  # 1️⃣ #️⃣: the digit alone is text
        j = i + 1 + (i + 1 < n and cps[i + 1] == VS16)
        return j + 1 if j < n and cps[j] == KEYCAP else None
    if not _pictographic(cp):
        return None
    j = i + 1
    if j < n and cps[j] == VS16:
        return j + 1
    if j < n and _skin_tone(cps[j]):
        return j + 1
    if cp == BLACK_FLAG and j < n and _tag(cps[j]):  # a subdivision flag: tags, then the cancel tag
        while j < n and _tag(cps[j]):
            j += 1
        return j + 1 if j < n and cps[j] == CANCEL_TAG else None
    if cp < 0x2000:  # © and ® are text unless asked to be emoji
        return None
    return j


def is_emoji(value: str) -> bool:
    """One emoji: elements (a pictograph with its skin tone or VS16, a flag, a keycap, a tag flag) joined by ZWJ."""
    cps = [ord(c) for c in value]
    if not cps or len(cps) > MAX_CODEPOINTS:
        return False
    i = 0
    while True:
        end = _element(cps, i)
        if end is None:
            return False
        if end == len(cps):
            return True
        if cps[end] != ZWJ or end + 1 == len(cps):
            return False
        i = end + 1


def check_emoji(value: str) -> str:
    """The reaction's key as given, or 422: one emoji sequence or a short name `[a-z0-9_+-]{1,32}`."""
    if SHORT_NAME.fullmatch(value) or is_emoji(value):
        return value
    raise invalid("emoji", "An emoji must be one emoji or a short name of 1 to 32 of a-z, 0-9, _, + and -")


def too_many_emoji() -> APIError:
    return APIError(422, "too_many_reactions",
                    f"a message carries at most {MAX_EMOJI_PER_MESSAGE} different emoji",
                    fields={"emoji": f"this message has {MAX_EMOJI_PER_MESSAGE} different emoji already"})


class _NoChange(Exception):
    """Someone (the caller's other tab) made the same change first: no event."""


async def _target(store: Store, chat_id: str, message_id: str, *, deleted_ok: bool = False) -> dict[str, Any]:
    """The message of the chat a reaction or pin is about; 404 for another chat's, a gap or (unless deleted_ok)
    a deleted one: a tombstone shows nothing to react to or pin."""
    doc = None
    if valid_id(message_id):
        doc = await store.messages.find_one({"_id": message_id, "chat_id": {"$eq": chat_id}},
                                            {"seq": 1, "deleted": 1, "gap": 1})
    if doc is None or doc.get("gap") or (doc.get("deleted") and not deleted_ok):
        raise not_found("message")
    return doc


# -- a page's marks ------------------------------------------------------------------------------


def _key(emoji: str, user_id: str) -> str:
    """One reaction in a message's marks: an emoji holds no space (check_emoji), an id none either."""
    return f"{emoji} {user_id}"


class MessageMarks:
    """What a page of messages shows of its reactions and pins, kept per message at write time.

    `store.message_marks` holds one document per message that ever had a reaction or a pin, `_id` = the
    message's id: `reactions`, an array of scalars "<emoji> <user_id>" in the order they were added (so an
    emoji keeps its place by its first reaction), and `pinned_by` while pinned. A page is then ONE read,
    `_id $in` the page's ids (an index read on MongoDB and on the embedded server, where `$in` on any other
    field is a scan), whatever the page holds; a page without a single reaction costs the same read.
    The reaction and pin documents of their own (`store.reactions`, `store.pins`) are what the changes
    insert first, under their unique indexes: they make PUT idempotent and are what the outbox checks.
    """

    def __init__(self, store: Store):
        self.store = store

    async def of(self, message_id: str) -> dict[str, Any]:
        """A message's marks document; an empty one when it has none."""
        doc = await self.store.message_marks.find_one({"_id": message_id}) if valid_id(message_id) else None
        return doc or {"_id": message_id, "reactions": []}

    async def decorate(self, page: Sequence[MessageOut], caller_id: str | None) -> None:
        """Sets `reactions` and `pinned` of each message of `page` (deleted ones show none); `me` is the caller's
        (None, in an event for everyone: false throughout, clients keep their own)."""
        live = [m for m in page if not m.deleted]
        if not live:
            return
        found = await self.store.message_marks.find({"_id": {"$in": [m.id for m in live]}}).to_list()
        marks = {doc["_id"]: doc for doc in found}
        for message in live:
            doc = marks.get(message.id)
            if doc is None:
                message.reactions, message.pinned = [], False
                continue
            message.reactions = reactions_out(doc.get("reactions") or (), caller_id)
            message.pinned = bool(doc.get("pinned_by"))

    async def add_reaction(self, chat_id: str, message_id: str, key: str, *, recheck: bool) -> int:
        """Adds one reaction key; with `recheck`, the message's distinct emoji afterwards (else 0)."""
        return await self._add(chat_id, message_id, {"reactions": [key]}, {"$addToSet": {"reactions": key}},
                               recheck=recheck)

    async def remove_reaction(self, message_id: str, key: str) -> None:
        await self.store.message_marks.update_one({"_id": message_id}, {"$pull": {"reactions": key}})

    async def set_pinned(self, chat_id: str, message_id: str, user_id: str) -> None:
        await self._add(chat_id, message_id, {"pinned_by": user_id}, {"$set": {"pinned_by": user_id}}, recheck=False)

    async def clear_pinned(self, message_id: str) -> None:
        await self.store.message_marks.update_one({"_id": message_id}, {"$unset": {"pinned_by": ""}})

    async def _add(self, chat_id: str, message_id: str, first: dict[str, Any], update: dict[str, Any], *,
                   recheck: bool) -> int:
        # Inserted whole the first time: nx-27017's $addToSet does not create a missing array (nor on an upsert).
        try:
            await self.store.message_marks.insert_one({"_id": message_id, "chat_id": chat_id, "reactions": [],
                                                       **first})
            return len(emoji_of(first.get("reactions") or ()))
        except DuplicateKeyError:
            pass
        if not recheck:
            await self.store.message_marks.update_one({"_id": message_id}, update)
            return 0
        after = await self.store.message_marks.find_one_and_update({"_id": message_id}, update,
                                                                   return_document=ReturnDocument.AFTER)
        return len(emoji_of((after or {}).get("reactions") or ()))


def emoji_of(keys: Iterable[str]) -> dict[str, list[str]]:
    """emoji -> its reactors, both in the order they came."""
    by_emoji: dict[str, list[str]] = {}
    for key in keys:
        emoji, _, user_id = key.rpartition(" ")
        if emoji:
            by_emoji.setdefault(emoji, []).append(user_id)
    return by_emoji


def reactions_out(keys: Iterable[str], caller_id: str | None) -> list[ReactionOut]:
    return [ReactionOut(emoji=emoji, count=len(users), me=caller_id in users, user_ids=users[:USERS_SHOWN])
            for emoji, users in emoji_of(keys).items()]


# -- reactions ------------------------------------------------------------------------------------


class _MarkService:
    """What reactions and pins both stand on: the chat's access rule, the outbox, the limiter, the marks."""

    def __init__(self, store: Store, outbox: Outbox, access: ChatAccess, limiter: RateLimiter, limits: LimitsConfig,
                 marks: MessageMarks, links: FileLinks | None = None):
        self.store = store
        self.links = links  # signs the pinned messages' file URLs
        self.outbox = outbox
        self.access = access
        self.limiter = limiter
        self.limits = limits
        self.marks = marks


class ReactionService(_MarkService):
    """`PUT`/`DELETE .../messages/{id}/reactions/{emoji}`: idempotent, one event per real change."""

    async def _prepare(self, user: Identity, chat_id: str, message_id: str,
                       emoji: str) -> tuple[dict[str, Any], list[str]]:
        """(membership, the message's reaction keys), after the rules: emoji, writable member, limit, message."""
        check_emoji(emoji)
        member = await self.access.writable(user, chat_id)
        await self.limiter.per_user("reactions", user.user_id, limit=self.limits.reactions_per_minute_per_user,
                                    window=60, what="reactions")
        _, marks = await asyncio.gather(_target(self.store, chat_id, message_id), self.marks.of(message_id))
        return member, list(marks.get("reactions") or ())

    def _event(self, type_: str, member: dict, user: Identity, chat_id: str, message_id: str, emoji: str):
        return events.make_event(
            type_, {"chat_id": chat_id, "message_id": message_id, "emoji": emoji, "user_id": user.user_id},
            chat_id=chat_id, workspace_id=member["workspace_id"], actor_id=user.user_id,
        )

    async def add(self, user: Identity, chat_id: str, message_id: str, emoji: str) -> None:
        member, keys = await self._prepare(user, chat_id, message_id, emoji)
        key = _key(emoji, user.user_id)
        if key in keys:
            return
        existing = emoji_of(keys)
        new_emoji = emoji not in existing
        if new_emoji and len(existing) >= MAX_EMOJI_PER_MESSAGE:
            raise too_many_emoji()
        doc = {"_id": f"{message_id} {user.user_id} {emoji}", "chat_id": chat_id, "message_id": message_id,
               "emoji": emoji, "user_id": user.user_id, "created_at": utcnow()}

        async def change() -> None:
            try:
                await self.store.reactions.insert_one(doc)
            except DuplicateKeyError:
                # Stored, but not in the marks (a request that died between the two): mend them, no event.
                await self.marks.add_reaction(chat_id, message_id, key, recheck=False)
                raise _NoChange() from None
            # Two new emoji racing at 19 would make 21: whoever sees more than the bound takes theirs back.
            if await self.marks.add_reaction(chat_id, message_id, key, recheck=new_emoji) > MAX_EMOJI_PER_MESSAGE:
                await self.marks.remove_reaction(message_id, key)
                await self.store.reactions.delete_one({"_id": doc["_id"]})
                raise too_many_emoji()

        try:
            await self.outbox.apply(self._event(events.REACTION_ADDED, member, user, chat_id, message_id, emoji),
                                    Check("reactions", doc["_id"]), change)
        except _NoChange:
            pass

    async def remove(self, user: Identity, chat_id: str, message_id: str, emoji: str) -> None:
        member, keys = await self._prepare(user, chat_id, message_id, emoji)
        key = _key(emoji, user.user_id)
        if key not in keys:
            return
        reaction_id = f"{message_id} {user.user_id} {emoji}"

        async def change() -> None:
            deleted = (await self.store.reactions.delete_one({"_id": reaction_id})).deleted_count
            await self.marks.remove_reaction(message_id, key)
            if not deleted:
                raise _NoChange()

        try:
            await self.outbox.apply(self._event(events.REACTION_REMOVED, member, user, chat_id, message_id, emoji),
                                    Check("reactions", reaction_id, "absent"), change)
        except _NoChange:
            pass


# -- pins ----------------------------------------------------------------------------------------

# Ranks sort ascending newest first: the complement of the pin's milliseconds, then the message id.
_RANK_BASE = 10**15


def pin_rank(pinned_at: datetime.datetime, message_id: str) -> str:
    millis = int(pinned_at.timestamp() * 1000)
    return f"{_RANK_BASE - millis:015d}:{message_id}"


def may_pin(chat: dict[str, Any], member: dict[str, Any]) -> None:
    """Any member pins; in a channel of more than PIN_ANYONE_MAX_MEMBERS members, its owner and admins alone."""
    if (chat.get("type") in CHANNELS and chat.get("member_count", 0) > PIN_ANYONE_MAX_MEMBERS
            and member.get("role") not in MANAGERS):
        raise forbidden(f"in a channel of more than {PIN_ANYONE_MAX_MEMBERS} members only its owner and admins pin")


class PinService(_MarkService):
    """`PUT`/`DELETE /api/chats/{id}/pins/{message_id}` (idempotent) and the chat's pins, newest first."""

    async def _prepare(self, user: Identity, chat_id: str, message_id: str, *,
                       deleted_ok: bool) -> tuple[str, dict[str, Any], bool]:
        """(workspace id, the message, whether it is pinned), after the rules: member, writable, may pin, limit."""
        # The chat too, not only the membership: its type and member_count decide who pins.
        chat, member = await self.access.require_member(user, chat_id)
        writable(member)
        may_pin(chat, member)
        await self.limiter.per_user("pins", user.user_id, limit=self.limits.pins_per_minute_per_user, window=60,
                                    what="pins")
        message, marks = await asyncio.gather(_target(self.store, chat_id, message_id, deleted_ok=deleted_ok),
                                              self.marks.of(message_id))
        return chat["workspace_id"], message, bool(marks.get("pinned_by"))

    def _event(self, type_: str, workspace_id: str, user: Identity, chat_id: str, message_id: str):
        return events.make_event(type_, {"chat_id": chat_id, "message_id": message_id, "user_id": user.user_id},
                                 chat_id=chat_id, workspace_id=workspace_id, actor_id=user.user_id)

    async def pin(self, user: Identity, chat_id: str, message_id: str) -> None:
        workspace_id, message, pinned = await self._prepare(user, chat_id, message_id, deleted_ok=False)
        if pinned:
            return
        now = utcnow()
        doc = {"_id": message_id, "chat_id": chat_id, "message_id": message_id, "seq": message["seq"],
               "user_id": user.user_id, "pinned_at": now, "rank": pin_rank(now, message_id)}

        async def change() -> None:
            try:
                await self.store.pins.insert_one(doc)
            except DuplicateKeyError:
                await self.marks.set_pinned(chat_id, message_id, user.user_id)  # mend the marks, no event
                raise _NoChange() from None
            await self.marks.set_pinned(chat_id, message_id, user.user_id)

        try:
            await self.outbox.apply(self._event(events.MESSAGE_PINNED, workspace_id, user, chat_id,
                                                message_id), Check("pins", message_id), change)
        except _NoChange:
            pass

    async def unpin(self, user: Identity, chat_id: str, message_id: str) -> None:
        # A deleted message's pin can still be taken away (it no longer shows in the listing anyway).
        workspace_id, _, pinned = await self._prepare(user, chat_id, message_id, deleted_ok=True)
        if not pinned:
            return

        async def change() -> None:
            deleted = (await self.store.pins.delete_one({"_id": message_id})).deleted_count
            await self.marks.clear_pinned(message_id)
            if not deleted:
                raise _NoChange()

        try:
            await self.outbox.apply(self._event(events.MESSAGE_UNPINNED, workspace_id, user, chat_id,
                                                message_id), Check("pins", message_id, "absent"), change)
        except _NoChange:
            pass

    async def list(self, user: Identity, chat_id: str, query: PinsQuery) -> PinsPage:
        """The chat and membership, one range of the (chat_id, rank) index, the messages and their marks by _id."""
        await self.access.access(user, chat_id)
        after = decode_cursor("pins", query.cursor, str) if query.cursor is not None else None
        pins, more = await key_range(self.store.pins, {"chat_id": chat_id}, "rank", after=after, limit=query.limit)
        next_cursor = encode_cursor("pins", pins[-1]["rank"]) if more else None
        if not pins:
            return PinsPage(pins=[], next_cursor=next_cursor)
        docs = await self.store.messages.find(
            {"_id": {"$in": [pin["_id"] for pin in pins]}, "chat_id": {"$eq": chat_id}}).to_list()
        by_id = {doc["_id"]: doc for doc in docs if not doc.get("deleted") and not doc.get("gap")}
        shown = [(pin, message_out(by_id[pin["_id"]], self.links)) for pin in pins if pin["_id"] in by_id]
        await self.marks.decorate([message for _, message in shown], user.user_id)
        return PinsPage(
            pins=[PinOut(message=message, user_id=pin["user_id"], pinned_at=isoformat(pin["pinned_at"]))
                  for pin, message in shown],
            next_cursor=next_cursor,
        )
