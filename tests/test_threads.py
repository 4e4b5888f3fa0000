"""Threads: reply_to roots, the root's counters kept at write, the replies route, threads=roots, events and costs."""

from __future__ import annotations

import msgspec
import pytest

from app import events
from app.schemas.messages import MessageCreateIn, MessageListQuery, RepliesQuery
from tests.support.api import wait_for
from tests.support.chats import create_chat, events_of, make_team

pytestmark = [pytest.mark.gen_test(timeout=60), pytest.mark.usefixtures("cheap_passwords")]


async def send(api, who, chat_id, content, reply_to=None):
    body = {"content": content} | ({"reply_to": reply_to} if reply_to else {})
    reply = await api.post(f"/api/chats/{chat_id}/messages", body, token=who["token"])
    assert reply.status == 201, reply.body
    return reply.body


async def get(api, who, path):
    reply = await api.get(path, token=who["token"])
    assert reply.status == 200, reply.body
    return reply.body


async def test_replies_join_the_roots_thread_and_the_root_keeps_its_counters(api, deps):
    t = await make_team(api)
    group = (await create_chat(api, t.owner, "group", [t.member, t.outsider]))["id"]
    other = (await create_chat(api, t.member, "group", [t.owner, t.outsider]))["id"]
    root = await send(api, t.owner, group, "a root")
    plain = await send(api, t.member, group, "a plain message")
    first = await send(api, t.member, group, "first reply", reply_to=root["id"])
    # A reply to a reply is in the same thread: its root's.
    second = await send(api, t.outsider, group, "reply to the reply", reply_to=first["id"])
    # Beside it: another chat's thread, which must not leak into this one.
    elsewhere = await send(api, t.owner, other, "elsewhere")
    await send(api, t.member, other, "elsewhere reply", reply_to=elsewhere["id"])

    assert (first["thread_root_id"], second["thread_root_id"]) == (root["id"], root["id"])
    assert (first["reply_to"], second["reply_to"]) == (root["id"], first["id"])
    assert root["thread_root_id"] is None and root["reply_count"] == 0

    page = await get(api, t.outsider, f"/api/chats/{group}/messages")
    by_id = {m["id"]: m for m in page["messages"]}
    assert [m["seq"] for m in page["messages"]] == sorted(m["seq"] for m in page["messages"])
    assert set(by_id) == {root["id"], plain["id"], first["id"], second["id"]}  # replies keep their place
    assert by_id[root["id"]]["reply_count"] == 2 and by_id[root["id"]]["last_reply_at"] >= second["created_at"][:19]
    assert by_id[plain["id"]]["reply_count"] == 0 and by_id[plain["id"]]["last_reply_at"] is None

    replies = await get(api, t.outsider, f"/api/chats/{group}/messages/{root['id']}/replies")
    assert [m["id"] for m in replies["messages"]] == [first["id"], second["id"]] and replies["has_more"] is False
    # Paged by seq; a reply's id names its thread too.
    page1 = await get(api, t.owner, f"/api/chats/{group}/messages/{root['id']}/replies?limit=1")
    assert [m["id"] for m in page1["messages"]] == [first["id"]] and page1["has_more"] is True
    page2 = await get(api, t.owner, f"/api/chats/{group}/messages/{second['id']}/replies?after={first['seq']}")
    assert [m["id"] for m in page2["messages"]] == [second["id"]] and page2["has_more"] is False
    # A message without replies has an empty thread.
    assert (await get(api, t.owner, f"/api/chats/{group}/messages/{plain['id']}/replies"))["messages"] == []

    roots = await get(api, t.member, f"/api/chats/{group}/messages?threads=roots")
    assert [m["id"] for m in roots["messages"]] == [root["id"], plain["id"]] and roots["has_more"] is False
    assert roots["messages"][0]["reply_count"] == 2

    # A deleted reply no longer counts (Slack); the last reply's time stays.
    reply = await api.delete(f"/api/chats/{group}/messages/{second['id']}", token=t.outsider["token"])
    assert reply.status == 204
    after = {m["id"]: m for m in (await get(api, t.owner, f"/api/chats/{group}/messages"))["messages"]}
    assert after[root["id"]]["reply_count"] == 1
    assert after[root["id"]]["last_reply_at"] == by_id[root["id"]]["last_reply_at"]
    assert after[second["id"]]["deleted"] is True
    # Deleting it again changes nothing.
    assert (await api.delete(f"/api/chats/{group}/messages/{second['id']}", token=t.outsider["token"])).status == 204

    # Events: the replies' message.created carry the thread, each change of the root a thread.updated.
    created = {e.data["id"]: e.data for e in await events_of(deps.bus, events.MESSAGE_CREATED, group)}
    assert created[first["id"]]["thread_root_id"] == root["id"] and created[plain["id"]]["thread_root_id"] is None
    updated = await wait_for(lambda: _counted(events_of(deps.bus, events.THREAD_UPDATED, group), 3),
                             message="three thread.updated events")
    assert [(e.data["message_id"], e.data["reply_count"]) for e in updated] == [(root["id"], 1), (root["id"], 2),
                                                                                 (root["id"], 1)]
    assert updated[1].data["last_reply_at"] == by_id[root["id"]]["last_reply_at"] == updated[2].data["last_reply_at"]
    assert {e.data["chat_id"] for e in updated} == {group}
    assert [e.data["reply_count"] for e in await events_of(deps.bus, events.THREAD_UPDATED, other)] == [1]


async def _counted(found, n):
    found = await found
    return found if len(found) == n else None


async def test_a_reply_in_another_chats_thread_is_422_and_unknown_ids_are_404(api, deps):
    t = await make_team(api)
    group = (await create_chat(api, t.owner, "group", [t.member, t.outsider]))["id"]
    other = (await create_chat(api, t.owner, "group", [t.member, t.outsider]))["id"]
    root = await send(api, t.owner, other, "a root in the other chat")
    reply = await api.post(f"/api/chats/{group}/messages", {"content": "x", "reply_to": root["id"]},
                           token=t.member["token"])
    assert reply.status == 422 and "reply_to" in reply.body["error"]["fields"], reply.body
    assert (await get(api, t.owner, f"/api/chats/{other}/messages"))["messages"][0]["reply_count"] == 0
    assert await events_of(deps.bus, events.THREAD_UPDATED) == []

    mine = await send(api, t.owner, group, "mine")
    for who, path in [
        (t.stranger, f"/api/chats/{group}/messages/{mine['id']}/replies"),  # not a member
        (t.owner, f"/api/chats/{group}/messages/{root['id']}/replies"),  # a message of another chat
        (t.owner, f"/api/chats/{group}/messages/0123456789abcdef01234567/replies"),  # no such message
        (t.owner, f"/api/chats/{group}/messages/not-an-id!/replies"),
    ]:
        reply = await api.get(path, token=who["token"])
        assert reply.status == 404, (path, reply.body)
        assert reply.body["error"]["code"] == "not_found"
    for query in ("limit=0", "limit=201", "after=-1", "after=x"):
        reply = await api.get(f"/api/chats/{group}/messages/{mine['id']}/replies?{query}", token=t.owner["token"])
        assert reply.status == 422, (query, reply.body)
    assert (await api.get(f"/api/chats/{group}/messages?threads=all", token=t.owner["token"])).status == 422


async def test_roots_listing_pages_backwards_and_forwards(world):
    ws = await world.workspace()
    ada, bob, cy = [await world.user(ws, name) for name in ("Ada", "Bob", "Cy")]
    chat, beside = await world.chat(ada, bob, cy), await world.chat(bob, ada, cy)
    roots = []
    for i in range(6):
        roots.append(await world.send(chat, ada, f"root {i}"))
        for j in range(i % 3):
            await _reply(world, chat, bob, f"reply {i}.{j}", roots[-1]["id"])
        await world.send(beside, cy, f"beside {i}")
    svc = world.services.messages
    latest = await svc.list(ada.identity, chat, MessageListQuery(limit=4, threads="roots"))
    assert [m.content for m in latest.messages] == ["root 2", "root 3", "root 4", "root 5"] and latest.has_more
    assert [m.reply_count for m in latest.messages] == [2, 0, 1, 2]
    before = await svc.list(ada.identity, chat, MessageListQuery(limit=4, before=latest.messages[0].seq,
                                                                 threads="roots"))
    assert [m.content for m in before.messages] == ["root 0", "root 1"] and not before.has_more
    after = await svc.list(ada.identity, chat, MessageListQuery(limit=3, after=roots[1]["seq"], threads="roots"))
    assert [m.content for m in after.messages] == ["root 2", "root 3", "root 4"] and after.has_more


async def _reply(world, chat, who, content, reply_to):
    out, _ = await world.services.messages.send(
        who.identity, chat, msgspec.convert({"content": content, "reply_to": reply_to}, MessageCreateIn))
    return out


async def test_a_page_with_threads_costs_what_a_plain_page_costs(world):
    ws = await world.workspace()
    people = [await world.user(ws, name) for name in ("Ada", "Bob", "Cy", "Dee")]
    ada = people[0]
    threaded, plain = await world.chat(*people), await world.chat(*people)
    last_root = None
    for chat in (threaded, plain):
        for i in range(50):
            if chat == threaded and i % 3 and last_root is not None:
                await _reply(world, chat, people[i % 4], f"reply {i}", last_root)
            else:
                sent = await world.send(chat, people[i % 4], f"message {i}")
                last_root = sent["id"] if chat == threaded else last_root
    async with world.counting() as (counted, commands):
        costs = {}
        for chat in (threaded, plain):
            commands.issued()
            page = await counted.services.messages.list(ada.identity, chat, MessageListQuery(limit=50))
            costs[chat] = sorted(commands.issued())
            assert len(page.messages) == 50
            if chat == threaded:
                assert sum(m.reply_count for m in page.messages) == 33
                assert sum(m.thread_root_id is not None for m in page.messages) == 33
        assert costs[threaded] == costs[plain], costs
        print("a page of 50 with replies:", len(costs[threaded]), "store commands; a plain page:", len(costs[plain]))
        # The roots listing and a thread's replies: constant too, one read of messages each.
        commands.issued()
        roots = await counted.services.messages.list(ada.identity, threaded, MessageListQuery(limit=50,
                                                                                              threads="roots"))
        assert len(roots.messages) == 17 and sorted(commands.issued()).count(("find", "messages")) == 1
        root = next(m for m in roots.messages if m.reply_count == 2)
        page = await counted.services.messages.replies(ada.identity, threaded, root.id, RepliesQuery())
        assert len(page.messages) == 2
        replies_cost = sorted(commands.issued())
        assert replies_cost.count(("find", "messages")) == 2 and len(replies_cost) <= len(costs[plain]) + 1, replies_cost


async def test_seeded_replies_through_append_many_are_threaded(world):
    from app.services.messages import MessageDraft

    ws = await world.workspace()
    ada, bob = await world.user(ws, "Ada"), await world.user(ws, "Bob")
    chat = await world.chat(ada, bob)
    earlier = await world.send(chat, ada, "an earlier root")
    doc = {"_id": chat, "workspace_id": ws}
    first = await world.services.messages.append_many(doc, [MessageDraft(ada.id, "root in the batch")])
    outs = await world.services.messages.append_many(doc, [
        MessageDraft(bob.id, "to the earlier", reply_to=earlier["id"]),
        MessageDraft(bob.id, "to the batch's", reply_to=first[0].id),
        MessageDraft(ada.id, "**a new root**", extra={"_id": "0123456789abcdef01234567"}),
        MessageDraft(bob.id, "to the batch's own root", reply_to="0123456789abcdef01234567"),
    ])
    assert [o.thread_root_id for o in outs] == [earlier["id"], first[0].id, None, outs[2].id]
    assert outs[2].reply_count == 1 and outs[2].last_reply_at == outs[3].created_at
    assert outs[2].content_html == "<p><strong>a new root</strong></p>\n"
    page = {m.id: m for m in (await world.services.messages.list(ada.identity, chat, MessageListQuery())).messages}
    assert page[earlier["id"]].reply_count == 1 and page[earlier["id"]].last_reply_at is not None
    assert page[first[0].id].reply_count == 1


async def test_an_edit_of_a_root_keeps_its_thread(world):
    ws = await world.workspace()
    ada, bob = await world.user(ws, "Ada"), await world.user(ws, "Bob")
    chat = await world.chat(ada, bob)
    root = await world.send(chat, ada, "root")
    await _reply(world, chat, bob, "a reply", root["id"])
    edited = await world.edit(chat, ada, root["id"], "root, edited")
    assert edited["reply_count"] == 1 and edited["last_reply_at"] is not None
    await _reply(world, chat, bob, "another", root["id"])
    [listed] = (await world.services.messages.list(ada.identity, chat, MessageListQuery(threads="roots"))).messages
    assert (listed.content, listed.reply_count) == ("root, edited", 2)


def test_every_shape_threads_and_history_send_is_an_index_read():
    """The embedded server's plans of the replies, roots and history reads (a scan of the collection fails)."""
    import datetime
    import uuid

    from pymongo import MongoClient

    from tests.support.plans import PlanProbe, TracedWireServer, with_app_indexes

    server = TracedWireServer().start()
    client = MongoClient(server.uri, tz_aware=True)
    try:
        name = f"th_{uuid.uuid4().hex[:8]}"
        with_app_indexes(server.uri, name)
        db, probe = client[name], PlanProbe(client, server)
        now = datetime.datetime.now(datetime.timezone.utc)
        db.messages.insert_many([
            {"_id": f"m{c}-{s}", "chat_id": f"c{c}", "seq": s, "thread_root_id": None if s % 3 == 1 else f"m{c}-{s - (s - 1) % 3}"}
            for c in range(4) for s in range(1, 120)])
        db.message_versions.insert_many([
            {"_id": f"m{c}-{s}:{r}", "message_id": f"m{c}-{s}", "rev": r, "content": "x", "edited_at": now}
            for c in range(4) for s in range(1, 40) for r in range(3)])
        commands = [
            {"find": "messages", "filter": {"chat_id": {"$eq": "c1"}, "thread_root_id": {"$eq": "m1-4"},
                                            "seq": {"$gt": 0}}, "sort": {"seq": 1}, "limit": 51},
            {"find": "messages", "filter": {"chat_id": {"$eq": "c1"}, "thread_root_id": {"$eq": None},
                                            "seq": {"$gte": 1}}, "sort": {"seq": -1}, "limit": 51},
            {"find": "messages", "filter": {"chat_id": {"$eq": "c1"}, "thread_root_id": {"$eq": None},
                                            "seq": {"$gt": 30}}, "sort": {"seq": 1}, "limit": 51},
            {"find": "message_versions", "filter": {"message_id": {"$eq": "m1-4"}, "rev": {"$gte": 0}},
             "sort": {"rev": -1}, "limit": 99},
            {"delete": "message_versions", "deletes": [{"q": {"message_id": {"$eq": "m1-4"}, "rev": {"$gte": 0}},
                                                        "limit": 0}]},
            {"findAndModify": "messages", "query": {"_id": "m1-4"}, "update": {"$inc": {"reply_count": 1},
             "$currentDate": {"last_reply_at": True}}, "new": True},
        ]
        for command in commands:
            probe.plan(db, command).assert_indexed()
        roots = list(db.messages.find({"chat_id": {"$eq": "c1"}, "thread_root_id": {"$eq": None}}))
        assert len(roots) == 40 and all(m["seq"] % 3 == 1 for m in roots)
        assert [m["seq"] for m in db.messages.find({"chat_id": {"$eq": "c1"}, "thread_root_id": {"$eq": "m1-4"}})] == [5, 6]
    finally:
        client.close()
        server.stop()
