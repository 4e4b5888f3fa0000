"""haproxy (docs/deploy/haproxy.cfg) in front of 2 api + 2 notify: clients resume across a rolling restart of notify."""

import asyncio
import os
import shutil
import signal
import time
import uuid

import pytest

from app import events
from bench.cluster import HAProxy, render_haproxy_config
from tests.cluster import nats_cluster  # noqa: F401 - the fixture
from tests.conftest import make_test_config
from tests.support.api import Api, wait_for
from tests.support.chats import create_chat
from tests.support.sse import ResumingClient, delivery_counts

pytestmark = [
    pytest.mark.gen_test(timeout=120),
    pytest.mark.skipif(shutil.which("haproxy") is None and not os.path.exists("/usr/sbin/haproxy"),
                       reason="haproxy is not installed (make test installs it)"),
]

# A grace well above a reconnect through haproxy; a TTL short enough that a crash would show.
ENV = {"FECHATTER_NOTIFY_PRESENCE_TTL_SECONDS": "3", "FECHATTER_NOTIFY_PRESENCE_OFFLINE_GRACE_SECONDS": "5"}
SERVERS = ("api/api-1", "api/api-2", "notify/notify-1", "notify/notify-2")


@pytest.fixture
def haproxy(tmp_path):
    started: list[HAProxy] = []

    def start(apis, notifies) -> HAProxy:
        directory = tmp_path / f"haproxy-{len(started)}"
        directory.mkdir()
        lb = HAProxy(directory, [f"127.0.0.1:{p.port}" for p in apis], [f"127.0.0.1:{p.port}" for p in notifies])
        started.append(lb)
        return lb.start()

    yield start
    for lb in started:
        lb.stop()


def test_the_config_renders_only_addresses_and_checks(tmp_path):
    text = render_haproxy_config("127.0.0.1:1", ["127.0.0.1:2", "127.0.0.1:3"], ["127.0.0.1:4", "127.0.0.1:5"])
    assert "server api-2 127.0.0.1:3 check" in text and "server notify-1 127.0.0.1:4 check" in text
    assert "10.0." not in text and "ssl" not in text.split("frontend public")[1].split("\n")[1]
    # What the deployment relies on: readiness checks, no stickiness, long-lived streams.
    assert "uri /health/ready" in text and "timeout tunnel" in text
    directives = [line.split()[0] for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert not [d for d in directives if d.startswith("stick") or d in ("cookie", "hash-type")], directives
    assert "balance leastconn" in text
    with pytest.raises(ValueError):
        render_haproxy_config("127.0.0.1:1", ["127.0.0.1:2"], ["127.0.0.1:4", "127.0.0.1:5"])


async def test_rolling_restart_of_notify_behind_haproxy(role_process, haproxy):
    await _rolling_restart(role_process, haproxy)


@pytest.mark.cluster
async def test_rolling_restart_behind_haproxy_on_a_3_node_cluster(nats_cluster, tmp_path, mongo_uri, key_files,  # noqa: F811
                                                                  role_processes, haproxy):
    config = make_test_config(tmp_path, mongo_uri, nats_cluster.url, key_files, nats={"replicas": 3})

    async def start_role(role: str, **env: str):
        return await role_processes(role, config, ready_path="/health/ready", FECHATTER_NATS_REPLICAS="3", **env)

    await _rolling_restart(start_role, haproxy)


async def _rolling_restart(start_role, haproxy):
    api1, api2, n1, n2 = await asyncio.gather(*(start_role(role, **ENV) for role in ("api", "api", "notify", "notify")))
    lb = haproxy([api1, api2], [n1, n2])
    await wait_for(lambda: asyncio.to_thread(lb.up, *SERVERS), timeout=15, message=f"haproxy: {SERVERS} up")
    front = Api(lb.url)

    owner = await front.signup(fullname="Owner")
    code = owner["workspace"]["invite_code"]
    team = [owner, *await asyncio.gather(*(front.signup(invite_code=code, fullname=f"Member {i}") for i in range(5)))]
    chat = (await create_chat(front, owner, "group", team[1:], name="deploys"))["id"]
    side = (await create_chat(front, team[1], "group", team[2:4], name="side"))["id"]
    # Another workspace beside it, with a chat of its own and a client of its own.
    other = await front.signup(fullname="Elsewhere")
    others = [await front.signup(invite_code=other["workspace"]["invite_code"], fullname=f"Elsewhere {i}")
              for i in range(2)]
    other_chat = (await create_chat(front, other, "group", others, name="theirs"))["id"]

    clients = [ResumingClient(lb.url, user["token"]).start() for user in team]
    outsider = ResumingClient(lb.url, other["token"]).start()
    ids = {user["id"] for user in team}

    async def all_online() -> bool:
        reply = await front.get(f"/api/online-users?chat_id={chat}", token=owner["token"])
        return reply.status == 200 and {u["id"] for u in reply.body["users"]} == ids

    await wait_for(lambda: all(c.connects for c in clients) and all_online(), timeout=15,
                   message="every client connected through haproxy and online")

    stored: list[str] = []
    statuses: list[int] = []
    sending = True

    async def send_forever():
        n = 0
        while sending:
            key = uuid.uuid4().hex
            sender = team[n % len(team)]
            body = {"content": f"keyed {n}", "idempotency_key": key}
            deadline = time.monotonic() + 15
            while True:  # a client retrying with its key until it gets an answer
                try:
                    reply = await front.post(f"/api/chats/{chat}/messages", body, token=sender["token"], timeout=5)
                except OSError:
                    reply = None
                if reply is not None:
                    statuses.append(reply.status)
                    if reply.status in (200, 201):
                        stored.append(reply.body["id"])
                        break
                assert time.monotonic() < deadline, f"send {n} never stored: {reply and reply.body}"
                await asyncio.sleep(0.1)  # back-off between retries
            if n % 10 == 0:  # traffic beside it that these clients must not receive
                await front.post(f"/api/chats/{other_chat}/messages", {"content": f"theirs {n}"},
                                 token=other["token"])
            n += 1
            await asyncio.sleep(0.04)  # ~20 sends/s

    sender = asyncio.get_running_loop().create_task(send_forever())
    await wait_for(lambda: len(stored) >= 20, timeout=15, message="traffic flowing")

    # The rolling restart: SIGTERM one notify, wait until haproxy counts it ready again, then the other.
    restarted_at = time.monotonic()
    for process, name in ((n1, "notify/notify-1"), (n2, "notify/notify-2")):
        assert await asyncio.to_thread(process.stop, signal.SIGTERM) == 0
        await process.start()
        await wait_for(lambda name=name: asyncio.to_thread(lb.up, name), timeout=15, message=f"{name} up again")
        before = len(stored)
        await wait_for(lambda before=before: len(stored) >= before + 20, timeout=15, message="traffic after restart")
    restart_seconds = time.monotonic() - restarted_at

    sending = False
    await sender
    await wait_for(lambda: all(len({f.data["id"] for f in c.messages()}) >= len(stored) for c in clients),
                   timeout=15, message="every client caught up")
    counts = delivery_counts(clients, stored)
    print(f"haproxy rolling restart: {len(stored)} sends in {restart_seconds:.1f}s, statuses "
          f"{sorted(set(statuses))}, counts {counts}, connects {[c.connects for c in clients]}")
    assert counts["lost"] == 0 and counts["duplicated"] == 0 and counts["clients_out_of_order"] == 0, counts
    assert set(statuses) <= {200, 201}, sorted(set(statuses))
    assert all(c.connects >= 2 for c in clients), "a client never moved: the restart did not touch it"
    assert sum(c.resyncs for c in clients) == 0
    # Nobody who reconnected was ever announced offline, to anyone.
    offline = [(f.data["user_id"]) for c in clients for f in c.frames
               if f.event == events.PRESENCE and f.data["status"] == "offline"]
    assert offline == [], f"offline announced for {sorted(set(offline))}"
    assert await all_online()
    assert not [f for f in outsider.messages() if f.data["chat_id"] in (chat, side)]
    assert all(f.data["chat_id"] != other_chat for c in clients for f in c.messages())
    for client in (*clients, outsider):
        await client.stop()
