"""Abuse limits from config `limits:`: send rate per user, search query length, body sizes, streams per user."""

import datetime
import time

import pytest

from app.config import load_config
from app.services.ratelimit import RateLimiter
from tests.support.api import wait_for
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
    assert over.status == 422 and over.body["error"]["fields"] == {"q": "Search must be at most 30 characters"}
    found = await api.get("/api/search/messages?q=needle", token=t.owner["token"])
    assert [m["content"] for m in found.body["messages"]] == ["needle in a haystack"]


async def test_request_bodies_are_bounded(api, deps):
    t = await make_team(api)
    chat = await create_chat(api, t.owner, "direct", [t.member])
    # 4000 characters is a valid message, but not within a 2 KiB body limit.
    big = await api.post(msgs(chat), {"content": "x" * 4000}, token=t.owner["token"])
    assert big.status == 413 and big.error_code == "payload_too_large"
    assert await count(deps.store.messages, {"chat_id": chat["id"]}) == 0
    # The team's joins of #general are system lines; no user message was stored anywhere.
    assert await count(deps.store.messages, {"system": {"$exists": False}}) == 0
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


async def test_the_purge_deletes_ended_windows_and_keeps_live_ones(api, app, deps):
    store = deps.store
    limiter = app.settings["services"].limiter
    now = time.time()
    # Live windows, as hits write them: per minute and per hour, for several users and IPs.
    await limiter.hit("signup:ip:10.0.0.9", limit=100, window=3600)
    for i in range(6):
        for _ in range(i + 1):
            await limiter._count(f"messages:user:u{i}@{int(now)}", int(now) + 30)
        await limiter._count(f"signup:ip:10.0.0.{i}@{int(now)}", int(now) + 3000)
    live = {d["_id"]: d for d in await store.rate_limits.find({}).to_list()}
    assert len(live) == 13 and all(d["expires_ts"] > now for d in live.values())
    assert live[f"messages:user:u5@{int(now)}"]["n"] == 6
    # Windows that ended (written as hits wrote them minutes and hours ago), one ending exactly now.
    ended = [{"_id": f"messages:user:u{i}@{int(now) - 600 - 60 * i}", "n": 3, "expires_ts": int(now) - 540 - 60 * i}
             for i in range(30)]
    ended.append({"_id": "signin:ip:10.1.1.1@0", "n": 1, "expires_ts": int(now)})
    await store.rate_limits.insert_many(ended)
    assert await limiter.purge_once(now=int(now) + 0.5) == len(ended)
    assert {d["_id"]: d for d in await store.rate_limits.find({}).to_list()} == live
    assert await limiter.purge_once(now=int(now) + 0.5) == 0  # a second process's pass: nothing left to delete
    # A live window's count goes on after a purge.
    assert await limiter._count(f"messages:user:u5@{int(now)}", int(now) + 30) == 7
    live[f"messages:user:u5@{int(now)}"]["n"] = 7
    # Once every window has ended, the purge takes them all.
    assert await limiter.purge_once(now=now + 3601) == len(live)
    assert await store.rate_limits.find({}).to_list() == []


async def test_the_purge_runs_in_the_background_of_the_api_role(app, deps):
    assert app.settings["services"].limiter in app.settings["background"]
    limiter = RateLimiter(deps.store, enabled=True, purge_interval=0.01)
    await deps.store.rate_limits.insert_many([{"_id": "old@0", "n": 1, "expires_ts": 60},
                                              {"_id": "live@0", "n": 1, "expires_ts": time.time() + 3600}])
    await limiter.start()
    try:
        await wait_for(_absent(deps.store.rate_limits, "old@0"), message="the ended window purged")
    finally:
        await limiter.stop()
    assert not limiter.running
    assert [d["_id"] for d in await deps.store.rate_limits.find({}).to_list()] == ["live@0"]


def _absent(collection, doc_id):
    async def check():
        return await collection.find_one({"_id": doc_id}) is None
    return check


async def test_start_up_drops_the_old_ttl_index_and_its_expired_windows(deps):
    """A database of an older version: a TTL index on `expires_at`, windows with only `expires_at`."""
    store = deps.store
    await store.db.command("dropIndexes", store.rate_limits.name, index={"expires_ts": 1})
    await store.rate_limits.create_index("expires_at", expireAfterSeconds=0)
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    await store.rate_limits.insert_many(
        [{"_id": f"old-live-{i}@0", "n": 2, "expires_at": now + datetime.timedelta(minutes=5)} for i in range(3)]
        + [{"_id": "new@0", "n": 1, "expires_ts": int(now.timestamp()) + 300}]
    )
    await store.ensure_indexes()
    await store.ensure_indexes()  # again: the TTL index already gone
    keys = [list(ix["key"]) async for ix in await store.rate_limits.list_indexes()]
    assert ["expires_at"] not in keys and ["expires_ts"] in keys
    # An old window that ended is deleted at start-up (TTL or not, it is gone); live ones stay and count on.
    ended = now - datetime.timedelta(minutes=5)
    await store.rate_limits.insert_one({"_id": "old-ended@0", "n": 9, "expires_at": ended})
    assert await store.rate_limits.find_one({"_id": "old-ended@0"}) is not None  # no TTL purge any more
    await store.ensure_indexes()
    ids = sorted(d["_id"] for d in await store.rate_limits.find({}).to_list())
    assert ids == ["new@0", "old-live-0@0", "old-live-1@0", "old-live-2@0"]
    # The next hit of an old live window gives it `expires_ts`, so the purge deletes it once it ends.
    limiter = RateLimiter(store, enabled=True)
    assert await limiter._count("old-live-0@0", int(now.timestamp()) + 300) == 3
    assert await limiter.purge_once(now=now.timestamp() + 301) == 2
    assert sorted(d["_id"] for d in await store.rate_limits.find({}).to_list()) == ["old-live-1@0", "old-live-2@0"]
