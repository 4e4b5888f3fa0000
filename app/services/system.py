"""System messages: the lines a chat writes about itself (joined, left, renamed, archived…), never unread."""

from __future__ import annotations

import logging
from typing import Any, Sequence

import msgspec
from pymongo.errors import PyMongoError

from app import events
from app.outbox import Check, Outbox
from app.schemas.chats import CHANNELS
from app.schemas.messages import SYSTEM_KIND, MessageOut, message_out
from app.services.messages import message_doc
from app.services.sequence import ChatSequence, Draft
from app.store import new_id

log = logging.getLogger("fechatter.system")

JOINED, LEFT, ADDED, REMOVED = "joined", "left", "added", "removed"
RENAMED, TOPIC, ARCHIVED, UNARCHIVED = "renamed", "topic", "archived", "unarchived"


def system_text(type_: str, chat_type: str, user_ids: Sequence[str], name: str | None) -> str:
    """The line's plain text after the actor's name, for clients that show `content` only (names change,
    so the actor and the people are ids in `system`, named by the client)."""
    what = "the channel" if chat_type in CHANNELS else "the conversation"
    people = "1 person" if len(user_ids) == 1 else f"{len(user_ids)} people"
    return {
        JOINED: f"joined {what}",
        LEFT: f"left {what}",
        ADDED: f"added {people} to {what}",
        REMOVED: f"removed {people} from {what}",
        RENAMED: f"renamed {what} to {'#' if chat_type in CHANNELS else ''}{name}",
        TOPIC: f"set the topic: {name}" if name else "cleared the topic",
        ARCHIVED: f"archived {what}",
        UNARCHIVED: f"unarchived {what}",
    }[type_]


class SystemMessages:
    """Posts a system message as a send does: a seq from the chat's sequence (not countable, so it is never
    unread for anyone), the actor's read mark moved to it, one `message.created` through the outbox."""

    def __init__(self, store: Any, outbox: Outbox, sequence: ChatSequence):
        self.store = store
        self.outbox = outbox
        self.sequence = sequence

    async def post(
        self, chat: dict[str, Any], actor_id: str, type_: str, *, user_ids: Sequence[str] = (),
        name: str | None = None, actor_member_id: str | None = None,
    ) -> MessageOut:
        """`chat` needs _id, workspace_id and type; `actor_member_id`, the actor's membership when they have
        one after the change, gets its mark moved (posting reads the chat, and joining starts caught up)."""
        system: dict[str, Any] = {"type": type_, "user_ids": list(dict.fromkeys(user_ids))}
        if name is not None:
            system["name"] = name
        doc = message_doc(chat["_id"], actor_id, system_text(type_, chat.get("type", ""), system["user_ids"], name))
        doc.update(kind=SYSTEM_KIND, system=system)
        draft = Draft(doc, version=new_id())
        taken = await self.sequence.take_many(chat["_id"], chat["workspace_id"], 1, draft, countable=False)
        seq = taken.seq
        doc.update(seq=seq, ord=taken.ord)
        moved_from = None
        if actor_member_id is not None:
            moved_from = await self.sequence.sender_saw(actor_member_id, seq, taken.ord)
        out = message_out(doc)
        event = events.make_event(
            events.MESSAGE_CREATED, msgspec.to_builtins(out),
            chat_id=chat["_id"], workspace_id=chat["workspace_id"], actor_id=actor_id, event_id=draft.version,
        )
        doc["version"] = event.id
        read = events.personal_event(
            events.READ, {"chat_id": chat["_id"], "user_id": actor_id, "seq": seq},
            user_id=actor_id, workspace_id=chat["workspace_id"],
        ) if moved_from is not None and moved_from < seq - 1 else None

        async def change() -> None:
            await self.store.messages.insert_one(doc)

        try:
            # countable 0: a gap left by a crash here is filled without counting a deletion.
            await self.outbox.apply(event, Check("messages", doc["_id"]), change, repair={"seq": seq, "countable": 0},
                                    then=read)
        except PyMongoError:
            try:
                await self.sequence.fill_gap(chat["_id"], seq, countable=False)
            except PyMongoError:
                pass  # the listing and the drainer repair it later
            raise
        return out
