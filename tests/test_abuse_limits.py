"""Abuse limits of issue 13: typing, stream opens, uploads, chat creation per user, and the upload quota."""

import pytest

from app import events
from app.services.files import UPLOAD_BYTES_FIELD
from tests.support.chats import count, create_chat, events_of, make_team
from tests.test_files import upload

# Every window (10 s, 1 min, 1 h) starts 1 s before the limiters' stopped clock (tests/conftest.py).
pytestmark = [pytest.mark.gen_test(timeout=60), pytest.mark.usefixtures("frozen_window")]

LIMITS = {"enabled": True, "typing_per_10_seconds_per_user": 3, "stream_opens_per_minute_per_user": 3,
          "uploads_per_minute_per_user": 2, "chats_per_hour_per_user": 2, "upload_quota_bytes_per_user": 0,
          "streams_per_user": 10}


@pytest.fixture
def config_overrides():
    return {"limits": LIMITS, "files": {"max_bytes": 1000}}


def refused(reply, window):
    assert reply.status == 429, (reply.status, reply.body)
    assert reply.headers["Content-Type"].startswith("application/json")
    assert reply.error_code == "rate_limited"
    assert int(reply.headers["Retry-After"]) == window - 1


def typing(chat):
    return f"/api/chats/{chat['id']}/typing"


async def test_typing_is_limited_per_user_and_nothing_is_published_past_it(api, deps):
    t = await make_team(api)
    chat = await create_chat(api, t.owner, "direct", [t.member])
    replies = [await api.post(typing(chat), token=t.owner["token"]) for _ in range(3)]
    assert [r.status for r in replies] == [204] * 3
    refused(await api.post(typing(chat), token=t.owner["token"]), 10)
    assert (await api.post(typing(chat), token=t.member["token"])).status == 204
    typed = await events_of(deps.bus, events.TYPING, chat["id"])
    assert sorted(e.data["user_id"] for e in typed) == sorted([t.owner["id"]] * 3 + [t.member["id"]])
    # A stranger is told the chat does not exist, not counted against anyone.
    assert (await api.post(typing(chat), token=t.stranger["token"])).status == 404


async def test_stream_opens_are_limited_per_user(api, sse):
    t = await make_team(api)
    for _ in range(3):
        stream = await sse(t.owner["token"])
        assert stream.status == 200
        stream.close()
    over = await sse(t.owner["token"])
    assert over.status == 429 and over.body["error"]["code"] == "rate_limited"
    assert int(over.headers["retry-after"]) == 59
    assert (await sse(t.member["token"])).status == 200


async def test_uploads_are_limited_per_user(api, deps):
    t = await make_team(api)
    assert [(await upload(api, t.owner, b"x" * 10)).status for _ in range(2)] == [201, 201]
    refused(await upload(api, t.owner, b"x" * 10), 60)
    assert await count(deps.store.files, {"metadata.uploader_id": t.owner["id"]}) == 2
    assert (await upload(api, t.member, b"x" * 10)).status == 201


async def test_chat_creation_is_limited_per_user(api, deps):
    t = await make_team(api)
    direct = await create_chat(api, t.owner, "direct", [t.member])
    await create_chat(api, t.owner, "public_channel", name="one")
    over = await api.post("/api/chats", {"type": "public_channel", "name": "two", "members": []},
                          token=t.owner["token"])
    refused(over, 3600)
    assert await count(deps.store.chats, {"workspace_id": t.owner["workspace"]["id"], "name": "two"}) == 0
    assert not [e for e in await events_of(deps.bus, events.CHAT_CREATED) if e.data.get("name") == "two"]
    # Asking for the direct chat that exists creates nothing, so it is not refused.
    again = await api.post("/api/chats", {"type": "direct", "members": [t.member["id"]]}, token=t.owner["token"])
    assert again.status == 200 and again.body["id"] == direct["id"]
    assert (await create_chat(api, t.member, "public_channel", name="two"))["name"] == "two"


@pytest.mark.parametrize("config_overrides", [{
    "limits": {**LIMITS, "uploads_per_minute_per_user": 100, "upload_quota_bytes_per_user": 2500},
    "files": {"max_bytes": 1000},
}])
async def test_upload_quota_per_user(api, deps):
    t = await make_team(api)
    assert [(await upload(api, t.owner, b"x" * 1000)).status for _ in range(2)] == [201, 201]
    over = await upload(api, t.owner, b"x" * 1000)
    assert over.status == 413 and over.error_code == "upload_quota_exceeded"
    assert (await upload(api, t.owner, b"x" * 500)).status == 201  # exactly the quota
    assert (await upload(api, t.owner, b"x")).status == 413
    assert await count(deps.store.files, {"metadata.uploader_id": t.owner["id"]}) == 3
    owner = await deps.store.users.find_one({"_id": t.owner["id"]})
    assert owner[UPLOAD_BYTES_FIELD] == 2500
    assert (await upload(api, t.member, b"x" * 1000)).status == 201


@pytest.mark.parametrize("config_overrides", [{
    "limits": {**LIMITS, "enabled": False, "upload_quota_bytes_per_user": 1500}, "files": {"max_bytes": 1000},
}])
async def test_enabled_false_turns_these_limits_off(api, sse, deps):
    t = await make_team(api)
    chat = await create_chat(api, t.owner, "direct", [t.member])
    assert {(await api.post(typing(chat), token=t.owner["token"])).status for _ in range(5)} == {204}
    assert {(await upload(api, t.owner, b"x" * 1000)).status for _ in range(4)} == {201}
    for name in ("a", "b", "c"):
        await create_chat(api, t.owner, "public_channel", name=name)
    for _ in range(5):
        stream = await sse(t.owner["token"])
        assert stream.status == 200
        stream.close()
