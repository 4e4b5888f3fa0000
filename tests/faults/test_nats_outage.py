"""Fault: nats-server stopped for 10 s while messages are sent, then restarted with its JetStream store."""

import asyncio
import time

import pytest

from tests.faults.report import record
from tests.support.api import Api, wait_for
from tests.support.chats import outbox_empty, stream_events, team_chat
from tests.support.sse import ResumingClient, delivery_counts

pytestmark = [pytest.mark.faults, pytest.mark.gen_test(timeout=150)]

OUTAGE_SECONDS = 10
CLIENTS = 10


async def test_nats_down_for_10_seconds_during_sends(stack, roles, observer):
    api_process = await roles("api")
    notify = await roles("notify")
    api = Api(api_process.url)
    users, chat = await team_chat(api, 5, "outage")
    clients = [ResumingClient(notify.url, users[i % len(users)]["token"]).start() for i in range(CLIENTS)]
    path = f"/api/chats/{chat['id']}/messages"
    sent, refused, unclear = [], [], []
    n = 0

    async def send() -> None:
        nonlocal n
        n += 1
        reply = await api.post(path, {"content": f"m{n}", "idempotency_key": f"k{n}"},
                               token=users[n % len(users)]["token"], timeout=15)
        if reply.status == 201:
            sent.append(reply.body)
        elif reply.status == 503 and reply.headers.get("Retry-After") and reply.error_code:
            refused.append(reply)  # a clear failure: the client knows to retry
        else:
            unclear.append((reply.status, reply.body))

    try:
        await wait_for(lambda: all(c.connects for c in clients), timeout=20, message="streams open")
        for _ in range(20):
            await send()
        await stack.nats.stop()
        stopped = time.monotonic()
        during = len(sent)
        while time.monotonic() - stopped < OUTAGE_SECONDS:  # the outage lasts 10 s of wall time, sends go on
            await send()
            await asyncio.sleep(0.05)
        during = len(sent) - during
        await stack.nats.restart()
        for _ in range(20):
            await send()
        assert not unclear, unclear

        stored = [doc["_id"] async for doc in observer.store.messages.find({"chat_id": chat["id"]}).sort("seq", 1)]

        async def published():
            found = [e.event for e in await stream_events(observer.bus) if e.event.type == "message.created"
                 and e.event.data.get("kind") != "system"]  # not the signups' "joined #general" lines
            return found if len(found) >= len(stored) else None

        events = await wait_for(published, timeout=60, interval=0.5, message="every stored message published")
        await wait_for(lambda: all(len({f.data["id"] for f in c.messages()}) >= len(stored) for c in clients),
                       timeout=20, interval=0.2,
                       message=f"every stream has every message: {delivery_counts(clients, stored)}")
        counts = delivery_counts(clients, stored)
        published_ids = [e.data["id"] for e in events]
        record("nats_down_10s", sent=len(sent) + len(refused), acknowledged=len(sent), refused_503=len(refused),
               acknowledged_while_down=during, stored=len(stored), published=len(published_ids),
               published_duplicates=len(published_ids) - len(set(published_ids)), clients=CLIENTS,
               resyncs=sum(c.resyncs for c in clients), **counts)
        assert during > 0, "sends kept succeeding while NATS was down (outbox)"
        assert sorted(m["id"] for m in sent) == sorted(stored)
        assert published_ids == stored, "each stored message published once, in seq order"
        # Acknowledged entries are deleted in the background, in batches.
        await wait_for(lambda: outbox_empty(observer.store), timeout=15, message="outbox drained")
        assert counts["duplicated"] == 0 and counts["clients_out_of_order"] == 0
        assert counts["lost"] == 0, (counts, notify.log_tail(40))
    finally:
        await asyncio.gather(*(c.stop() for c in clients))
