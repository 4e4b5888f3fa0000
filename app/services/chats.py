"""Chats and memberships: the four chat types, who may see and change them, one event per change.

A chat document keeps what the chat list shows (app.services.sequence's counters, its last message,
`member_count`, and `member_ids` for direct and group chats), so GET /api/chats is two reads.
"""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import msgspec
from pymongo.errors import DuplicateKeyError

from app import events
from app.auth import Identity
from app.config import LimitsConfig
from app.errors import APIError, conflict, forbidden, invalid, not_found
from app.outbox import Check, Outbox
from app.schemas.chats import (
    ADMIN,
    CHANNELS,
    DIRECT,
    GROUP,
    MANAGERS,
    MEMBER,
    NOTIFY_ALL,
    OWNER,
    PRIVATE_CHANNEL,
    PUBLIC_CHANNEL,
    ChatCreateIn,
    ChatOut,
    ChatSettingsIn,
    ChatSettingsOut,
    ChatSummaryOut,
    ChatUpdateIn,
    MemberOut,
    MemberRoleIn,
    MembersAddIn,
    chat_out,
    chat_settings_out,
    last_message_out,
    member_out,
)
from app.schemas.common import Id, PageQuery, valid_id
from app.services import membership
from app.services.membership import MEMBERSHIPS_BATCH, ChatAccess, writable
from app.services.mentions import MentionService, mention_count
from app.services.paging import Page, cursor_after, encode_cursor, key_page, key_range, page_size
from app.services.ratelimit import RateLimiter
from app.services.sequence import count_unread, new_chat_counters, new_member_counters, unread_count
from app.services.system import ADDED, ARCHIVED, JOINED, LEFT, REMOVED, RENAMED, TOPIC, UNARCHIVED, SystemMessages
from app.store import Store, isoformat, new_id, utcnow

# The chats whose documents list their members (member_ids): the small ones, shown by their people.
LISTED_MEMBERS = (DIRECT, GROUP)
# A settings change that keeps losing its compare-and-set to concurrent ones gives up after this many.
SETTINGS_ATTEMPTS = 3


class _Changed(Exception):
    """A conditional write found the document changed since it was read: nothing written, no event."""


def _latest(*values: Any) -> datetime.datetime:
    found = [v for v in values if isinstance(v, datetime.datetime)]
    return max(found) if found else datetime.datetime.min.replace(tzinfo=datetime.timezone.utc)


def chat_doc(
    workspace_id: str, owner_id: str, type_: str, member_ids: list[str], *, name: str | None = None,
    description: str = "", now: datetime.datetime | None = None,
) -> dict[str, Any]:
    """A chat document as create writes it (member_ids: the owner first); no uniqueness checks."""
    now = now or utcnow()
    doc: dict[str, Any] = {
        "_id": new_id(),
        "workspace_id": workspace_id,
        "type": type_,
        "name": name,
        "description": description,
        "owner_id": owner_id,
        "last_message_at": now,
        "created_at": now,
        "updated_at": now,
        **new_chat_counters(len(member_ids), member_ids if type_ in LISTED_MEMBERS else None),
    }
    if type_ == DIRECT:
        doc["direct_key"] = ":".join(sorted(member_ids))
    elif type_ in CHANNELS and name is not None:
        doc["name_key"] = name.casefold()
    return doc


def member_doc(
    chat_id: str, user_id: str, workspace_id: str, role: str, now: datetime.datetime | None = None
) -> dict[str, Any]:
    """A membership document as create and add write it: nothing read yet."""
    return {
        "_id": new_id(),
        "chat_id": chat_id,
        "user_id": user_id,
        "workspace_id": workspace_id,
        "role": role,
        "joined_at": now or utcnow(),
        # The member's own settings of the chat, written here so the boolean stays typed.
        "notify": NOTIFY_ALL,
        "muted": False,
        # A copy of the chat's own flag (ChatService.set_archived keeps both): a send reads only the membership.
        "archived": False,
        **new_member_counters(),
    }


class ChatService:
    """Who may do what to a chat and its members; what a caller may see is ChatAccess's answer."""

    def __init__(self, store: Store, outbox: Outbox, access: ChatAccess, *, limiter: RateLimiter,
                 limits: LimitsConfig, mentions: MentionService, system: SystemMessages | None = None):
        self.system = system
        self.store = store
        self.outbox = outbox
        self.access = access
        self.limiter = limiter
        self.limits = limits
        self.mentions = mentions

    async def _per_minute(self, user: Identity, kind: str, limit: int, what: str) -> None:
        """One more `kind` change by the user this minute, or 429: each is a durable event in every notify
        process's replay window, which a flood would empty."""
        await self.limiter.per_user(kind, user.user_id, limit=limit, window=60, what=what)

    # -- members of a chat -------------------------------------------------------------------

    async def member_ids(self, chat_id: str) -> list[str]:
        cursor = self.store.members.find({"chat_id": {"$eq": chat_id}}, {"user_id": 1})
        return [doc["user_id"] async for doc in cursor.sort([("joined_at", 1), ("_id", 1)])]

    async def _members_of(self, chat: dict[str, Any]) -> list[str]:
        """A chat's `members`: those its document lists (direct and group chats), [] for a channel.

        A channel's members grow with it (thousands): its `member_count` says how many, and GET
        /members pages them. Only a direct or group chat written before member_ids reads them.
        """
        if chat.get("type") not in LISTED_MEMBERS:
            return []
        listed = chat.get("member_ids")
        return list(listed) if isinstance(listed, list) else await self.member_ids(chat["_id"])

    async def _check_users(self, workspace_id: str, user_ids: list[str], field: str) -> None:
        if not user_ids:
            return
        cursor = self.store.users.find({"_id": {"$in": user_ids}, "workspace_id": {"$eq": workspace_id}}, {"_id": 1})
        if len(await cursor.to_list()) != len(user_ids):
            raise invalid(field, "every user must belong to your workspace")

    # -- chats -------------------------------------------------------------------------------

    async def create(self, user: Identity, body: ChatCreateIn) -> tuple[ChatOut, bool]:
        """(chat, created); creating a direct chat that exists returns it with created=False."""
        others = list(dict.fromkeys(u for u in body.members if u != user.user_id))
        if body.type == DIRECT:
            if len(others) != 1:
                raise invalid("members", "a direct chat is between exactly 2 people: give one other user")
            if body.name is not None:
                raise invalid("name", "a direct chat has no name")
        elif body.type == GROUP:
            if len(others) < 2:
                raise invalid("members", "a group has 3 or more people: give at least 2 other users")
        elif body.name is None:
            raise invalid("name", "required for a channel")
        now = utcnow()
        doc = chat_doc(
            user.workspace_id, user.user_id, body.type, [user.user_id, *others],
            name=body.name.strip() if body.name is not None else None,
            description=body.description if body.description is not None else "", now=now,
        )
        await self._check_users(user.workspace_id, others, "members")
        if body.type == DIRECT:
            existing = await self.store.chats.find_one({"direct_key": {"$eq": doc["direct_key"]}})
            if existing is not None:
                return chat_out(existing, await self._members_of(existing)), False
        elif body.type in CHANNELS:
            taken = await self.store.chats.find_one(
                {"workspace_id": {"$eq": user.workspace_id}, "name_key": {"$eq": doc["name_key"]}}, {"_id": 1}
            )
            if taken is not None:
                raise conflict("chat_name_taken", "a channel with this name exists in your workspace")
        # Counted only for a chat about to be created: every new chat is an event to all its members.
        await self.limiter.per_user("chats", user.user_id, limit=self.limits.chats_per_hour_per_user, window=3600,
                                    what="chats created")

        chat_id = doc["_id"]
        member_docs = [
            member_doc(chat_id, uid, user.workspace_id, OWNER if uid == user.user_id else MEMBER, now)
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
                await self.store.members.delete_many({"chat_id": {"$eq": chat_id}})
                raise

        try:
            await self.outbox.apply(event, Check("chats", chat_id), change)
        except DuplicateKeyError:
            if body.type == DIRECT:  # created by a concurrent request
                existing = await self.store.chats.find_one({"direct_key": {"$eq": doc["direct_key"]}})
                if existing is not None:
                    return chat_out(existing, await self._members_of(existing)), False
            raise conflict("chat_name_taken", "a channel with this name exists in your workspace") from None
        return out, True

    async def get(self, user: Identity, chat_id: str) -> ChatOut:
        chat, _ = await self.access.access(user, chat_id)
        return chat_out(chat, await self._members_of(chat))

    async def list_mine(self, user: Identity) -> list[ChatSummaryOut]:
        """The caller's chats with unread and mention counts, settings and last messages, most recent
        activity first.

        Two reads whatever the number of chats: the caller's memberships, then their chats by _id;
        counts and last messages are kept on those documents (app.services.sequence, .mentions). A read
        mark below a chat's deleted floor (many deletions since the caller last read) costs one count.
        """
        marks = {
            doc["chat_id"]: doc
            async for doc in self.store.members.find(
                {"user_id": {"$eq": user.user_id}},
                {"chat_id": 1, "last_read_seq": 1, "read_ord": 1, "own_seqs": 1, "mention_seqs": 1,
                 "notify": 1, "muted": 1},
                batch_size=MEMBERSHIPS_BATCH,
            )
        }
        if not marks:
            return []
        cursor = self.store.chats.find({"_id": {"$in": list(marks)}, "workspace_id": {"$eq": user.workspace_id}},
                                       batch_size=MEMBERSHIPS_BATCH)
        chats = [doc async for doc in cursor]
        unread = {chat["_id"]: unread_count(chat, marks[chat["_id"]]) for chat in chats}
        slow = [chat for chat in chats if unread[chat["_id"]] is None]
        if slow:
            counted = await asyncio.gather(
                *(count_unread(self.store, chat, marks[chat["_id"]], user.user_id) for chat in slow)
            )
            unread.update({chat["_id"]: n for chat, n in zip(slow, counted)})

        summaries = []
        for chat in chats:
            mark = marks[chat["_id"]]
            settings = chat_settings_out(chat["_id"], mark)
            activity = _latest(chat.get("updated_at"), chat.get("last_message_at"), chat.get("created_at"))
            listed = chat.get("member_ids") if chat["type"] in LISTED_MEMBERS else None
            base = chat_out(chat, list(listed) if isinstance(listed, list) else [])
            summaries.append(
                (
                    activity,
                    ChatSummaryOut(
                        **{f: getattr(base, f) for f in base.__struct_fields__ if f != "updated_at"},
                        updated_at=isoformat(activity),
                        unread_count=unread[chat["_id"]] or 0,
                        last_message=last_message_out(chat),
                        mention_count=mention_count(chat, mark),
                        last_read_seq=mark.get("last_read_seq", 0),
                        notify=settings.notify,
                        muted=settings.muted,
                    ),
                )
            )
        # Archived chats last (read-only, kept for reference), each part by recent activity.
        summaries.sort(key=lambda pair: (not pair[1].archived, pair[0], pair[1].id), reverse=True)
        return [summary for _, summary in summaries]

    async def list_public(self, user: Identity, query: PageQuery) -> Page[ChatOut]:
        """Public channels of the caller's workspace that the caller has not joined, by name.

        Ranges of the (workspace_id, type, name_key) index; the caller's own channels are skipped as
        they come, so the rows read past a page are at most the caller's memberships.
        """
        after = cursor_after("channels", query)
        want = page_size(query)
        joined = await membership.user_chat_ids(self.store, user.user_id)
        channels: list[dict[str, Any]] = []
        more = True
        while more and len(channels) <= want:
            batch, more = await key_range(
                self.store.chats, {"workspace_id": user.workspace_id, "type": PUBLIC_CHANNEL}, "name_key",
                after=after, lo="", limit=want + 1 - len(channels) + min(len(joined), want),
            )
            if batch:
                after = batch[-1]["name_key"]
            channels += [doc for doc in batch if doc["_id"] not in joined]
        more = more or len(channels) > want
        channels = channels[:want]
        # No member reads: a channel's `members` is [] (see _members_of), its member_count is kept.
        items = [chat_out(doc, []) for doc in channels]
        return Page(items, encode_cursor("channels", channels[-1]["name_key"]) if more and channels else None)

    async def update(self, user: Identity, chat_id: str, body: ChatUpdateIn) -> ChatOut:
        """Name, description and topic (owner or admin); `default` (the workspace's owner, public channels).

        A rename or a new topic adds a system message after the chat.updated event.
        """
        only_default = body.default is not None and body.name is None and body.description is None \
            and body.topic is None
        if only_default:
            # The workspace's owner chooses its default channels, member of them or not.
            chat, member = await self.access.access(user, chat_id)
        else:
            chat, member = await self.access.require_member(user, chat_id)
            if member["role"] not in MANAGERS:
                raise forbidden("only the chat's owner or an admin may change it")
        if chat["type"] == DIRECT:
            raise APIError(422, "validation_failed", "a direct chat has no name or description",
                           fields={"name": "a direct chat cannot be changed"})
        if body.name is None and body.description is None and body.topic is None and body.default is None:
            raise invalid("name", "Give a name, a description, a topic or default to change")
        if not only_default or body.default:
            writable(chat)
        if body.default is not None:
            if chat["type"] != PUBLIC_CHANNEL:
                raise invalid("default", "Only a public channel can be a default channel")
            workspace = await self.store.workspaces.find_one({"_id": chat["workspace_id"]}, {"owner_id": 1})
            if workspace is None or workspace.get("owner_id") != user.user_id:
                raise forbidden("only the workspace's owner may choose its default channels")
        await self._per_minute(user, "chat_updates", self.limits.chat_updates_per_minute_per_user, "chat changes")
        changes: dict[str, Any] = {}
        if body.name is not None:
            changes["name"] = body.name.strip()
            if chat["type"] in CHANNELS:
                changes["name_key"] = changes["name"].casefold()
                # No {_id: {$ne}} here: a range on _id sends the embedded server to a scan of every chat.
                taken = await self.store.chats.find_one(
                    {"workspace_id": {"$eq": chat["workspace_id"]}, "name_key": {"$eq": changes["name_key"]}},
                    {"_id": 1},
                )
                taken = None if taken is not None and taken["_id"] == chat_id else taken
                if taken is not None:
                    raise conflict("chat_name_taken", "a channel with this name exists in your workspace")
        if body.description is not None:
            changes["description"] = body.description
        if body.topic is not None:
            changes["topic"] = body.topic.strip()
        if body.default is not None:
            changes["default"] = body.default
        now = utcnow()
        out = chat_out({**chat, **changes, "updated_at": now}, await self._members_of(chat))
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
            if body.default is not None:
                # The workspace's list is what a joining user's signup reads: one document, no query of chats.
                await self.store.workspaces.update_one(
                    {"_id": chat["workspace_id"]},
                    {"$addToSet" if body.default else "$pull": {"default_chat_ids": chat_id}},
                )

        try:
            await self.outbox.apply(event, Check("chats", chat_id, "eq", "version", event.id), change)
        except DuplicateKeyError:
            raise conflict("chat_name_taken", "a channel with this name exists in your workspace") from None
        actor = member["_id"] if member is not None else None
        if "name" in changes and changes["name"] != chat.get("name"):
            await self._say(chat, user.user_id, RENAMED, name=changes["name"], actor_member_id=actor)
        if "topic" in changes and changes["topic"] != (chat.get("topic") or ""):
            await self._say(chat, user.user_id, TOPIC, name=changes["topic"], actor_member_id=actor)
        return out

    async def _say(self, chat: dict[str, Any], actor_id: str, type_: str, **fields: Any) -> None:
        """A system message about the change just made (none for a direct chat, or without SystemMessages)."""
        if self.system is None or chat.get("type") == DIRECT:
            return
        try:
            await self.system.post(chat, actor_id, type_, **fields)
        except APIError as error:
            if error.status_code != 404:
                raise  # 404: the chat was deleted meanwhile, and the line with it


    async def set_archived(self, user: Identity, chat_id: str, archived: bool) -> ChatOut:
        """Archive (read-only, listed last) or unarchive; owner or admin; a system message says so."""
        chat, member = await self.access.require_member(user, chat_id)
        if member["role"] not in MANAGERS:
            raise forbidden("only the chat's owner or an admin may archive or unarchive it")
        if chat["type"] == DIRECT:
            raise invalid("chat_id", "A direct chat cannot be archived")
        members = await self._members_of(chat)
        if bool(chat.get("archived")) == archived:
            return chat_out(chat, members)  # already so: nothing changes, no event
        await self._per_minute(user, "chat_updates", self.limits.chat_updates_per_minute_per_user, "chat changes")
        out = chat_out({**chat, "archived": archived, "updated_at": utcnow()}, members)
        event = events.make_event(
            events.CHAT_UPDATED, msgspec.to_builtins(out),
            chat_id=chat_id, workspace_id=chat["workspace_id"], actor_id=user.user_id,
        )

        async def change() -> None:
            result = await self.store.chats.update_one(
                {"_id": chat_id}, {"$set": {"archived": archived, "version": event.id},
                                   "$currentDate": {"updated_at": True}},
            )
            if result.matched_count == 0:
                raise not_found("chat")
            # Each membership carries the flag for the write paths (membership.writable); one update, O(members),
            # only on this rare change. A member joining meanwhile looks again after its insert (_add_member).
            await self.store.members.update_many({"chat_id": {"$eq": chat_id}}, {"$set": {"archived": archived}})

        await self.outbox.apply(event, Check("chats", chat_id, "eq", "version", event.id), change)
        await self._say(chat, user.user_id, ARCHIVED if archived else UNARCHIVED, actor_member_id=member["_id"])
        return out

    async def _member_named(self, me: dict[str, Any], user: Identity, chat_id: str, user_id: str) -> dict[str, Any]:
        """The membership of `user_id` in the chat (the caller's own when it names the caller); 404 otherwise."""
        if not valid_id(user_id):
            raise not_found("member")
        target = me if user_id == user.user_id else await self.store.members.find_one(
            {"chat_id": {"$eq": chat_id}, "user_id": {"$eq": user_id}}
        )
        if target is None:
            raise not_found("member")
        return target

    async def set_role(self, user: Identity, chat_id: str, user_id: str, body: MemberRoleIn) -> MemberOut:
        """The owner makes a member an admin or a member, or gives them the ownership (becoming an admin)."""
        chat, me = await self.access.require_member(user, chat_id)
        target = await self._member_named(me, user, chat_id, user_id)
        if chat["type"] == DIRECT:
            raise invalid("role", "A direct chat has no roles")
        if me["role"] != OWNER:
            raise forbidden("only the chat's owner may change roles")
        if target["role"] == body.role:
            return member_out(target)
        if target is me:
            raise conflict("owner_must_transfer", "give the ownership to another member first")
        await self._per_minute(user, "chat_updates", self.limits.chat_updates_per_minute_per_user, "chat changes")
        data: dict[str, Any] = {"chat_id": chat_id, "user_id": user_id, "role": body.role}
        if body.role == OWNER:
            data.update(owner_id=user_id, previous_owner_id=user.user_id)
        event = events.make_event(
            events.MEMBER_UPDATED, data, chat_id=chat_id, workspace_id=chat["workspace_id"], actor_id=user.user_id,
        )

        async def change() -> None:
            if body.role == OWNER:
                # The chat's owner_id is the commit point: of two transfers racing, one moves it.
                moved = await self.store.chats.update_one(
                    {"_id": chat_id, "owner_id": {"$eq": user.user_id}},
                    {"$set": {"owner_id": user_id}, "$currentDate": {"updated_at": True}},
                )
                if moved.matched_count == 0:
                    raise conflict("owner_changed", "the ownership changed meanwhile; reload and retry")
                await self.store.members.update_one({"_id": target["_id"]}, {"$set": {"role": OWNER}})
                await self.store.members.update_one({"_id": me["_id"]}, {"$set": {"role": ADMIN}})
            else:
                await self.store.members.update_one(
                    {"_id": target["_id"], "role": {"$ne": OWNER}}, {"$set": {"role": body.role}}
                )

        check = Check("chats", chat_id, "eq", "owner_id", user_id) if body.role == OWNER else \
            Check("members", target["_id"], "eq", "role", body.role)
        await self.outbox.apply(event, check, change)
        return member_out({**target, "role": body.role})

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
        if chat.get("default"):
            await self.store.workspaces.update_one({"_id": chat["workspace_id"]},
                                                   {"$pull": {"default_chat_ids": chat_id}})
        # The chat is gone (the commit point); what hangs off it is invisible and cleaned up here.
        await self.store.members.delete_many({"chat_id": {"$eq": chat_id}})
        await self.store.messages.delete_many({"chat_id": {"$eq": chat_id}})
        await self.store.send_claims.delete_many({"chat_id": {"$eq": chat_id}})
        await self.mentions.chat_deleted(chat_id)

    # -- members -----------------------------------------------------------------------------

    async def members(self, user: Identity, chat_id: str, query: PageQuery) -> Page[MemberOut]:
        chat, _ = await self.access.access(user, chat_id)
        page = await self._member_page(chat_id, query)
        if chat["type"] == DIRECT:
            # Two people alike: a direct chat shows no owner (its creator keeps the stored role, unused).
            page = Page([msgspec.structs.replace(m, role=MEMBER) for m in page.items], page.next_cursor)
        return page

    async def _member_list(self, chat_id: str) -> list[MemberOut]:
        """The unpaged members (at most UNPAGED_MAX), in join order."""
        return (await self._member_page(chat_id, PageQuery())).items

    async def _member_page(self, chat_id: str, query: PageQuery) -> Page[MemberOut]:
        """A page by user id, one range of the (chat_id, user_id) index; unpaged, sorted to join order."""
        # The cursor names the page's last user id, before an unpaged answer is put in join order.
        page = await key_page(self.store.members, "members", query, {"chat_id": chat_id}, "user_id", type_=Id)
        docs = page.items if query.paged else sorted(
            page.items, key=lambda doc: (isoformat(doc["joined_at"]) or "", doc["_id"]))
        return Page([member_out(doc) for doc in docs], page.next_cursor)

    async def add_members(self, user: Identity, chat_id: str, body: MembersAddIn) -> list[MemberOut]:
        chat, member = await self.access.require_member(user, chat_id)
        if chat["type"] == DIRECT:
            raise invalid("user_ids", "a direct chat is always between the same 2 people")
        if chat["type"] == PRIVATE_CHANNEL and member["role"] not in MANAGERS:
            raise forbidden("only the channel's owner or an admin may invite to a private channel")
        writable(chat)
        user_ids = list(dict.fromkeys(body.user_ids))
        await self._check_users(chat["workspace_id"], user_ids, "user_ids")
        present = {
            doc["user_id"]
            async for doc in self.store.members.find(
                {"chat_id": {"$eq": chat_id}, "user_id": {"$in": user_ids}}, {"user_id": 1}
            )
        }
        if any(uid not in present for uid in user_ids):  # counted once per request that adds someone
            await self._per_minute(user, "member_adds", self.limits.member_adds_per_minute_per_user, "members added")
        added = [uid for uid in user_ids if uid not in present
                 and await self._add_member(chat, uid, MEMBER, actor_id=user.user_id) is not None]
        if added:
            await self._say(chat, user.user_id, ADDED, user_ids=added, actor_member_id=member["_id"])
        return await self._member_list(chat_id)

    async def _add_member(self, chat: dict[str, Any], user_id: str, role: str, *,
                          actor_id: str) -> dict[str, Any] | None:
        """The new membership, or None when a concurrent request added it first."""
        doc = member_doc(chat["_id"], user_id, chat["workspace_id"], role)
        if chat.get("last_seq", 0) > 0:
            # Someone coming back: their messages from before never count as unread for them.
            cursor = self.store.messages.find(
                # Not their system lines (joined, left…): those never count, so are never subtracted.
                {"chat_id": {"$eq": chat["_id"]}, "sender_id": {"$eq": user_id}, "deleted": {"$eq": False},
                 "system": {"$exists": False}},
                {"seq": 1, "_id": 0},
            )
            doc["own_seqs"] = sorted([own["seq"] async for own in cursor])
            doc["own_n"] = len(doc["own_seqs"])
        event = events.make_event(
            events.MEMBER_JOINED, {"chat_id": chat["_id"], "user_id": user_id, "role": role},
            chat_id=chat["_id"], workspace_id=chat["workspace_id"], actor_id=actor_id,
        )

        async def change() -> None:
            await self.store.members.insert_one(doc)

        try:
            await self.outbox.apply(event, Check("members", doc["_id"]), change)
        except DuplicateKeyError:
            return None  # joined by a concurrent request, which published the event
        await self._count_member(chat, user_id, 1)
        return doc

    async def _count_member(self, chat: dict[str, Any], user_id: str, delta: int) -> None:
        """After the membership's insert or delete (the one that happened): the chat's member counters."""
        update: dict[str, Any] = {"$inc": {"member_count": delta}}
        if chat["type"] in LISTED_MEMBERS:
            update["$addToSet" if delta > 0 else "$pull"] = {"member_ids": user_id}
        after = await self.store.chats.find_one_and_update({"_id": chat["_id"]}, update, projection={"archived": 1})
        if delta > 0 and after is not None and after.get("archived"):
            # Archived after this member's chat was read, before its membership landed (set_archived's
            # update_many missed it): the membership takes the flag too.
            await self.store.members.update_one(
                {"chat_id": {"$eq": chat["_id"]}, "user_id": {"$eq": user_id}}, {"$set": {"archived": True}})

    async def remove_member(self, user: Identity, chat_id: str, user_id: str) -> None:
        chat, me = await self.access.require_member(user, chat_id)
        target = await self._member_named(me, user, chat_id, user_id)
        if chat["type"] == DIRECT:
            raise invalid("user_id", "nobody can leave or be removed from a direct chat")
        if target is not me:
            if me["role"] not in MANAGERS:
                raise forbidden("only the chat's owner or an admin may remove other members")
            if target["role"] == OWNER:
                raise forbidden("the owner cannot be removed")
        elif me["role"] == OWNER:
            raise conflict("owner_must_transfer",
                           "the owner cannot leave: give the ownership to another member first, or delete the chat")
        remaining = [uid for uid in await self.member_ids(chat_id) if uid != user_id]
        event = events.make_event(
            events.MEMBER_LEFT, {"chat_id": chat_id, "user_id": user_id, "role": target["role"]},
            chat_id=chat_id, workspace_id=chat["workspace_id"], actor_id=user.user_id,
            recipients=[*remaining, user_id],
        )

        async def change() -> int:
            return (await self.store.members.delete_one({"_id": target["_id"]})).deleted_count

        if await self.outbox.apply(event, Check("members", target["_id"], "absent"), change):
            await self._count_member(chat, user_id, -1)
            await self.mentions.left(chat_id, user_id)
            if target is me:
                await self._say(chat, user.user_id, LEFT, user_ids=[user_id])
            else:
                await self._say(chat, user.user_id, REMOVED, user_ids=[user_id], actor_member_id=me["_id"])

    # -- the caller's own settings of a chat -------------------------------------------------

    async def update_settings(self, user: Identity, chat_id: str, body: ChatSettingsIn) -> ChatSettingsOut:
        """The caller's notify level and mute of a chat they belong to (404 otherwise, a public channel too:
        there is no membership to hold them); one `chat.settings` event, to the caller's own streams.

        Compare-and-set on the membership's settings_version (the id of the last settings event), so the
        event always carries both values as stored: two changes racing never leave a tab with a stale one.
        """
        if body.notify is None and body.muted is None:
            raise invalid("notify", "give notify or muted to change")
        if not valid_id(chat_id):
            raise not_found("chat")
        for _ in range(SETTINGS_ATTEMPTS):
            member = await self.store.members.find_one(
                {"chat_id": {"$eq": chat_id}, "user_id": {"$eq": user.user_id}},
                {"workspace_id": 1, "notify": 1, "muted": 1, "settings_version": 1},
            )
            if member is None or member.get("workspace_id") != user.workspace_id:
                raise not_found("chat")
            changes: dict[str, Any] = {}
            if body.notify is not None:
                changes["notify"] = body.notify
            if body.muted is not None:
                changes["muted"] = body.muted
            out = chat_settings_out(chat_id, {**member, **changes})
            event = events.personal_event(events.CHAT_SETTINGS, msgspec.to_builtins(out), user_id=user.user_id,
                                          workspace_id=user.workspace_id)
            version = member.get("settings_version")
            query: dict[str, Any] = {"_id": member["_id"]}
            query["settings_version"] = {"$eq": version} if version is not None else {"$exists": False}
            update = {"$set": {"notify": out.notify, "muted": out.muted, "settings_version": event.id}}
            try:
                await self.outbox.apply(event, Check("members", member["_id"], "eq", "settings_version", event.id),
                                        self._set_if_unchanged(query, update))
            except _Changed:
                continue  # changed meanwhile by another tab (or the member left): read again
            return out
        raise conflict("settings_changed", "the settings changed meanwhile; retry")

    def _set_if_unchanged(self, query: dict[str, Any], update: dict[str, Any]):
        async def change() -> None:
            if (await self.store.members.update_one(query, update)).matched_count == 0:
                raise _Changed()

        return change

    async def join(self, user: Identity, chat_id: str) -> ChatOut:
        chat, member = await self.access.access(user, chat_id)
        if member is None:
            writable(chat)
            # Joining counts as adding a member (a join-leave loop is two events a turn).
            await self._per_minute(user, "member_adds", self.limits.member_adds_per_minute_per_user, "members added")
            joined = await self._add_member(chat, user.user_id, MEMBER, actor_id=user.user_id)
            if joined is not None:
                chat = {**chat, "member_count": chat.get("member_count", 0) + 1}
                # A first-time joiner starts caught up, as in Slack: their mark moves to the line saying they
                # joined, the history there to read. Someone coming back (their own messages are there) keeps
                # the mark at 0 and sees what they missed, mentions included.
                fresh = not joined.get("own_seqs")
                await self._say(chat, user.user_id, JOINED, user_ids=[user.user_id],
                                actor_member_id=joined["_id"] if fresh else None)
        return chat_out(chat, await self.member_ids(chat_id))

    # -- the workspace's default channels ----------------------------------------------------

    async def workspace_joined(self, user: dict[str, Any], workspace: dict[str, Any], created: bool) -> None:
        """AccountService's signup hook: a new workspace gets its #general; a user joining one joins its
        default channels (each with its `joined` line, the joiner's mark on it)."""
        if created:
            await self.create_general(workspace, user["_id"])
            return
        for chat_id in workspace.get("default_chat_ids") or ():
            chat = await self.store.chats.find_one({"_id": chat_id, "workspace_id": {"$eq": workspace["_id"]}})
            if chat is None or chat["type"] != PUBLIC_CHANNEL or chat.get("archived"):
                continue
            joined = await self._add_member(chat, user["_id"], MEMBER, actor_id=user["_id"])
            if joined is not None:
                await self._say(chat, user["_id"], JOINED, user_ids=[user["_id"]], actor_member_id=joined["_id"])

    async def create_general(self, workspace: dict[str, Any], owner_id: str) -> ChatOut:
        """The #general every workspace is made with: a public default channel of its owner; chat.created."""
        doc, members = general_docs(workspace["_id"], owner_id, [owner_id])
        out = chat_out(doc, [m["user_id"] for m in members])
        event = events.make_event(events.CHAT_CREATED, msgspec.to_builtins(out), chat_id=doc["_id"],
                                  workspace_id=workspace["_id"], actor_id=owner_id)
        doc["version"] = event.id

        async def change() -> None:
            await self.store.members.insert_many(members)
            await self.store.chats.insert_one(doc)  # the commit point, as in create
            await self.store.workspaces.update_one({"_id": workspace["_id"]},
                                                   {"$addToSet": {"default_chat_ids": doc["_id"]}})

        await self.outbox.apply(event, Check("chats", doc["_id"]), change)
        return out


GENERAL = "general"
GENERAL_DESCRIPTION = "Everyone in the workspace: announcements and anything for all"


def general_docs(workspace_id: str, owner_id: str, user_ids: list[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A workspace's #general (a default public channel of `owner_id`) and the memberships of `user_ids`."""
    now = utcnow()
    ids = list(dict.fromkeys([owner_id, *user_ids]))
    doc = chat_doc(workspace_id, owner_id, PUBLIC_CHANNEL, ids, name=GENERAL, description=GENERAL_DESCRIPTION,
                   now=now)
    doc["default"] = True
    members = [member_doc(doc["_id"], uid, workspace_id, OWNER if uid == owner_id else MEMBER, now) for uid in ids]
    return doc, members


async def ensure_default_channels(store: Store) -> int:
    """Start-up migration: every workspace made before default channels gets one, its #general (an existing
    public #general becomes the default; else one is made with every user of the workspace in it); how many
    workspaces it did. Idempotent: only workspaces without `default_chat_ids`, which is written last."""
    done = 0
    async for workspace in store.workspaces.find({"default_chat_ids": {"$exists": False}}, {"owner_id": 1}):
        wid = workspace["_id"]
        found = await store.chats.find_one({"workspace_id": {"$eq": wid}, "name_key": {"$eq": GENERAL}},
                                           {"type": 1})
        if found is None:
            # A range of the (workspace_id, name_key) index, which serves workspace_id on the embedded server too.
            cursor = store.users.find({"workspace_id": {"$eq": wid}, "name_key": {"$gte": ""}}, {"_id": 1})
            user_ids = [u["_id"] async for u in cursor]
            owner_id = workspace.get("owner_id") or (user_ids[0] if user_ids else None)
            if owner_id is None:
                continue
            doc, members = general_docs(wid, owner_id, user_ids)
            doc["version"] = new_id()
            await store.members.insert_many(members)
            try:
                await store.chats.insert_one(doc)
                found = doc
            except DuplicateKeyError:  # another process's migration made it meanwhile
                await store.members.delete_many({"chat_id": {"$eq": doc["_id"]}})
                found = await store.chats.find_one({"workspace_id": {"$eq": wid}, "name_key": {"$eq": GENERAL}},
                                                   {"type": 1})
        defaults = [found["_id"]] if found is not None and found["type"] == PUBLIC_CHANNEL else []
        if defaults:
            await store.chats.update_one({"_id": defaults[0]}, {"$set": {"default": True}})
        result = await store.workspaces.update_one(
            {"_id": wid, "default_chat_ids": {"$exists": False}}, {"$set": {"default_chat_ids": defaults}})
        done += result.modified_count
    return done
