"""A test world made through the api's own services: real documents, and the events the api's outbox publishes."""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass, replace
from typing import Any, AsyncIterator

import msgspec
from pymongo import monitoring

from app import events
from app.auth import Identity
from app.deps import Deps
from app.events import decode_event
from app.schemas.accounts import AuthOut, SignupIn
from app.schemas.chats import ChatCreateIn, MembersAddIn
from app.schemas.messages import MessageCreateIn, MessageUpdateIn
from app.services import ApiServices, build_api_services
from app.store import Store, make_client

# The address the world's signups come from, as the api would see a local client.
CLIENT_IP = "127.0.0.1"


def _body(type_: type, **fields: Any) -> Any:
    # Decoded as the api decodes a request, so the world holds only what the api would accept.
    return msgspec.convert(fields, type_)


class StoreCommands(monitoring.CommandListener):
    """The (command, collection) of every command a client sends, in order: what a path costs the store."""

    def __init__(self) -> None:
        self.names: list[tuple[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.names.append((event.command_name, event.command.get(event.command_name)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def issued(self) -> list[tuple[str, Any]]:
        """The commands since the last call, without the deletes of acknowledged outbox entries: the
        outbox batches those in the background, they are no request's."""
        names = [name for name in self.names if name != ("delete", "outbox")]
        self.names.clear()
        return names


@dataclass(frozen=True)
class User:
    id: str
    workspace_id: str
    fullname: str
    token: str
    identity: Identity


class World:
    """Users, chats and messages made by calling the api's services, as the api's handlers do.

    What the tests see on their streams is then what the api sends: the services write the
    documents and their Outbox publishes the events to the test's stream. `start()` makes the
    outbox publish on the request path, as a running api does after its first drain.
    """

    def __init__(self, deps: Deps, services: ApiServices | None = None, owners: dict[str, User] | None = None):
        self.deps = deps
        self.store, self.bus, self.issuer = deps.store, deps.bus, deps.issuer
        self.services = services or build_api_services(deps)
        self.owners: dict[str, User] = {} if owners is None else owners  # workspace id -> its owner
        self._invites: dict[str, str] = {}

    async def start(self) -> None:
        await self.services.outbox.drain_once()

    async def stop(self) -> None:
        await self.services.outbox.stop()

    def process(self) -> "World":
        """The same world seen by a second api process whose events wait in its outbox until `drain()`."""
        other = World(self.deps, build_api_services(self.deps), self.owners)
        other._invites = self._invites
        return other

    @contextlib.asynccontextmanager
    async def counting(self) -> AsyncIterator[tuple["World", StoreCommands]]:
        """This world (its users and documents) through a store client of its own whose commands are
        recorded, started: for tests that pin how many store commands a path sends."""
        commands = StoreCommands()
        mongo = self.deps.config.mongo
        client = make_client(mongo.uri, mongo.timeout_ms, event_listeners=[commands])
        counted = World(replace(self.deps, store=Store(client, mongo.database)), owners=self.owners)
        counted._invites = self._invites
        try:
            await counted.start()
            commands.issued()
            yield counted, commands
        finally:
            await counted.stop()
            await client.close()

    async def drain(self) -> None:
        """Publish what waits in the outbox, as the drainer's next pass does."""
        while await self.services.outbox.drain_once():
            pass

    # -- people ------------------------------------------------------------------------------

    async def _signup(self, fullname: str, ttl: int | None, **where: str) -> tuple[User, AuthOut]:
        auth = await self.services.accounts.signup(
            _body(SignupIn, fullname=fullname, email=f"u{uuid.uuid4().hex[:12]}@example.com",
                  password="correct horse battery", **where),
            CLIENT_IP,
        )
        user_id, workspace_id = auth.user.id, auth.user.workspace_id
        token = auth.access_token if ttl is None else self.issuer.issue(user_id, workspace_id, ttl=ttl)
        return User(user_id, workspace_id, fullname, token, self.deps.verifier.verify(auth.access_token)), auth

    async def workspace(self) -> str:
        """A new workspace (its owner signed up with it); its id."""
        owner, auth = await self._signup("Owner", None, workspace=f"ws-{uuid.uuid4().hex[:12]}")
        self.owners[owner.workspace_id] = owner
        self._invites[owner.workspace_id] = auth.workspace.invite_code
        return owner.workspace_id

    async def user(self, workspace_id: str, fullname: str | None = None, ttl: int | None = None, *,
                   username: str | None = None) -> User:
        """A user signed up into the workspace with its invite code; `ttl` gives a token of that lifetime,
        `username` the name @mentions use (else one derived from the world's random email)."""
        where = {"invite_code": self._invites[workspace_id]}
        if username is not None:
            where["username"] = username
        user, _ = await self._signup(fullname or f"User {uuid.uuid4().hex[:6]}", ttl, **where)
        return user

    def token(self, user: User, ttl: int | None = None) -> str:
        return self.issuer.issue(user.id, user.workspace_id, ttl=ttl)

    async def pair(self) -> tuple[User, User, str]:
        """Two users of a new workspace and a chat of the two."""
        workspace_id = await self.workspace()
        ada, bob = await self.user(workspace_id), await self.user(workspace_id)
        return ada, bob, await self.chat(ada, bob)

    # -- chats -------------------------------------------------------------------------------

    async def chat(self, owner: User, *others: User, type: str | None = None, name: str | None = None) -> str:
        """A chat created by `owner` with `others`; its id.

        By default a group when there are at least two others (the api's rule for groups), else a
        private channel: the kind that holds one or two people and still lets members come and go.
        """
        type = type or ("group" if len(others) >= 2 else "private_channel")
        if name is None and type.endswith("channel"):
            name = f"chat-{uuid.uuid4().hex[:10]}"
        fields: dict[str, Any] = {"type": type, "members": [u.id for u in others]}
        if name is not None:
            fields["name"] = name
        chat, _ = await self.services.chats.create(owner.identity, _body(ChatCreateIn, **fields))
        return chat.id

    async def add(self, chat_id: str, user: User, actor: User) -> int:
        """`actor` adds `user`; the stream seq of the member.joined event."""
        await self.services.chats.add_members(actor.identity, chat_id, _body(MembersAddIn, user_ids=[user.id]))
        return await self.published(events.MEMBER_JOINED, chat_id, user_id=user.id)

    async def remove(self, chat_id: str, user: User, actor: User) -> int:
        """`actor` removes `user` (or `user` leaves); the stream seq of the member.left event."""
        await self.services.chats.remove_member(actor.identity, chat_id, user.id)
        return await self.published(events.MEMBER_LEFT, chat_id, user_id=user.id)

    async def delete_chat(self, chat_id: str, actor: User) -> int:
        await self.services.chats.delete(actor.identity, chat_id)
        return await self.published(events.CHAT_DELETED, chat_id)

    # -- messages ----------------------------------------------------------------------------

    async def send(self, chat_id: str, sender: User, content: str) -> dict[str, Any]:
        """The message as the api answers it, which is also the message.created event's data."""
        message, _ = await self.services.messages.send(sender.identity, chat_id,
                                                       _body(MessageCreateIn, content=content))
        return msgspec.to_builtins(message)

    async def edit(self, chat_id: str, sender: User, message_id: str, content: str) -> dict[str, Any]:
        message = await self.services.messages.edit(sender.identity, chat_id, message_id,
                                                    _body(MessageUpdateIn, content=content))
        return msgspec.to_builtins(message)

    async def delete_message(self, chat_id: str, actor: User, message_id: str) -> None:
        await self.services.messages.delete(actor.identity, chat_id, message_id)

    async def typing(self, chat_id: str, user: User) -> None:
        await self.services.messages.typing(user.identity, chat_id)

    async def read(self, chat_id: str, user: User, seq: int) -> None:
        await self.services.messages.read(user.identity, chat_id, seq)

    # -- the stream --------------------------------------------------------------------------

    async def published(self, type_: str, chat_id: str, **data: Any) -> int:
        """The stream seq of the latest `type_` event of the chat whose data has `data`: one just published."""
        info = await self.bus.js.stream_info(self.bus.stream)
        for seq in range(info.state.last_seq, (info.state.first_seq or 1) - 1, -1):
            event = decode_event((await self.bus.js.get_msg(self.bus.stream, seq=seq)).data)
            if event.type == type_ and event.chat_id == chat_id and all(
                event.data.get(k) == v for k, v in data.items()
            ):
                return seq
        raise AssertionError(f"no {type_} event of chat {chat_id} with {data} on the stream")
