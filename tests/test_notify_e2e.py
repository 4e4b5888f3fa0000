"""End to end through the real api role: REST changes arrive on the notify role's streams, and only there."""

import pytest

from app import events
from tests.support.api import wait_for

pytestmark = pytest.mark.gen_test(timeout=60)


async def people(api):
    ada = await api.signup(fullname="Ada")
    code = ada["workspace"]["invite_code"]
    bob = await api.signup(invite_code=code, fullname="Bob")
    cy = await api.signup(invite_code=code, fullname="Cy")
    dan = await api.signup(invite_code=code, fullname="Dan")
    eve = await api.signup(fullname="Eve")  # another workspace
    return ada, bob, cy, dan, eve


def contents(client):
    """What people wrote: not the system lines (joined, added…, contract section 15)."""
    return [f.data["content"] for f in client.of(events.MESSAGE_CREATED) if f.data.get("kind") != "system"]


async def test_chat_lifecycle_through_the_api(api, sse):
    ada, bob, cy, dan, eve = await people(api)
    ada1, ada2, bob_s, dan_s, eve_s = [await sse(u["token"]) for u in (ada, ada, bob, dan, eve)]
    created = await api.post("/api/chats", {"type": "group", "name": "Trio", "members": [bob["id"], cy["id"]]},
                             token=ada["token"])
    assert created.status == 201, created.body
    chat = created.body["id"]
    for client in (ada1, ada2, bob_s):
        frames = await client.wait_count(1, events.CHAT_CREATED)
        assert frames[0].data["id"] == chat

    sent = await api.post(f"/api/chats/{chat}/messages", {"content": "hello"}, token=bob["token"])
    assert sent.status == 201
    message = sent.body
    for client in (ada1, ada2, bob_s):  # the sender's own tab too
        frames = await client.wait_count(1, events.MESSAGE_CREATED)
        assert frames[0].data == message
    edit = await api.patch(f"/api/chats/{chat}/messages/{message['id']}", {"content": "hello!"}, token=bob["token"])
    assert edit.status == 200
    assert (await api.post(f"/api/chats/{chat}/typing", token=ada["token"])).status == 204
    assert (await api.post(f"/api/chats/{chat}/read", {"seq": message["seq"]}, token=ada["token"])).status == 204
    assert (await api.delete(f"/api/chats/{chat}/messages/{message['id']}", token=bob["token"])).status == 204
    await ada1.wait_count(1, events.MESSAGE_DELETED)
    assert [f.event for f in ada1.events if f.event != events.PRESENCE] == [
        events.CHAT_CREATED, events.MESSAGE_CREATED, events.MESSAGE_UPDATED, events.TYPING, events.READ,
        events.MESSAGE_DELETED,
    ]
    assert ada1.of(events.MESSAGE_UPDATED)[0].data["content"] == "hello!"
    assert ada1.of(events.TYPING)[0].data == {"chat_id": chat, "user_id": ada["id"]}
    assert ada1.of(events.READ)[0].data == {"chat_id": chat, "user_id": ada["id"], "seq": message["seq"]}
    assert ada1.of(events.MESSAGE_DELETED)[0].data == {"id": message["id"], "chat_id": chat, "seq": message["seq"]}

    added = await api.post(f"/api/chats/{chat}/members", {"user_ids": [dan["id"]]}, token=ada["token"])
    assert added.status == 200, added.body
    await dan_s.wait_count(1, events.MEMBER_JOINED)
    removed = await api.delete(f"/api/chats/{chat}/members/{bob['id']}", token=ada["token"])
    assert removed.status == 204
    await bob_s.wait_count(1, events.MEMBER_LEFT)
    after = await api.post(f"/api/chats/{chat}/messages", {"content": "without bob"}, token=ada["token"])
    await dan_s.wait_for(lambda c: contents(c) == ["without bob"])
    await ada2.wait_for(lambda c: contents(c)[-1:] == ["without bob"])
    assert after.status == 201 and "without bob" not in contents(bob_s)
    assert [f.event for f in eve_s.events] == []


async def test_resume_after_50_messages_through_the_api(api, sse, notify_app):
    ada, bob, *_ = await people(api)
    chat = (await api.post("/api/chats", {"type": "direct", "members": [bob["id"]]}, token=ada["token"])).body["id"]
    bob_s = await sse(bob["token"])
    await api.post(f"/api/chats/{chat}/messages", {"content": "seen"}, token=ada["token"])
    await bob_s.wait_for(lambda c: contents(c) == ["seen"])
    last_id = bob_s.last_id
    bob_s.close()
    await wait_for(lambda: notify_app.registry.stream_count == 0, message="stream closed")
    for i in range(50):
        reply = await api.post(f"/api/chats/{chat}/messages", {"content": f"m{i}"}, token=ada["token"])
        assert reply.status == 201
    again = await sse(bob["token"], last_event_id=last_id)
    await again.wait_count(50, events.MESSAGE_CREATED, timeout=20)
    assert contents(again) == [f"m{i}" for i in range(50)]
    assert [f.data["seq"] for f in again.of(events.MESSAGE_CREATED)] == list(range(2, 52))
