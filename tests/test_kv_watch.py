"""The presence watch notices a lost NATS node in about two heartbeats, and readiness reports a stalled one."""

import asyncio
import json
import os
import signal
import time
import urllib.request

import pytest

from app.embedded import NatsServer
from app.events import EventBus, connect_nats
from app.kv import Heartbeat, PresenceBucket, ProcessSeen, UserRecord, UserSeen, WrongRevision
from tests.cluster import nats_cluster  # noqa: F401 - the fixture
from tests.conftest import make_test_config
from tests.support.api import Api, wait_for

pytestmark = [pytest.mark.gen_test(timeout=60)]

# A change written after the node is gone must reach the watcher within this long of landing: two silent
# heartbeats (1 s each), plus one beat more when the first re-created consumer is placed on the dead node.
MAX_STALE = 3.5


class Mirror:
    """What a watcher has seen: the bucket's keys as last delivered, each with when it arrived."""

    def __init__(self, bucket: PresenceBucket):
        self.bucket = bucket
        self.users: dict[str, tuple[UserRecord | None, float]] = {}
        self.processes: dict[str, Heartbeat | None] = {}
        self.synced = False
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        async for change in self.bucket.changes():
            if change is None:
                self.synced = True
            elif isinstance(change, UserSeen):
                self.users[change.user_id] = (change.record, time.monotonic())
            elif isinstance(change, ProcessSeen):
                self.processes[change.process_id] = change.heartbeat


async def _write(bucket: PresenceBucket, user_id: str, record: UserRecord, timeout: float = 20) -> float:
    """Writes the record (retrying while the bucket's stream elects a leader); when the write landed."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            last, _ = await bucket.read_user(user_id)
            await bucket.write_user(user_id, record, last)
            return time.monotonic()
        except WrongRevision:
            continue
        except Exception:  # noqa: BLE001 - no leader yet, or our connection moving to another node
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def _meta_leader(cluster) -> str:
    """The server_name of the cluster's JetStream meta leader, from a node's monitoring port."""
    def read() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{cluster.nodes[0].http_port}/jsz", timeout=5) as reply:
            return json.load(reply)["meta_cluster"]["leader"]

    return await asyncio.to_thread(read)


async def _consumer_host(bus: EventBus, stream: str) -> str:
    """The node holding the stream's one consumer (the watch's)."""
    hosts = {info.cluster.leader for info in await bus.js.consumers_info(stream) if info.cluster}
    assert len(hosts) == 1, hosts
    return hosts.pop()


async def _leader_not(cluster, stream: str, server_name: str) -> bool:
    return await cluster.stream_leader(stream) != server_name


async def _open(config, name: str) -> tuple[EventBus, PresenceBucket]:
    bus = EventBus(await connect_nats(config.nats.url, name), config.nats)
    bucket = PresenceBucket(bus, ttl_seconds=30)

    async def opened() -> bool:
        try:
            await bucket.open()
        except Exception:  # noqa: BLE001 - a fresh cluster: "no suitable peers for placement" for a moment
            return False
        return True

    await wait_for(opened, timeout=15, interval=0.2, message="the R3 bucket created")
    return bus, bucket


async def test_watch_survives_the_node_holding_its_consumer(nats_cluster, tmp_path, mongo_uri, key_files):  # noqa: F811
    config = make_test_config(tmp_path, mongo_uri, nats_cluster.url, key_files, nats={"replicas": 3})
    writer_bus, writer = await _open(config, "writer")
    watcher_bus, watcher = await _open(config, "watcher")
    try:
        # Other users' records and two processes' heartbeats already there before the watch starts.
        for i in range(5):
            await _write(writer, f"user{i}", UserRecord("w1" if i % 2 else "w2", [f"proc{i % 2}"]))
        await writer.beat("proc0", Heartbeat(1, "h", 3, 2))
        await writer.beat("proc1", Heartbeat(2, "h", 2, 3))
        stream = f"KV_{watcher.name}"
        meta_leader = await _meta_leader(nats_cluster)
        for _ in range(10):
            # With the cluster's meta leader lost no consumer can be created anywhere until the others
            # elect one (raft: 4-9 s): the watch is measured on a node that holds its consumer alone.
            await watcher.watch()
            victim = await _consumer_host(writer_bus, stream)
            if victim != meta_leader:
                break
            await watcher.close()
        assert victim != meta_leader
        mirror = Mirror(watcher)
        await wait_for(lambda: mirror.synced and len(mirror.users) == 5, timeout=10, message="initial mirror")
        assert set(mirror.processes) == {"proc0", "proc1"}
        if await nats_cluster.stream_leader(stream) == victim:
            # The stream's leader elsewhere: the write below then lands at once, and only the watch's
            # own recovery is measured (with the leader lost, nothing is stored for the 4-9 s election).
            await writer_bus.nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}", b"", timeout=5)
            await wait_for(lambda: _leader_not(nats_cluster, stream, victim), timeout=15, message="new leader")
        kv_leader = await nats_cluster.stream_leader(stream)
        assert kv_leader != victim
        nats_cluster.node(victim).kill()
        killed_at = time.monotonic()

        # A user comes online and another's holders change, after the node is gone.
        online = UserRecord("w1", ["proc1"])
        moved = UserRecord("w2", ["proc1", "proc0"])
        landed = await _write(writer, "newcomer", online)
        landed_moved = await _write(writer, "user0", moved)
        await wait_for(lambda: mirror.users.get("newcomer", (None,))[0] == online
                       and mirror.users.get("user0", (None,))[0] == moved,
                       timeout=MAX_STALE + 10, interval=0.05, message="changes after the kill seen")
        stale = max(mirror.users["newcomer"][1] - landed, mirror.users["user0"][1] - landed_moved)
        print(f"presence watch: consumer on {victim} (KV leader {kv_leader}) killed;"
              f" write landed {landed - killed_at:.2f} s after, seen {stale:.2f} s after it; resets {watcher.resets}")
        assert stale <= MAX_STALE, stale
        assert watcher.resets >= 1  # the watchdog re-created it, and said so
        # Nothing of what was there before was lost by the re-created watch.
        assert {u for u, (record, _) in mirror.users.items() if record is not None} == {
            "user0", "user1", "user2", "user3", "user4", "newcomer"}
        assert watcher.stalled() is None
    finally:
        await watcher.close()
        await writer_bus.close()
        await watcher_bus.close()


@pytest.fixture
def own_nats(tmp_path, io_loop):
    """A nats-server of this test alone, so it can be frozen."""
    server = NatsServer(tmp_path / "nats-own")
    io_loop.run_sync(server.start)
    yield server
    if server.running:
        os.kill(server.pid, signal.SIGCONT)
    server.terminate()


async def test_readiness_reports_a_stalled_presence_watch(own_nats, tmp_path, mongo_uri, key_files, role_processes):
    config = make_test_config(tmp_path, mongo_uri, own_nats.url, key_files)
    notify = await role_processes("notify", config, ready_path="/health/ready", FECHATTER_NATS_STALL_SECONDS="2")
    other = await role_processes("notify", config, ready_path="/health/ready")  # a second one beside it
    api = Api(notify.url)
    assert (await api.get("/health/ready")).status == 200

    os.kill(own_nats.pid, signal.SIGSTOP)  # the server freezes: the TCP connection stays, nothing arrives
    try:
        async def watch_down():
            # The event consumer falls silent too, a moment earlier or later: the watch must be named.
            reply = await api.get("/health/ready", timeout=5)
            if reply.status == 503 and any(r.startswith("presence watch silent") for r in reply.body["down"]):
                return reply
            assert reply.status in (200, 503), reply.body
            return None

        reply = await wait_for(watch_down, timeout=15, interval=0.2, message="readiness 503 naming the watch")
        assert reply.headers.get("Retry-After")
        assert reply.body["error"]["code"] == "not_ready"
    finally:
        os.kill(own_nats.pid, signal.SIGCONT)

    async def ready():
        return (await api.get("/health/ready", timeout=5)).status == 200

    await wait_for(ready, timeout=20, interval=0.2, message="ready again once NATS answers")
    assert (await Api(other.url).get("/health/ready", timeout=5)).status == 200
