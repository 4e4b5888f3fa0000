"""Messages: send, list, edit, delete, read marks, typing, search; seq under concurrency; idempotency; gaps."""

import asyncio
import datetime

import pytest

from app.store import new_id, utcnow
from tests.support.chats import count, create_chat, events_of, make_team, outbox_empty
from tests.support.api import wait_for

pytestmark = pytest.mark.gen_test(timeout=90)


@pytest.fixture
def config_overrides():
    # A short grace period, so the gap-repair tests wait a fraction of a second, never a fixed sleep.
    return {"limits": {"enabled": False}, "api": {"outbox_grace_seconds": 0.3, "outbox_interval_seconds": 0.05}}


def msgs_path(chat):
    return f"/api/chats/{chat['id']}/messages"


async def send(api, user, chat, content, **extra):
    reply = await api.post(msgs_path(chat), {"content": content, **extra}, token=user["token"])
    assert reply.status == 201, reply.body
    return reply.body


async def test_send_list_edit_delete(api):
    t = await make_team(api)
    chat = await create_chat(api, t.owner, "group", [t.member, t.outsider])
    first = await send(api, t.owner, chat, "hello")
    assert first["seq"] == 1 and first["sender_id"] == t.owner["id"] and first["chat_id"] == chat["id"]
    assert first["deleted"] is False and first["edited_at"] is None and first["files"] == []
    assert first["created_at"].endswith("Z")
    reply = await send(api, t.member, chat, "hi back", reply_to=first["id"])
    assert reply["seq"] == 2 and reply["reply_to"] == first["id"]

    page = (await api.get(msgs_path(chat), token=t.outsider["token"])).body
    assert [m["content"] for m in page["messages"]] == ["hello", "hi back"] and page["has_more"] is False

    assert (await api.patch(f"{msgs_path(chat)}/{first['id']}", {"content": "x"}, token=t.member["token"])).status == 403
    edited = await api.patch(f"{msgs_path(chat)}/{first['id']}", {"content": "hello, edited"}, token=t.owner["token"])
    assert edited.status == 200 and edited.body["content"] == "hello, edited" and edited.body["edited_at"].endswith("Z")
    assert edited.body["seq"] == 1

    # Sender may delete; others only as owner/admin.
    assert (await api.delete(f"{msgs_path(chat)}/{first['id']}", token=t.member["token"])).status == 403
    assert (await api.delete(f"{msgs_path(chat)}/{reply['id']}", token=t.member["token"])).status == 204
    assert (await api.delete(f"{msgs_path(chat)}/{first['id']}", token=t.owner["token"])).status == 204
    assert (await api.delete(f"{msgs_path(chat)}/{first['id']}", token=t.owner["token"])).status == 204  # again
    page = (await api.get(msgs_path(chat), token=t.owner["token"])).body["messages"]
    assert [(m["seq"], m["deleted"], m["content"]) for m in page] == [(1, True, ""), (2, True, "")]
    gone = await api.patch(f"{msgs_path(chat)}/{first['id']}", {"content": "back"}, token=t.owner["token"])
    assert gone.status == 409
    # The owner may delete anyone's message.
    third = await send(api, t.member, chat, "third")
    assert (await api.delete(f"{msgs_path(chat)}/{third['id']}", token=t.owner["token"])).status == 204
    for bad in ("000000000000000000000000", "%7B%24gt%7D", "a.b"):
        assert (await api.patch(f"{msgs_path(chat)}/{bad}", {"content": "x"}, token=t.owner["token"])).status == 404
        assert (await api.delete(f"{msgs_path(chat)}/{bad}", token=t.owner["token"])).status == 404
    # A message id of another chat is not found through this one.
    other = await create_chat(api, t.owner, "direct", [t.member])
    elsewhere = await send(api, t.owner, other, "elsewhere")
    assert (await api.delete(f"{msgs_path(chat)}/{elsewhere['id']}", token=t.owner["token"])).status == 404


async def test_message_authorization(api):
    t = await make_team(api)
    private = await create_chat(api, t.owner, "private_channel", [t.member], name="p")
    public = await create_chat(api, t.owner, "public_channel", [t.member], name="pub")
    msg = await send(api, t.member, private, "secret")
    path = msgs_path(private)
    for user in (t.outsider, t.stranger):
        assert (await api.get(path, token=user["token"])).status == 404
        assert (await api.post(path, {"content": "x"}, token=user["token"])).status == 404
        assert (await api.patch(f"{path}/{msg['id']}", {"content": "x"}, token=user["token"])).status == 404
        assert (await api.delete(f"{path}/{msg['id']}", token=user["token"])).status == 404
        assert (await api.post(f"/api/chats/{private['id']}/read", {"seq": 1}, token=user["token"])).status == 404
        assert (await api.post(f"/api/chats/{private['id']}/typing", token=user["token"])).status == 404
    for call in (api.get(path), api.post(path, {"content": "x"}), api.post(f"/api/chats/{private['id']}/typing")):
        assert (await call).status == 401
    # A public channel can be read by its workspace, but written only after joining.
    await send(api, t.owner, public, "welcome")
    assert (await api.get(msgs_path(public), token=t.outsider["token"])).status == 200
    assert (await api.get(msgs_path(public), token=t.stranger["token"])).status == 404
    refused = await api.post(msgs_path(public), {"content": "hi"}, token=t.outsider["token"])
    assert refused.status == 403
    assert (await api.post(f"/api/chats/{public['id']}/join", token=t.outsider["token"])).status == 200
    assert (await api.post(msgs_path(public), {"content": "hi"}, token=t.outsider["token"])).status == 201


async def test_pagination_by_seq(api):
    t = await make_team(api)
    chat = await create_chat(api, t.owner, "direct", [t.member])
    for i in range(1, 8):
        await send(api, t.owner, chat, f"m{i}")
    path = msgs_path(chat)

    async def page(query):
        reply = await api.get(f"{path}{query}", token=t.member["token"])
        assert reply.status == 200, reply.body
        return [m["seq"] for m in reply.body["messages"]], reply.body["has_more"]

    assert await page("") == ([1, 2, 3, 4, 5, 6, 7], False)
    assert await page("?limit=3") == ([5, 6, 7], True)
    assert await page("?limit=3&before=5") == ([2, 3, 4], True)
    assert await page("?limit=3&before=2") == ([1], False)
    assert await page("?limit=3&after=1") == ([2, 3, 4], True)
    assert await page("?limit=3&after=4") == ([5, 6, 7], False)
    assert await page("?after=7") == ([], False)
    assert await page("?before=1") == ([], False)
    for bad in ("?limit=0", "?limit=201", "?limit=x", "?before=0", "?after=-1", "?before=3&after=1",
                "?before=%7B%24gt%7D"):
        reply = await api.get(f"{path}{bad}", token=t.member["token"])
        assert reply.status == 422, (bad, reply.body)
    assert len((await api.get(f"{path}?limit=200", token=t.member["token"])).body["messages"]) == 7


async def test_200_concurrent_sends_get_seq_1_to_200(api, deps):
    t = await make_team(api)
    chat = await create_chat(api, t.owner, "group", [t.member, t.outsider])
    senders = [t.owner, t.member, t.outsider]
    replies = await asyncio.gather(*(
        api.post(msgs_path(chat), {"content": f"c{i}"}, token=senders[i % 3]["token"], timeout=60)
        for i in range(200)
    ))
    assert [r.status for r in replies] == [201] * 200
    assert sorted(r.body["seq"] for r in replies) == list(range(1, 201))
    stored = [doc["seq"] async for doc in deps.store.messages.find({"chat_id": chat["id"]})]
    assert sorted(stored) == list(range(1, 201))
    assert (await deps.store.chats.find_one({"_id": chat["id"]}))["last_seq"] == 200
    created = await wait_for(
        lambda: _count_at_least(deps.bus, "message.created", chat["id"], 200), message="200 message.created events"
    )
    assert sorted(e.data["seq"] for e in created) == list(range(1, 201))


async def _count_at_least(bus, type_, chat_id, n):
    found = await events_of(bus, type_, chat_id)
    return found if len(found) >= n else None


async def test_idempotent_send(api, deps):
    t = await make_team(api)
    chat = await create_chat(api, t.owner, "direct", [t.member])
    first = await api.post(msgs_path(chat), {"content": "once", "idempotency_key": "k1"}, token=t.owner["token"])
    assert first.status == 201
    retry = await api.post(msgs_path(chat), {"content": "once", "idempotency_key": "k1"}, token=t.owner["token"])
    assert retry.status == 200 and retry.body == first.body
    # Same key, other sender: a different message.
    theirs = await api.post(msgs_path(chat), {"content": "theirs", "idempotency_key": "k1"}, token=t.member["token"])
    assert theirs.status == 201 and theirs.body["seq"] == 2
    # Ten concurrent attempts with one key: one message, one seq, the same answer for all.
    replies = await asyncio.gather(*(
        api.post(msgs_path(chat), {"content": "burst", "idempotency_key": "k2"}, token=t.owner["token"])
        for _ in range(10)
    ))
    assert sorted(r.status for r in replies) == [200] * 9 + [201]
    assert len({r.body["id"] for r in replies}) == 1 and replies[0].body["seq"] == 3
    assert (await deps.store.chats.find_one({"_id": chat["id"]}))["last_seq"] == 3
    assert await count(deps.store.messages, {"chat_id": chat["id"]}) == 3
    await wait_for(lambda: _count_at_least(deps.bus, "message.created", chat["id"], 3), message="3 events")
    created = await events_of(deps.bus, "message.created", chat["id"])
    assert [e.data["seq"] for e in created] == [1, 2, 3]  # the retries published nothing


async def test_retry_after_a_failed_insert_reuses_the_claimed_seq(api, deps):
    """A send that claimed its key and took a seq, then failed, leaves the seq to its retry."""
    t = await make_team(api)
    chat = await create_chat(api, t.owner, "direct", [t.member])
    messages = api.app.settings["services"].messages
    original = messages._insert
    failures = []

    async def fail_once(*args, **kwargs):
        if not failures:
            failures.append(1)
            from pymongo.errors import AutoReconnect
            raise AutoReconnect("simulated MongoDB hiccup during insert")
        return await original(*args, **kwargs)

    messages._insert = fail_once
    try:
        failed = await api.post(msgs_path(chat), {"content": "x", "idempotency_key": "k"}, token=t.owner["token"])
        assert failed.status == 503 and failed.headers.get("Retry-After")
        retry = await api.post(msgs_path(chat), {"content": "x", "idempotency_key": "k"}, token=t.owner["token"])
    finally:
        messages._insert = original
    assert retry.status == 201 and retry.body["seq"] == 1
    assert (await deps.store.chats.find_one({"_id": chat["id"]}))["last_seq"] == 1
    after = await send(api, t.member, chat, "next")
    assert after["seq"] == 2


async def test_a_seq_left_by_a_crash_is_filled_with_a_tombstone(api, deps):
    """A process that died between the $inc and the insert left a gap; the listing fills it after the grace."""
    t = await make_team(api)
    chat = await create_chat(api, t.owner, "direct", [t.member])
    await send(api, t.owner, chat, "one")
    # The crash: seq 2 taken (as a send's take does: a seq and a countable message), nothing saved.
    await deps.store.chats.update_one({"_id": chat["id"]}, {"$inc": {"last_seq": 1, "msg_count": 1}})
    await send(api, t.owner, chat, "three")

    async def listed():
        page = (await api.get(msgs_path(chat), token=t.member["token"])).body["messages"]
        return page if [m["seq"] for m in page] == [1, 2, 3] else None

    page = await wait_for(listed, message="seq 2 filled")
    assert page[1]["deleted"] is True and page[1]["content"] == "" and page[1]["sender_id"] is None
    assert (await api.get("/api/chats", token=t.member["token"])).body[0]["unread_count"] == 2
    assert (await send(api, t.member, chat, "four"))["seq"] == 4


async def test_the_drainer_fills_the_seq_of_an_abandoned_send_and_publishes_nothing(api, deps):
    """A request died after saving its outbox entry but before the message: tombstone, no phantom event."""
    t = await make_team(api)
    chat = await create_chat(api, t.owner, "direct", [t.member])
    await deps.store.chats.update_one({"_id": chat["id"]}, {"$inc": {"last_seq": 1}})
    event_id = new_id()
    await deps.store.outbox.insert_one({
        "_id": event_id, "state": "pending", "owner": "dead-process", "n": 1,
        "created_at": utcnow() - datetime.timedelta(seconds=60), "type": "message.created",
        "chat_id": chat["id"], "subject": f"{deps.bus.subjects.prefix}.chat.{chat['id']}.message.created",
        "payload": "{}", "check_collection": "messages", "check_id": new_id(), "check_op": "exists",
        "check_field": None, "check_value": None, "seq": 1,
    })
    await wait_for(lambda: outbox_empty(deps.store), message="the abandoned entry settled")
    tomb = await deps.store.messages.find_one({"chat_id": chat["id"], "seq": 1})
    assert tomb["deleted"] is True and tomb["gap"] is True
    assert all(item.id != event_id for item in await events_of(deps.bus, "message.created"))
    assert (await send(api, t.owner, chat, "next"))["seq"] == 2



@pytest.fixture
def api(api, app):
    api.app = app
    return api


async def test_read_marks_and_typing(api, deps):
    t = await make_team(api)
    chat = await create_chat(api, t.owner, "direct", [t.member])
    for i in range(3):
        await send(api, t.owner, chat, f"m{i}")
    read = f"/api/chats/{chat['id']}/read"
    assert (await api.post(read, {"seq": 2}, token=t.member["token"])).status == 204
    assert (await api.get("/api/chats", token=t.member["token"])).body[0]["unread_count"] == 1
    assert (await api.post(read, {"seq": 1}, token=t.member["token"])).status == 204  # never backwards
    member = await deps.store.members.find_one({"chat_id": chat["id"], "user_id": t.member["id"]})
    assert member["last_read_seq"] == 2
    assert (await api.post(read, {"seq": 4}, token=t.member["token"])).status == 422
    for body in ({"seq": -1}, {"seq": "2"}, {"seq": {"$gt": 0}}, {}, {"seq": 1.5}):
        assert (await api.post(read, body, token=t.member["token"])).status == 422, body
    assert (await api.post(read, {"seq": 3}, token=t.member["token"])).status == 204
    assert (await api.get("/api/chats", token=t.member["token"])).body[0]["unread_count"] == 0
    reads = await wait_for(lambda: _count_at_least(deps.bus, "read", chat["id"], 2), message="read events")
    assert [e.data for e in reads] == [
        {"chat_id": chat["id"], "user_id": t.member["id"], "seq": 2},
        {"chat_id": chat["id"], "user_id": t.member["id"], "seq": 3},
    ]

    before = {name: await count(deps.store.db[name], {}) for name in ("messages", "members", "outbox")}
    assert (await api.post(f"/api/chats/{chat['id']}/typing", token=t.owner["token"])).status == 204
    typing = await wait_for(lambda: _count_at_least(deps.bus, "typing", chat["id"], 1), message="typing event")
    assert typing[0].data == {"chat_id": chat["id"], "user_id": t.owner["id"]} and typing[0].actor_id == t.owner["id"]
    after = {name: await count(deps.store.db[name], {}) for name in ("messages", "members", "outbox")}
    assert before == after  # nothing stored


async def test_search_only_in_the_callers_chats(api, config):
    t = await make_team(api)
    mine = await create_chat(api, t.owner, "direct", [t.member])
    theirs = await create_chat(api, t.outsider, "public_channel", [], name="other")
    await send(api, t.owner, mine, "the quarterly report is ready")
    await send(api, t.member, mine, "lunch?")
    await send(api, t.outsider, theirs, "another quarterly report")
    gone = await send(api, t.owner, mine, "quarterly secret")
    await api.delete(f"{msgs_path(mine)}/{gone['id']}", token=t.owner["token"])

    found = await api.get("/api/search/messages?q=quarterly", token=t.member["token"])
    assert found.status == 200
    assert [m["content"] for m in found.body["messages"]] == ["the quarterly report is ready"]
    assert (await api.get("/api/search/messages?q=quarterly", token=t.stranger["token"])).body == {
        "messages": [], "next_cursor": None}
    scoped = await api.get(f"/api/search/messages?q=lunch&chat_id={mine['id']}", token=t.owner["token"])
    assert [m["content"] for m in scoped.body["messages"]] == ["lunch?"]
    assert (await api.get(f"/api/search/messages?q=report&chat_id={theirs['id']}",
                          token=t.member["token"])).status == 404
    too_long = "q" * (config.limits.search_query_max_chars + 1)
    for query in ("", "?q=", "?q=%20%20", f"?q={too_long}", "?q=x&limit=0", "?q=x&limit=101", "?q=x&chat_id=a.b"):
        reply = await api.get(f"/api/search/messages{query}", token=t.member["token"])
        assert reply.status == 422, (query, reply.body)
    assert (await api.get("/api/search/messages?q=report")).status == 401


async def test_bad_message_input_is_refused_and_writes_nothing(api, deps):
    t = await make_team(api)
    chat = await create_chat(api, t.owner, "direct", [t.member])
    other = await create_chat(api, t.owner, "group", [t.member, t.outsider])
    foreign_msg = await send(api, t.owner, other, "elsewhere")
    # The send's entry is deleted in the background once published: wait for it, so what is counted is ours.
    await wait_for(lambda: outbox_empty(deps.store), message="the outbox drained")
    before_outbox = await count(deps.store.outbox, {})
    path = msgs_path(chat)
    bodies = [
        {"content": ""},
        {"content": "   "},
        {"content": "x" * 4001},
        {"content": {"$gt": ""}},
        {"content": 42},
        {"content": None},
        {},
        {"content": "ok", "idempotency_key": {"$gt": ""}},
        {"content": "ok", "idempotency_key": "k" * 129},
        {"content": "ok", "reply_to": {"$ne": None}},
        {"content": "ok", "reply_to": foreign_msg["id"]},
        {"content": "ok", "reply_to": "000000000000000000000000"},
        {"content": "ok", "files": "abc"},
        {"content": "ok", "files": [{"$gt": ""}]},
        {"content": "ok", "files": ["000000000000000000000000"]},
        {"content": "ok", "files": ["f"] * 11},
        {"content": "ok", "seq": 7},
        {"content": "ok", "sender_id": t.member["id"]},
    ]
    for body in bodies:
        reply = await api.post(path, body, token=t.owner["token"])
        assert reply.status == 422, (body, reply.body)
    for raw in (b"{", b"", b"[1,"):
        assert (await api.call("POST", path, raw=raw, token=t.owner["token"])).status == 400
    assert await count(deps.store.messages, {"chat_id": chat["id"]}) == 0
    assert (await deps.store.chats.find_one({"_id": chat["id"]}))["last_seq"] == 0
    assert await count(deps.store.send_claims, {}) == 0
    assert await count(deps.store.outbox, {}) == before_outbox

    msg = await send(api, t.owner, chat, "fine")
    for body in ({"content": ""}, {"content": {"$gt": ""}}, {"content": "x" * 4001}, {"content": "ok", "deleted": True}):
        reply = await api.patch(f"{path}/{msg['id']}", body, token=t.owner["token"])
        assert reply.status == 422, (body, reply.body)
    stored = await deps.store.messages.find_one({"_id": msg["id"]})
    assert stored["content"] == "fine" and stored["edited_at"] is None
    exactly = await api.post(path, {"content": "y" * 4000}, token=t.owner["token"])
    assert exactly.status == 201
