"""Fault: the MongoDB-wire server stops under a running api; 503 with Retry-After, nothing half-written, back without a restart."""

import asyncio
import time

import pytest

from tests.faults.report import record
from tests.support.api import Api, wait_for
from tests.support.chats import outbox_empty, stream_events, team_chat

pytestmark = [pytest.mark.faults, pytest.mark.gen_test(timeout=150)]

BEFORE, DURING = 20, 20


async def test_mongo_down_answers_503_and_recovers_without_restart(stack, roles, observer):
    api_process = await roles("api")
    api = Api(api_process.url)
    users, chat = await team_chat(api, 3, "mongo")
    owner = users[0]
    path = f"/api/chats/{chat['id']}/messages"
    acknowledged = []
    for i in range(BEFORE):
        reply = await api.post(path, {"content": f"before {i}", "idempotency_key": f"b{i}"}, token=owner["token"])
        assert reply.status == 201
        acknowledged.append(reply.body)

    await stack.mongo.stop()
    # All at once, as clients would keep sending: each waits out the store's timeout (1 s) before its 503.
    refused = await asyncio.gather(*(
        api.post(path, {"content": f"during {i}", "idempotency_key": f"d{i}"}, token=owner["token"], timeout=15)
        for i in range(DURING)))
    statuses = [r.status for r in refused]
    assert statuses == [503] * DURING, statuses
    for reply in refused:
        assert reply.error_code == "mongodb_unavailable" and int(reply.headers["Retry-After"]) > 0
        assert "Traceback" not in str(reply.body)
    reads = await asyncio.gather(*(api.get(p, token=owner["token"], timeout=15)
                                   for p in ("/api/chats", path, "/api/users/me")))
    assert [r.status for r in reads] == [503] * 3 and all(r.headers["Retry-After"] for r in reads)
    ready = await api.get("/health/ready", timeout=15)
    assert ready.status == 503 and ready.body["down"] == ["mongodb"] and ready.headers["Retry-After"]
    assert (await api.get("/health")).status == 200  # alive, only not ready

    await stack.mongo.start()
    back = time.monotonic()

    async def sends_again():
        reply = await api.post(path, {"content": "first after", "idempotency_key": "after"}, token=owner["token"])
        return reply if reply.status == 201 else None

    first_after = await wait_for(sends_again, timeout=30, interval=0.2, message="sends work again")
    recovered_in = time.monotonic() - back
    assert (await api.get("/health/ready")).status == 200
    acknowledged.append(first_after.body)
    # The client retries what was refused, with the same keys: each is stored once.
    for i in range(DURING):
        reply = await api.post(path, {"content": f"during {i}", "idempotency_key": f"d{i}"}, token=owner["token"])
        assert reply.status == 201, reply.body
        acknowledged.append(reply.body)

    docs = await observer.store.messages.find({"chat_id": chat["id"]}).sort("seq", 1).to_list()
    real = [d for d in docs if not d.get("gap")]
    gaps = [d for d in docs if d.get("gap")]

    async def all_published():
        found = [e.event for e in await stream_events(observer.bus) if e.event.type == "message.created"
                 and e.event.data.get("kind") != "system"]  # not the signups' "joined #general" lines
        return found if len(found) >= len(real) else None

    events = await wait_for(all_published, timeout=30, interval=0.3, message="every stored message published")
    published = [e.data["id"] for e in events]
    record("mongo_down", sent=BEFORE + DURING + 1 + DURING, acknowledged=len(acknowledged), refused_503=DURING,
           stored=len(real), gap_tombstones=len(gaps), published=len(published),
           duplicated=len(published) - len(set(published)) + len(real) - len({d.get("idempotency_key") for d in real}),
           lost=len({m["id"] for m in acknowledged} - {d["_id"] for d in real}),
           recovered_seconds=round(recovered_in, 2))
    assert [d["seq"] for d in docs] == list(range(1, len(docs) + 1)), "seqs stay dense"
    assert sorted(d["_id"] for d in real) == sorted(m["id"] for m in acknowledged)
    assert len({d["idempotency_key"] for d in real}) == len(real) == BEFORE + 1 + DURING
    assert sorted(published) == sorted(d["_id"] for d in real) and len(set(published)) == len(published)
    assert recovered_in < 15
    await wait_for(lambda: outbox_empty(observer.store), timeout=15, message="outbox drained")
