"""Fan-out throughput (frames delivered per second) of the notify role with 1 and with N worker processes.

Self-contained: starts its own nats-server and in-memory nx-27017, writes one chat with S members,
runs `main.py --role=notify --processes=K` on one port (SO_REUSEPORT), opens S streams (one per
user) and publishes M `message.created` envelopes straight to JetStream, so only notify is measured.
Throughput = M * S / (first publish -> last frame of the last stream). The load client and the
publisher run in this process, on the same cores as notify: on a small machine they compete.

    .venv/bin/python -m bench.scale_out --streams 1000 --messages 300 --processes 1 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import sys
import tempfile
import time
from pathlib import Path

import psutil

from app import events
from app.auth import load_issuer
from app.config import load_config
from app.embedded import MongoWireServer, NatsServer
from app.events import EventBus, connect_nats, make_event
from app.processes import free_port
from app.store import Store, isoformat, make_client, new_id, utcnow
from bench.stack import write_key_pair
from tests.support.api import wait_for

ROOT = Path(__file__).resolve().parent.parent
FRAME_MARK = b"event: message.created\n"


class Counting(asyncio.Protocol):
    """One SSE stream: counts message frames as they arrive (the mark may straddle two reads)."""

    def __init__(self, request: bytes):
        self.request = request
        self.count = 0
        self.opened = asyncio.get_running_loop().create_future()
        self._tail = b""
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if not self.opened.done():
            self.opened.set_result(data.startswith(b"HTTP/1.1 200"))
        text = self._tail + data
        self.count += text.count(FRAME_MARK)
        self._tail = text[-(len(FRAME_MARK) - 1):]

    def connection_lost(self, exc) -> None:
        if not self.opened.done():
            self.opened.set_result(False)


async def get_json(port: int, path: str) -> dict:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    raw = await reader.read()
    writer.close()
    return json.loads(raw.split(b"\r\n\r\n", 1)[1])


def tree_cpu(process: psutil.Process) -> float:
    total = 0.0
    for proc in [process, *process.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


async def measure(processes: int, streams: int, messages: int, workdir: Path) -> dict:
    nats = NatsServer(workdir / f"nats-{processes}")
    mongo = MongoWireServer(workdir / f"mongo-{processes}", memory=True)
    await nats.start()
    await mongo.start()
    notify = None
    bus = client = None
    clients: list[Counting] = []
    try:
        private, public = write_key_pair(workdir)
        config = load_config(env={}, overrides={
            "data_dir": str(workdir), "log_level": "warning",
            "mongo": {"uri": mongo.uri}, "nats": {"url": nats.url},
            "auth": {"private_key_file": str(private), "public_key_file": str(public)},
        })
        client = make_client(config.mongo.uri, config.mongo.timeout_ms)
        store = Store(client, config.mongo.database)
        await store.ensure_indexes()
        bus = EventBus(await connect_nats(config.nats.url, name="bench-scale-out"), config.nats)
        await bus.ensure_stream()
        issuer = load_issuer(config, development=False)

        workspace_id, chat_id = new_id(), new_id()
        users = [new_id() for _ in range(streams)]
        await store.members.insert_many([
            {"_id": new_id(), "chat_id": chat_id, "user_id": user, "workspace_id": workspace_id,
             "role": "member", "last_read_seq": 0, "joined_at": utcnow()} for user in users
        ])

        port = free_port()
        env = {**os.environ, "FECHATTER_DATA_DIR": str(workdir), "FECHATTER_LOG_LEVEL": "warning",
               "FECHATTER_MONGO_URI": mongo.uri, "FECHATTER_NATS_URL": nats.url,
               "FECHATTER_AUTH_PUBLIC_KEY_FILE": str(public), "FECHATTER_LIMITS_ENABLED": "false"}
        log = open(workdir / f"notify-{processes}.log", "ab")
        notify = await asyncio.create_subprocess_exec(
            sys.executable, "main.py", "--role=notify", f"--port={port}", f"--processes={processes}",
            cwd=ROOT, env=env, stdout=log, stderr=log)

        async def ready() -> bool:
            try:
                return "status" in await get_json(port, "/api/sse/health")
            except OSError:
                return False

        await wait_for(ready, timeout=30, message="notify up")
        supervisor = psutil.Process(notify.pid)
        if processes > 1:
            await wait_for(lambda: len(supervisor.children()) == processes, timeout=30, message="workers up")
        await asyncio.sleep(1.0)  # every worker listening: let the slower one finish its start

        loop = asyncio.get_running_loop()
        for user in users:
            token = issuer.issue(user, workspace_id)
            request = (f"GET /events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n"
                       f"Authorization: Bearer {token}\r\n\r\n").encode()
            _, protocol = await loop.create_connection(lambda r=request: Counting(r), "127.0.0.1", port)
            clients.append(protocol)
        opened = await asyncio.gather(*(c.opened for c in clients))
        if not all(opened):
            raise RuntimeError(f"{opened.count(False)} streams refused")
        await wait_for(lambda: _connected(port, streams), timeout=180, message="all streams registered")

        async def publish(n: int, start: int) -> None:
            batch = []
            for i in range(start, start + n):
                message = {"id": new_id(), "chat_id": chat_id, "seq": i + 1, "sender_id": users[0],
                           "content": f"fan-out {i} " + "x" * 120, "files": [], "reply_to": None,
                           "created_at": isoformat(utcnow()), "edited_at": None, "deleted": False}
                batch.append(bus.publish(make_event(events.MESSAGE_CREATED, message, chat_id=chat_id,
                                                    workspace_id=workspace_id, actor_id=users[0])))
                if len(batch) == 50:
                    await asyncio.gather(*batch)
                    batch = []
            await asyncio.gather(*batch)

        await publish(5, 0)  # warm-up: every stream has received something before the clock starts
        await wait_for(lambda: all(c.count >= 5 for c in clients), timeout=60, message="warm-up delivered")
        cpu_before = tree_cpu(supervisor)
        started = time.monotonic()
        await publish(messages, 5)
        published = time.monotonic() - started
        await wait_for(lambda: all(c.count >= 5 + messages for c in clients), timeout=600, message="every frame delivered")
        elapsed = time.monotonic() - started
        cpu = tree_cpu(supervisor) - cpu_before
        health = [await get_json(port, "/api/sse/health") for _ in range(8)]
        return {
            "processes": processes, "streams": streams, "messages": messages,
            "deliveries": streams * messages, "seconds": round(elapsed, 3),
            "publish_seconds": round(published, 3),
            "deliveries_per_second": round(streams * messages / elapsed),
            "notify_cpu_seconds": round(cpu, 2),
            # Independent of what else the machine runs: the cost of a delivery in notify's own CPU time.
            "deliveries_per_notify_cpu_second": round(streams * messages / cpu) if cpu else None,
            "load_average_1m": os.getloadavg()[0],
            "connections_seen_per_worker": sorted({h["connections"] for h in health}),
        }
    finally:
        for c in clients:
            if c.transport is not None:
                c.transport.abort()
        if notify is not None and notify.returncode is None:
            notify.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(notify.wait(), 30)
            except asyncio.TimeoutError:
                notify.kill()
        if bus is not None:
            await bus.close()
        if client is not None:
            await client.close()
        nats.terminate()
        mongo.terminate()


async def _connected(port: int, streams: int) -> bool:
    return (await get_json(port, "/api/sse/health"))["connected_users"] >= streams


async def main_async(args) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    results = []
    with tempfile.TemporaryDirectory(prefix="fechatter-scale-out-") as tmp:
        for processes in args.processes:
            result = await measure(processes, args.streams, args.messages, Path(tmp))
            results.append(result)
            print(json.dumps(result), flush=True)
    base = results[0]["deliveries_per_second"]
    print(f"\nfan-out, {args.streams} streams x {args.messages} messages, {os.cpu_count()} cores:")
    for result in results:
        print(f"  notify --processes={result['processes']}: {result['deliveries_per_second']:>9,} deliveries/s "
              f"({result['seconds']}s, x{result['deliveries_per_second'] / base:.2f}; notify CPU "
              f"{result['notify_cpu_seconds']}s = {result['deliveries_per_notify_cpu_second']:,}/CPU-s; "
              f"load {result['load_average_1m']:.1f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
