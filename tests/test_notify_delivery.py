"""Live delivery: every tab of every member gets each event once, in order; nobody else gets anything."""

import asyncio

import pytest

from app import events
from tests.support.api import wait_for

pytestmark = pytest.mark.gen_test(timeout=30)


async def test_every_tab_of_every_member_and_no_one_else(world, sse, notify_app):
    ws, other_ws = await world.workspace(), await world.workspace()
    ada, bob, cy = [await world.user(ws, name) for name in ("Ada", "Bob", "Cy")]
    outsider = await world.user(other_ws, "Eve")
    chat = await world.chat(ada, bob, cy)
    # Everyone signs up first: each signup's "joined #general" line goes to the members of #general.
    dan = await world.user(ws, "Dan")
    bystander = await world.user(ws, "Bystander")
    ada1, ada2 = await sse(ada.token), await sse(ada.token, token_in_query=True)
    bob1 = await sse(bob.token)
    cy_nonmember_chat = await world.chat(cy, dan)  # cy's other chat
    eve = await sse(outsider.token)
    # Cy is a member but has no stream; a second user of the workspace outside the chat has one.
    by = await sse(bystander.token)
    assert ada1.status == ada2.status == bob1.status == eve.status == by.status == 200
    assert ada1.retry_ms == notify_app.settings["config"].notify.retry_ms

    sent = [await world.send(chat, ada, f"hello {i}") for i in range(5)]
    for client in (ada1, ada2, bob1):
        frames = await client.wait_count(5, events.MESSAGE_CREATED)
        assert [f.data for f in frames] == sent
        ids = [f.id for f in frames]
        assert ids == sorted(ids) and len(set(ids)) == 5
    # Same event, same id on every stream.
    assert [f.id for f in ada1.of(events.MESSAGE_CREATED)] == [f.id for f in bob1.of(events.MESSAGE_CREATED)]
    await world.send(cy_nonmember_chat, cy, "not for ada")
    marker = await world.send(chat, bob, "last")
    await ada1.wait_for(lambda c: c.of(events.MESSAGE_CREATED)[-1].data == marker, message="marker")
    assert all(f.data["chat_id"] == chat for f in ada1.of(events.MESSAGE_CREATED))
    assert eve.events == [] and by.events == []


async def test_edit_delete_typing_read_events(world, sse):
    ws = await world.workspace()
    ada, bob = await world.user(ws), await world.user(ws)
    outsider = await world.user(ws)
    chat = await world.chat(ada, bob, type="direct")
    bob_stream, ada_stream, out_stream = await sse(bob.token), await sse(ada.token), await sse(outsider.token)
    message = await world.send(chat, ada, "first")
    edited = await world.edit(chat, ada, message["id"], "edited")
    await world.delete_message(chat, ada, message["id"])
    await world.typing(chat, ada)
    # Ada's send moved her own mark past seq 1 already; Bob's read goes to both of them.
    await world.read(chat, bob, 1)
    kinds = (events.MESSAGE_CREATED, events.MESSAGE_UPDATED, events.MESSAGE_DELETED, events.TYPING, events.READ)
    frames = await bob_stream.wait_count(5, *kinds)  # and Ada's presence, as her stream opened
    assert [(f.event, f.data) for f in frames] == [
        (events.MESSAGE_CREATED, message),
        (events.MESSAGE_UPDATED, edited),
        (events.MESSAGE_DELETED, {"id": message["id"], "chat_id": chat, "seq": 1}),
        (events.TYPING, {"chat_id": chat, "user_id": ada.id}),
        (events.READ, {"chat_id": chat, "user_id": bob.id, "seq": 1}),
    ]
    await ada_stream.wait_count(1, events.READ)
    assert [f.data for f in ada_stream.of(events.READ)] == [{"chat_id": chat, "user_id": bob.id, "seq": 1}]
    assert out_stream.events == []


async def test_membership_changes_on_open_streams(world, sse):
    ws = await world.workspace()
    ada, bob, cy = await world.user(ws, "Ada"), await world.user(ws, "Bob"), await world.user(ws, "Cy")
    chat = await world.chat(ada, bob)
    bob_stream, cy_stream = await sse(bob.token), await sse(cy.token)
    await world.send(chat, ada, "before cy")

    await world.add(chat, cy, ada)
    joined = await cy_stream.wait_count(1, events.MEMBER_JOINED)
    assert joined[0].data == {"chat_id": chat, "user_id": cy.id, "role": "member"}
    after_join = await world.send(chat, ada, "cy is in")
    await cy_stream.wait_for(lambda c: c.of(events.MESSAGE_CREATED)[-1].data == after_join)
    # The "added" line first (contract section 15), then the message.
    assert [f.data["kind"] for f in cy_stream.of(events.MESSAGE_CREATED)] == ["system", "user"]
    assert [f.data for f in cy_stream.of(events.MESSAGE_CREATED)][-1:] == [after_join]

    await world.remove(chat, bob, ada)
    left = await bob_stream.wait_count(1, events.MEMBER_LEFT)
    assert left[0].data["user_id"] == bob.id
    after_leave = await world.send(chat, ada, "bob is out")
    await cy_stream.wait_for(lambda c: c.of(events.MESSAGE_CREATED)[-1].data == after_leave)
    # Bob heard of his removal and of nothing after it.
    assert [f.data["content"] for f in bob_stream.of(events.MESSAGE_CREATED) if f.data["kind"] == "user"] == [
        "before cy", "cy is in"]
    assert bob_stream.events[-1].event == events.MEMBER_LEFT

    # A chat created with open members is theirs at once; a deleted one stops at once.
    new_chat = await world.chat(cy, bob)
    created = await bob_stream.wait_count(1, events.CHAT_CREATED)
    assert created[0].data["id"] == new_chat
    first = await world.send(new_chat, cy, "new chat")
    await bob_stream.wait_for(lambda c: c.of(events.MESSAGE_CREATED)[-1].data == first)
    # A second api process saves a message as the chat is deleted, and publishes it after chat.deleted.
    late = world.process()
    ghost = await late.send(new_chat, cy, "sent as the chat was deleted")
    await world.delete_chat(new_chat, cy)
    await bob_stream.wait_count(1, events.CHAT_DELETED)
    await late.drain()
    assert await world.published(events.MESSAGE_CREATED, new_chat, id=ghost["id"]) > \
        await world.published(events.CHAT_DELETED, new_chat)
    marker = await world.send(chat, ada, "marker")
    await cy_stream.wait_for(lambda c: c.of(events.MESSAGE_CREATED)[-1].data == marker)
    assert all(f.data.get("id") != ghost["id"] for f in bob_stream.events + cy_stream.events)


async def test_registry_empty_after_many_streams_close(world, sse, notify_app):
    ws = await world.workspace()
    users = [await world.user(ws) for _ in range(5)]
    chat = await world.chat(*users)
    clients = []
    for round_ in range(4):
        for user in users:
            for _ in range(10):
                clients.append(await sse(user.token))
        registry = notify_app.registry
        assert registry.stream_count == 50 and len(registry.users) == 5
        assert registry.chat_members[chat] == {u.id for u in users}
        for client in clients:
            client.close()
        clients.clear()
        await wait_for(lambda: registry.stream_count == 0, message="streams closed")
        assert registry.users == {} and registry.chat_members == {}
    # Still delivering after all that churn.
    client = await sse(users[0].token)
    message = await world.send(chat, users[1], "still here")
    # Presence of the churned users may still be arriving: look for the message among message events.
    await client.wait_for(lambda c: [f.data for f in c.of(events.MESSAGE_CREATED)] == [message])


async def test_chats_loaded_while_events_arrive_are_not_lost(world, sse, notify_app):
    """Membership events consumed while a user's chats load from Mongo are applied after the load."""
    ws = await world.workspace()
    ada, bob = await world.user(ws), await world.user(ws)
    chat = await world.chat(ada)
    registry = notify_app.registry
    original = registry._load_chats
    gate = asyncio.Event()

    async def slow_load(user_id):
        chats = await original(user_id)  # read before bob is added
        await gate.wait()
        return chats

    registry._load_chats = slow_load
    opening = asyncio.ensure_future(sse(bob.token))
    await wait_for(lambda: bob.id in registry.users, message="load started")
    seq = await world.add(chat, bob, ada)
    await wait_for(lambda: notify_app.window.last_seq >= seq, message="join consumed")
    gate.set()
    bob_stream = await opening
    registry._load_chats = original
    message = await world.send(chat, ada, "bob sees this")
    await bob_stream.wait_for(lambda c: c.of(events.MESSAGE_CREATED) and c.events[-1].data == message)


async def test_an_unreadable_event_is_skipped_and_keeps_its_place(world, sse, deps):
    ada, bob, chat = await world.pair()
    bob_stream = await sse(bob.token)
    start = await bob_stream.wait_cursor()
    subject = deps.bus.subjects.for_event(events.make_event(events.MESSAGE_CREATED, {}, chat_id=chat))
    garbage_seq = await deps.bus.publish_encoded(subject, "garbage-1", b"{not json")
    after = await world.send(chat, ada, "after the garbage")
    await bob_stream.wait_for(lambda c: [f.data for f in c.of(events.MESSAGE_CREATED)] == [after])
    assert bob_stream.of(events.MESSAGE_CREATED)[0].id > garbage_seq
    bob_stream.close()
    again = await sse(bob.token, last_event_id=start)
    await again.wait_count(1, events.MESSAGE_CREATED)
    assert [f.data for f in again.events] == [after]
