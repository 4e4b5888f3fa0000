"""First-delivery latency (send -> frame) of the notify role: M messages to N open streams of one chat.

Starts its own nats-server, nx-27017, one api and one notify process (`main.py --role=...`), opens N
SSE streams (members x tabs of one group chat), sends M messages through POST /api/chats/{id}/messages
one after another, and times from just before each POST to the first and to the last stream receiving
its frame. Of bench/ it uses only the key pair of bench.stack.

    .venv/bin/python bench/notify_latency.py [--messages 1000] [--members 50] [--tabs 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tornado.httpclient import AsyncHTTPClient  # noqa: E402

from app.embedded import MongoWireServer, NatsServer  # noqa: E402
from app.processes import free_port  # noqa: E402
from bench.stack import write_key_pair  # noqa: E402
from tests.support.api import Api  # noqa: E402
from tests.support.sse import SSEClient  # noqa: E402


async def start_role(role: str, port: int, env: dict[str, str]) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "main.py", f"--role={role}", f"--port={port}", cwd=ROOT, env=env)
    api = Api(f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 30
    while True:
        if process.returncode is not None:
            raise RuntimeError(f"{role} exited at start")
        try:
            if (await api.get("/health", timeout=1)).status == 200:
                return process
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{role} did not start")
        await asyncio.sleep(0.1)


def histogram(text: str, name: str) -> list[tuple[float, float]]:
    """(upper bound, cumulative count) of a Prometheus histogram in text format."""
    buckets = []
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket{{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float("inf") if bound == "+Inf" else float(bound), float(line.rsplit(" ", 1)[1])))
    return buckets


def bucket_quantile(buckets: list[tuple[float, float]], q: float) -> float:
    total = buckets[-1][1]
    for bound, count in buckets:
        if count >= q * total:
            return bound
    return float("inf")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def run(messages: int, members: int, tabs: int) -> None:
    AsyncHTTPClient.configure(None, max_clients=50)
    work = Path(tempfile.mkdtemp(prefix="fechatter-notify-latency-"))
    nats, mongo = NatsServer(work / "nats"), MongoWireServer(work / "mongo", memory=True)
    processes: list[asyncio.subprocess.Process] = []
    clients: list[SSEClient] = []
    try:
        await nats.start()
        await mongo.start()
        private, public = write_key_pair(work)
        api_port, notify_port = free_port(), free_port()
        env = {**os.environ, "FECHATTER_DATA_DIR": str(work), "FECHATTER_LOG_LEVEL": "warning",
               "FECHATTER_MONGO_URI": mongo.uri, "FECHATTER_MONGO_DATABASE": f"bench_{uuid.uuid4().hex[:8]}",
               "FECHATTER_NATS_URL": nats.url, "FECHATTER_AUTH_PRIVATE_KEY_FILE": str(private),
               "FECHATTER_AUTH_PUBLIC_KEY_FILE": str(public), "FECHATTER_LIMITS_ENABLED": "false",
               "FECHATTER_API_PORT": str(api_port), "FECHATTER_NOTIFY_PORT": str(notify_port)}
        processes.append(await start_role("api", api_port, env))
        processes.append(await start_role("notify", notify_port, env))
        api = Api(f"http://127.0.0.1:{api_port}")

        owner = await api.signup(fullname="Owner")
        users = [owner] + [await api.signup(invite_code=owner["workspace"]["invite_code"], fullname=f"U{i}")
                           for i in range(members - 1)]
        chat = await api.post("/api/chats", {"type": "group", "name": "bench",
                                             "members": [u["id"] for u in users[1:]]}, token=owner["token"])
        assert chat.status == 201, chat.body
        chat_id = chat.body["id"]

        first_at: dict[str, float] = {}
        last_at: dict[str, float] = {}
        counts: dict[str, int] = {}
        streams = members * tabs

        def on_frame(frame) -> None:
            if frame.event != "message.created":
                return
            message_id = frame.data["id"]
            now = time.perf_counter()
            first_at.setdefault(message_id, now)
            counts[message_id] = counts.get(message_id, 0) + 1
            if counts[message_id] == streams:
                last_at[message_id] = now

        for user in users:
            for _ in range(tabs):
                client = SSEClient(f"http://127.0.0.1:{notify_port}", token=user["token"])
                client.on_frame(on_frame)
                clients.append(await client.open())
        # Warm up: every stream has the chat and one message.
        warm = await api.post(f"/api/chats/{chat_id}/messages", {"content": "warm-up"}, token=owner["token"])
        while warm.body["id"] not in last_at:
            await asyncio.sleep(0.01)

        sent_at: dict[str, float] = {}
        started = time.perf_counter()
        for i in range(messages):
            sender = users[i % len(users)]
            t0 = time.perf_counter()
            reply = await api.post(f"/api/chats/{chat_id}/messages", {"content": f"message {i}"},
                                   token=sender["token"])
            assert reply.status == 201, reply.body
            sent_at[reply.body["id"]] = t0
        deadline = time.monotonic() + 60
        while not all(m in last_at for m in sent_at) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started

        missing = sum(streams - counts.get(m, 0) for m in sent_at)
        first = [(first_at[m] - t0) * 1000 for m, t0 in sent_at.items() if m in first_at]
        last = [(last_at[m] - t0) * 1000 for m, t0 in sent_at.items() if m in last_at]
        print(f"notify latency: {messages} messages, {streams} streams ({members} members x {tabs} tabs), "
              f"sent one after another through the api in {elapsed:.1f}s")
        print(f"  send -> first frame  median {statistics.median(first):7.2f} ms   p99 {percentile(first, 99):7.2f} ms"
              f"   max {max(first):7.2f} ms")
        print(f"  send -> all {streams} frames median {statistics.median(last):7.2f} ms   "
              f"p99 {percentile(last, 99):7.2f} ms   max {max(last):7.2f} ms")
        print(f"  deliveries {sum(counts.get(m, 0) for m in sent_at)} of {messages * streams}, missing {missing}")
        scraped = (await Api(f"http://127.0.0.1:{notify_port}").get("/metrics")).body.decode()
        buckets = histogram(scraped, "fechatter_notify_delivery_seconds")
        print("  inside notify (JetStream store -> frames written to every stream, from its histogram): "
              f"median <= {bucket_quantile(buckets, 0.5) * 1000:g} ms, p99 <= {bucket_quantile(buckets, 0.99) * 1000:g} ms")
    finally:
        for client in clients:
            client.close()
        for process in processes:
            if process.returncode is None:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), 10)
                except asyncio.TimeoutError:
                    process.kill()
        nats.terminate()
        mongo.terminate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--members", type=int, default=50)
    parser.add_argument("--tabs", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(run(args.messages, args.members, args.tabs))


if __name__ == "__main__":
    main()
