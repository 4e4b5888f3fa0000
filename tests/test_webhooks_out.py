"""Outgoing webhooks end to end: the api, `main.py --role=worker` as real processes, and a local receiver."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import signal
import time

import msgspec
import pytest
import tornado.web
from tornado.httpserver import HTTPServer

from app.processes import free_port
from tests.support.api import wait_for
from tests.support.chats import create_chat

pytestmark = pytest.mark.gen_test(timeout=80)

WEBHOOK_SETTINGS = {
    # 127.0.0.1 listed exactly (it may be loopback); "local*" only a pattern: localhost must then be public.
    "allowed_hosts": ["127.0.0.1", "local*"],
    "backoff_base_seconds": 0.05,
    "backoff_max_seconds": 0.2,
    "lease_seconds": 1.5,
}
WORKER_SETTINGS = {"ack_wait_seconds": 2, "poll_seconds": 0.1, "batch": 16}


@pytest.fixture
def config_overrides():
    return {"limits": {"enabled": False}, "webhooks": WEBHOOK_SETTINGS, "worker": WORKER_SETTINGS}


def worker_env() -> dict[str, str]:
    env = {f"FECHATTER_WEBHOOKS_{k.upper()}": json.dumps(v) for k, v in WEBHOOK_SETTINGS.items()}
    env.update({f"FECHATTER_WORKER_{k.upper()}": json.dumps(v) for k, v in WORKER_SETTINGS.items()})
    return env


class Receiver:
    """A tornado server on a free port recording every POST; `fail_first[delivery_id]` answers 500 that many times."""

    def __init__(self, delay: float = 0.0):
        self.received: list[dict] = []
        self.fail_first: dict[str, int] = {}
        self.delay = delay
        # The n-th request (from 0) is answered only once gates[n] is set; on_arrival() is awaited first.
        self.gates: dict[int, asyncio.Event] = {}
        self.on_arrival = None
        receiver = self

        class Hook(tornado.web.RequestHandler):
            async def post(self) -> None:
                delivery = self.request.headers.get("X-Fechatter-Delivery", "")
                n = len(receiver.received)
                receiver.received.append({"headers": dict(self.request.headers), "body": self.request.body})
                if receiver.on_arrival is not None:
                    await receiver.on_arrival()
                if n in receiver.gates:
                    await receiver.gates[n].wait()
                if receiver.delay:
                    await asyncio.sleep(receiver.delay)  # a slow receiver, so a kill lands mid-delivery
                if receiver.fail_first.get(delivery, 0) > 0:
                    receiver.fail_first[delivery] -= 1
                    self.set_status(500)
                self.finish("ok")

        self.port = free_port()
        self.server = HTTPServer(tornado.web.Application([(r"/.*", Hook)]))
        self.server.listen(self.port, "127.0.0.1")
        self.url = f"http://127.0.0.1:{self.port}/hook"

    def delivery_ids(self) -> list[str]:
        return [r["headers"]["X-Fechatter-Delivery"] for r in self.received]

    def open_gates(self) -> None:
        for gate in self.gates.values():
            gate.set()

    def distinct(self) -> list[dict]:
        seen, out = set(), []
        for r in self.received:
            if r["headers"]["X-Fechatter-Delivery"] not in seen:
                seen.add(r["headers"]["X-Fechatter-Delivery"])
                out.append(r)
        return out


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.stop()


async def start_worker(role_process, deps):
    worker = await role_process("worker", **worker_env())
    # The durable consumer exists once the worker has started it: only later events are the worker's.
    await wait_for(lambda: _consumer_exists(deps), timeout=15, message="the webhook consumer")
    return worker


async def _consumer_exists(deps) -> bool:
    try:
        await deps.bus.js.consumer_info(deps.bus.stream, deps.bus.webhook_consumer_name())
        return True
    except Exception:  # noqa: BLE001 - not yet
        return False


async def send(api, user, chat, content):
    reply = await api.post(f"/api/chats/{chat['id']}/messages", {"content": content}, token=user["token"])
    assert reply.status == 201, reply.body
    return reply.body


def check_signed(record, secret: str) -> dict:
    expected = "sha256=" + hmac.new(secret.encode(), record["body"], hashlib.sha256).hexdigest()
    assert hmac.compare_digest(record["headers"]["X-Fechatter-Signature"], expected)
    envelope = json.loads(record["body"])
    assert record["headers"]["X-Fechatter-Event"] == envelope["type"]
    assert record["headers"]["X-Fechatter-Delivery"] == envelope["id"]
    return envelope


async def team(api):
    owner = await api.signup(fullname="Olga Owner")
    member = await api.signup(invite_code=owner["workspace"]["invite_code"], fullname="Mia Member")
    carl = await api.signup(invite_code=owner["workspace"]["invite_code"], fullname="Carl Colleague")
    stranger = await api.signup(fullname="Sam Stranger")
    watched = await create_chat(api, owner, "group", [member, carl], name="watched")
    other = await create_chat(api, owner, "group", [member, carl], name="unwatched")
    elsewhere = await create_chat(api, stranger, "public_channel", name="elsewhere")
    return owner, member, stranger, watched, other, elsewhere


async def test_every_message_once_signed_in_order_across_a_worker_sigkill(api, deps, role_process):
    receiver = Receiver(delay=0.03)
    owner, member, stranger, watched, other, elsewhere = await team(api)
    first = await start_worker(role_process, deps)
    created = await api.post("/api/webhooks", {"url": receiver.url, "events": ["message.created"],
                                               "chat_ids": [watched["id"]]}, token=owner["token"])
    assert created.status == 201, created.body
    secret = created.body["secret"]
    # Another workspace's webhook on the same receiver path sees none of the owner's events and vice versa.
    theirs = await api.post("/api/webhooks", {"url": receiver.url + "?theirs", "events": ["message.created"]},
                            token=stranger["token"])
    assert theirs.status == 201

    sent = []
    for i in range(15):
        sent.append(await send(api, member if i % 2 else owner, watched, f"watched {i}"))
        await send(api, owner, other, f"unwatched {i}")
    await wait_for(lambda: len(receiver.distinct()) >= 4, timeout=20, message="first deliveries")
    first.process.send_signal(signal.SIGKILL)
    assert await first.wait() == -signal.SIGKILL
    stranger_sent = [await send(api, stranger, elsewhere, f"theirs {i}") for i in range(3)]
    # Two workers share the consumer from now on.
    await start_worker(role_process, deps)
    await start_worker(role_process, deps)
    for i in range(15, 25):
        sent.append(await send(api, owner, watched, f"watched {i}"))

    def ours():
        return [r for r in receiver.distinct() if json.loads(r["body"])["workspace_id"] == owner["workspace"]["id"]]

    await wait_for(lambda: len(ours()) >= len(sent), timeout=40, message="every message delivered")
    envelopes = [check_signed(r, secret) for r in ours()]
    assert [e["data"]["id"] for e in envelopes] == [m["id"] for m in sent]
    assert {e["chat_id"] for e in envelopes} == {watched["id"]}
    # At least once: only the delivery cut by the kill may arrive twice, and right after itself (order kept):
    # each outcome is recorded before the next send, and one worker at a time holds the webhook's lease.
    ids = [i for r, i in zip(receiver.received, receiver.delivery_ids())
           if json.loads(r["body"])["workspace_id"] == owner["workspace"]["id"]]
    collapsed = [i for n, i in enumerate(ids) if n == 0 or ids[n - 1] != i]
    assert collapsed == [e["id"] for e in envelopes]
    assert len(ids) - len(collapsed) <= 1
    await wait_for(lambda: len([r for r in receiver.distinct()
                                if json.loads(r["body"])["workspace_id"] == stranger["workspace"]["id"]]) >= 3,
                   timeout=20, message="the stranger's deliveries")
    theirs_got = [json.loads(r["body"]) for r in receiver.distinct()
                  if json.loads(r["body"])["workspace_id"] == stranger["workspace"]["id"]]
    assert [e["data"]["id"] for e in theirs_got] == [m["id"] for m in stranger_sent]
    receiver.server.stop()


def in_process_deliverer(deps, **webhooks):
    """A worker's deliverer in the test's own process (its lease is watched and taken by hand)."""
    from prometheus_client import CollectorRegistry

    from app.services.webhooks_out import DeliveryMetrics, WebhookDeliverer

    config = msgspec.structs.replace(deps.config, webhooks=msgspec.structs.replace(deps.config.webhooks, **webhooks))
    return WebhookDeliverer(deps.store, deps.bus, config, DeliveryMetrics(CollectorRegistry()))


async def watched_hook(api, owner, chat, receiver) -> str:
    created = await api.post("/api/webhooks", {"url": receiver.url, "events": ["message.created"],
                                               "chat_ids": [chat["id"]]}, token=owner["token"])
    assert created.status == 201, created.body
    return created.body["id"]


async def queued(deps, hook_id) -> list[str]:
    docs = await deps.store.webhook_queue.find({"webhook_id": hook_id}).sort("seq", 1).to_list(None)
    return [d["event_id"] for d in docs]


async def test_a_lease_is_taken_on_its_own_webhook_only(api, deps):
    # Two webhooks, two workers: taking a held webhook's lease fails and writes no other webhook's lease. (On
    # nx-27017 a findAndModify of {_id, $or: [lapsed, ours]} matched any webhook whose lease was ours: a worker
    # holding one webhook "took" every other, and two workers sent the same queue at once.)
    receiver = Receiver()
    owner, member, stranger, watched, other, elsewhere = await team(api)
    first = await watched_hook(api, owner, watched, receiver)
    second = await watched_hook(api, owner, other, receiver)
    a, b = in_process_deliverer(deps), in_process_deliverer(deps)

    async def tokens():
        return {d["_id"]: d["lease_token"] for d in await deps.store.webhooks.find({}, {"lease_token": 1}).to_list(None)}

    try:
        held = await a.acquire(first)
        assert held is not None
        assert await b.acquire(first) is None  # held by A; the second webhook's lapsed lease is not B's for it
        assert await tokens() == {first: held.token, second: None}
        theirs = await b.acquire(second)
        assert theirs is not None and await a.acquire(second) is None
        assert await tokens() == {first: held.token, second: theirs.token}
        # A takes its own lease again (its drain ended) under a new token: the old one is fenced out.
        again = await a.acquire(first)
        assert again is not None and again.token != held.token
        assert not await a.renew(held) and held.lost
        assert await a.renew(again) and await b.renew(theirs)
        assert await tokens() == {first: again.token, second: theirs.token}
    finally:
        receiver.server.stop()


async def test_each_outcome_recorded_before_the_next_is_sent(api, deps):
    # A worker killed while sending event k must leave events before k recorded as delivered (else the next
    # holder sends them again, after later ones): each delivery is taken off the queue before the next is sent.
    receiver = Receiver()
    owner, member, stranger, watched, other, elsewhere = await team(api)
    worker = in_process_deliverer(deps, lease_seconds=6)
    await worker.start()
    try:
        hook_id = await watched_hook(api, owner, watched, receiver)
        snapshots: list[list[str]] = []

        async def snapshot():
            snapshots.append(await queued(deps, hook_id))

        receiver.on_arrival = snapshot
        receiver.gates[0] = asyncio.Event()  # the first delivery waits until every event is queued behind it
        sent = []
        for i in range(5):
            sent.append(await send(api, member if i % 2 else owner, watched, f"watched {i}"))
            await send(api, owner, other, f"unwatched {i}")
            await send(api, stranger, elsewhere, f"theirs {i}")
        await wait_for(lambda: _count(deps, hook_id, 5), timeout=20, message="5 events queued")
        receiver.gates[0].set()
        await wait_for(lambda: len(snapshots) >= 5, timeout=20, message="5 deliveries")
        ids = receiver.delivery_ids()
        envelopes = [json.loads(r["body"]) for r in receiver.received]
        assert [e["data"]["id"] for e in envelopes] == [m["id"] for m in sent]
        # When delivery k arrives, exactly events k.. are still queued: 0..k-1 were recorded before it was sent.
        assert snapshots[1:] == [ids[k:] for k in range(1, 5)]
        await wait_for(lambda: _count(deps, hook_id, 0), timeout=10, message="the queue emptied")
        assert len(receiver.received) == 5
    finally:
        receiver.open_gates()
        await worker.stop()
        receiver.server.stop()


async def _count(deps, hook_id, n) -> bool:
    return await deps.store.webhook_queue.count_documents({"webhook_id": hook_id}) == n


async def test_a_worker_that_lost_its_lease_mid_send_stops_and_records_nothing(api, deps):
    # Worker A stalls inside a delivery past its lease; B takes the webhook over and sends that event again and
    # the rest. When A's send returns, A finds its lease token gone: it neither marks the queue nor sends more.
    receiver = Receiver()
    owner, member, stranger, watched, other, elsewhere = await team(api)
    a = in_process_deliverer(deps, lease_seconds=30)  # lapses only when the test says so
    b = in_process_deliverer(deps, lease_seconds=30)
    await a.start()
    try:
        hook_id = await watched_hook(api, owner, watched, receiver)
        receiver.gates[0] = asyncio.Event()  # every event queued before A reads the queue again
        receiver.gates[1] = asyncio.Event()  # A's second delivery hangs
        sent = []
        for i in range(4):
            sent.append(await send(api, member if i % 2 else owner, watched, f"watched {i}"))
            await send(api, owner, other, f"unwatched {i}")
        await wait_for(lambda: _count(deps, hook_id, 4), timeout=20, message="4 events queued")
        receiver.gates[0].set()
        await wait_for(lambda: _count(deps, hook_id, 3), timeout=20, message="A's second delivery in flight")
        await wait_for(lambda: len(receiver.received) >= 2, timeout=20, message="A's second delivery in flight")
        await b.start()
        assert len(receiver.received) == 2  # A's lease holds B off...
        await deps.store.webhooks.update_one({"_id": hook_id}, {"$set": {"lease_until": 0.0}})  # ...until it lapses
        await wait_for(lambda: _count(deps, hook_id, 0), timeout=20, message="B delivering the rest")
        receiver.gates[1].set()

        async def attempts():
            reply = await api.get(f"/api/webhooks/{hook_id}/deliveries", token=owner["token"])
            return len(reply.body["deliveries"]) >= 5  # A's two (logged when it stops) and B's three

        await wait_for(attempts, timeout=20, message="A stopping")
        envelopes = [json.loads(r["body"]) for r in receiver.received]
        by_message = {m["id"]: n for n, m in enumerate(sent)}
        assert [by_message[e["data"]["id"]] for e in envelopes] == [0, 1, 1, 2, 3]
        assert await deps.store.webhook_dead.count_documents({"webhook_id": hook_id}) == 0

        async def released():
            return (await deps.store.webhooks.find_one({"_id": hook_id}))["lease_owner"] is None

        await wait_for(released, timeout=10, message="B releasing the lease once the queue is empty")
    finally:
        receiver.open_gates()
        await a.stop()
        await b.stop()
        receiver.server.stop()


async def test_a_slow_answer_keeps_the_lease(api, deps):
    # A receiver slower than the lease: the holder renews it while it waits, so no second worker sends the same.
    receiver = Receiver()
    owner, member, stranger, watched, other, elsewhere = await team(api)
    a = in_process_deliverer(deps, lease_seconds=1.0)
    b = in_process_deliverer(deps, lease_seconds=1.0)
    await a.start()
    await b.start()
    try:
        hook_id = await watched_hook(api, owner, watched, receiver)
        receiver.gates[0] = asyncio.Event()
        sent = [await send(api, owner, watched, f"watched {i}") for i in range(3)]
        await wait_for(lambda: len(receiver.received) >= 1, timeout=20, message="the first delivery")
        held_since = time.time()

        async def renewed_long_after():
            hook = await deps.store.webhooks.find_one({"_id": hook_id})
            return hook["lease_until"] > held_since + 2.5  # renewed again and again while the answer waited

        await wait_for(renewed_long_after, timeout=10, message="the lease renewed during the slow answer")
        assert len(receiver.received) == 1
        receiver.gates[0].set()
        await wait_for(lambda: _count(deps, hook_id, 0), timeout=20, message="the rest delivered")
        assert [json.loads(r["body"])["data"]["id"] for r in receiver.received] == [m["id"] for m in sent]
    finally:
        receiver.open_gates()
        await a.stop()
        await b.stop()
        receiver.server.stop()


async def test_three_500s_then_200(api, deps, role_process):
    receiver = Receiver()
    owner, member, stranger, watched, other, elsewhere = await team(api)
    await start_worker(role_process, deps)
    created = await api.post("/api/webhooks", {"url": receiver.url, "events": ["message.created"]},
                             token=owner["token"])
    hook_id = created.body["id"]
    # Every delivery fails three times: the receiver keys its failures by delivery id as they arrive.
    original = receiver.fail_first

    class ThreeTimes(dict):
        def get(self, key, default=None):
            if key not in self:
                self[key] = 3
            return super().get(key, default)

    receiver.fail_first = ThreeTimes(original)
    first = await send(api, owner, watched, "first")
    second = await send(api, member, watched, "second")
    await wait_for(lambda: len(receiver.received) >= 8, timeout=30, message="4 attempts each")
    codes_by_delivery: dict[str, list] = {}

    async def log_done():
        reply = await api.get(f"/api/webhooks/{hook_id}/deliveries", token=owner["token"])
        return reply.body["deliveries"] if len(reply.body["deliveries"]) >= 8 else None

    deliveries = list(reversed(await wait_for(log_done, timeout=10, message="the delivery log")))
    for d in deliveries:
        codes_by_delivery.setdefault(d["event_id"], []).append((d["attempt"], d["status_code"]))
    assert list(codes_by_delivery.values()) == [[(1, 500), (2, 500), (3, 500), (4, 200)]] * 2
    # In order: every attempt of the first event before any of the second's.
    order = [json.loads(r["body"])["data"]["id"] for r in receiver.received]
    assert order == [first["id"]] * 4 + [second["id"]] * 4
    receiver.server.stop()


async def test_targets_outside_allowed_hosts_refused_at_creation_and_delivery(api, deps, role_process, receiver):
    owner, member, stranger, watched, other, elsewhere = await team(api)
    for url in ("http://example.com/hook", "http://10.1.2.3/hook", "ftp://127.0.0.1/hook",
                "http://user:pw@127.0.0.1/hook", "http://169.254.169.254/latest/meta-data", "not a url"):
        reply = await api.post("/api/webhooks", {"url": url, "events": ["message.created"]}, token=owner["token"])
        assert reply.status == 422, (url, reply.body)
    reply = await api.post("/api/webhooks", {"url": receiver.url, "events": ["typing"]}, token=owner["token"])
    assert reply.status == 422
    reply = await api.post("/api/webhooks", {"url": receiver.url, "events": ["message.created"]},
                           token=member["token"])
    assert reply.status == 403
    listed = await api.get("/api/webhooks", token=owner["token"])
    assert listed.status == 200 and listed.body["webhooks"] == []

    await start_worker(role_process, deps)
    # Allowed by the pattern "local*", but localhost resolves to a loopback address: refused at delivery.
    rebound = await api.post("/api/webhooks", {"url": f"http://localhost:{receiver.port}/hook",
                                               "events": ["message.created"]}, token=owner["token"])
    assert rebound.status == 201, rebound.body
    good = await api.post("/api/webhooks", {"url": receiver.url, "events": ["message.created"]},
                          token=owner["token"])
    message = await send(api, owner, watched, "hello")

    async def refused():
        reply = await api.get(f"/api/webhooks/{rebound.body['id']}/deliveries", token=owner["token"])
        return reply.body["deliveries"]

    attempts = await wait_for(refused, timeout=20, message="the refused attempt")
    assert attempts[0]["status_code"] is None and "refused" in attempts[0]["error"]
    await wait_for(lambda: len(receiver.received) >= 1, timeout=20, message="the allowed delivery")
    assert [r["headers"]["Host"] for r in receiver.received] == [f"127.0.0.1:{receiver.port}"]
    assert json.loads(receiver.received[0]["body"])["data"]["id"] == message["id"]
    assert len(await deps.store.webhook_dead.find({"webhook_id": rebound.body["id"]}).to_list()) == 1

    listed = await api.get("/api/webhooks", token=owner["token"])
    assert [h["id"] for h in listed.body["webhooks"]] == [rebound.body["id"], good.body["id"]]
    assert "secret" not in listed.body["webhooks"][0]
    # Another workspace's owner is told nothing exists; a member of this one that it is not theirs.
    assert (await api.delete(f"/api/webhooks/{good.body['id']}", token=stranger["token"])).status == 404
    assert (await api.delete(f"/api/webhooks/{good.body['id']}", token=member["token"])).status == 403
    assert (await api.delete(f"/api/webhooks/{good.body['id']}", token=owner["token"])).status == 204
    assert (await api.get(f"/api/webhooks/{good.body['id']}/deliveries", token=owner["token"])).status == 404


@pytest.mark.parametrize("url, allowed", [
    ("http://127.0.0.1:8080/hook", True),  # listed exactly: may be loopback
    ("https://localhost/hook", True),  # matched by the pattern: allowed by name, its addresses are checked later
    ("http://[::ffff:127.0.0.1]/hook", False),  # not listed, and loopback in disguise
    ("http://10.0.0.5/hook", False),
    ("http://metadata.google.internal/", False),
    ("http://127.0.0.1.nip.io/", False),
    ("gopher://127.0.0.1/", False),
    ("http://127.0.0.1:0/", False),
])
def test_url_policy(url, allowed):
    from app.netguard import HostPolicy, TargetRefused

    policy = HostPolicy(WEBHOOK_SETTINGS["allowed_hosts"])
    if allowed:
        policy.check_url(url)
    else:
        with pytest.raises(TargetRefused):
            policy.check_url(url)


async def test_resolver_checks_every_address_of_a_pattern_host():
    import ipaddress

    from app.netguard import GuardedResolver, HostPolicy, TargetRefused

    policy = HostPolicy(["127.0.0.1", "local*", "*.example.com"])
    resolver = GuardedResolver(policy=policy)
    assert [a[1][0] for a in await resolver.resolve("127.0.0.1", 80)] == ["127.0.0.1"]
    with pytest.raises(TargetRefused):
        await resolver.resolve("localhost", 80)  # a pattern's host resolving to loopback
    with pytest.raises(TargetRefused):
        await resolver.resolve("example.org", 80)  # not allowed at all: never resolved
    for private in ("10.1.2.3", "169.254.169.254", "192.168.1.1", "fd00::1", "fe80::1"):
        with pytest.raises(TargetRefused):
            policy.check_address("hooks.example.com", ipaddress.ip_address(private))
    policy.check_address("hooks.example.com", ipaddress.ip_address("93.184.216.34"))
