"""Incoming webhooks: a chat's secret URL posts as its bot, once per idempotency key, until it is deleted."""

import uuid

import pytest

pytestmark = [pytest.mark.gen_test(timeout=60), pytest.mark.usefixtures("cheap_passwords")]


async def _setting(api):
    ada = await api.signup(fullname="Ada")
    code = ada["workspace"]["invite_code"]
    bob = await api.signup(invite_code=code, fullname="Bob")
    cy = await api.signup(invite_code=code, fullname="Cy")
    chats = []
    for _ in range(2):
        reply = await api.post("/api/chats", {"type": "public_channel", "name": f"alerts-{uuid.uuid4().hex[:8]}",
                                              "members": [bob["id"], cy["id"]]}, token=ada["token"])
        assert reply.status == 201, reply.body
        chats.append(reply.body["id"])
    return ada, bob, cy, chats


async def _contents(api, chat, token):
    reply = await api.get(f"/api/chats/{chat}/messages", token=token)
    return [m["content"] for m in reply.body["messages"] if m.get("kind", "user") == "user"]


async def test_a_webhook_posts_once_per_idempotency_key(api, deps):
    ada, bob, cy, (chat, other) = await _setting(api)
    made = await api.post(f"/api/chats/{chat}/webhooks", {"name": "CI"}, token=ada["token"])
    assert made.status == 201, made.body
    url, hook_id = made.body["url"], made.body["id"]
    assert url.startswith("/hooks/") and len(url) > len("/hooks/") + 30
    secret = url.removeprefix("/hooks/")
    assert secret not in str(await deps.store.incoming_webhooks.find_one({"_id": hook_id}))
    members = await api.get(f"/api/chats/{chat}/members", token=bob["token"])
    assert made.body["bot_id"] in [m["user_id"] for m in members.body]
    assert (await api.get(f"/api/users/{made.body['bot_id']}", token=bob["token"])).body["is_bot"] is True

    first = await api.post(url, {"content": "build 7 failed", "idempotency_key": "build-7"})
    assert first.status == 201, first.body
    assert first.body["sender_id"] == made.body["bot_id"] and first.body["chat_id"] == chat
    again = await api.post(url, {"content": "build 7 failed", "idempotency_key": "build-7"})
    assert again.status == 200 and again.body["id"] == first.body["id"]
    assert (await api.post(url, {"content": "build 8 passed"})).status == 201
    assert await _contents(api, chat, bob["token"]) == ["build 7 failed", "build 8 passed"]
    assert await _contents(api, other, bob["token"]) == []

    listed = await api.get(f"/api/chats/{chat}/webhooks", token=ada["token"])
    assert listed.status == 200 and [h["id"] for h in listed.body] == [hook_id] and listed.body[0]["name"] == "CI"
    assert (await api.get(f"/api/chats/{other}/webhooks", token=ada["token"])).body == []


async def test_bad_bodies_are_refused_and_store_nothing(api, deps):
    ada, bob, cy, (chat, _other) = await _setting(api)
    url = (await api.post(f"/api/chats/{chat}/webhooks", {"name": "CI"}, token=ada["token"])).body["url"]
    before = await deps.store.messages.count_documents({"chat_id": chat})
    for raw, status in ((b"{not json", 400), (b'{"content": ""}', 422), (b'{"content": 5}', 422),
                        (b'{"text": "hi"}', 422), (b"", 400),
                        (b'{"content": "' + b"x" * (2 * 1024 * 1024) + b'"}', 413)):
        reply = await api.post(url, raw=raw)
        assert reply.status == status, (raw[:20], reply.status, reply.body)
        assert reply.body["error"]["code"]
    assert await deps.store.messages.count_documents({"chat_id": chat}) == before


async def test_a_deleted_or_unknown_webhook_is_404(api):
    ada, bob, cy, (chat, _other) = await _setting(api)
    made = await api.post(f"/api/chats/{chat}/webhooks", {"name": "CI"}, token=ada["token"])
    keep = await api.post(f"/api/chats/{chat}/webhooks", {"name": "Kept"}, token=ada["token"])
    url = made.body["url"]
    assert (await api.post(url, {"content": "before"})).status == 201
    gone = await api.delete(f"/api/chats/{chat}/webhooks/{made.body['id']}", token=ada["token"])
    assert gone.status == 204
    after = await api.post(url, {"content": "after"})
    assert after.status == 404 and after.error_code == "not_found"
    unknown = await api.post("/hooks/" + "A" * 43, {"content": "x"})
    assert unknown.status == 404 and unknown.error_code == "not_found"
    assert (await api.post(keep.body["url"], {"content": "still works"})).status == 201
    assert await _contents(api, chat, bob["token"]) == ["before", "still works"]
    assert [h["id"] for h in (await api.get(f"/api/chats/{chat}/webhooks", token=ada["token"])).body] == \
        [keep.body["id"]]
    assert (await api.delete(f"/api/chats/{chat}/webhooks/{made.body['id']}", token=ada["token"])).status == 404


async def test_only_the_chats_owner_or_admins_manage_webhooks(api):
    ada, bob, cy, (chat, _other) = await _setting(api)
    refused = await api.post(f"/api/chats/{chat}/webhooks", {"name": "Mine"}, token=bob["token"])
    assert refused.status == 403 and refused.error_code == "forbidden"
    assert (await api.get(f"/api/chats/{chat}/webhooks", token=bob["token"])).status == 403
    made = await api.post(f"/api/chats/{chat}/webhooks", {"name": "CI"}, token=ada["token"])
    assert (await api.delete(f"/api/chats/{chat}/webhooks/{made.body['id']}", token=bob["token"])).status == 403
    promoted = await api.patch(f"/api/chats/{chat}/members/{cy['id']}", {"role": "admin"}, token=ada["token"])
    assert promoted.status == 200, promoted.body
    assert (await api.post(f"/api/chats/{chat}/webhooks", {"name": "Cy's"}, token=cy["token"])).status == 201
    outsider = await api.signup(fullname="Eve")
    assert (await api.post(f"/api/chats/{chat}/webhooks", {"name": "x"}, token=outsider["token"])).status == 404
    assert (await api.post(f"/api/chats/{chat}/webhooks", {"name": ""}, token=ada["token"])).status == 422
    assert (await api.post(f"/api/chats/{chat}/webhooks", {"name": "x"})).status == 401
