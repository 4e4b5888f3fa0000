"""Bots and incoming webhooks are rate-limited like people: the send limit per user counts each bot apart."""

import uuid

import pytest

pytestmark = [pytest.mark.gen_test(timeout=60), pytest.mark.usefixtures("cheap_passwords")]

SEND_LIMIT = 3


@pytest.fixture
def config_overrides():
    return {"limits": {"enabled": True, "messages_per_minute_per_user": SEND_LIMIT}}


async def test_a_webhook_and_a_bot_each_hit_the_send_limit_and_store_nothing_past_it(api, deps):
    ada = await api.signup(fullname="Ada")
    bob = await api.signup(invite_code=ada["workspace"]["invite_code"], fullname="Bob")
    chat = (await api.post("/api/chats", {"type": "public_channel", "name": f"ci-{uuid.uuid4().hex[:8]}",
                                          "members": [bob["id"]]}, token=ada["token"])).body["id"]
    url = (await api.post(f"/api/chats/{chat}/webhooks", {"name": "CI"}, token=ada["token"])).body["url"]
    made = (await api.post("/api/bots", {"name": "Ops", "username": "ops"}, token=ada["token"])).body
    assert (await api.post(f"/api/chats/{chat}/members", {"user_ids": [made["bot"]["id"]]},
                           token=bob["token"])).status == 200
    for i in range(SEND_LIMIT):
        assert (await api.post(url, {"content": f"hook {i}"})).status == 201
        assert (await api.post(f"/api/chats/{chat}/messages", {"content": f"bot {i}"}, token=made["token"])).status == 201
    limited = await api.post(url, {"content": "one too many"})
    assert limited.status == 429 and limited.error_code == "rate_limited" and limited.headers.get("Retry-After")
    assert (await api.post(f"/api/chats/{chat}/messages", {"content": "x"}, token=made["token"])).status == 429
    # A person in the same chat is not held back by the bots' limits.
    assert (await api.post(f"/api/chats/{chat}/messages", {"content": "human"}, token=bob["token"])).status == 201
    assert await deps.store.messages.count_documents({"chat_id": chat, "content": "one too many"}) == 0
