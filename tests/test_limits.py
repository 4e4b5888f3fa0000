"""Abuse limits from config `limits:`: send rate per user, search query length, body sizes, streams per user."""

import pytest

from app.config import load_config
from tests.support.chats import count, create_chat, make_team

pytestmark = pytest.mark.gen_test(timeout=60)

SEND_LIMIT = 5
LIMITS = {"enabled": True, "messages_per_minute_per_user": SEND_LIMIT, "search_query_max_chars": 30,
          "streams_per_user": 2}
SMALL_BODIES = {"max_body_bytes": 2048}


@pytest.fixture
def config_overrides():
    return {"limits": LIMITS, "api": SMALL_BODIES, "files": {"max_bytes": 1000}}


def msgs(chat):
    return f"/api/chats/{chat['id']}/messages"


async def test_send_rate_is_limited_per_user(api, deps):
    t = await make_team(api)
    chat = await create_chat(api, t.owner, "group", [t.member, t.outsider])
    sent = [await api.post(msgs(chat), {"content": f"m{i}", "idempotency_key": f"k{i}"}, token=t.owner["token"])
            for i in range(SEND_LIMIT)]
    assert [r.status for r in sent] == [201] * SEND_LIMIT
    refused = await api.post(msgs(chat), {"content": "one too many"}, token=t.owner["token"])
    assert refused.status == 429 and refused.error_code == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    # Refused means nothing stored and no seq taken.
    assert await count(deps.store.messages, {"chat_id": chat["id"]}) == SEND_LIMIT
    assert (await api.get(f"/api/chats/{chat['id']}", token=t.owner["token"])).status == 200
    # A retry of a message already sent still gets its first answer: retries never cost a send.
    retry = await api.post(msgs(chat), {"content": "m0", "idempotency_key": "k0"}, token=t.owner["token"])
    assert retry.status == 200 and retry.body["id"] == sent[0].body["id"]
    # The limit is per user: the member still sends, in the same chat, and gets the next seq.
    other = await api.post(msgs(chat), {"content": "mine"}, token=t.member["token"])
    assert other.status == 201 and other.body["seq"] == SEND_LIMIT + 1


async def test_search_query_length(api):
    t = await make_team(api)
    chat = await create_chat(api, t.owner, "direct", [t.member])
    assert (await api.post(msgs(chat), {"content": "needle in a haystack"}, token=t.owner["token"])).status == 201
    at_limit = await api.get("/api/search/messages?q=needle" + "+x" * 12, token=t.owner["token"])  # 30 chars
    assert at_limit.status == 200
    over = await api.get("/api/search/messages?q=needle" + "+x" * 13, token=t.owner["token"])  # 32 chars
    assert over.status == 422 and over.body["error"]["fields"] == {"q": "at most 30 characters"}
    found = await api.get("/api/search/messages?q=needle", token=t.owner["token"])
    assert [m["content"] for m in found.body["messages"]] == ["needle in a haystack"]


async def test_request_bodies_are_bounded(api, deps):
    t = await make_team(api)
    chat = await create_chat(api, t.owner, "direct", [t.member])
    # 4000 characters is a valid message, but not within a 2 KiB body limit.
    big = await api.post(msgs(chat), {"content": "x" * 4000}, token=t.owner["token"])
    assert big.status == 413 and big.error_code == "payload_too_large"
    assert await count(deps.store.messages, {}) == 0
    boundary = "fechatterboundary"

    def upload(size):
        return (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\n"
                f"Content-Type: application/octet-stream\r\n\r\n").encode() + b"\0" * size + \
               f"\r\n--{boundary}--\r\n".encode()

    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    ok = await api.post("/api/files", raw=upload(1000), headers=headers, token=t.owner["token"])
    assert ok.status == 201 and ok.body["size"] == 1000
    too_big = await api.post("/api/files", raw=upload(1001), headers=headers, token=t.owner["token"])
    assert too_big.status == 413 and too_big.error_code == "payload_too_large"


@pytest.mark.parametrize("config_overrides", [{"limits": {**LIMITS, "enabled": False}}])
async def test_enabled_false_turns_rate_and_count_limits_off(api, sse, deps):
    t = await make_team(api)
    chat = await create_chat(api, t.owner, "direct", [t.member])
    replies = [await api.post(msgs(chat), {"content": f"m{i}"}, token=t.owner["token"]) for i in range(SEND_LIMIT * 2)]
    assert [r.status for r in replies] == [201] * SEND_LIMIT * 2
    streams = [await sse(t.owner["token"]) for _ in range(LIMITS["streams_per_user"] + 2)]
    assert [s.status for s in streams] == [200] * (LIMITS["streams_per_user"] + 2)
    # Sizes are not rate or count limits: the search bound holds whatever `enabled` says.
    over = await api.get("/api/search/messages?q=" + "x" * 31, token=t.owner["token"])
    assert over.status == 422


async def test_streams_per_user(api, sse):
    t = await make_team(api)
    first, second = await sse(t.owner["token"]), await sse(t.owner["token"])
    assert (first.status, second.status) == (200, 200)
    third = await sse(t.owner["token"])
    assert third.status == 429 and third.body["error"]["code"] == "too_many_streams"
    assert int(third.headers["retry-after"]) > 0
    assert (await sse(t.member["token"])).status == 200


def test_limits_switch_from_the_environment():
    config = load_config(env={"FECHATTER_LIMITS_ENABLED": "false", "FECHATTER_LIMITS_MESSAGES_PER_MINUTE_PER_USER": "7"})
    assert config.limits.enabled is False and config.limits.messages_per_minute_per_user == 7
