"""Abuse limits of issue 13: typing, stream opens, uploads, chat creation, message edits and deletes, member
adds and joins, read marks, chat changes and searches per user, and the upload quota."""

import pytest

from app import events
from app.services.files import UPLOAD_BYTES_FIELD
from tests.support.chats import count, create_chat, events_of, make_team
from tests.test_files import upload

# Every window (10 s, 1 min, 1 h) starts 1 s before the limiters' stopped clock (tests/conftest.py).
pytestmark = [pytest.mark.gen_test(timeout=60), pytest.mark.usefixtures("frozen_window")]

LIMITS = {"enabled": True, "typing_per_10_seconds_per_user": 3, "stream_opens_per_minute_per_user": 3,
          "uploads_per_minute_per_user": 2, "chats_per_hour_per_user": 2, "upload_quota_bytes_per_user": 0,
          "streams_per_user": 10, "edits_per_minute_per_user": 2, "deletes_per_minute_per_user": 2,
          "member_adds_per_minute_per_user": 2, "reads_per_minute_per_user": 3, "chat_updates_per_minute_per_user": 2,
          "searches_per_minute_per_user": 2}


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


async def test_message_edits_and_deletes_are_limited_per_user(api, deps):
    t = await make_team(api)
    chat = await create_chat(api, t.owner, "group", [t.member, t.outsider], name="edits")
    path = f"/api/chats/{chat['id']}/messages"
    mine = [(await api.post(path, {"content": f"m{i}"}, token=t.owner["token"])).body for i in range(4)]
    theirs = (await api.post(path, {"content": "theirs"}, token=t.member["token"])).body
    edit = [await api.call("PATCH", f"{path}/{mine[0]['id']}", {"content": f"edit {i}"}, token=t.owner["token"])
            for i in range(2)]
    assert [r.status for r in edit] == [200, 200]
    refused(await api.call("PATCH", f"{path}/{mine[1]['id']}", {"content": "one too many"}, token=t.owner["token"]), 60)
    assert (await deps.store.messages.find_one({"_id": mine[1]["id"]}))["content"] == "m1"
    assert (await api.call("PATCH", f"{path}/{theirs['id']}", {"content": "mine"}, token=t.member["token"])).status == 200
    edited = await events_of(deps.bus, events.MESSAGE_UPDATED, chat["id"])
    assert [e.data["content"] for e in edited] == ["edit 0", "edit 1", "mine"]

    assert [(await api.delete(f"{path}/{m['id']}", token=t.owner["token"])).status for m in mine[1:3]] == [204, 204]
    refused(await api.delete(f"{path}/{mine[3]['id']}", token=t.owner["token"]), 60)
    assert (await deps.store.messages.find_one({"_id": mine[3]["id"]}))["deleted"] is False
    assert (await api.delete(f"{path}/{theirs['id']}", token=t.member["token"])).status == 204
    assert len(await events_of(deps.bus, events.MESSAGE_DELETED, chat["id"])) == 3
    # A stranger is told the chat does not exist, and counts against nobody.
    assert (await api.call("PATCH", f"{path}/{theirs['id']}", {"content": "x"}, token=t.stranger["token"])).status == 404


async def test_member_adds_and_joins_are_limited_per_user(api, deps):
    t = await make_team(api)
    extra = await api.signup(invite_code=t.owner["workspace"]["invite_code"], fullname="Eve Extra")
    public = await create_chat(api, t.owner, "public_channel", name="lobby")
    private = await create_chat(api, t.owner, "private_channel", name="inner")
    members = f"/api/chats/{private['id']}/members"

    def ids(reply):
        return {m["user_id"] for m in reply.body}

    assert t.member["id"] in ids(await api.post(members, {"user_ids": [t.member["id"]]}, token=t.owner["token"]))
    # Adding someone already there adds nobody, so it is not counted.
    assert (await api.post(members, {"user_ids": [t.member["id"]]}, token=t.owner["token"])).status == 200
    assert t.outsider["id"] in ids(await api.post(members, {"user_ids": [t.outsider["id"]]}, token=t.owner["token"]))
    refused(await api.post(members, {"user_ids": [extra["id"]]}, token=t.owner["token"]), 60)
    assert await count(deps.store.members, {"chat_id": private["id"], "user_id": extra["id"]}) == 0
    joined = await events_of(deps.bus, events.MEMBER_JOINED, private["id"])
    assert sorted(e.data["user_id"] for e in joined) == sorted([t.member["id"], t.outsider["id"]])
    # The owner is already in the public channel: joining it again changes nothing and is not refused.
    assert (await api.post(f"/api/chats/{public['id']}/join", token=t.owner["token"])).status == 200

    # Joining counts as adding a member: a join-and-leave loop stops at the limit.
    join, leave = f"/api/chats/{public['id']}/join", f"/api/chats/{public['id']}/members/{extra['id']}"
    for _ in range(2):
        assert (await api.post(join, token=extra["token"])).status == 200
        assert (await api.delete(leave, token=extra["token"])).status == 204
    refused(await api.post(join, token=extra["token"]), 60)
    assert await count(deps.store.members, {"chat_id": public["id"], "user_id": extra["id"]}) == 0
    assert len(await events_of(deps.bus, events.MEMBER_JOINED, public["id"])) == 2
    assert (await api.post(join, token=t.member["token"])).status == 200  # counted per user


async def test_read_marks_are_limited_per_user(api, deps):
    t = await make_team(api)
    chat = await create_chat(api, t.owner, "direct", [t.member])
    for i in range(5):
        await api.post(f"/api/chats/{chat['id']}/messages", {"content": f"m{i}"}, token=t.owner["token"])
    read = f"/api/chats/{chat['id']}/read"
    assert [(await api.post(read, {"seq": seq}, token=t.member["token"])).status for seq in (1, 2, 3)] == [204] * 3
    refused(await api.post(read, {"seq": 4}, token=t.member["token"]), 60)
    # A mark that does not move publishes nothing and is not counted.
    assert (await api.post(read, {"seq": 3}, token=t.member["token"])).status == 204
    assert (await deps.store.members.find_one({"chat_id": chat["id"], "user_id": t.member["id"]}))["last_read_seq"] == 3
    assert [e.data["seq"] for e in await events_of(deps.bus, events.READ, chat["id"])] == [1, 2, 3]


async def test_chat_changes_are_limited_per_user(api, deps):
    t = await make_team(api)
    chat = await create_chat(api, t.owner, "group", [t.member, t.outsider], name="before")
    path = f"/api/chats/{chat['id']}"
    assert [(await api.call("PATCH", path, {"name": f"name {i}"}, token=t.owner["token"])).status
            for i in range(2)] == [200, 200]
    refused(await api.call("PATCH", path, {"description": "one too many"}, token=t.owner["token"]), 60)
    stored = await deps.store.chats.find_one({"_id": chat["id"]})
    assert stored["name"] == "name 1" and stored["description"] == ""
    assert len(await events_of(deps.bus, events.CHAT_UPDATED, chat["id"])) == 2


async def test_searches_are_limited_per_user(api):
    t = await make_team(api)
    search = "/api/search/messages?q=anything"
    assert [(await api.get(search, token=t.owner["token"])).status for _ in range(2)] == [200, 200]
    refused(await api.get(search, token=t.owner["token"]), 60)
    assert (await api.get(search, token=t.member["token"])).status == 200


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


def test_every_limit_is_in_the_operations_table():
    """Each key of config `limits` has its row in docs/operations.md "Limits and abuse" (default, what a client sees)."""
    from pathlib import Path

    from app.config import LimitsConfig

    text = (Path(__file__).resolve().parent.parent / "docs" / "operations.md").read_text(encoding="utf-8")
    table = text.split("## Limits and abuse", 1)[1].split("\n## ", 1)[0]
    missing = [name for name in LimitsConfig.__struct_fields__ if name != "enabled" and f"`limits.{name}`" not in table]
    assert not missing, f"not in the Limits and abuse table of docs/operations.md: {missing}"
