"""Fault: the notify process is SIGKILLed under 200 streams while messages keep flowing, then restarted."""

import asyncio
import time

import pytest

from tests.faults.report import record
from tests.support.api import Api, wait_for
from tests.support.chats import team_chat
from tests.support.sse import ResumingClient, delivery_counts

pytestmark = [pytest.mark.faults, pytest.mark.gen_test(timeout=150)]

USERS = 20
STREAMS_PER_USER = 10  # 200 streams
MESSAGES = 240
KILL_AFTER = 80


async def test_notify_sigkill_under_200_streams(stack, roles, observer):
    api_process = await roles("api")
    notify = await roles("notify")
    api = Api(api_process.url)
    users, chat = await team_chat(api, USERS, "everyone")
    clients = [ResumingClient(notify.url, user["token"]).start() for user in users for _ in range(STREAMS_PER_USER)]
    try:
        await wait_for(lambda: all(c.connects for c in clients), timeout=30, message="200 streams open")
        sent, failed, while_down = [], 0, 0
        killed_at = restarted_at = None
        path = f"/api/chats/{chat['id']}/messages"
        for i in range(MESSAGES):
            if i == KILL_AFTER:
                notify.sigkill()
                killed_at = time.monotonic()
                # Restarted in the background while sends go on: it comes back on the same port.
                restart = asyncio.ensure_future(roles("notify", port=notify.port))
            reply = await api.post(path, {"content": f"m{i}", "idempotency_key": f"k{i}"}, token=users[i % USERS]["token"])
            if reply.status == 201:
                sent.append(reply.body)
                if killed_at and restarted_at is None:
                    while_down += 1
            else:
                failed += 1
            if killed_at and restarted_at is None and restart.done():
                restarted_at = time.monotonic()
        notify = await restart
        restarted_at = restarted_at or time.monotonic()
        assert failed == 0, "sends do not depend on the notify role"

        stored = [doc["_id"] async for doc in observer.store.messages.find({"chat_id": chat["id"]}).sort("seq", 1)]
        await wait_for(lambda: all(len({f.data["id"] for f in c.messages()}) >= len(stored) for c in clients),
                       timeout=60, interval=0.2, message="every client has every message")
        counts = delivery_counts(clients, stored)
        record("notify_sigkill_200_streams", clients=len(clients), sent=len(sent), stored=len(stored),
               down_seconds=round(restarted_at - killed_at, 2), sent_while_down=while_down,
               reconnects=sum(c.connects for c in clients) - len(clients),
               resyncs=sum(c.resyncs for c in clients), **counts)
        assert len(stored) == len(sent) == MESSAGES and while_down > 0
        assert [m["id"] for m in sent] == stored
        assert counts["duplicated"] == 0 and counts["lost"] == 0 and counts["clients_out_of_order"] == 0
        assert counts["deliveries"] == len(clients) * MESSAGES
        assert all(c.connects >= 2 for c in clients), "every client resumed after the crash"
        assert sum(c.resyncs for c in clients) == 0
        for client in clients:  # in seq order, frame ids increasing
            seqs = [f.data["seq"] for f in client.messages()]
            assert seqs == list(range(1, MESSAGES + 1))
            ids = [f.id for f in client.messages()]
            assert ids == sorted(ids)
    finally:
        await asyncio.gather(*(c.stop() for c in clients))
