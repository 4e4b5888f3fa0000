"""Bodies of chats and their members."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from app.schemas.common import VISIBLE, Id, Request, Response, Timestamp
from app.schemas.messages import USER_KIND, MessageOut, system_out
from app.store import isoformat

ChatType = Literal["direct", "group", "private_channel", "public_channel"]
DIRECT, GROUP, PRIVATE_CHANNEL, PUBLIC_CHANNEL = "direct", "group", "private_channel", "public_channel"
CHANNELS = (PRIVATE_CHANNEL, PUBLIC_CHANNEL)
MemberRole = Literal["owner", "admin", "member"]
OWNER, ADMIN, MEMBER = "owner", "admin", "member"
# The roles that may manage a chat: rename it, invite to a private channel, remove others' messages.
MANAGERS = (OWNER, ADMIN)
ChatName = Annotated[str, msgspec.Meta(min_length=1, max_length=80, pattern=VISIBLE)]
Description = Annotated[str, msgspec.Meta(max_length=1000)]
# A channel's topic: the one line its header shows (Slack's limit is 250 too).
Topic = Annotated[str, msgspec.Meta(max_length=250)]
UserIds = Annotated[list[Id], msgspec.Meta(max_length=1000)]


class ChatCreateIn(Request):
    type: ChatType
    name: ChatName | None = None
    description: Description | None = None
    # The other members; the caller is always one.
    members: UserIds = []


class ChatUpdateIn(Request):
    name: ChatName | None = None
    description: Description | None = None
    topic: Topic | None = None
    # A default channel of the workspace: every user who joins the workspace joins it (workspace owner only).
    default: bool | None = None


class MemberRoleIn(Request):
    # "owner" transfers the ownership: the chat's owner becomes an admin.
    role: MemberRole


class MembersAddIn(Request):
    user_ids: Annotated[list[Id], msgspec.Meta(min_length=1, max_length=1000)]


class ChatOut(Response):
    id: Id
    workspace_id: Id
    type: ChatType
    name: str | None
    description: str | None
    owner_id: Id
    # Every member of a direct or group chat; a channel's only in the answers to a create and a join,
    # elsewhere [] (its member_count says how many, GET /members pages them).
    members: list[Id]
    member_count: int
    created_at: Timestamp
    updated_at: Timestamp
    topic: str = ""
    # Read-only: nothing can be sent, edited or reacted to (403 chat_archived); listed last.
    archived: bool = False
    # One of the workspace's default channels, which every user joining the workspace joins.
    default: bool = False


NotifyLevel = Literal["all", "mentions", "none"]
NOTIFY_ALL = "all"


class ChatSummaryOut(ChatOut, kw_only=True):
    unread_count: int
    last_message: MessageOut | None
    # Unread messages that mention the caller directly or through @channel/@here/@everyone.
    mention_count: int = 0
    # The caller's read mark: the first unread message is the first above it that is not theirs.
    last_read_seq: int = 0
    # The caller's own settings of this chat (PATCH /api/chats/{chat_id}/settings).
    notify: NotifyLevel = NOTIFY_ALL
    muted: bool = False


class ChatSettingsIn(Request):
    notify: NotifyLevel | None = None
    muted: bool | None = None


class ChatSettingsOut(Response):
    chat_id: Id
    notify: NotifyLevel
    muted: bool


def chat_settings_out(chat_id: str, member: dict[str, Any]) -> ChatSettingsOut:
    # bool(): the embedded server gives a bool set by $set back as 0/1.
    return ChatSettingsOut(chat_id=chat_id, notify=member.get("notify") or NOTIFY_ALL, muted=bool(member.get("muted")))


class MemberOut(Response):
    user_id: Id
    role: MemberRole
    joined_at: Timestamp


def chat_out(doc: dict[str, Any], member_ids: list[str], member_count: int | None = None) -> ChatOut:
    """`member_count` defaults to the chat's counter, or to len(member_ids) for a chat without one."""
    if member_count is None:
        member_count = doc.get("member_count", len(member_ids))
    return ChatOut(
        id=doc["_id"],
        workspace_id=doc["workspace_id"],
        type=doc["type"],
        name=doc.get("name"),
        description=doc.get("description"),
        owner_id=doc["owner_id"],
        members=member_ids,
        member_count=member_count,
        created_at=isoformat(doc["created_at"]),
        updated_at=isoformat(doc["updated_at"]),
        topic=doc.get("topic") or "",
        # bool(): the embedded server gives a bool set by $set back as 0/1.
        archived=bool(doc.get("archived")),
        default=bool(doc.get("default")),
    )


def last_message_out(chat: dict[str, Any]) -> MessageOut | None:
    """The last message a chat keeps (app.services.sequence); without a seq it is the one at last_seq."""
    stored = chat.get("last_message")
    if not stored:
        return None
    return MessageOut(
        id=stored["id"],
        chat_id=stored.get("chat_id", chat["_id"]),
        seq=stored.get("seq", chat.get("last_seq", 0)),
        sender_id=stored.get("sender_id"),
        content=stored.get("content", ""),
        files=list(stored.get("files") or []),
        reply_to=stored.get("reply_to"),
        created_at=stored["created_at"],
        edited_at=stored.get("edited_at"),
        deleted=bool(stored.get("deleted")),  # the embedded server may give a bool set by $set back as 0/1
        mentions=list(stored.get("mentions") or []),
        mentions_all=bool(stored.get("mentions_all")),
        kind=stored.get("kind") or USER_KIND,
        system=system_out(stored.get("system")),
    )


def member_out(doc: dict[str, Any]) -> MemberOut:
    return MemberOut(user_id=doc["user_id"], role=doc["role"], joined_at=isoformat(doc["joined_at"]))


class MembersPage(Response):
    members: list[MemberOut]
    next_cursor: str | None


class ChannelsPage(Response):
    channels: list[ChatOut]
    next_cursor: str | None
