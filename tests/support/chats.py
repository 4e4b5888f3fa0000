"""Teams and chats made through the HTTP API, and what the stream and the store hold afterwards."""

from __future__ import annotations

import asyncio
import uuid
from types import SimpleNamespace

from app.events import EventBus, decode_event
from nats.js.errors import NotFoundError


async def make_team(api) -> SimpleNamespace:
    """owner, member and outsider in one workspace; stranger in another."""
    owner = await api.signup(fullname="Olga Owner")
    code = owner["workspace"]["invite_code"]
    member = await api.signup(invite_code=code, fullname="Mia Member")
    outsider = await api.signup(invite_code=code, fullname="Otto Outsider")
    stranger = await api.signup(fullname="Sam Stranger")
    return SimpleNamespace(owner=owner, member=member, outsider=outsider, stranger=stranger)


async def team_chat(api, size: int, name: str) -> tuple[list[dict], dict]:
    """`size` users of one workspace, the first its owner, and a group chat of them all named `name`."""
    owner = await api.signup(fullname="Owner", workspace=f"faults-{uuid.uuid4().hex[:8]}")
    code = owner["workspace"]["invite_code"]
    others = await asyncio.gather(*(api.signup(invite_code=code, fullname=f"User {i}") for i in range(size - 1)))
    return [owner, *others], await create_chat(api, owner, "group", others, name=name)


async def create_chat(api, creator, type_, members=(), name=None, **extra):
    body = {"type": type_, "members": [m["id"] for m in members], **extra}
    if name is not None:
        body["name"] = name
    reply = await api.post("/api/chats", body, token=creator["token"])
    assert reply.status in (200, 201), reply.body
    return reply.body


async def stream_events(bus: EventBus):
    """Every event on the stream, in stream order, each with its Nats-Msg-Id header."""
    info = await bus.js.stream_info(bus.stream)
    found = []
    for seq in range(info.state.first_seq or 1, info.state.last_seq + 1):
        try:
            msg = await bus.js.get_msg(bus.stream, seq=seq)
        except NotFoundError:
            continue
        event = decode_event(msg.data)
        found.append(SimpleNamespace(event=event, msg_id=(msg.headers or {}).get("Nats-Msg-Id"), seq=seq))
    return found


async def count(collection, query) -> int:
    """count_documents fails on nx-27017 for a collection that never had a document; find does not."""
    return len(await collection.find(query, {"_id": 1}).to_list())


async def outbox_empty(store) -> bool:
    """No event waits in the outbox: everything was published and its entry deleted."""
    return await count(store.outbox, {}) == 0


async def events_of(bus: EventBus, type_: str, chat_id: str | None = None):
    return [
        item.event for item in await stream_events(bus)
        if item.event.type == type_ and (chat_id is None or item.event.chat_id == chat_id)
    ]
