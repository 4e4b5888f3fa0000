"""Store-level world building for notify tests: users with tokens, chats and the events the api publishes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from app import events
from app.events import make_event
from app.store import isoformat, new_id, utcnow


@dataclass
class User:
    id: str
    workspace_id: str
    fullname: str
    token: str


class World:
    """Writes what the chat API writes (chats, one member document per membership, messages) and
    publishes the same envelopes (TEAM.md), so notify can be tested before and beside the real routes."""

    def __init__(self, deps):
        self.store, self.bus, self.issuer = deps.store, deps.bus, deps.issuer

    async def workspace(self) -> str:
        workspace_id = new_id()
        await self.store.workspaces.insert_one(
            {"_id": workspace_id, "name": f"ws-{workspace_id}", "name_key": workspace_id,
             "invite_code": uuid.uuid4().hex, "owner_id": None, "created_at": utcnow()}
        )
        return workspace_id

    async def user(self, workspace_id: str, fullname: str | None = None, ttl: int | None = None) -> User:
        user_id = new_id()
        fullname = fullname or f"User {user_id[-6:]}"
        await self.store.users.insert_one(
            {"_id": user_id, "workspace_id": workspace_id, "fullname": fullname,
             "email": f"{user_id}@example.com", "created_at": utcnow()}
        )
        return User(user_id, workspace_id, fullname, self.issuer.issue(user_id, workspace_id, ttl=ttl))

    async def pair(self) -> tuple[User, User, str]:
        """Two users of a new workspace and a group chat of the two."""
        workspace_id = await self.workspace()
        ada, bob = await self.user(workspace_id), await self.user(workspace_id)
        return ada, bob, await self.chat(ada, bob)

    def token(self, user: User, ttl: int | None = None) -> str:
        return self.issuer.issue(user.id, user.workspace_id, ttl=ttl)

    async def chat(self, owner: User, *others: User, type: str = "group", name: str | None = None) -> str:
        chat_id = new_id()
        now = utcnow()
        await self.store.chats.insert_one(
            {"_id": chat_id, "workspace_id": owner.workspace_id, "type": type, "name": name or "",
             "description": "", "owner_id": owner.id, "last_seq": 0, "last_message_at": None,
             "created_at": now, "updated_at": now}
        )
        members = [owner, *others]
        for member in members:
            await self._member_doc(chat_id, member, "owner" if member is owner else "member")
        data = {"id": chat_id, "type": type, "name": name or "", "description": "",
                "members": [m.id for m in members], "owner_id": owner.id, "created_at": isoformat(now)}
        await self.publish(events.CHAT_CREATED, data, chat_id, owner)
        return chat_id

    async def _member_doc(self, chat_id: str, user: User, role: str) -> None:
        await self.store.members.insert_one(
            {"_id": new_id(), "chat_id": chat_id, "user_id": user.id, "workspace_id": user.workspace_id,
             "role": role, "last_read_seq": 0, "joined_at": utcnow()}
        )

    async def add(self, chat_id: str, user: User, actor: User) -> int:
        await self._member_doc(chat_id, user, "member")
        return await self.publish(events.MEMBER_JOINED, {"chat_id": chat_id, "user_id": user.id, "role": "member"},
                                  chat_id, actor)

    async def remove(self, chat_id: str, user: User, actor: User) -> int:
        await self.store.members.delete_one({"chat_id": chat_id, "user_id": user.id})
        remaining = [doc["user_id"] async for doc in self.store.members.find({"chat_id": chat_id})]
        return await self.publish(events.MEMBER_LEFT, {"chat_id": chat_id, "user_id": user.id, "role": "member"},
                                  chat_id, actor, recipients=[*remaining, user.id])

    async def delete_chat(self, chat_id: str, actor: User) -> int:
        members = [doc["user_id"] async for doc in self.store.members.find({"chat_id": chat_id})]
        await self.store.members.delete_many({"chat_id": chat_id})
        await self.store.chats.delete_one({"_id": chat_id})
        return await self.publish(events.CHAT_DELETED, {"id": chat_id}, chat_id, actor, recipients=members)

    async def send(self, chat_id: str, sender: User, content: str) -> dict[str, Any]:
        chat = await self.store.chats.find_one_and_update(
            {"_id": chat_id}, {"$inc": {"last_seq": 1}}, return_document=True
        )
        message = {"id": new_id(), "chat_id": chat_id, "seq": chat["last_seq"], "sender_id": sender.id,
                   "content": content, "files": [], "reply_to": None, "created_at": isoformat(utcnow()),
                   "edited_at": None, "deleted": False}
        await self.store.messages.insert_one({**{k: v for k, v in message.items() if k != "id"},
                                              "_id": message["id"]})
        await self.publish(events.MESSAGE_CREATED, message, chat_id, sender)
        return message

    async def publish(self, type: str, data: dict[str, Any], chat_id: str, actor: User, **kw: Any) -> int:
        event = make_event(type, data, chat_id=chat_id, workspace_id=actor.workspace_id, actor_id=actor.id, **kw)
        return await self.bus.publish(event)
