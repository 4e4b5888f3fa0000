"""Bot users: the owner makes them, their token works on both roles until revoked, and they are never online."""

import hashlib
import uuid

import pytest

from app import events
from tests.support.api import wait_for

pytestmark = [pytest.mark.gen_test(timeout=60), pytest.mark.usefixtures("cheap_passwords")]


async def _workspace(api):
    ada = await api.signup(fullname="Ada")  # the workspace owner
    code = ada["workspace"]["invite_code"]
    bob = await api.signup(invite_code=code, fullname="Bob")
    cy = await api.signup(invite_code=code, fullname="Cy")
    eve = await api.signup(fullname="Eve")  # another workspace
    return ada, bob, cy, eve


async def _group(api, owner, *others) -> str:
    reply = await api.post("/api/chats", {"type": "private_channel", "name": f"ops-{uuid.uuid4().hex[:8]}",
                                          "members": [o["id"] for o in others]}, token=owner["token"])
    assert reply.status == 201, reply.body
    return reply.body["id"]


async def test_a_bot_reads_and_posts_with_its_token_until_revoked(api, notify_api, sse, deps):
    ada, bob, cy, eve = await _workspace(api)
    made = await api.post("/api/bots", {"name": "Deploy Bot", "username": "Deployer"}, token=ada["token"])
    assert made.status == 201, made.body
    bot, token = made.body["bot"], made.body["token"]
    assert bot["is_bot"] is True and bot["username"] == "deployer" and bot["fullname"] == "Deploy Bot"
    stored = await deps.store.users.find_one({"_id": bot["id"]})
    assert token not in str(stored) and stored["bot_token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    assert stored["password_hash"] is None

    chat = await _group(api, bob, cy)
    other_chat = await _group(api, cy, bob)  # the bot is never added here
    # A member adds the bot like a person; it reads and posts with its token.
    added = await api.post(f"/api/chats/{chat}/members", {"user_ids": [bot["id"]]}, token=bob["token"])
    assert added.status == 200 and bot["id"] in [m["user_id"] for m in added.body]
    sent = await api.post(f"/api/chats/{chat}/messages", {"content": "build 42 is green"}, token=cy["token"])
    assert sent.status == 201
    history = await api.get(f"/api/chats/{chat}/messages", token=token)
    assert history.status == 200 and "build 42 is green" in [m["content"] for m in history.body["messages"]]
    posted = await api.post(f"/api/chats/{chat}/messages", {"content": "deploying"}, token=token)
    assert posted.status == 201 and posted.body["sender_id"] == bot["id"]
    assert (await api.get(f"/api/chats/{other_chat}/messages", token=token)).status in (403, 404)
    shown = await api.get(f"/api/users/{bot['id']}", token=bob["token"])
    assert shown.status == 200 and shown.body["is_bot"] is True

    # Its stream on notify delivers its chats' events.
    stream = await sse(token, expect=200)
    await stream.wait_cursor()
    again = await api.post(f"/api/chats/{chat}/messages", {"content": "done"}, token=bob["token"])
    await stream.wait_for(lambda c: again.body["id"] in [f.data["id"] for f in c.of(events.MESSAGE_CREATED)])
    human = await sse(bob["token"], expect=200)
    await human.wait_cursor()

    # Revoked: the token is refused at once and the open stream ends; nobody else's session is touched.
    listed = await api.get("/api/bots", token=ada["token"])
    assert [b["id"] for b in listed.body] == [bot["id"]]
    assert (await api.delete(f"/api/bots/{bot['id']}", token=ada["token"])).status == 204
    refused = await api.get(f"/api/chats/{chat}/messages", token=token)
    assert refused.status == 401 and refused.error_code == "unauthorized"
    assert (await api.post(f"/api/chats/{chat}/messages", {"content": "x"}, token=token)).status == 401
    await stream.wait_ended()
    assert not human.ended.is_set()
    assert (await sse(token)).status == 401
    assert (await api.get("/api/bots", token=ada["token"])).body == []
    assert (await api.delete(f"/api/bots/{bot['id']}", token=ada["token"])).status == 404
    assert (await api.get("/api/users/me", token=bob["token"])).status == 200


async def test_only_the_workspace_owner_manages_bots(api):
    ada, bob, cy, eve = await _workspace(api)
    made = await api.post("/api/bots", {"name": "Ops", "username": "ops"}, token=ada["token"])
    assert made.status == 201
    bot_id = made.body["bot"]["id"]
    assert (await api.post("/api/bots", {"name": "Mine", "username": "mine"}, token=bob["token"])).status == 403
    assert (await api.get("/api/bots", token=bob["token"])).status == 403
    assert (await api.delete(f"/api/bots/{bot_id}", token=bob["token"])).status == 403
    # Another workspace's owner sees none of ours and cannot revoke it.
    assert (await api.get("/api/bots", token=eve["token"])).body == []
    assert (await api.delete(f"/api/bots/{bot_id}", token=eve["token"])).status == 404
    assert (await api.post("/api/bots", {"name": "Ops 2", "username": "OPS"}, token=ada["token"])).status == 409
    bad = await api.post("/api/bots", {"name": "", "username": "no spaces"}, token=ada["token"])
    assert bad.status == 422
    assert (await api.post("/api/bots", {"name": "x", "username": "x"})).status == 401
    assert [b["id"] for b in (await api.get("/api/bots", token=ada["token"])).body] == [bot_id]


async def test_bots_never_count_as_online(api, notify_api, sse):
    ada, bob, cy, eve = await _workspace(api)
    made = await api.post("/api/bots", {"name": "Watcher", "username": "watcher"}, token=ada["token"])
    bot, token = made.body["bot"], made.body["token"]
    chat = await _group(api, ada, bob)
    assert (await api.post(f"/api/chats/{chat}/members", {"user_ids": [bot["id"]]}, token=ada["token"])).status == 200
    listener = await sse(ada["token"], expect=200)
    await listener.wait_cursor()
    bot_stream = await sse(token, expect=200)
    await bot_stream.wait_cursor()
    await sse(bob["token"], expect=200)

    async def bob_online():
        reply = await notify_api.get(f"/api/online-users?chat_id={chat}", token=ada["token"])
        return [u["id"] for u in reply.body["users"]] if bob["id"] in str(reply.body) else None

    online = await wait_for(bob_online)
    assert bot["id"] not in online
    await listener.wait_for(lambda c: any(f.data["user_id"] == bob["id"] for f in c.of(events.PRESENCE)))
    assert all(f.data["user_id"] != bot["id"] for f in listener.of(events.PRESENCE))
    workspace = await notify_api.get(f"/api/online-users?workspace_id={ada['workspace']['id']}", token=ada["token"])
    assert bot["id"] not in [u["id"] for u in workspace.body["users"]]
