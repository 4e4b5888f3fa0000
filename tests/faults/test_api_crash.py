"""Fault: the api process is SIGKILLed mid-send; clients retry with their idempotency keys against a restarted api."""

import asyncio

import pytest
from tornado.httpclient import HTTPClientError

from tests.faults.report import record
from tests.support.api import Api, wait_for
from tests.support.chats import outbox_empty, stream_events, team_chat

pytestmark = [pytest.mark.faults, pytest.mark.gen_test(timeout=150)]

SENDERS = 8
PER_SENDER = 30


async def test_api_sigkill_mid_send(stack, roles, observer):
    first = await roles("api")
    api = Api(first.url)
    users, chat = await team_chat(api, SENDERS, "crash")
    path = f"/api/chats/{chat['id']}/messages"
    answers: dict[str, list[dict]] = {}
    errors = {"connection": 0, "status": 0}
    progress = {"acknowledged": 0}

    async def sender(n: int) -> None:
        """Sends its messages one after another; a failed send is retried with the same key until it lands."""
        user = users[n]
        for i in range(PER_SENDER):
            key = f"s{n}-{i}"
            while True:
                try:
                    reply = await Api(first.url).post(path, {"content": key, "idempotency_key": key},
                                                      token=user["token"], timeout=10)
                except (OSError, HTTPClientError):  # the process died under the request, or is not back yet
                    errors["connection"] += 1
                    await asyncio.sleep(0.1)
                    continue
                if reply.status in (200, 201):
                    answers.setdefault(key, []).append(reply.body)
                    progress["acknowledged"] += 1
                    break
                errors["status"] += 1  # 409 send_in_progress while the dead process's claim ages, or a 599
                await asyncio.sleep(0.1)

    tasks = [asyncio.ensure_future(sender(n)) for n in range(SENDERS)]
    await wait_for(lambda: progress["acknowledged"] >= SENDERS * PER_SENDER // 3, timeout=60,
                   message="a third of the sends done")
    first.sigkill()  # with requests of 8 senders in flight
    killed_at = progress["acknowledged"]
    # The same port, as behind a load balancer: the senders' retries reach the new process.
    await roles("api", port=first.port)
    await asyncio.wait_for(asyncio.gather(*tasks), 90)

    docs = await observer.store.messages.find({"chat_id": chat["id"]}).sort("seq", 1).to_list()
    real = [d for d in docs if not d.get("gap")]
    keys = [d["idempotency_key"] for d in real]

    async def all_published():
        found = [e.event for e in await stream_events(observer.bus) if e.event.type == "message.created"
                 and e.event.data.get("kind") != "system"]  # not the signups' "joined #general" lines
        return found if len(found) >= len(real) else None

    events = await wait_for(all_published, timeout=30, interval=0.3, message="every stored message published")
    published = [e.data["id"] for e in events]
    await wait_for(lambda: outbox_empty(observer.store), timeout=20, message="the restarted api drained the outbox")
    sent = SENDERS * PER_SENDER
    record("api_sigkill_mid_send", sent=sent, acknowledged_before_kill=killed_at,
           retries_after_connection_errors=errors["connection"], retries_after_error_status=errors["status"],
           stored=len(real), seqs_taken=max((d["seq"] for d in docs), default=0), published=len(published),
           duplicated=len(keys) - len(set(keys)) + len(published) - len(set(published)),
           lost=len({f"s{n}-{i}" for n in range(SENDERS) for i in range(PER_SENDER)} - set(keys)),
           stored_without_event=len({d["_id"] for d in real} - set(published)))
    assert errors["connection"] > 0, "the kill interrupted sends in flight"
    assert len(keys) == len(set(keys)) == sent, "one message per idempotency key"
    assert all(len({a["id"] for a in answers[key]}) == 1 for key in answers)
    assert {answers[d["idempotency_key"]][0]["id"] for d in real} == {d["_id"] for d in real}
    assert sorted(published) == sorted(d["_id"] for d in real) and len(set(published)) == len(published)
    # A seq taken by a request killed before it saved anything is filled with a tombstone when a listing
    # finds it older than the grace period: what clients read is dense.
    async def dense_listing():
        seqs, after = [], 0
        while True:
            page = await Api(first.url).get(f"{path}?after={after}&limit=200", token=users[0]["token"])
            assert page.status == 200, page.body
            seqs += [m["seq"] for m in page.body["messages"]]
            if not page.body["has_more"]:
                return seqs if seqs == list(range(1, len(seqs) + 1)) else None
            after = seqs[-1]

    listed = await wait_for(dense_listing, timeout=15, interval=0.5, message="a dense listing")
    assert len(listed) >= sent
