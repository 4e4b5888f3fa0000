"""Chats and memberships: the four chat types, who may see and change them, one event per change."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import msgspec
from pymongo.errors import DuplicateKeyError

from app import events
from app.auth import Identity
from app.errors import APIError, conflict, forbidden, invalid, not_found
from app.outbox import Check, Outbox
from app.schemas.chats import (
    CHANNELS,
    DIRECT,
    GROUP,
    MANAGERS,
    MEMBER,
    OWNER,
    PRIVATE_CHANNEL,
    PUBLIC_CHANNEL,
    ChatCreateIn,
    ChatOut,
    ChatSummaryOut,
    ChatUpdateIn,
    MemberOut,
    MembersAddIn,
    chat_out,
    member_out,
)
from app.schemas.common import valid_id
from app.schemas.messages import message_out
from app.services import membership
from app.services.membership import ChatAccess
from app.store import Store, isoformat, new_id, utcnow


def _latest(*values: Any) -> datetime.datetime:
    found = [v for v in values if isinstance(v, datetime.datetime)]
    return max(found) if found else datetime.datetime.min.replace(tzinfo=datetime.timezone.utc)


class ChatService:
    """Who may do what to a chat and its members; what a caller may see is ChatAccess's answer."""

    def __init__(self, store: Store, outbox: Outbox, access: ChatAccess):
        self.store = store
        self.outbox = outbox
        self.access = access

    # -- members of a chat -------------------------------------------------------------------

    async def member_ids(self, chat_id: str) -> list[str]:
        cursor = self.store.members.find({"chat_id": chat_id}, {"user_id": 1}).sort([("joined_at", 1), ("_id", 1)])
        return [doc["user_id"] async for doc in cursor]

    async def _check_users(self, workspace_id: str, user_ids: list[str], field: str) -> None:
        if not user_ids:
            return
        cursor = self.store.users.find({"_id": {"$in": user_ids}, "workspace_id": workspace_id}, {"_id": 1})
        if len(await cursor.to_list()) != len(user_ids):
            raise invalid(field, "every user must belong to your workspace")

    # -- chats -------------------------------------------------------------------------------

    async def create(self, user: Identity, body: ChatCreateIn) -> tuple[ChatOut, bool]:
        """(chat, created); creating a direct chat that exists returns it with created=False."""
        others = list(dict.fromkeys(u for u in body.members if u != user.user_id))
        now = utcnow()
        doc: dict[str, Any] = {
            "_id": new_id(),
            "workspace_id": user.workspace_id,
            "type": body.type,
            "name": body.name.strip() if body.name is not None else None,
            "description": body.description if body.description is not None else "",
            "owner_id": user.user_id,
            "last_seq": 0,
            "last_message_at": now,
            "created_at": now,
            "updated_at": now,
        }
        if body.type == DIRECT:
            if len(others) != 1:
                raise invalid("members", "a direct chat is between exactly 2 people: give one other user")
            if body.name is not None:
                raise invalid("name", "a direct chat has no name")
            doc["direct_key"] = ":".join(sorted([user.user_id, others[0]]))
        elif body.type == GROUP:
            if len(others) < 2:
                raise invalid("members", "a group has 3 or more people: give at least 2 other users")
        else:
            if body.name is None:
                raise invalid("name", "required for a channel")
            doc["name_key"] = doc["name"].casefold()
        await self._check_users(user.workspace_id, others, "members")
        if body.type == DIRECT:
            existing = await self.store.chats.find_one({"direct_key": doc["direct_key"]})
            if existing is not None:
                return chat_out(existing, await self.member_ids(existing["_id"])), False
        elif body.type in CHANNELS:
            taken = await self.store.chats.find_one(
                {"workspace_id": user.workspace_id, "name_key": doc["name_key"]}, {"_id": 1}
            )
            if taken is not None:
                raise conflict("chat_name_taken", "a channel with this name exists in your workspace")

        chat_id = doc["_id"]
        member_docs = [
            {
                "_id": new_id(),
                "chat_id": chat_id,
                "user_id": uid,
                "workspace_id": user.workspace_id,
                "role": OWNER if uid == user.user_id else MEMBER,
                "last_read_seq": 0,
                "joined_at": now,
            }
            for uid in [user.user_id, *others]
        ]
        out = chat_out(doc, [m["user_id"] for m in member_docs])
        event = events.make_event(
            events.CHAT_CREATED, msgspec.to_builtins(out),
            chat_id=chat_id, workspace_id=user.workspace_id, actor_id=user.user_id,
        )
        doc["version"] = event.id

        async def change() -> None:
            # Memberships first, the chat last: the chat document is the commit point, and
            # memberships of a chat that does not exist are invisible.
            await self.store.members.insert_many(member_docs)
            try:
                await self.store.chats.insert_one(doc)
            except BaseException:
                await self.store.members.delete_many({"chat_id": chat_id})
                raise

        try:
            await self.outbox.apply(event, Check("chats", chat_id), change)
        except DuplicateKeyError:
            if body.type == DIRECT:  # created by a concurrent request
                existing = await self.store.chats.find_one({"direct_key": doc["direct_key"]})
                if existing is not None:
                    return chat_out(existing, await self.member_ids(existing["_id"])), False
            raise conflict("chat_name_taken", "a channel with this name exists in your workspace") from None
        return out, True

    async def get(self, user: Identity, chat_id: str) -> ChatOut:
        chat, _ = await self.access.access(user, chat_id)
        return chat_out(chat, await self.member_ids(chat_id))

    async def list_mine(self, user: Identity) -> list[ChatSummaryOut]:
        """The caller's chats with unread counts and last messages, most recent activity first."""
        read_marks = {
            doc["chat_id"]: doc.get("last_read_seq", 0)
            async for doc in self.store.members.find({"user_id": user.user_id}, {"chat_id": 1, "last_read_seq": 1})
        }
        if not read_marks:
            return []
        chats = {
            doc["_id"]: doc
            async for doc in self.store.chats.find(
                {"_id": {"$in": list(read_marks)}, "workspace_id": user.workspace_id}
            )
        }
        if not chats:
            return []
        members: dict[str, list[str]] = {chat_id: [] for chat_id in chats}
        cursor = self.store.members.find({"chat_id": {"$in": list(chats)}}, {"chat_id": 1, "user_id": 1})
        async for doc in cursor.sort([("joined_at", 1), ("_id", 1)]):
            members[doc["chat_id"]].append(doc["user_id"])

        unread: dict[str, int] = {}
        behind = [
            {"chat_id": chat_id, "seq": {"$gt": read_marks[chat_id]}}
            for chat_id, chat in chats.items()
            if chat.get("last_seq", 0) > read_marks[chat_id]
        ]
        if behind:
            pipeline = [
                {"$match": {"$or": behind, "sender_id": {"$ne": user.user_id}, "deleted": False}},
                {"$group": {"_id": "$chat_id", "n": {"$sum": 1}}},
            ]
            unread = {doc["_id"]: doc["n"] async for doc in await self.store.messages.aggregate(pipeline)}

        with_messages = [chat_id for chat_id, chat in chats.items() if chat.get("last_seq", 0) > 0]
        lasts = await asyncio.gather(
            *(
                self.store.messages.find_one({"chat_id": chat_id}, sort=[("seq", -1)])
                for chat_id in with_messages
            )
        )
        last_by_chat = {chat_id: doc for chat_id, doc in zip(with_messages, lasts) if doc is not None}

        summaries = []
        for chat_id, chat in chats.items():
            activity = _latest(chat.get("updated_at"), chat.get("last_message_at"), chat.get("created_at"))
            base = chat_out(chat, members[chat_id])
            last = last_by_chat.get(chat_id)
            summaries.append(
                (
                    activity,
                    ChatSummaryOut(
                        **{f: getattr(base, f) for f in base.__struct_fields__ if f != "updated_at"},
                        updated_at=isoformat(activity),
                        unread_count=unread.get(chat_id, 0),
                        last_message=message_out(last) if last else None,
                    ),
                )
            )
        summaries.sort(key=lambda pair: (pair[0], pair[1].id), reverse=True)
        return [summary for _, summary in summaries]

    async def list_public(self, user: Identity) -> list[ChatOut]:
        """Public channels of the caller's workspace that the caller has not joined, by name."""
        joined = await membership.user_chat_ids(self.store, user.user_id)
        cursor = self.store.chats.find({"workspace_id": user.workspace_id, "type": PUBLIC_CHANNEL})
        channels = [doc async for doc in cursor.sort([("name_key", 1)]) if doc["_id"] not in joined]
        member_lists = await asyncio.gather(*(self.member_ids(doc["_id"]) for doc in channels))
        return [chat_out(doc, ids) for doc, ids in zip(channels, member_lists)]

    async def update(self, user: Identity, chat_id: str, body: ChatUpdateIn) -> ChatOut:
        chat, member = await self.access.require_member(user, chat_id)
        if member["role"] not in MANAGERS:
            raise forbidden("only the chat's owner or an admin may change it")
        if chat["type"] == DIRECT:
            raise APIError(422, "validation_failed", "a direct chat has no name or description",
                           fields={"name": "a direct chat cannot be changed"})
        if body.name is None and body.description is None:
            raise invalid("name", "give a name or a description to change")
        changes: dict[str, Any] = {}
        if body.name is not None:
            changes["name"] = body.name.strip()
            if chat["type"] in CHANNELS:
                changes["name_key"] = changes["name"].casefold()
                taken = await self.store.chats.find_one(
                    {"workspace_id": chat["workspace_id"], "name_key": changes["name_key"], "_id": {"$ne": chat_id}},
                    {"_id": 1},
                )
                if taken is not None:
                    raise conflict("chat_name_taken", "a channel with this name exists in your workspace")
        if body.description is not None:
            changes["description"] = body.description
        now = utcnow()
        out = chat_out({**chat, **changes, "updated_at": now}, await self.member_ids(chat_id))
        event = events.make_event(
            events.CHAT_UPDATED, msgspec.to_builtins(out),
            chat_id=chat_id, workspace_id=chat["workspace_id"], actor_id=user.user_id,
        )

        async def change() -> None:
            result = await self.store.chats.update_one(
                {"_id": chat_id},
                {"$set": {**changes, "version": event.id}, "$currentDate": {"updated_at": True}},
            )
            if result.matched_count == 0:
                raise not_found("chat")  # deleted meanwhile

        try:
            await self.outbox.apply(event, Check("chats", chat_id, "eq", "version", event.id), change)
        except DuplicateKeyError:
            raise conflict("chat_name_taken", "a channel with this name exists in your workspace") from None
        return out

    async def delete(self, user: Identity, chat_id: str) -> None:
        chat, member = await self.access.require_member(user, chat_id)
        if member["role"] != OWNER:
            raise forbidden("only the chat's owner may delete it")
        recipients = await self.member_ids(chat_id)
        event = events.make_event(
            events.CHAT_DELETED, {"id": chat_id},
            chat_id=chat_id, workspace_id=chat["workspace_id"], actor_id=user.user_id, recipients=recipients,
        )

        async def change() -> None:
            await self.store.chats.delete_one({"_id": chat_id})

        await self.outbox.apply(event, Check("chats", chat_id, "absent"), change)
        # The chat is gone (the commit point); what hangs off it is invisible and cleaned up here.
        await self.store.members.delete_many({"chat_id": chat_id})
        await self.store.messages.delete_many({"chat_id": chat_id})
        await self.store.send_claims.delete_many({"chat_id": chat_id})

    # -- members -----------------------------------------------------------------------------

    async def members(self, user: Identity, chat_id: str) -> list[MemberOut]:
        await self.access.access(user, chat_id)
        return await self._member_list(chat_id)

    async def _member_list(self, chat_id: str) -> list[MemberOut]:
        cursor = self.store.members.find({"chat_id": chat_id}).sort([("joined_at", 1), ("_id", 1)])
        return [member_out(doc) async for doc in cursor]

    async def add_members(self, user: Identity, chat_id: str, body: MembersAddIn) -> list[MemberOut]:
        chat, member = await self.access.require_member(user, chat_id)
        if chat["type"] == DIRECT:
            raise invalid("user_ids", "a direct chat is always between the same 2 people")
        if chat["type"] == PRIVATE_CHANNEL and member["role"] not in MANAGERS:
            raise forbidden("only the channel's owner or an admin may invite to a private channel")
        user_ids = list(dict.fromkeys(body.user_ids))
        await self._check_users(chat["workspace_id"], user_ids, "user_ids")
        present = {
            doc["user_id"]
            async for doc in self.store.members.find({"chat_id": chat_id, "user_id": {"$in": user_ids}}, {"user_id": 1})
        }
        for uid in user_ids:
            if uid not in present:
                await self._add_member(chat, uid, MEMBER, actor_id=user.user_id)
        return await self._member_list(chat_id)

    async def _add_member(self, chat: dict[str, Any], user_id: str, role: str, *, actor_id: str) -> bool:
        doc = {
            "_id": new_id(),
            "chat_id": chat["_id"],
            "user_id": user_id,
            "workspace_id": chat["workspace_id"],
            "role": role,
            "last_read_seq": 0,
            "joined_at": utcnow(),
        }
        event = events.make_event(
            events.MEMBER_JOINED, {"chat_id": chat["_id"], "user_id": user_id, "role": role},
            chat_id=chat["_id"], workspace_id=chat["workspace_id"], actor_id=actor_id,
        )

        async def change() -> None:
            await self.store.members.insert_one(doc)

        try:
            await self.outbox.apply(event, Check("members", doc["_id"]), change)
        except DuplicateKeyError:
            return False  # joined by a concurrent request, which published the event
        return True

    async def remove_member(self, user: Identity, chat_id: str, user_id: str) -> None:
        chat, me = await self.access.require_member(user, chat_id)
        if not valid_id(user_id):
            raise not_found("member")
        target = me if user_id == user.user_id else await self.store.members.find_one(
            {"chat_id": chat_id, "user_id": user_id}
        )
        if target is None:
            raise not_found("member")
        if chat["type"] == DIRECT:
            raise invalid("user_id", "nobody can leave or be removed from a direct chat")
        if target is not me:
            if me["role"] not in MANAGERS:
                raise forbidden("only the chat's owner or an admin may remove other members")
            if target["role"] == OWNER:
                raise forbidden("the owner cannot be removed")
        elif me["role"] == OWNER:
            raise conflict("owner_cannot_leave", "the owner cannot leave the chat; delete it instead")
        remaining = [uid for uid in await self.member_ids(chat_id) if uid != user_id]
        event = events.make_event(
            events.MEMBER_LEFT, {"chat_id": chat_id, "user_id": user_id, "role": target["role"]},
            chat_id=chat_id, workspace_id=chat["workspace_id"], actor_id=user.user_id,
            recipients=[*remaining, user_id],
        )

        async def change() -> None:
            await self.store.members.delete_one({"_id": target["_id"]})

        await self.outbox.apply(event, Check("members", target["_id"], "absent"), change)

    async def join(self, user: Identity, chat_id: str) -> ChatOut:
        chat, member = await self.access.access(user, chat_id)
        if member is None:
            await self._add_member(chat, user.user_id, MEMBER, actor_id=user.user_id)
        return chat_out(chat, await self.member_ids(chat_id))
