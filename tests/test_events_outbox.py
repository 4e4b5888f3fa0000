"""Events: one per change with the shared envelope, published after the write through an outbox that outlives NATS outages and restarts."""

import asyncio
import datetime
from types import SimpleNamespace

import pytest
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

from app.auth import load_issuer
from app.deps import Deps
from app.events import EventBus, connect_nats, decode_event, encode_event, make_event
from app.metrics import Metrics
from app.outbox import Check
from app.store import Store, make_client, utcnow
from tests.support.chats import count, create_chat, events_of, make_team, outbox_empty, stream_events
from tests.conftest import make_test_config
from tests.support.api import Api, wait_for

pytestmark = pytest.mark.gen_test(timeout=90)


async def test_every_change_publishes_one_event_with_the_shared_envelope(api, deps):
    received = []

    async def on_message(msg):
        received.append(msg)

    sub = await deps.bus.js.subscribe(deps.bus.subjects.all, stream=deps.bus.stream, cb=on_message,
                                      ordered_consumer=True)
    try:
        t = await make_team(api)
        chat = await create_chat(api, t.owner, "group", [t.member, t.outsider], name="trio")
        cid, path = chat["id"], f"/api/chats/{chat['id']}"
        assert (await api.patch(path, {"name": "renamed"}, token=t.owner["token"])).status == 200
        assert (await api.delete(f"{path}/members/{t.outsider['id']}", token=t.owner["token"])).status == 204
        assert (await api.post(f"{path}/members", {"user_ids": [t.outsider["id"]]}, token=t.owner["token"])).status == 200
        msg = (await api.post(f"{path}/messages", {"content": "hello"}, token=t.member["token"])).body
        edited = (await api.patch(f"{path}/messages/{msg['id']}", {"content": "hello!"}, token=t.member["token"])).body
        # The owner's mark is on the "added" line already (their own system lines move it): read up to hello.
        assert (await api.post(f"{path}/read", {"seq": msg["seq"]}, token=t.owner["token"])).status == 204
        assert (await api.post(f"{path}/typing", token=t.owner["token"])).status == 204
        assert (await api.delete(f"{path}/messages/{msg['id']}", token=t.member["token"])).status == 204
        assert (await api.delete(f"{path}/members/{t.member['id']}", token=t.member["token"])).status == 204
        assert (await api.delete(path, token=t.owner["token"])).status == 204
        # Things that change nothing publish nothing.
        assert (await api.post(f"{path}/read", {"seq": 1}, token=t.owner["token"])).status == 404

        # Each membership change and the rename also write a system line (contract section 15); the
        # signups' events (their workspaces' #general) and personal read events are not this chat's.
        expected = ["chat.created", "chat.updated", "message.created", "member.left", "message.created",
                    "member.joined", "message.created", "message.created", "message.updated", "read", "typing",
                    "message.deleted", "member.left", "message.created", "chat.deleted"]

        def of_chat():
            return [m for m in received if decode_event(m.data).chat_id == cid]

        await wait_for(lambda: len(of_chat()) >= len(expected), message="every event")
        received = of_chat()
        got = [decode_event(m.data) for m in received]
        assert [e.type for e in got] == expected
        for m, e in zip(received, got):
            assert m.headers["Nats-Msg-Id"] == e.id
            assert m.subject == f"{deps.bus.subjects.prefix}.chat.{cid}.{e.type}"
            assert e.chat_id == cid and e.workspace_id == t.owner["workspace"]["id"] and e.ts.endswith("Z")
        by_type = {}
        for e in got:
            by_type.setdefault(e.type, []).append(e)
        created = by_type["chat.created"][0]
        assert created.data["id"] == cid and created.data["type"] == "group" and created.data["name"] == "trio"
        assert sorted(created.data["members"]) == sorted([t.owner["id"], t.member["id"], t.outsider["id"]])
        assert created.actor_id == t.owner["id"]
        assert by_type["chat.updated"][0].data["name"] == "renamed"
        removed = by_type["member.left"][0]
        assert removed.data == {"chat_id": cid, "user_id": t.outsider["id"], "role": "member"}
        assert sorted(removed.recipients) == sorted([t.owner["id"], t.member["id"], t.outsider["id"]])
        assert by_type["member.joined"][0].data == {"chat_id": cid, "user_id": t.outsider["id"], "role": "member"}
        lines = [e.data["system"]["type"] for e in by_type["message.created"] if e.data["kind"] == "system"]
        assert lines == ["renamed", "removed", "added", "left"]
        assert [e.data for e in by_type["message.created"] if e.data["kind"] == "user"] == [msg]
        assert by_type["message.updated"][0].data == edited
        assert by_type["message.deleted"][0].data == {"id": msg["id"], "chat_id": cid, "seq": msg["seq"]}
        assert by_type["read"][0].data == {"chat_id": cid, "user_id": t.owner["id"], "seq": msg["seq"]}
        assert by_type["typing"][0].data == {"chat_id": cid, "user_id": t.owner["id"]}
        left = by_type["member.left"][1]
        assert left.data["user_id"] == t.member["id"] and left.actor_id == t.member["id"]
        deleted = by_type["chat.deleted"][0]
        assert deleted.data == {"id": cid}
        assert sorted(deleted.recipients) == sorted([t.owner["id"], t.outsider["id"]])
        assert len({e.id for e in got}) == len(got)
        # Acknowledged entries are deleted in the background, in batches.
        await wait_for(lambda: outbox_empty(deps.store), message="acknowledged entries deleted")
    finally:
        await sub.unsubscribe()


async def test_a_failed_change_publishes_nothing(app, deps):
    outbox = app.settings["services"].outbox
    event = make_event("chat.updated", {"id": "c"}, chat_id="c", workspace_id="w")

    async def change():
        raise RuntimeError("the write failed")

    with pytest.raises(RuntimeError):
        await outbox.apply(event, Check("chats", "c", "eq", "version", event.id), change)
    assert await count(deps.store.outbox, {}) == 0
    assert await stream_events(deps.bus) == []


async def test_abandoned_entries_are_published_only_if_their_change_happened(app, deps):
    """A request that died after saving its event: the drainer checks the change before publishing."""
    old = utcnow() - datetime.timedelta(seconds=60)
    happened = make_event("message.created", {"id": "m1"}, chat_id="c1", workspace_id="w")
    phantom = make_event("chat.updated", {"id": "c1"}, chat_id="c1", workspace_id="w")
    await deps.store.messages.insert_one({"_id": "m1", "chat_id": "c1", "seq": 1, "sender_id": "u", "content": "x",
                                          "files": [], "reply_to": None, "created_at": old, "edited_at": None,
                                          "deleted": False})
    await deps.store.chats.insert_one({"_id": "c1", "version": "an-older-change"})
    for n, (event, check) in enumerate([(happened, Check("messages", "m1")),
                                        (phantom, Check("chats", "c1", "eq", "version", phantom.id))]):
        await deps.store.outbox.insert_one(_entry(deps.bus, event, check, old, n, seq=1))
    await wait_for(lambda: outbox_empty(deps.store), message="both entries settled")
    published = await stream_events(deps.bus)
    assert [(item.event.id, item.msg_id) for item in published] == [(happened.id, happened.id)]


def _entry(bus, event, check, created_at, n, state="pending", owner="a-dead-process", **extra):
    return {"_id": event.id, "state": state, "owner": owner, "n": n, "created_at": created_at,
            "type": event.type, "chat_id": event.chat_id, "subject": bus.subjects.for_event(event),
            "payload": encode_event(event).decode(), "check_collection": check.collection, "check_id": check.id,
            "check_op": check.op, "check_field": check.field, "check_value": check.value, **extra}



async def _own_stack(tmp_path, mongo_uri, nats_url, key_files):
    """Config, store and bus of this test alone, on a NATS it may stop."""
    config = make_test_config(tmp_path, mongo_uri, nats_url, key_files, limits={"enabled": False},
                              api={"outbox_interval_seconds": 0.1})
    client = make_client(config.mongo.uri, config.mongo.timeout_ms)
    store = Store(client, config.mongo.database)
    await store.ensure_indexes()
    bus = EventBus(await connect_nats(config.nats.url, name="fechatter-test"), config.nats)
    await bus.ensure_stream()
    return SimpleNamespace(config=config, client=client, store=store, bus=bus,
                           issuer=load_issuer(config, development=False))


async def _serve(stack):
    from roles.api import make_app

    app = make_app(Deps(config=stack.config, store=stack.store, bus=stack.bus, metrics=Metrics(),
                        verifier=stack.issuer, issuer=stack.issuer))
    await app.start()
    sock, port = bind_unused_port()
    server = HTTPServer(app)
    server.add_sockets([sock])
    return app, server, Api(f"http://127.0.0.1:{port}")


async def _close(stack, *served):
    for app, server, _ in served:
        server.stop()
        await app.stop()
    await stack.bus.close()
    await stack.client.drop_database(stack.config.mongo.database)
    await stack.client.close()


async def test_sends_while_nats_is_down_are_published_once_and_in_order_when_it_is_back(
    tmp_path, mongo_uri, key_files, own_nats
):
    nats = await own_nats()
    stack = await _own_stack(tmp_path, mongo_uri, nats.url, key_files)
    served = await _serve(stack)
    api = served[2]
    try:
        t = SimpleNamespace(owner=await api.signup())
        t.member = await api.signup(invite_code=t.owner["workspace"]["invite_code"])
        chat = await create_chat(api, t.owner, "direct", [t.member])
        await wait_for(lambda: outbox_empty(stack.store), message="chat.created published")

        await nats.stop()
        await wait_for(lambda: not stack.bus.connected, message="the client to notice NATS is gone")
        replies = []
        for i in range(20):
            reply = await api.post(f"/api/chats/{chat['id']}/messages", {"content": f"m{i}"}, token=t.owner["token"])
            assert reply.status == 201, reply.body  # the write is the truth
            replies.append(reply.body)
        assert [r["seq"] for r in replies] == list(range(1, 21))
        assert await count(stack.store.outbox, {"state": "committed"}) == 20

        await nats.restart()
        created = await wait_for(lambda: _at_least(stack.bus, "message.created", 20), timeout=30,
                                 message="20 message.created events after NATS came back")
        await wait_for(lambda: outbox_empty(stack.store), message="the outbox drained")
        # One more send after the backlog goes behind it.
        late = await api.post(f"/api/chats/{chat['id']}/messages", {"content": "late"}, token=t.owner["token"])
        assert late.status == 201
        created = await wait_for(lambda: _at_least(stack.bus, "message.created", 21), message="the late event")
        assert [e.data["seq"] for e in created] == list(range(1, 22))  # in order, none twice
        assert [e.data for e in created[:20]] == replies
        assert len({e.id for e in created}) == 21
    finally:
        await _close(stack, served)


async def _at_least(bus, type_, n):
    # Not the "joined #general" lines every signup by invite writes (contract section 15).
    found = [e for e in await events_of(bus, type_) if e.data.get("kind") != "system"]
    return found if len(found) >= n else None


async def test_the_outbox_survives_an_api_restart(tmp_path, mongo_uri, key_files, own_nats):
    nats = await own_nats()
    stack = await _own_stack(tmp_path, mongo_uri, nats.url, key_files)
    first = await _serve(stack)
    api = first[2]
    owner = await api.signup()
    member = await api.signup(invite_code=owner["workspace"]["invite_code"])
    chat = await create_chat(api, owner, "direct", [member])
    await wait_for(lambda: outbox_empty(stack.store), message="chat.created published")
    await nats.stop()
    await wait_for(lambda: not stack.bus.connected, message="the client to notice NATS is gone")
    for i in range(5):
        reply = await api.post(f"/api/chats/{chat['id']}/messages", {"content": f"m{i}"}, token=owner["token"])
        assert reply.status == 201
    # The api process goes away with 5 events unpublished; a new one starts.
    first[1].stop()
    await first[0].stop()
    second = await _serve(stack)
    try:
        await nats.restart()
        reply = await second[2].post(f"/api/chats/{chat['id']}/messages", {"content": "after"}, token=owner["token"])
        assert reply.status == 201
        await wait_for(lambda: _at_least(stack.bus, "message.created", 6), timeout=30,
                       message="the events the first process left")
        await wait_for(lambda: outbox_empty(stack.store), message="the outbox drained")
        assert [e.data["seq"] for e in await events_of(stack.bus, "message.created", chat["id"])] == [1, 2, 3, 4, 5, 6]
    finally:
        await _close(stack, second)


async def test_concurrent_sends_during_an_outage_all_arrive(tmp_path, mongo_uri, key_files, own_nats):
    nats = await own_nats()
    stack = await _own_stack(tmp_path, mongo_uri, nats.url, key_files)
    served = await _serve(stack)
    api = served[2]
    try:
        owner = await api.signup()
        member = await api.signup(invite_code=owner["workspace"]["invite_code"])
        chat = await create_chat(api, owner, "direct", [member])
        await nats.stop()
        await wait_for(lambda: not stack.bus.connected, message="the client to notice NATS is gone")
        replies = await asyncio.gather(*(
            api.post(f"/api/chats/{chat['id']}/messages", {"content": f"c{i}"}, token=owner["token"])
            for i in range(30)
        ))
        assert [r.status for r in replies] == [201] * 30
        await nats.restart()
        created = await wait_for(lambda: _at_least(stack.bus, "message.created", 30), timeout=30,
                                 message="30 events")
        assert sorted(e.data["seq"] for e in created) == list(range(1, 31))
        await wait_for(lambda: outbox_empty(stack.store), message="the outbox drained")
        assert len(await _at_least(stack.bus, "message.created", 30)) == 30
    finally:
        await _close(stack, served)
