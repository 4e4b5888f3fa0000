"""Pins: idempotent PUT/DELETE, who may pin, GET .../pins newest first in pages, `pinned` on messages, events."""

from __future__ import annotations

import msgspec
import pytest

from app import events
from app.schemas.chats import MemberRoleIn
from app.schemas.messages import MessageListQuery, PinsQuery
from app.services.reactions import PIN_ANYONE_MAX_MEMBERS
from tests.support.api import wait_for
from tests.support.chats import create_chat, events_of, make_team

pytestmark = [pytest.mark.gen_test(timeout=60), pytest.mark.usefixtures("cheap_passwords")]


async def pin(api, who, chat_id, message_id):
    return await api.call("PUT", f"/api/chats/{chat_id}/pins/{message_id}", token=who["token"])


async def unpin(api, who, chat_id, message_id):
    return await api.delete(f"/api/chats/{chat_id}/pins/{message_id}", token=who["token"])


async def send(api, who, chat_id, content):
    reply = await api.post(f"/api/chats/{chat_id}/messages", {"content": content}, token=who["token"])
    assert reply.status == 201, reply.body
    return reply.body


async def pins_of(api, who, chat_id, query=""):
    reply = await api.get(f"/api/chats/{chat_id}/pins{query}", token=who["token"])
    assert reply.status == 200, reply.body
    return reply.body


async def _at_least(found, n):
    found = await found
    return found if len(found) >= n else None


async def test_pin_unpin_list_and_events(api, deps):
    t = await make_team(api)
    group = (await create_chat(api, t.owner, "group", [t.member, t.outsider]))["id"]
    beside = (await create_chat(api, t.member, "direct", [t.owner]))["id"]
    sent = [await send(api, [t.owner, t.member][i % 2], group, f"message {i}") for i in range(4)]
    elsewhere = await send(api, t.owner, beside, "a direct line")
    assert (await pin(api, t.owner, beside, elsewhere["id"])).status == 204  # direct chats pin too

    reply = await pin(api, t.member, group, sent[0]["id"])
    assert reply.status == 204 and reply.body == b""
    assert (await pin(api, t.owner, group, sent[0]["id"])).status == 204  # pinned already: nothing changes
    assert (await pin(api, t.outsider, group, sent[2]["id"])).status == 204
    assert (await pin(api, t.owner, group, elsewhere["id"])).status == 404  # another chat's message
    await api.call("PUT", f"/api/chats/{group}/messages/{sent[2]['id']}/reactions/%F0%9F%91%8D", token=t.member["token"])

    body = await pins_of(api, t.member, group)
    assert [p["message"]["id"] for p in body["pins"]] == [sent[2]["id"], sent[0]["id"]]  # newest pin first
    assert [p["user_id"] for p in body["pins"]] == [t.outsider["id"], t.member["id"]]
    assert body["next_cursor"] is None and all(p["pinned_at"].endswith("Z") for p in body["pins"])
    assert all(p["message"]["pinned"] for p in body["pins"])
    assert body["pins"][0]["message"]["reactions"] == [{"emoji": "👍", "count": 1, "me": True,
                                                        "user_ids": [t.member["id"]]}]
    listed = {m["id"]: m for m in (await api.get(f"/api/chats/{group}/messages", token=t.owner["token"])).body["messages"]}
    assert [listed[m["id"]]["pinned"] for m in sent] == [True, False, True, False]

    assert (await unpin(api, t.owner, group, sent[0]["id"])).status == 204
    assert (await unpin(api, t.owner, group, sent[0]["id"])).status == 204  # not pinned: nothing changes
    assert (await unpin(api, t.owner, group, sent[1]["id"])).status == 204  # never pinned
    assert [p["message"]["id"] for p in (await pins_of(api, t.owner, group))["pins"]] == [sent[2]["id"]]

    unpinned = await wait_for(lambda: _at_least(events_of(deps.bus, events.MESSAGE_UNPINNED, group), 1),
                              message="message.unpinned")
    assert [e.data for e in unpinned] == [{"chat_id": group, "message_id": sent[0]["id"], "user_id": t.owner["id"]}]
    pinned = await events_of(deps.bus, events.MESSAGE_PINNED, group)
    assert [e.data for e in pinned] == [{"chat_id": group, "message_id": sent[0]["id"], "user_id": t.member["id"]},
                                        {"chat_id": group, "message_id": sent[2]["id"], "user_id": t.outsider["id"]}]


async def test_pins_come_in_pages_newest_first(api):
    t = await make_team(api)
    group = (await create_chat(api, t.owner, "group", [t.member, t.outsider]))["id"]
    sent = [await send(api, t.owner, group, f"message {i}") for i in range(7)]
    for message in sent:
        assert (await pin(api, t.member, group, message["id"])).status == 204
    # Re-pinned, a message is the newest pin again.
    assert (await unpin(api, t.owner, group, sent[0]["id"])).status == 204
    assert (await pin(api, t.owner, group, sent[0]["id"])).status == 204
    seen, cursor = [], None
    while True:
        body = await pins_of(api, t.outsider, group, "?limit=3" + (f"&cursor={cursor}" if cursor else ""))
        assert len(body["pins"]) <= 3
        seen += [p["message"]["id"] for p in body["pins"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [sent[0]["id"]] + [m["id"] for m in reversed(sent[1:])]
    for bad in ("?cursor=nope", "?limit=0", "?limit=101"):
        reply = await api.get(f"/api/chats/{group}/pins{bad}", token=t.owner["token"])
        assert reply.status == 422, (bad, reply.body)
    for who in (t.stranger,):
        assert (await api.get(f"/api/chats/{group}/pins", token=who["token"])).status == 404


async def test_who_may_pin(api, world):
    ws = await world.workspace()
    owner = world.owners[ws]
    people = [await world.user(ws, f"Person {i}") for i in range(PIN_ANYONE_MAX_MEMBERS)]
    channel = await world.chat(owner, *people[:PIN_ANYONE_MAX_MEMBERS - 1], type="public_channel")
    private = await world.chat(owner, people[0], type="private_channel")
    message = await world.send(channel, people[3], "pin me")
    pins = world.services.pins
    # Fifty members: anyone pins.
    await pins.pin(people[1].identity, channel, message["id"])
    await pins.unpin(people[2].identity, channel, message["id"])
    # Fifty-one: the owner and admins alone.
    await world.add(channel, people[-1], owner)
    with pytest.raises(Exception) as refused:
        await pins.pin(people[1].identity, channel, message["id"])
    assert getattr(refused.value, "status_code", None) == 403
    await world.services.chats.set_role(owner.identity, channel, people[2].id, msgspec.convert({"role": "admin"},
                                                                                                MemberRoleIn))
    await pins.pin(people[2].identity, channel, message["id"])
    with pytest.raises(Exception) as refused:
        await pins.unpin(people[1].identity, channel, message["id"])
    assert getattr(refused.value, "status_code", None) == 403
    await pins.unpin(owner.identity, channel, message["id"])
    # Over HTTP: a non-member of a private chat gets 404, of a public channel 403 (join first), as for a send.
    secret = await world.send(private, owner, "secret")
    reply = await api.call("PUT", f"/api/chats/{private}/pins/{secret['id']}", token=people[5].token)
    assert reply.status == 404 and reply.body["error"]["code"] == "not_found"
    outsider = await world.user(ws, "Not In It")
    reply = await api.call("PUT", f"/api/chats/{channel}/pins/{message['id']}", token=outsider.token)
    assert reply.status == 403, reply.body
    reply = await api.call("PUT", f"/api/chats/{private}/pins/not-an-id", token=owner.token)
    assert reply.status == 404


async def test_a_deleted_message_leaves_the_pins(api, world):
    ws = await world.workspace()
    ada, bob, cy = [await world.user(ws, name) for name in ("Ada", "Bob", "Cy")]
    chat = await world.chat(ada, bob, cy)
    kept, gone = await world.send(chat, ada, "kept"), await world.send(chat, bob, "gone")
    for message in (kept, gone):
        await world.services.pins.pin(cy.identity, chat, message["id"])
    await world.delete_message(chat, bob, gone["id"])
    page = await world.services.pins.list(ada.identity, chat, PinsQuery())
    assert [p.message.id for p in page.pins] == [kept["id"]]
    listed = await world.services.messages.list(ada.identity, chat, MessageListQuery())
    assert [(m.id, m.pinned) for m in listed.messages if m.kind == "user"] == [(kept["id"], True), (gone["id"], False)]
    reply = await api.call("PUT", f"/api/chats/{chat}/pins/{gone['id']}", token=ada.token)
    assert reply.status == 404
    # Its pin can still be taken away.
    assert (await api.delete(f"/api/chats/{chat}/pins/{gone['id']}", token=ada.token)).status == 204
    assert await world.store.pins.find_one({"_id": gone["id"]}) is None


async def test_the_pins_listing_costs_the_same_for_few_and_many_pins(world):
    ws = await world.workspace()
    ada, bob, cy = [await world.user(ws, name) for name in ("Ada", "Bob", "Cy")]
    few, many = await world.chat(ada, bob, cy), await world.chat(ada, bob, cy)
    for chat, n in ((few, 2), (many, 40)):
        for i in range(n):
            sent = await world.send(chat, [ada, bob, cy][i % 3], f"message {i}")
            await world.services.pins.pin(bob.identity, chat, sent["id"])
            await world.services.reactions.add(cy.identity, chat, sent["id"], "👍")
    async with world.counting() as (counted, commands):
        costs = []
        for chat, n in ((few, 2), (many, 40)):
            commands.issued()
            page = await counted.services.pins.list(ada.identity, chat, PinsQuery())
            costs.append(sorted(commands.issued()))
            assert len(page.pins) == n and all(p.message.reactions[0].count == 1 for p in page.pins)
    assert costs[0] == costs[1]
    assert costs[0] == sorted([("find", "chats"), ("find", "members"), ("find", "pins"), ("find", "messages"),
                               ("find", "message_marks")])
