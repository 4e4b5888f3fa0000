"""Bodies of chats and their members."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from app.schemas.common import Id, Request, Response, Timestamp
from app.schemas.messages import MessageOut
from app.store import isoformat

ChatType = Literal["direct", "group", "private_channel", "public_channel"]
DIRECT, GROUP, PRIVATE_CHANNEL, PUBLIC_CHANNEL = "direct", "group", "private_channel", "public_channel"
CHANNELS = (PRIVATE_CHANNEL, PUBLIC_CHANNEL)
MemberRole = Literal["owner", "admin", "member"]
OWNER, ADMIN, MEMBER = "owner", "admin", "member"
# The roles that may manage a chat: rename it, invite to a private channel, remove others' messages.
MANAGERS = (OWNER, ADMIN)
ChatName = Annotated[str, msgspec.Meta(min_length=1, max_length=80, pattern=r"\S")]
Description = Annotated[str, msgspec.Meta(max_length=1000)]
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


class MembersAddIn(Request):
    user_ids: Annotated[list[Id], msgspec.Meta(min_length=1, max_length=1000)]


class ChatOut(Response):
    id: Id
    workspace_id: Id
    type: ChatType
    name: str | None
    description: str | None
    owner_id: Id
    members: list[Id]
    created_at: Timestamp
    updated_at: Timestamp


class ChatSummaryOut(ChatOut):
    unread_count: int
    last_message: MessageOut | None


class MemberOut(Response):
    user_id: Id
    role: MemberRole
    joined_at: Timestamp


def chat_out(doc: dict[str, Any], member_ids: list[str]) -> ChatOut:
    return ChatOut(
        id=doc["_id"],
        workspace_id=doc["workspace_id"],
        type=doc["type"],
        name=doc.get("name"),
        description=doc.get("description"),
        owner_id=doc["owner_id"],
        members=member_ids,
        created_at=isoformat(doc["created_at"]),
        updated_at=isoformat(doc["updated_at"]),
    )


def member_out(doc: dict[str, Any]) -> MemberOut:
    return MemberOut(user_id=doc["user_id"], role=doc["role"], joined_at=isoformat(doc["joined_at"]))
